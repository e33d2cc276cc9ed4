//! IPv4 addresses on links.

use std::net::IpAddr;

use anyhow::Context;
use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::Handle;

#[derive(Clone, Debug, PartialEq)]
pub struct Address {
    pub link_index: u32,
    pub net: Ipv4Net,
}

pub async fn list(h: &Handle) -> anyhow::Result<Vec<Address>> {
    let msgs: Vec<AddressMessage> = h
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .context("netlink: cannot list addresses")?;
    Ok(msgs
        .into_iter()
        .filter(|m| m.header.family == AddressFamily::Inet)
        .filter_map(|m| {
            let ip = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            })?;
            Some(Address {
                link_index: m.header.index,
                net: Ipv4Net::new(ip, m.header.prefix_len).ok()?,
            })
        })
        .collect())
}

pub async fn add(h: &Handle, index: u32, net: Ipv4Net) -> anyhow::Result<()> {
    h.address()
        .add(index, IpAddr::V4(net.addr()), net.prefix_len())
        .execute()
        .await
        .with_context(|| format!("address {net}: cannot add it"))
}

pub async fn delete(h: &Handle, addr: &Address) -> anyhow::Result<()> {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.index = addr.link_index;
    msg.header.prefix_len = addr.net.prefix_len();
    let ip = IpAddr::V4(addr.net.addr());
    msg.attributes.push(AddressAttribute::Local(ip));
    msg.attributes.push(AddressAttribute::Address(ip));
    h.address()
        .del(msg)
        .execute()
        .await
        .with_context(|| format!("address {}: cannot delete it", addr.net))
}
