//! VXLAN devices for networks that span hosts: `vxlan-<VNI>` with the host's underlay
//! address, on the network's bridge, no learning, and its fdb entries as Neutron's
//! linuxbridge agent with l2population makes them:
//! - flooding by head-end replication: one all-zeros entry per peer VTEP, as `bridge fdb
//!   append 00:00:00:00:00:00 dev vxlan-N dst PEER` makes it, for broadcast (ARP, DHCP) and
//!   the MACs nobody announced;
//! - one unicast entry per port of the network that lives on another host, `bridge fdb
//!   replace MAC dev vxlan-N dst HOST`, so a frame to it goes to that host alone, not to
//!   every peer. On the devices this store made only (the alias's mark): a MAC no longer
//!   wanted there is deleted.
//!
//! The fdb entries are read (one dump for all devices) and written over netlink (fdb.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use anyhow::Context;
use rtnetlink::{Handle, LinkUnspec, LinkVxlan};

pub use super::fdb::{table as fdb_table, underlay_mtu, Fdb};
use super::{fdb, link};

/// The IANA port; the kernel's default (8472) is Linux's historical one.
pub const PORT: u16 = 4789;
/// What VXLAN adds to a frame over IPv4: outer IP 20, UDP 8, VXLAN 8, inner Ethernet 14.
pub const OVERHEAD: u32 = 50;

pub fn device(vni: u32) -> String {
    format!("vxlan-{vni}")
}

/// What the host holds for one segment.
pub struct Segment<'a> {
    pub vni: u32,
    pub local: Ipv4Addr,
    pub bridge: &'a str,
    pub mtu: u32,
    pub peers: &'a BTreeSet<Ipv4Addr>,
    /// The MAC (lower case) of each port on the segment on another host, with its VTEP.
    pub macs: &'a BTreeMap<String, Ipv4Addr>,
    /// Its fdb entries now (`fdb_table`).
    pub seen: &'a Fdb,
    /// qrouter's mark, for the alias of a device it creates.
    pub mark: &'a str,
    /// Whether an alias is this store's mark: only then are the unicast entries its own.
    pub marked: &'a dyn Fn(Option<&str>) -> bool,
}

/// One change to a device's unicast entries.
#[derive(Debug, PartialEq)]
enum Unicast {
    /// Send `mac` to `dst` (new, or `was` elsewhere).
    Send {
        mac: String,
        dst: Ipv4Addr,
        was: Option<Ipv4Addr>,
    },
    /// The port left the segment or its host: the entry goes.
    Forget { mac: String, was: Ipv4Addr },
}

/// What makes `have` (a device's unicast entries) match `want`: a MAC missing or going to
/// another VTEP is sent to the wanted one, a MAC no longer wanted is forgotten.
fn unicast_changes(
    want: &BTreeMap<String, Ipv4Addr>,
    have: &BTreeMap<String, Ipv4Addr>,
) -> Vec<Unicast> {
    let sent = want.iter().filter_map(|(mac, dst)| {
        let was = have.get(mac).copied();
        (was != Some(*dst)).then(|| Unicast::Send {
            mac: mac.clone(),
            dst: *dst,
            was,
        })
    });
    let forgotten = have.iter().filter(|(mac, _)| !want.contains_key(*mac));
    sent.chain(forgotten.map(|(mac, was)| Unicast::Forget {
        mac: mac.clone(),
        was: *was,
    }))
    .collect()
}

impl Unicast {
    /// The line that reports it on device `name`.
    fn line(&self, name: &str) -> String {
        match self {
            Unicast::Send {
                mac,
                dst,
                was: None,
            } => format!("host: {name} sends {mac} to {dst}"),
            Unicast::Send {
                mac,
                dst,
                was: Some(was),
            } => format!("host: {name} sends {mac} to {dst} (was {was})"),
            Unicast::Forget { mac, was } => {
                format!("host: {name} no longer sends {mac} to {was}")
            }
        }
    }

    /// Make it on device `index`.
    async fn apply(&self, h: &Handle, index: u32) -> anyhow::Result<()> {
        match self {
            Unicast::Send { mac, dst, .. } => fdb::send_to(h, index, mac, *dst).await,
            Unicast::Forget { mac, .. } => fdb::forget(h, index, mac).await,
        }
    }
}

