//! What SRC and DST of a trace name: an instance, a router, a workload port, a floating IP,
//! an outside address, found in the desired state.

use std::net::IpAddr;

use crate::error::invalid;
use crate::model::{find, ipv6, FloatingIp, Instance, Network, Port, PortRole, Router, State};

/// What SRC or DST names.
#[derive(Clone, Debug)]
pub enum Place<'a> {
    Instance {
        instance: &'a Instance,
        port: &'a Port,
        ip: IpAddr,
    },
    /// An address a router's `qr-`/`qg-` device holds.
    Router {
        router: &'a Router,
        port: &'a Port,
        ip: IpAddr,
    },
    Floating(&'a FloatingIp),
    /// An address a workload port (`port create`) holds: the VM or container other software
    /// runs behind its tap, which takes the address by DHCP.
    Port {
        port: &'a Port,
        ip: IpAddr,
    },
    /// An address on an external network that no qrouter object holds: the outside.
    Outside {
        network: &'a Network,
        ip: IpAddr,
    },
    /// An address of a tenant subnet that no port holds.
    Unused {
        network: &'a Network,
        ip: IpAddr,
    },
    /// An address in none of the store's subnets.
    Beyond(IpAddr),
}

impl Place<'_> {
    pub fn ip(&self) -> IpAddr {
        match self {
            Place::Instance { ip, .. } | Place::Router { ip, .. } | Place::Port { ip, .. } => *ip,
            Place::Floating(f) => IpAddr::V4(f.address),
            Place::Outside { ip, .. } | Place::Unused { ip, .. } | Place::Beyond(ip) => *ip,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Place::Instance { instance, ip, .. } => format!("instance {} ({ip})", instance.name),
            Place::Router { router, ip, .. } => format!("router {} ({ip})", router.name),
            Place::Floating(f) => format!("floating IP {}", f.address),
            Place::Port { port, ip } => format!("port {} ({ip})", port.display_name()),
            Place::Outside { network, ip } => format!("{ip} (the outside, on {})", network.name),
            Place::Unused { network, ip } => format!("{ip} (unused, on {})", network.name),
            Place::Beyond(ip) => format!("{ip} (in no network qrouter knows)"),
        }
    }
}

/// Where an address is, as the store knows it. `network` narrows it to one network.
pub fn locate<'a>(state: &'a State, ip: IpAddr, network: Option<&Network>) -> Place<'a> {
    let on = |net: &str| network.is_none_or(|n| n.id == net);
    // A link-local address (a next hop learnt from a router's advertisement) is a port's
    // on its own link only: the EUI-64 of its MAC.
    let link_local = |port: &Port| {
        network.is_some()
            && matches!(ip, IpAddr::V6(v6) if ipv6::link_local(&port.mac).is_some_and(|l| l.addr() == v6))
    };
    for port in state.ports.iter().filter(|p| on(&p.network_id)) {
        if !port.fixed_ips.iter().any(|f| f.ip == ip) && !link_local(port) {
            continue;
        }
        match port.role {
            PortRole::Instance => {
                if let Some(instance) = state.instances.iter().find(|i| i.port_id == port.id) {
                    return Place::Instance { instance, port, ip };
                }
            }
            PortRole::Workload => return Place::Port { port, ip },
            _ => {
                if let Some(router) = router_of(state, port) {
                    return Place::Router { router, port, ip };
                }
            }
        }
    }
    if let Some(f) = state
        .floating_ips
        .iter()
        .find(|f| f.address == ip && on(&f.network_id))
    {
        return Place::Floating(f);
    }
    let subnet = state
        .subnets
        .iter()
        .filter(|s| on(&s.network_id) && s.cidr.contains(&ip))
        .max_by_key(|s| s.cidr.prefix_len());
    match subnet.and_then(|s| state.network_by_id(&s.network_id)) {
        Some(network) if network.external => Place::Outside { network, ip },
        Some(network) => Place::Unused { network, ip },
        None => Place::Beyond(ip),
    }
}

fn router_of<'a>(state: &'a State, port: &Port) -> Option<&'a Router> {
    state.routers.iter().map(AsRef::as_ref).find(|r| {
        r.gateway_port_id.as_deref() == Some(port.id.as_str())
            || (port.role == PortRole::RouterInterface && port.device_id == r.id)
    })
}

