//! IPv4 routes of the main table.

use std::net::Ipv4Addr;

use anyhow::Context;
use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope,
};
use rtnetlink::{Handle, RouteMessageBuilder};

#[derive(Clone, Debug)]
pub struct Route {
    pub destination: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub scope: &'static str,
    pub protocol: &'static str,
    message: RouteMessage,
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
            let (mut dst, mut gateway, mut oif) = (Ipv4Addr::UNSPECIFIED, None, None);
            for attr in &m.attributes {
                match attr {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = *ip,
                    RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    _ => {}
                }
            }
            Some(Route {
                destination: Ipv4Net::new(dst, m.header.destination_prefix_length).ok()?,
                gateway,
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
                message: m,
            })
        })
        .collect())
}

pub async fn add(h: &Handle, destination: Ipv4Net, gateway: Ipv4Addr) -> anyhow::Result<()> {
    let msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(destination.network(), destination.prefix_len())
        .gateway(gateway)
        .build();
    h.route()
        .add(msg)
        .execute()
        .await
        .with_context(|| format!("route {destination} via {gateway}: cannot add it"))
}

pub async fn delete(h: &Handle, route: &Route) -> anyhow::Result<()> {
    h.route()
        .del(route.message.clone())
        .execute()
        .await
        .with_context(|| format!("route {}: cannot delete it", route.destination))
}
