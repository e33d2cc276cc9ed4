//! A DHCP client run once in an instance's namespace (`instance create --dhcp`): busybox
//! `udhcpc` in the foreground, `-q` (exit once the lease is bound) and `-n` (exit when none
//! comes), so no daemon is left behind; it dies with qrouter too (parent-death signal). Its
//! script configures the device from the lease as a VM's client does: address, MTU, routes
//! (classless static routes, else the router option) with `proto dhcp`, and writes what it
//! got to the lease file (`instance show` reads it).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{bail, Context};

use super::netns;

pub const PROGRAM: &str = "busybox";

/// The event script udhcpc runs; `$QROUTER_LEASE` is the lease file.
const SCRIPT: &str = r#"#!/bin/sh
# qrouter's udhcpc script: configure the interface from the lease, as a VM's client does.
case "$1" in
deconfig)
  ip -4 addr flush dev "$interface"
  ip link set "$interface" up ;;
bound|renew)
  ip addr replace "$ip/$mask" dev "$interface"
  [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
  if [ -n "$staticroutes" ]; then
    set -- $staticroutes
    while [ $# -ge 2 ]; do
      ip route replace "$1" via "$2" dev "$interface" proto dhcp
      shift 2
    done
  elif [ -n "$router" ]; then
    for r in $router; do ip route replace default via "$r" dev "$interface" proto dhcp; break; done
  fi
  file="$QROUTER_LEASE"
  printf 'address=%s/%s\nrouter=%s\ndns=%s\ndomain=%s\nmtu=%s\nroutes=%s\nserver=%s\nlease=%s\n' \
    "$ip" "$mask" "$router" "$dns" "$domain" "$mtu" "$staticroutes" "$serverid" "$lease" > "$file.new"
  mv "$file.new" "$file" ;;
esac
exit 0
"#;

/// Where udhcpc's script and the lease files live (world-readable, like dnsmasq's files).
pub(super) fn dir() -> PathBuf {
    PathBuf::from("/run/qrouter/udhcpc")
}

/// The lease file of instance `id`: `key=value` lines (address, router, dns, domain, mtu,
/// routes, server, lease).
pub fn lease_file(id: &str) -> PathBuf {
    dir().join(format!("{id}.lease"))
}

/// The DHCPv6 lease file of instance `id` (`dhclient -6` writes it through its script):
/// `address6=`, `dns6=`, `domain6=` lines, read with the DHCPv4 lease.
pub fn lease6_file(id: &str) -> PathBuf {
    dir().join(format!("{id}.lease6"))
}

/// The lease an instance's client last got, as `(key, value)` pairs; empty when none.
/// With a DHCPv6 lease too (`dhclient`'s), its `address6`, `dns6` and `domain6` follow.
pub fn read_lease(id: &str) -> Vec<(String, String)> {
    [lease_file(id), lease6_file(id)]
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            text.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Remove the lease files of instance `id` (the instance is gone).
pub fn remove_lease(id: &str) {
    let _ = std::fs::remove_file(lease_file(id));
    let _ = std::fs::remove_file(lease6_file(id));
}

fn script() -> anyhow::Result<PathBuf> {
    let dir = dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("script");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(SCRIPT) {
        let tmp = dir.join(format!(".script.{}", std::process::id()));
        std::fs::write(&tmp, SCRIPT).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(path)
}

/// A DHCP client that got no lease, after trying for its 5 s: what the agent does not try
/// again at once (`agent::run`), unlike a failure that may pass in a moment.
#[derive(Debug)]
pub struct NoLease(String);

impl NoLease {
    pub fn new(why: String) -> NoLease {
        NoLease(why)
    }
}

impl std::fmt::Display for NoLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoLease {}

/// Run udhcpc once on `device` in namespace `ns` for instance `id`, until its lease is bound
/// (about five seconds at most: five discovers a second apart). Returns the lease's address.
pub fn obtain(ns: &str, device: &str, id: &str) -> anyhow::Result<String> {
    let script = script()?;
    let lease = lease_file(id);
    let _ = std::fs::remove_file(&lease);
    let file = netns::open(ns)?;
    let mut cmd = netns::command(&file, PROGRAM);
    netns::unblocked(&mut cmd, true);
    let out = cmd
        .args(["udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "1", "-A", "1"])
        .args(["-i", device, "-s"])
        .arg(&script)
        .args([
            "-O",
            "mtu",
            "-O",
            "staticroutes",
            "-O",
            "dns",
            "-O",
            "domain",
        ])
        .env("QROUTER_LEASE", &lease)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("{ns}: cannot run {PROGRAM} udhcpc (install Debian's busybox)"))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        let last = said.lines().last().unwrap_or("").trim();
        return Err(NoLease(format!(
            "{ns}: udhcpc on {device} got no lease from the network's DHCP server ({last}); \
             is DHCP on for its subnet, and its dnsmasq running ('qrouter network show')?"
        ))
        .into());
    }
    let got = read_lease(id);
    match got.iter().find(|(k, _)| k == "address") {
        Some((_, address)) => Ok(address.clone()),
        None => bail!("{ns}: udhcpc bound a lease on {device} but its script recorded none"),
    }
}
