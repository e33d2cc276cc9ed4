//! VXLAN devices for networks that span hosts: `vxlan-<VNI>` with the host's underlay
//! address, on the network's bridge, no learning, flooding by head-end replication: one
//! all-zeros fdb entry per peer VTEP, as `bridge fdb append 00:00:00:00:00:00 dev vxlan-N
//! dst PEER` makes it (Neutron's linuxbridge agent with l2population). The fdb entries are
//! read and written with iproute2's `bridge`.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::Context;
use rtnetlink::{Handle, LinkUnspec, LinkVxlan};

use super::link;

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
    /// The peers its flood entries go to now (`flood_table`).
    pub floods: &'a BTreeSet<Ipv4Addr>,
    /// qrouter's mark, for the alias.
    pub mark: &'a str,
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
    let have = s.floods.clone();
    for peer in s.peers.difference(&have) {
        fdb(&[
            "append",
            "00:00:00:00:00:00",
            "dev",
            &name,
            "dst",
            &peer.to_string(),
        ])?;
        done.push(format!("host: {name} floods to {peer}"));
    }
    for gone in have.difference(s.peers) {
        fdb(&[
            "del",
            "00:00:00:00:00:00",
            "dev",
            &name,
            "dst",
            &gone.to_string(),
        ])?;
        done.push(format!("host: {name} no longer floods to {gone}"));
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
    let have = s.floods.clone();
    for peer in s.peers.difference(&have) {
        out.push(format!("host: {name} floods to {peer}"));
    }
    for gone in have.difference(s.peers) {
        out.push(format!("host: {name} no longer floods to {gone}"));
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

/// Where each device's all-zeros fdb entries flood to, by device, read with one `bridge fdb
/// show` for all: a process per network made an agent's pass over 334 VXLAN networks take
/// 12.7 s where it took 1.9 s before they were VXLAN.
pub fn flood_table() -> anyhow::Result<HashMap<String, BTreeSet<Ipv4Addr>>> {
    let out = Command::new("bridge")
        .args(["fdb", "show"])
        .output()
        .context("bridge (iproute2): cannot run it")?;
    let mut table: HashMap<String, BTreeSet<Ipv4Addr>> = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if !line.starts_with("00:00:00:00:00:00 ") {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(dev), Some(dst)) = (
            words.find(|w| *w == "dev").and(words.next()),
            words.find(|w| *w == "dst").and(words.next()),
        ) else {
            continue;
        };
        if let Ok(dst) = dst.parse() {
            table.entry(dev.to_string()).or_default().insert(dst);
        }
    }
    Ok(table)
}

fn fdb(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("bridge")
        .arg("fdb")
        .args(args)
        .output()
        .context("bridge (iproute2): cannot run it")?;
    if !out.status.success() {
        anyhow::bail!(
            "bridge fdb {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The MTU of the device that holds `local` (the underlay), read with `ip`.
pub fn underlay_mtu(local: Ipv4Addr) -> anyhow::Result<u32> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .context("ip: cannot run it")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let dev = text
        .lines()
        .find(|l| l.contains(&format!(" inet {local}/")))
        .and_then(|l| l.split_whitespace().nth(1))
        .with_context(|| format!("underlay: no device holds {local} on this host"))?
        .to_string();
    let out = Command::new("ip")
        .args(["-o", "link", "show", "dev", &dev])
        .output()
        .context("ip: cannot run it")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    words.find(|w| *w == "mtu");
    words
        .next()
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("underlay: no MTU for {dev}"))
}
