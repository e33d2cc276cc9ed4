//! The dnsmasq processes qrouter owns, one per network with DHCP. A process is qrouter's when
//! its pid file is under this store's state directory and the process named that pid file on
//! its command line: a pid alone proves nothing (pids are reused), and no other dnsmasq is
//! ever signalled.
//!
//! dnsmasq writes its pid file as root, then runs as `nobody`, which must read its host and
//! options files on every SIGHUP: those live in a world-readable directory under /run (they
//! hold MACs, addresses and names, as Neutron's /var/lib/neutron/dhcp does), while the state
//! directory stays private.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{setsockopt, sockopt};
use nix::unistd::Pid;

pub use super::daemon::{set_state_dir, Process, State};
use super::{daemon, netns};

pub const PROGRAM: &str = "/usr/sbin/dnsmasq";

/// Where the pid files are: `<state dir>/dhcp`.
pub fn pid_dir() -> PathBuf {
    daemon::state_dir().join("dhcp")
}

pub fn pid_file(network_id: &str) -> PathBuf {
    pid_dir().join(format!("{network_id}.pid"))
}

/// The directory of the files dnsmasq reads for `network_id`.
pub fn conf_dir(network_id: &str) -> PathBuf {
    PathBuf::from("/run/qrouter/dhcp").join(network_id)
}

/// The networks that have a pid file: what `sync` checks for orphans.
pub fn networks_with_pid_files() -> Vec<String> {
    daemon::ids_with_pid_files(&pid_dir(), ".pid")
}

/// The process `pid` if it is a dnsmasq of ours that names `pid_file`.
fn ours(pid: i32, pid_file: &Path) -> Option<Process> {
    let wanted = format!("--pid-file={}", pid_file.display());
    let mut p = daemon::ours(pid, "dnsmasq", &[&wanted])?;
    // Logging asked for through QROUTER_DNSMASQ_LOG, and the user it runs as, are no
    // options of the network's.
    let user = own_user_where_nobody_is_unmapped();
    p.args
        .retain(|a| !a.starts_with("--log-") && !user.contains(&a.as_str()));
    Some(p)
}

/// Every dnsmasq of ours for `network_id`, found through /proc, whatever its pid file says:
/// a qrouter killed between starting one and reading its pid file leaves no second one.
fn find(network_id: &str) -> Vec<Process> {
    let pid_file = pid_file(network_id);
    daemon::pids_of("dnsmasq")
        .iter()
        .filter_map(|pid| ours(*pid, &pid_file))
        .collect()
}

pub fn state(network_id: &str) -> State {
    let path = pid_file(network_id);
    let pid = daemon::from_pid_file(&path);
    match pid.and_then(|pid| ours(pid, &path)) {
        Some(p) => State::Running(p),
        None => match find(network_id).into_iter().next() {
            Some(p) => State::Running(p),
            None => pid.map_or(State::Absent, State::Dead),
        },
    }
}

/// Write the files dnsmasq reads; the names of those that changed.
pub fn write_files(network_id: &str, files: &[(&'static str, &str)]) -> anyhow::Result<()> {
    let dir = conf_dir(network_id);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, text) in files {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.new"));
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The files as they are, in the order given; a missing one reads as None.
pub fn read_files(network_id: &str, names: &[&str]) -> Vec<Option<String>> {
    let dir = conf_dir(network_id);
    names
        .iter()
        .map(|n| std::fs::read_to_string(dir.join(n)).ok())
        .collect()
}

/// Start dnsmasq in namespace `ns`; it forks into the background once its sockets are
/// bound, so a failure to start is its exit status. Returns its pid.
pub fn start(network_id: &str, ns: &str, args: &[String]) -> anyhow::Result<i32> {
    // Never two: whatever of ours still runs for the network goes first.
    stop(network_id)?;
    let dir = pid_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = netns::open(ns)?;
    // QROUTER_DNSMASQ_LOG=DIR: dnsmasq logs every DHCP exchange to DIR/<network id>.log.
    let log = std::env::var_os("QROUTER_DNSMASQ_LOG").map(|dir| {
        let file = Path::new(&dir).join(format!("{network_id}.log"));
        vec![
            "--log-dhcp".to_string(),
            format!("--log-facility={}", file.display()),
        ]
    });
    let mut cmd = netns::command(&file, PROGRAM);
    netns::unblocked(&mut cmd, false);
    let out = cmd
        .args(args)
        .args(log.unwrap_or_default())
        .args(own_user_where_nobody_is_unmapped())
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("{ns}: cannot run {PROGRAM} (install Debian's dnsmasq-base)"))?;
    daemon::forget();
    if !out.status.success() {
        bail!(
            "{ns}: dnsmasq did not start: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    match state(network_id) {
        State::Running(p) => Ok(p.pid),
        _ => bail!("{ns}: dnsmasq started but wrote no pid file"),
    }
}

/// dnsmasq drops to nobody:dip, as Neutron runs it. In a user namespace that maps only the
/// user running qrouter (an unprivileged test sandbox), those ids do not exist there and
/// setgroups is denied: it then stays the mapped user, an ordinary user outside (an empty
/// `--group` makes dnsmasq change no group at all).
fn own_user_where_nobody_is_unmapped() -> Vec<&'static str> {
    const NOBODY: u64 = 65534;
    let maps_nobody = std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|map| {
        map.lines().any(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect();
            matches!(f[..], [inside, _, count] if inside <= NOBODY && NOBODY < inside + count)
        })
    });
    match maps_nobody {
        true => vec![],
        false => vec!["--user=root", "--group="],
    }
}

