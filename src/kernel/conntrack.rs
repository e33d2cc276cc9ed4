//! Connection tracking: forget the connections of an address that went away.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use anyhow::Context;

use super::{find_program, netns};

/// `conntrack -D -d IP` and `-D -q IP` (reply destination) inside namespace `ns`.
pub fn flush(ns: &str, ip: std::net::Ipv4Addr) -> anyhow::Result<()> {
    let Some(conntrack) = find_program("conntrack") else {
        log::warn!(
            "conntrack not found (Debian package 'conntrack'): connections to {ip} stay tracked"
        );
        return Ok(());
    };
    if !netns::exists(ns) || tracks_nothing(ns) {
        return Ok(());
    }
    // Each run dumps the whole conntrack table, which all namespaces share (10-15 ms with an
    // idle table here): the two run side by side.
    let runs = ["-d", "-q"].map(|flag| {
        // Its own process group, as iptables: a Ctrl-C waits until the change is done.
        let mut cmd = Command::new(&conntrack);
        cmd.args(["-D", flag, &ip.to_string()])
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        netns::spawn_in(ns, cmd)
    });
    for run in runs {
        // Exit status 1 means "no entry matched", which is fine.
        run?.wait()
            .with_context(|| format!("cannot run conntrack in {ns}"))?;
    }
    Ok(())
}

/// Whether namespace `ns` tracks no connection at all (its own count, which
/// `/proc/sys/net/netfilter` shows for the namespace of the thread that reads it): then
/// there is nothing to forget, and no walk of the shared table to wait for.
fn tracks_nothing(ns: &str) -> bool {
    let count = netns::run_in(ns, || {
        std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
    });
    matches!(count, Ok(Ok(n)) if n.trim() == "0")
}
