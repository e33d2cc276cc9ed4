//! Which machine and network namespace this process runs in, and whether a process of it
//! still runs: how an agent tells its own predecessor on this host, killed before its lease
//! ended, from another agent that claims the same host name elsewhere.

use std::net::Ipv4Addr;

/// This boot of this machine, and this process's network namespace: two agents with the
/// same identity run on the same host.
pub fn here() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let netns = std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    format!("{} {netns}", boot.trim())
}

/// Whether process `pid`, seen from here, runs this same program in this same network
/// namespace (a pid number alone may have been reused by anything).
pub fn same_program_runs(pid: u32) -> bool {
    let link = |p: &str| std::fs::read_link(p).ok();
    let theirs = (
        link(&format!("/proc/{pid}/exe")),
        link(&format!("/proc/{pid}/ns/net")),
    );
    let ours = (link("/proc/self/exe"), link("/proc/self/ns/net"));
    theirs.0.is_some() && theirs == ours
}

/// The name the kernel gives this machine, for messages.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Whether `ip` is an address of one of the host's interfaces, read over netlink.
pub async fn holds_address(h: &rtnetlink::Handle, ip: Ipv4Addr) -> anyhow::Result<bool> {
    Ok(super::addr::list(h)
        .await?
        .iter()
        .any(|a| a.net.addr() == ip))
}
