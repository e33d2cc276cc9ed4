//! Where a trace starts and where a reply starts: the sender of a packet, in the walk.

use std::net::IpAddr;

use super::*;

impl<'a> Walk<'a> {
    pub(super) fn sender(
        &self,
        src: &Place<'a>,
        from: Option<&'a Network>,
    ) -> anyhow::Result<(At<'a>, IpAddr, Vec<String>)> {
        let state = self.state;
        Ok(match src {
            Place::Instance { instance, ip, .. } => (At::Instance(instance), *ip, vec![]),
            Place::Port { port, ip } => (At::Port(port), *ip, vec![]),
            Place::Router { router, ip, .. } => (At::Router(router, None), *ip, vec![]),
            Place::Floating(f) => {
                let port = f.port_id.as_deref().and_then(|p| state.port_by_id(p));
                let instance =
                    port.and_then(|p| state.instances.iter().find(|i| i.port_id == p.id));
                match (port, instance) {
                    (Some(port), Some(instance)) => (
                        At::Instance(instance),
                        port.ipv4()
                            .map_or(IpAddr::from([0u8; 4]), |(_, ip)| ip.into()),
                        vec![format!(
                            "floating IP {} is instance {}'s; it sends from its fixed IP",
                            f.address, instance.name
                        )],
                    ),
                    _ => {
                        return Err(invalid(format!(
                        "SRC {}: the floating IP is associated with no instance; it sends nothing",
                        f.address
                    )))
                    }
                }
            }
            Place::Outside { network, ip } => (At::Outside(network), *ip, vec![]),
            Place::Unused { network, ip } => {
                return Err(invalid(format!(
                    "SRC {ip}: no instance or port holds it on network {}",
                    network.name
                )))
            }
            Place::Beyond(ip) => {
                let externals: Vec<&Network> = state
                    .networks
                    .iter()
                    .map(AsRef::as_ref)
                    .filter(|n| n.external)
                    .collect();
                let network = match (from, externals.as_slice()) {
                    (Some(n), _) if n.external => n,
                    (Some(n), _) => {
                        return Err(invalid(format!(
                            "--from-network {}: not an external network",
                            n.name
                        )))
                    }
                    (None, [one]) => one,
                    (None, []) => {
                        return Err(invalid(format!(
                            "SRC {ip}: in no network qrouter knows, and there is no external network it could come from"
                        )))
                    }
                    (None, _) => {
                        return Err(invalid(format!(
                            "SRC {ip}: in no network qrouter knows; say which external network it comes from with --from-network"
                        )))
                    }
                };
                (
                    At::Outside(network),
                    *ip,
                    vec![format!(
                        "{ip} is in no network qrouter knows: it stands for the outside, arriving on {}",
                        network.name
                    )],
                )
            }
        })
    }

    /// The node that received the last hop, about to send the reply.
    pub(super) fn receiver_as_sender(&self, last: &Hop) -> Option<At<'a>> {
        let state = self.state;
        match last.node.kind {
            "instance" => state
                .instances
                .iter()
                .find(|i| i.name == last.node.name)
                .map(|i| At::Instance(i)),
            "router" => state
                .routers
                .iter()
                .find(|r| Some(naming::router_namespace(&r.id)) == last.node.namespace)
                .map(|r| At::Router(r, None)),
            "port" => {
                let tap = &last.ingress.as_ref()?.tap;
                let port = state.ports.iter().find(|p| naming::port_tap(p) == *tap)?;
                Some(At::Port(port))
            }
            _ => None,
        }
    }
}
