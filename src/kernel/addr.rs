//! Addresses on links, IPv4 and IPv6.

use std::net::IpAddr;

use anyhow::Context;
use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::Handle;

#[derive(Clone, Debug, PartialEq)]
pub struct Address {
    pub link_index: u32,
    pub net: IpNet,
    /// Set by hand (or by qrouter): not the kernel's own SLAAC or temporary address, which
    /// come and go with router advertisements (IFA_F_PERMANENT unset).
    pub permanent: bool,
}

/// Every address of the namespace behind `h`, both families.
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
        .filter_map(|m| {
            let v6 = match m.header.family {
                AddressFamily::Inet => false,
                AddressFamily::Inet6 => true,
                _ => return None,
            };
            // IPv4's local address is IFA_LOCAL; IPv6 has only IFA_ADDRESS.
            let ip = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip @ IpAddr::V4(_)) if !v6 => Some(*ip),
                AddressAttribute::Address(ip @ IpAddr::V6(_)) if v6 => Some(*ip),
                _ => None,
            })?;
            // The kernel gives the 32-bit flags in IFA_FLAGS where the header's 8 bits
            // are too few; IPv4 addresses are all permanent.
            let flags = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Flags(f) => Some(*f),
                _ => None,
            });
            let permanent = !v6 || flags.is_some_and(|f| f.contains(AddressFlags::Permanent));
            Some(Address {
                link_index: m.header.index,
                net: IpNet::new(ip, m.header.prefix_len).ok()?,
                permanent,
            })
        })
        .collect())
}

/// Add `net` to link `index`. An IPv6 address is usable at once, without duplicate address
/// detection (its 1-2 s of tentative state): qrouter's address management hands out no
/// address twice, and a router advertising from a tentative link-local sends nothing.
pub async fn add(h: &Handle, index: u32, net: IpNet) -> anyhow::Result<()> {
    let mut req = h.address().add(index, net.addr(), net.prefix_len());
    if net.addr().is_ipv6() {
        let msg = req.message_mut();
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    req.execute()
        .await
        .with_context(|| format!("address {net}: cannot add it"))
}

pub async fn delete(h: &Handle, addr: &Address) -> anyhow::Result<()> {
    let mut msg = AddressMessage::default();
    let ip = addr.net.addr();
    msg.header.family = match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.index = addr.link_index;
    msg.header.prefix_len = addr.net.prefix_len();
    if ip.is_ipv4() {
        msg.attributes.push(AddressAttribute::Local(ip));
    }
    msg.attributes.push(AddressAttribute::Address(ip));
    h.address()
        .del(msg)
        .execute()
        .await
        .with_context(|| format!("address {}: cannot delete it", addr.net))
}
