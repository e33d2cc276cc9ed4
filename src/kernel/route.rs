//! Routes of the main table, IPv4 and IPv6.

use std::net::IpAddr;

use anyhow::Context;
use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteNextHop, RouteProtocol, RouteScope,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, RouteMessageBuilder};

#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub destination: IpNet,
    /// Next hops, sorted: one for a plain route, several for a multipath one.
    pub gateways: Vec<IpAddr>,
    pub oif: Option<u32>,
    pub scope: &'static str,
    pub protocol: &'static str,
}

impl Route {
    /// Routes qrouter manages: those with a next hop. Connected routes belong to the kernel,
    /// those learnt from router advertisements (`proto ra`) to the kernel too.
    pub fn is_static(&self) -> bool {
        self.protocol == "static"
    }
}

fn address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

/// The main table's routes of both families (one dump: AF_UNSPEC asks for all).
pub async fn list(h: &Handle) -> anyhow::Result<Vec<Route>> {
    let query = RouteMessageBuilder::<IpAddr>::new().build();
    let msgs: Vec<RouteMessage> = h
        .route()
        .get(query)
        .execute()
        .try_collect()
        .await
        .context("netlink: cannot list routes")?;
    Ok(msgs
        .into_iter()
        .filter(|m| m.header.table == 254 || m.attributes.contains(&RouteAttribute::Table(254)))
        .filter_map(|m| {
            let unspecified = match m.header.address_family {
                AddressFamily::Inet => IpAddr::from([0u8; 4]),
                AddressFamily::Inet6 => IpAddr::from([0u8; 16]),
                _ => return None,
            };
            let (mut dst, mut gateways, mut oif) = (unspecified, vec![], None);
            for attr in &m.attributes {
                match attr {
                    RouteAttribute::Destination(a) => dst = address(a)?,
                    RouteAttribute::Gateway(a) => gateways.extend(address(a)),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    RouteAttribute::MultiPath(hops) => {
                        gateways.extend(hops.iter().flat_map(|h| &h.attributes).filter_map(|a| {
                            match a {
                                RouteAttribute::Gateway(a) => address(a),
                                _ => None,
                            }
                        }))
                    }
                    _ => {}
                }
            }
            gateways.sort();
            Some(Route {
                destination: IpNet::new(dst, m.header.destination_prefix_length).ok()?,
                gateways,
                oif,
                scope: match m.header.scope {
                    RouteScope::Universe => "global",
                    RouteScope::Link => "link",
                    RouteScope::Host => "host",
                    _ => "other",
                },
                protocol: match m.header.protocol {
                    RouteProtocol::Kernel => "kernel",
                    RouteProtocol::Boot => "boot",
                    RouteProtocol::Static => "static",
                    RouteProtocol::Ra => "ra",
                    _ => "other",
                },
            })
        })
        .collect())
}

fn invalid(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Add or replace the route to `destination`: through `gateways` (several make one
/// multipath route), or with none on the link of device `oif` (scope link). A single
/// gateway with `oif` is reached through that device: how an IPv6 link-local next hop is
/// given.
pub async fn replace(
    h: &Handle,
    destination: IpNet,
    gateways: &[IpAddr],
    oif: Option<u32>,
) -> anyhow::Result<()> {
    let mut msg = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(destination.network(), destination.prefix_len())
        .map_err(invalid)?;
    match (gateways, oif) {
        ([one], oif) => {
            msg = msg.gateway(*one).map_err(invalid)?;
            if let Some(oif) = oif {
                msg = msg.output_interface(oif);
            }
        }
        ([], Some(oif)) => msg = msg.output_interface(oif).scope(RouteScope::Link),
        (many, _) => {
            let hops = many
                .iter()
                .map(|gw| {
                    let mut hop = RouteNextHop::default();
                    hop.attributes.push(RouteAttribute::Gateway((*gw).into()));
                    hop
                })
                .collect();
            msg = msg.multipath(hops);
        }
    }
    h.route()
        .add(msg.build())
        .replace()
        .execute()
        .await
        .with_context(|| format!("route {destination}: cannot add it"))
}

/// Delete the static route to `route.destination` in the main table.
pub async fn delete(h: &Handle, route: &Route) -> anyhow::Result<()> {
    let dst = route.destination;
    let msg = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dst.network(), dst.prefix_len())
        .map_err(invalid)?
        .protocol(RouteProtocol::Static)
        .scope(RouteScope::NoWhere) // any scope, as `ip route del` asks
        .build();
    match h.route().del(msg).execute().await {
        // Gone already: with the device or address it depended on.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => Ok(()),
        done => done.with_context(|| format!("route {}: cannot delete it", route.destination)),
    }
}
