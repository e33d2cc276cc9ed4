//! Connection tracking: forget the connections of an address that went away.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use anyhow::Context;

use super::{find_program, netns};

/// `conntrack -D -d IP` and `-D -q IP` (reply destination) inside namespace `ns`.
pub fn flush(ns: &str, ip: std::net::Ipv4Addr) -> anyhow::Result<()> {
    let Some(conntrack) = find_program("conntrack") else {
        crate::output::diag::warn(format!(
            "conntrack not found (Debian package 'conntrack'): connections to {ip} stay tracked"
        ));
        return Ok(());
    };
    if !netns::exists(ns) {
        return Ok(());
    }
    for flag in ["-d", "-q"] {
        // Its own process group, as iptables: a Ctrl-C waits until the change is done.
        let mut cmd = Command::new(&conntrack);
        cmd.args(["-D", flag, &ip.to_string()])
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Exit status 1 means "no entry matched", which is fine.
        netns::spawn_in(ns, cmd)?
            .wait()
            .with_context(|| format!("cannot run conntrack in {ns}"))?;
    }
    Ok(())
}