/// SRC or DST as given on the command line: an instance, a port or a floating IP (name or
/// id), or an address. `what` names the argument in errors (exit 2).
pub fn resolve<'a>(
    state: &'a State,
    what: &str,
    key: &str,
    network: Option<&Network>,
) -> anyhow::Result<Place<'a>> {
    if let Ok(ip) = key.parse::<IpAddr>() {
        return Ok(locate(state, ip, network));
    }
    match find(&state.instances, key) {
        Ok(instance) => {
            let port = state.port_by_id(&instance.port_id);
            let ip = port.and_then(|p| p.fixed_ips.first()).map(|f| f.ip);
            return match (port, ip) {
                (Some(port), Some(ip)) => Ok(Place::Instance { instance, port, ip }),
                _ => Err(invalid(format!(
                    "{what} {key}: instance {} has no address",
                    instance.name
                ))),
            };
        }
        // A name several instances share says so.
        Err(e) if e.to_string().starts_with("More than one") => {
            return Err(e.context(format!("{what} {key}")))
        }
        Err(_) => {}
    }
    if let Some(fip) = state.floating_ips.iter().find(|f| f.id == key) {
        return Ok(Place::Floating(fip));
    }
    if let Ok(port) = find(&state.ports, key) {
        let Some(ip) = port.fixed_ips.first().map(|f| f.ip) else {
            return Err(invalid(format!(
                "{what} {key}: port {} has no address",
                port.id
            )));
        };
        let net = state.network_by_id(&port.network_id);
        return Ok(locate(state, ip, net));
    }
    Err(invalid(format!(
        "{what} {key}: no instance, port or floating IP has this name or id, \
         and it is not an IP address"
    )))
}

/// The two ends of a trace in one address family: an end named (an instance, a port) takes
/// its address of the other end's family where the two differ, the source first
/// (`trace vm6 2001:db8:10::1` starts from vm6's IPv6 address, `trace upstream vm6` goes to
/// vm6's address of the upstream's family).
pub fn same_family<'a>(src: Place<'a>, dst: Place<'a>) -> (Place<'a>, Place<'a>) {
    if src.ip().is_ipv6() == dst.ip().is_ipv6() {
        return (src, dst);
    }
    let src = src.in_family(dst.ip().is_ipv6());
    let dst = dst.in_family(src.ip().is_ipv6());
    (src, dst)
}

impl<'a> Place<'a> {
    /// The same instance or port at its address of the family (IPv6 with `v6`), if it has
    /// one; any other place as it is.
    fn in_family(self, v6: bool) -> Place<'a> {
        let other = |port: &Port, ip: IpAddr| {
            let mut ips = port.fixed_ips.iter().map(|f| f.ip);
            ips.find(|a| a.is_ipv6() == v6).unwrap_or(ip)
        };
        match self {
            Place::Instance { instance, port, ip } => Place::Instance {
                instance,
                port,
                ip: other(port, ip),
            },
            Place::Port { port, ip } => Place::Port {
                port,
                ip: other(port, ip),
            },
            place => place,
        }
    }
}

/// Why a packet on `wire` goes nowhere: the router the wire belongs to is disabled, or its
/// port's tap is down because the port or its network is disabled (`--disable`). None while
/// it carries traffic.
pub(super) fn wire_down(state: &State, wire: &super::hop::Wire) -> Option<String> {
    let port = state
        .ports
        .iter()
        .find(|p| crate::model::naming::port_tap(p) == wire.tap)?;
    let router = match port.role {
        PortRole::RouterInterface | PortRole::RouterGateway => state.router_by_id(&port.device_id),
        _ => None,
    };
    if let Some(r) = router.filter(|r| !r.meta.admin_state_up) {
        return Some(format!(
            "dropped at {}: router {} is disabled, its devices are down",
            wire.device, r.name
        ));
    }
    let why = state.port_down_because(port)?;
    Some(format!(
        "dropped at {}: its host end {} is down ({why}), nothing passes it",
        wire.device, wire.tap
    ))
}
