//! IPv4 routes of the main table.

use std::net::Ipv4Addr;

use anyhow::Context;
use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteNextHop, RouteProtocol, RouteScope,
};
use rtnetlink::{Handle, RouteMessageBuilder};

#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub destination: Ipv4Net,
    /// Next hops, sorted: one for a plain route, several for a multipath one.
    pub gateways: Vec<Ipv4Addr>,
    pub oif: Option<u32>,
    pub scope: &'static str,
    pub protocol: &'static str,
}

impl Route {
    /// Routes qrouter manages: those with a next hop. Connected routes belong to the kernel.
    pub fn is_static(&self) -> bool {
        self.protocol == "static"
    }
}

pub async fn list(h: &Handle) -> anyhow::Result<Vec<Route>> {
    let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
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
            let (mut dst, mut gateways, mut oif) = (Ipv4Addr::UNSPECIFIED, vec![], None);
            for attr in &m.attributes {
                match attr {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = *ip,
                    RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateways.push(*ip),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    RouteAttribute::MultiPath(hops) => {
                        gateways.extend(hops.iter().flat_map(|h| &h.attributes).filter_map(|a| {
                            match a {
                                RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
                                _ => None,
                            }
                        }))
                    }
                    _ => {}
                }
            }
            gateways.sort();
            Some(Route {
                destination: Ipv4Net::new(dst, m.header.destination_prefix_length).ok()?,
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
                    _ => "other",
                },
            })
        })
        .collect())
}

/// Add or replace the route to `destination`: through `gateways` (several make one
/// multipath route), or with none on the link of device `oif` (scope link).
pub async fn replace(
    h: &Handle,
    destination: Ipv4Net,
    gateways: &[Ipv4Addr],
    oif: Option<u32>,
) -> anyhow::Result<()> {
    let mut msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(destination.network(), destination.prefix_len());
    match (gateways, oif) {
        ([one], _) => msg = msg.gateway(*one),
        ([], Some(oif)) => msg = msg.output_interface(oif).scope(RouteScope::Link),
        (many, _) => {
            let hops = many
                .iter()
                .map(|gw| {
                    let mut hop = RouteNextHop::default();
                    hop.attributes
                        .push(RouteAttribute::Gateway(RouteAddress::Inet(*gw)));
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
    let msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(route.destination.network(), route.destination.prefix_len())
        .protocol(RouteProtocol::Static)
        .scope(RouteScope::NoWhere) // any scope, as `ip route del` asks
        .build();
    match h.route().del(msg).execute().await {
        // Gone already: with the device or address it depended on.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => Ok(()),
        done => done.with_context(|| format!("route {}: cannot delete it", route.destination)),
    }
}
