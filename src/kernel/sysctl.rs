//! Sysctls of a namespace: /proc/sys/net follows the thread that entered it.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsFd;

use anyhow::Context;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;

use super::netns;

/// Set each `net.` `key=value` in namespace `ns` where it differs (only find them with
/// `dry_run`); returns those keys. Keys of modules not loaded in the namespace yet
/// (nf_conntrack) are skipped.
///
/// Every namespace has its own /proc/sys/net directory under the same name, so looking the
/// name up costs a comparison per namespace on the host: it is looked up once here, each key
/// relative to it, and each key's file opened once for reading and writing.
pub fn ensure(
    ns: &str,
    settings: &'static [(&'static str, &'static str)],
    dry_run: bool,
) -> anyhow::Result<Vec<&'static str>> {
    netns::run_in(ns, move || -> anyhow::Result<Vec<&'static str>> {
        let net = File::open("/proc/sys/net").context("cannot open /proc/sys/net")?;
        let mut differ = Vec::new();
        for (key, value) in settings {
            let relative = key
                .strip_prefix("net.")
                .expect("qrouter's sysctls are under net.")
                .replace('.', "/");
            let flags = if dry_run {
                OFlag::O_RDONLY
            } else {
                OFlag::O_RDWR
            };
            let Ok(fd) = openat(net.as_fd(), relative.as_str(), flags, Mode::empty()) else {
                continue;
            };
            let mut file = File::from(fd);
            let mut current = String::new();
            file.read_to_string(&mut current)
                .with_context(|| format!("sysctl {key}: cannot read it"))?;
            if current.trim() == *value {
                continue;
            }
            if !dry_run {
                file.rewind()
                    .and_then(|_| file.write_all(value.as_bytes()))
                    .with_context(|| format!("sysctl {key}: cannot set it to {value}"))?;
            }
            differ.push(*key);
        }
        Ok(differ)
    })?
}

/// The host's /proc/sys/net, opened once, from the main thread, which stays in the host's
/// namespace. Looking up /proc/sys/net by path compares every namespace's directory of that
/// name; a key relative to this one is found directly.
fn host_net() -> io::Result<&'static File> {
    static NET: std::sync::OnceLock<Option<File>> = std::sync::OnceLock::new();
    NET.get_or_init(|| File::open("/proc/sys/net").ok())
        .as_ref()
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
}

/// A host sysctl below net., `key` as a path (`bridge/bridge-nf-call-iptables`).
pub fn host_get(key: &str) -> io::Result<String> {
    let fd = openat(host_net()?.as_fd(), key, OFlag::O_RDONLY, Mode::empty())?;
    let mut value = String::new();
    File::from(fd).read_to_string(&mut value)?;
    Ok(value.trim().to_string())
}

pub fn host_set(key: &str, value: &str) -> io::Result<()> {
    let fd = openat(host_net()?.as_fd(), key, OFlag::O_WRONLY, Mode::empty())?;
    File::from(fd).write_all(value.as_bytes())
}