/// Reread the host, address and options files (no restart: leases stay). Returns once
/// dnsmasq has taken the signal and gone back to waiting: a client that asks right after
/// (an instance's, in the same change) gets the new files' answers.
pub fn reload(pid: i32) -> anyhow::Result<()> {
    kill(Pid::from_raw(pid), Signal::SIGHUP).with_context(|| format!("dnsmasq {pid}: SIGHUP"))?;
    // Its handler clears the pending signal; the main loop then rereads the files before it
    // sleeps in poll again (state S). Both seen: the files are read.
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            break;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or("")
                .to_string()
        };
        let hup = 1u64 << (libc::SIGHUP - 1);
        let pending = ["SigPnd:", "ShdPnd:"]
            .iter()
            .any(|f| u64::from_str_radix(&field(f), 16).is_ok_and(|m| m & hup != 0));
        if !pending && field("State:").starts_with('S') {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Stop every dnsmasq of ours for the network and remove its pid file; the pids stopped.
pub fn stop(network_id: &str) -> anyhow::Result<Vec<i32>> {
    let path = pid_file(network_id);
    let stopped: Vec<i32> = find(network_id).iter().map(|p| p.pid).collect();
    daemon::terminate(&stopped, |pid| ours(pid, &path).is_some());
    daemon::remove(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    Ok(stopped)
}

/// The leases dnsmasq holds for the network, from its lease file (it rewrites the file on
/// every change): each (MAC, address). Lines of another form (DHCPv6's) are skipped.
pub fn read_leases(network_id: &str) -> Vec<(String, Ipv4Addr)> {
    let text = std::fs::read_to_string(conf_dir(network_id).join("leases")).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            // expiry MAC address hostname client-id
            let mut f = line.split_whitespace().skip(1);
            let mac = f.next()?.to_ascii_lowercase();
            let ip = f.next()?.parse().ok()?;
            Some((mac, ip))
        })
        .collect()
}

/// Release the lease of `mac` on `ip` as Neutron does with `dhcp_release` (Debian's
/// dnsmasq-utils, which qrouter need not install for this): a DHCPRELEASE sent, from inside
/// the network's namespace `ns`, to the server's own address `server` through the
/// server's device, so dnsmasq takes it as coming from that interface. dnsmasq forgets the
/// lease, and the address can go to another MAC at once.
pub fn release(
    ns: &str,
    device: &str,
    server: Ipv4Addr,
    ip: Ipv4Addr,
    mac: &str,
) -> anyhow::Result<()> {
    let packet = release_packet(server, ip, mac)?;
    let device = std::ffi::OsString::from(device);
    netns::run_in(ns, move || -> anyhow::Result<()> {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        setsockopt(&sock, sockopt::BindToDevice, &device)?;
        sock.send_to(&packet, (server, 67))?;
        Ok(())
    })?
    .with_context(|| format!("{ns}: cannot release the DHCP lease of {mac} on {ip}"))
}

/// A DHCPRELEASE (RFC 2131) from `mac` for `ip` to the server `server`; no client id, so
/// dnsmasq finds the lease by MAC.
fn release_packet(server: Ipv4Addr, ip: Ipv4Addr, mac: &str) -> anyhow::Result<Vec<u8>> {
    const BOOTREQUEST: u8 = 1;
    const ETHERNET: u8 = 1;
    const DHCPRELEASE: u8 = 7;
    let mut p = vec![0u8; 236];
    (p[0], p[1], p[2]) = (BOOTREQUEST, ETHERNET, 6);
    p[4..8].copy_from_slice(&rand_xid().to_be_bytes());
    p[12..16].copy_from_slice(&ip.octets());
    p[28..34].copy_from_slice(&super::link::parse_mac(mac)?);
    p.extend([99, 130, 83, 99]); // the magic cookie
    p.extend([53, 1, DHCPRELEASE]);
    p.extend([54, 4]);
    p.extend(server.octets());
    p.push(255);
    Ok(p)
}

/// A transaction id: any value; the time's nanoseconds do.
fn rand_xid() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

/// Remove the files dnsmasq read for the network.
pub fn remove_files(network_id: &str) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(conf_dir(network_id)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_release_is_a_bootrequest_naming_lease_and_server() {
        let server = "172.16.101.2".parse().unwrap();
        let p = super::release_packet(server, "172.16.101.3".parse().unwrap(), "fa:16:3e:00:00:0a")
            .unwrap();
        assert_eq!(&p[..3], [1, 1, 6]);
        assert_eq!(&p[12..16], [172, 16, 101, 3]);
        assert_eq!(&p[28..34], [0xfa, 0x16, 0x3e, 0, 0, 0x0a]);
        assert_eq!(
            &p[236..],
            [99, 130, 83, 99, 53, 1, 7, 54, 4, 172, 16, 101, 2, 255]
        );
    }
}
