//! A DHCPv6 client run once in an instance's namespace (`instance create --dhcp` on a
//! stateful IPv6 subnet): ISC's `dhclient -6` (Debian's isc-dhcp-client; busybox has no
//! `udhcpc6` here), in the foreground, with a script of qrouter's, never Debian's
//! `dhclient-script`, which would rewrite the host's /etc/resolv.conf (a namespace has no
//! /etc of its own). Its script sets the address as a guest's client does (a /128: the
//! prefix and the default route come from the router's advertisements) and records the
//! lease; once it has, the client is stopped and the address stays. On a DHCPv6-stateless
//! subnet it asks for the options only (`-S`, an information request): the address comes by
//! SLAAC, the DNS server and search domain from dnsmasq (seen here: dnsmasq's reply names
//! its own address as the DNS server; the script runs with reason `RENEW6`, no address).
//!
//! Measured here: dhclient exits at once ("Can't bind to dhcp address") while the
//! instance's link-local address is still tentative (about 1.3 s after the link comes up),
//! so it is run again until it binds; once running it had the address 1.1-1.9 s later. Its
//! `timeout 5;` makes it give up after about 5.5 s (60 s without).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{netns, udhcpc};

pub const PROGRAM: &str = "dhclient";

/// dhclient clears the environment before it runs its script: the lease file's path is
/// written into the script, one per instance.
fn script(id: &str) -> anyhow::Result<PathBuf> {
    let dir = udhcpc::dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let lease = udhcpc::lease6_file(id);
    let text = format!(
        r#"#!/bin/sh
# qrouter's dhclient script: the address from the lease, as a guest's client sets it.
case "$reason" in
BOUND6|RENEW6|REBIND6|REBOOT6)
  [ -n "$new_ip6_address" ] && ip -6 addr replace "$new_ip6_address/128" dev "$interface"
  {{ [ -n "$new_ip6_address" ] && printf 'address6=%s/128\n' "$new_ip6_address"
    printf 'dns6=%s\ndomain6=%s\n' "$new_dhcp6_name_servers" "$new_dhcp6_domain_search"
  }} > "{lease}.new"
  mv "{lease}.new" "{lease}" ;;
esac
exit 0
"#,
        lease = lease.display()
    );
    let path = dir.join(format!("{id}.dhclient-script"));
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// What the client asks dnsmasq for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// A stateful subnet: an address (and the options with it).
    Address,
    /// A stateless one: the options only (DNS server, search domain).
    Options,
}

/// Whether instance `id`'s client recorded a DHCPv6 reply (its lease file exists).
pub fn informed(id: &str) -> bool {
    udhcpc::lease6_file(id).exists()
}

/// Run dhclient on `device` in namespace `ns` for instance `id` until its lease is bound,
/// or with `Ask::Options` until it has the options (at most about ten seconds). Returns the
/// lease's address, or the DNS servers it was given.
pub fn obtain(ns: &str, device: &str, id: &str, ask: Ask) -> anyhow::Result<String> {
    let script = script(id)?;
    let dir = udhcpc::dir();
    let conf = dir.join("dhclient6.conf");
    std::fs::write(&conf, "timeout 5;\n")
        .with_context(|| format!("cannot write {}", conf.display()))?;
    let lease = udhcpc::lease6_file(id);
    let _ = std::fs::remove_file(&lease);
    let (db, pid_file) = (
        dir.join(format!("{id}.leases6")),
        dir.join(format!("{id}.pid6")),
    );
    let file = netns::open(ns)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut said = String::new();
    while Instant::now() < deadline {
        let mut cmd = netns::command(&file, PROGRAM);
        netns::unblocked(&mut cmd, true);
        let mut child = cmd
            .args(["-6", "-1", "-d"])
            .args((ask == Ask::Options).then_some("-S"))
            .arg("-cf")
            .arg(&conf)
            .arg("-sf")
            .arg(&script)
            .arg("-lf")
            .arg(&db)
            .arg("-pf")
            .arg(&pid_file)
            .arg(device)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| {
                format!("{ns}: cannot run {PROGRAM} (install Debian's isc-dhcp-client)")
            })?;
        // Bound: the script wrote the lease; the client is stopped, the address stays.
        loop {
            if lease.exists() {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
                let _ = child.wait();
                let _ = std::fs::remove_file(&pid_file);
                let key = match ask {
                    Ask::Address => "address6",
                    Ask::Options => "dns6",
                };
                let got = udhcpc::read_lease(id);
                return match got.into_iter().find(|(k, _)| k == key) {
                    Some((_, value)) => Ok(value),
                    None => bail!(
                        "{ns}: dhclient got a DHCPv6 reply on {device} but its script recorded no {key}"
                    ),
                };
            }
            if let Some(_exited) = child.try_wait()? {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                said = err.lines().last().unwrap_or("").trim().to_string();
                break;
            }
            if Instant::now() > deadline {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Exited without a lease: its link-local address was still tentative (it could not
        // bind), or no server answered within its timeout.
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::fs::remove_file(&pid_file);
    Err(udhcpc::NoLease::new(format!(
        "{ns}: dhclient -6 on {device} got no lease from the network's DHCP server ({said}); \
         is the subnet dhcpv6-stateful, its dnsmasq running ('qrouter network show')?"
    ))
    .into())
}
