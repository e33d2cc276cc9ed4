//! Connection tracking: forget the connections of an address that went away.

use anyhow::Context;

use super::{find_program, netns};

/// `conntrack -D -d IP` and `-D -q IP` (reply destination) inside namespace `ns`.
pub fn flush(ns: &str, ip: std::net::Ipv4Addr) -> anyhow::Result<()> {
    if find_program("conntrack").is_none() {
        crate::output::diag::warn(format!(
            "conntrack not found (Debian package 'conntrack'): connections to {ip} stay tracked"
        ));
        return Ok(());
    }
    if !netns::exists(ns) {
        return Ok(());
    }
    let file = netns::open(ns)?;
    for flag in ["-d", "-q"] {
        // Exit status 1 means "no entry matched", which is fine.
        netns::command(&file, "conntrack")
            .args(["-D", flag, &ip.to_string()])
            .output()
            .with_context(|| format!("cannot run conntrack in {ns}"))?;
    }
    Ok(())
}