/// Make `vxlan-<vni>` match: created where missing, on the bridge, up, one flood entry per
/// peer and none for a host that is no peer any more. What it did (with `dry_run`: would
/// do, changing nothing), one line each.
pub async fn ensure(h: &Handle, s: &Segment<'_>, dry_run: bool) -> anyhow::Result<Vec<String>> {
    if dry_run {
        return drift(h, s).await;
    }
    let name = device(s.vni);
    let mut done = vec![];
    let bridge = link::get(h, s.bridge)
        .await?
        .with_context(|| format!("{name}: bridge {} is missing", s.bridge))?;
    let dev = match link::get(h, &name).await? {
        Some(l) => l,
        None => {
            let msg = LinkVxlan::new(&name, s.vni)
                .local(s.local)
                .port(PORT)
                .learning(false)
                .mtu(s.mtu)
                .build();
            h.link()
                .add(msg)
                .execute()
                .await
                .with_context(|| format!("{name}: cannot create it"))?;
            link::set_alias(h, &name, s.mark).await?;
            // No IPv6 link-local address: its multicast reports would be flooded to every peer.
            match super::sysctl::host_ipv6_set(&name, "disable_ipv6", "1") {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("{name}: cannot turn IPv6 off"))
                }
                _ => {}
            }
            done.push(format!(
                "host: create {name} (local {}, mtu {})",
                s.local, s.mtu
            ));
            link::get(h, &name)
                .await?
                .context("vxlan device vanished")?
        }
    };
    if dev.controller != Some(bridge.index) {
        link::set_controller(h, dev.index, bridge.index).await?;
        done.push(format!("host: {name} on {}", s.bridge));
    }
    if !dev.up {
        h.link()
            .set(LinkUnspec::new_with_index(dev.index).up().build())
            .execute()
            .await
            .with_context(|| format!("{name}: cannot set it up"))?;
    }
    let failed = |what: &str| format!("{name}: cannot {what}");
    for peer in s.peers.difference(&s.seen.floods) {
        let added = fdb::add_flood(h, dev.index, *peer).await;
        added.with_context(|| failed(&format!("flood to {peer}")))?;
        done.push(format!("host: {name} floods to {peer}"));
    }
    for gone in s.seen.floods.difference(s.peers) {
        let deleted = fdb::delete_flood(h, dev.index, *gone).await;
        deleted.with_context(|| failed(&format!("stop flooding to {gone}")))?;
        done.push(format!("host: {name} no longer floods to {gone}"));
    }
    if (s.marked)(dev.alias.as_deref()) {
        for change in unicast_changes(s.macs, &s.seen.unicast) {
            let line = change.line(&name);
            change
                .apply(h, dev.index)
                .await
                .with_context(|| failed(&line))?;
            done.push(line);
        }
    }
    Ok(done)
}

/// What `ensure` would do, read from the kernel.
async fn drift(h: &Handle, s: &Segment<'_>) -> anyhow::Result<Vec<String>> {
    let name = device(s.vni);
    let Some(dev) = link::get(h, &name).await? else {
        let mut out = vec![format!(
            "host: create {name} (local {}, mtu {})",
            s.local, s.mtu
        )];
        out.extend(
            s.peers
                .iter()
                .map(|p| format!("host: {name} floods to {p}")),
        );
        let none = BTreeMap::new();
        out.extend(unicast_changes(s.macs, &none).iter().map(|c| c.line(&name)));
        return Ok(out);
    };
    let mut out = vec![];
    let bridge = link::get(h, s.bridge).await?;
    if bridge.is_none_or(|b| dev.controller != Some(b.index)) {
        out.push(format!("host: {name} on {}", s.bridge));
    }
    if !dev.up {
        out.push(format!("host: set {name} up"));
    }
    for peer in s.peers.difference(&s.seen.floods) {
        out.push(format!("host: {name} floods to {peer}"));
    }
    for gone in s.seen.floods.difference(s.peers) {
        out.push(format!("host: {name} no longer floods to {gone}"));
    }
    if (s.marked)(dev.alias.as_deref()) {
        let changes = unicast_changes(s.macs, &s.seen.unicast);
        out.extend(changes.iter().map(|c| c.line(&name)));
    }
    Ok(out)
}

/// Delete the VXLAN devices this store made (`marked`) that no wanted segment explains
/// (with `dry_run`, only say so).
pub async fn remove_unwanted(
    h: &Handle,
    wanted: &BTreeSet<u32>,
    marked: impl Fn(Option<&str>) -> bool,
    dry_run: bool,
) -> anyhow::Result<Vec<String>> {
    let mut done = vec![];
    for l in link::list(h).await? {
        let Some(vni) = l.name.strip_prefix("vxlan-").and_then(|v| v.parse().ok()) else {
            continue;
        };
        if !wanted.contains(&vni) && marked(l.alias.as_deref()) {
            if !dry_run {
                link::delete(h, &l).await?;
            }
            done.push(format!("host: delete {}", l.name));
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn unicast_entries_are_sent_moved_and_forgotten() {
        let want = BTreeMap::from([
            ("fa:16:3e:00:00:03".to_string(), ip("192.168.50.13")),
            ("fa:16:3e:00:00:05".to_string(), ip("192.168.50.12")),
            ("fa:16:3e:00:00:04".to_string(), ip("192.168.50.12")),
        ]);
        let have = BTreeMap::from([
            ("fa:16:3e:00:00:03".to_string(), ip("192.168.50.13")),
            ("fa:16:3e:00:00:04".to_string(), ip("192.168.50.11")),
        ]);
        let changes = unicast_changes(&want, &have);
        let lines: Vec<String> = changes.iter().map(|c| c.line("vxlan-2")).collect();
        assert_eq!(
            lines,
            [
                "host: vxlan-2 sends fa:16:3e:00:00:04 to 192.168.50.12 (was 192.168.50.11)",
                "host: vxlan-2 sends fa:16:3e:00:00:05 to 192.168.50.12",
            ]
        );
        // None wanted: every entry goes; all as wanted: nothing to do.
        let forget = unicast_changes(&BTreeMap::new(), &have);
        let lines: Vec<String> = forget.iter().map(|c| c.line("vxlan-2")).collect();
        assert_eq!(
            lines,
            [
                "host: vxlan-2 no longer sends fa:16:3e:00:00:03 to 192.168.50.13",
                "host: vxlan-2 no longer sends fa:16:3e:00:00:04 to 192.168.50.11",
            ]
        );
        assert!(unicast_changes(&have, &have).is_empty());
    }
}
