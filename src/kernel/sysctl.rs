//! Sysctls of a namespace: /proc/sys/net follows the thread that entered it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsFd;
use std::sync::OnceLock;

use anyhow::Context;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;

use super::netns;

/// Set each `net.` `key=value` in namespace `ns` where it differs (only find them with
/// `dry_run`); returns those keys. Keys of modules not loaded in the namespace yet
/// (nf_conntrack) are skipped.
///
/// Every namespace has its own /proc/sys/net/ipv4 (and ipv6, netfilter) under the same
/// directory entry, so looking one up by name compares it with each namespace's on the host,
/// under a lock: with a thousand routers, 1-1.7 ms the first time in a new namespace. Each is
/// looked up once here, each key relative to it, and each key's file opened once for reading
/// and writing.
pub fn ensure(
    ns: &str,
    settings: Vec<(String, String)>,
    dry_run: bool,
) -> anyhow::Result<Vec<String>> {
    netns::run_in(ns, move || ensure_here(&settings, dry_run))?
}

/// `ensure` in the namespace the calling thread is in.
pub fn ensure_here(settings: &[(String, String)], dry_run: bool) -> anyhow::Result<Vec<String>> {
    if settings.is_empty() {
        return Ok(vec![]);
    }
    let net = File::open("/proc/sys/net").context("cannot open /proc/sys/net")?;
    // ipv4, ipv6, netfilter: None where missing (a module not loaded).
    let mut dirs: HashMap<String, Option<File>> = HashMap::new();
    let mut differ = Vec::new();
    for (key, value) in settings {
        let path = key
            .strip_prefix("net.")
            .expect("qrouter's sysctls are under net.")
            .replace('.', "/");
        let (top, rest) = path
            .split_once('/')
            .expect("a key names a file in a directory");
        let dir = dirs.entry(top.to_string()).or_insert_with(|| {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
            openat(net.as_fd(), top, flags, Mode::empty())
                .ok()
                .map(File::from)
        });
        let flags = if dry_run {
            OFlag::O_RDONLY
        } else {
            OFlag::O_RDWR
        };
        let Some(Ok(fd)) = dir
            .as_ref()
            .map(|dir| openat(dir.as_fd(), rest, flags, Mode::empty()))
        else {
            continue;
        };
        let mut file = File::from(fd);
        // One read: `read_to_string` would first ask the file's size, a syscall more per key
        // for a size procfs does not know.
        let mut current = [0u8; 128];
        let len = file
            .read(&mut current)
            .with_context(|| format!("sysctl {key}: cannot read it"))?;
        if current[..len].trim_ascii() == value.as_bytes() {
            continue;
        }
        if !dry_run {
            file.rewind()
                .and_then(|_| file.write_all(value.as_bytes()))
                .with_context(|| format!("sysctl {key}: cannot set it to {value}"))?;
        }
        differ.push(key.clone());
    }
    Ok(differ)
}

/// A directory of the host's /proc/sys, opened once, from the main thread, which stays in
/// the host's namespace: keys relative to it skip the lookups `ensure` explains.
fn host_dir(cell: &'static OnceLock<Option<File>>, path: &str) -> io::Result<&'static File> {
    cell.get_or_init(|| File::open(path).ok())
        .as_ref()
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
}

/// A host sysctl below net., `key` as a path (`bridge/bridge-nf-call-iptables`).
pub fn host_get(key: &str) -> io::Result<String> {
    static NET: OnceLock<Option<File>> = OnceLock::new();
    let net = host_dir(&NET, "/proc/sys/net")?;
    let fd = openat(net.as_fd(), key, OFlag::O_RDONLY, Mode::empty())?;
    let mut value = String::new();
    File::from(fd).read_to_string(&mut value)?;
    Ok(value.trim().to_string())
}

/// Set net.ipv6.conf.`link`.`key` on the host.
pub fn host_ipv6_set(link: &str, key: &str, value: &str) -> io::Result<()> {
    static CONF: OnceLock<Option<File>> = OnceLock::new();
    let conf = host_dir(&CONF, "/proc/sys/net/ipv6/conf")?;
    let fd = openat(
        conf.as_fd(),
        format!("{link}/{key}").as_str(),
        OFlag::O_WRONLY,
        Mode::empty(),
    )?;
    File::from(fd).write_all(value.as_bytes())
}
