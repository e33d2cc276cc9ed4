//! The radvd of a router that routes IPv6 (Debian's radvd), as Neutron's L3 agent runs it:
//! one per router namespace, its configuration for all the router's interfaces in one
//! file, reloaded with SIGHUP, stopped with SIGTERM. Its files are under the state
//! directory: `ra/<router id>.radvd.conf` (0444: radvd wants a file its group and others
//! cannot write), `.pid`, `.log` (a sandbox has no syslog, where Neutron's `-m syslog` logs).
//!
//! Measured here (radvd 2.19): started in the foreground (`-n`) and not waited for, it is
//! running in 0.35-6 ms, where daemonizing took 3-37 ms before the command returned; a
//! SIGHUP costs 0.03 ms, and clients saw a new prefix 17-48 ms later. A configuration radvd
//! cannot parse makes it exit on SIGHUP: qrouter writes only what `model::ra` builds, and a
//! radvd that is not running is drift, started again. SIGTERM, unlike Neutron's SIGKILL,
//! lets it send its last advertisement with router lifetime 0: hosts drop their default
//! route at once, not 300 s later. radvd forks a privileged helper that exits with it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use super::daemon::{Process, State};
use super::{daemon, netns};

pub const PROGRAM: &str = "/usr/sbin/radvd";

/// Where radvd's files are: `<state dir>/ra`.
pub fn dir() -> PathBuf {
    daemon::state_dir().join("ra")
}

fn file(router_id: &str, suffix: &str) -> PathBuf {
    dir().join(format!("{router_id}.{suffix}"))
}

pub fn conf_file(router_id: &str) -> PathBuf {
    file(router_id, "radvd.conf")
}

pub fn pid_file(router_id: &str) -> PathBuf {
    file(router_id, "pid")
}

/// The routers that have a pid file: what `sync` checks for orphans.
pub fn routers_with_pid_files() -> Vec<String> {
    daemon::ids_with_pid_files(&dir(), ".pid")
}

fn ours(pid: i32, router_id: &str) -> Option<Process> {
    let pid_file = pid_file(router_id).display().to_string();
    daemon::ours(pid, "radvd", &["-p", &pid_file])
}

/// The radvd processes of ours for the router (whatever the pid file says: one started an
/// instant ago has not written it yet), without its privileged helpers.
fn find(router_id: &str) -> Vec<Process> {
    let found: Vec<Process> = daemon::pids_of("radvd")
        .iter()
        .filter_map(|pid| ours(*pid, router_id))
        .collect();
    let parent = |pid: i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // pid (comm) state ppid ...: the comm may hold spaces, so count from its end.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        after.split_whitespace().nth(1)?.parse::<i32>().ok()
    };
    let pids: Vec<i32> = found.iter().map(|p| p.pid).collect();
    found
        .into_iter()
        .filter(|p| parent(p.pid).is_none_or(|pp| !pids.contains(&pp)))
        .collect()
}

/// The router's radvd, as far as it is ours and runs in namespace `ns` (one left in a
/// namespace deleted behind qrouter's back advertises nowhere: it counts as dead).
pub fn state(router_id: &str, ns: &str) -> State {
    let (pid_file, conf) = (pid_file(router_id), conf_file(router_id));
    let recorded = daemon::from_pid_file(&pid_file);
    // Without either file no radvd of ours was started for it: no need to look.
    if recorded.is_none() && !conf.exists() {
        return State::Absent;
    }
    let running = recorded
        .and_then(|pid| ours(pid, router_id))
        .or_else(|| find(router_id).into_iter().next());
    match running {
        Some(p) if in_namespace(p.pid, ns) => State::Running(p),
        Some(p) => State::Dead(p.pid),
        None => recorded.map_or(State::Absent, State::Dead),
    }
}

/// Whether process `pid` runs in the network namespace named `ns` now.
fn in_namespace(pid: i32, ns: &str) -> bool {
    let inode = |path: PathBuf| std::fs::metadata(path).ok().map(|m| m.ino());
    let theirs = inode(format!("/proc/{pid}/ns/net").into());
    theirs.is_some() && theirs == inode(netns::path(ns))
}

/// The configuration radvd was last given, if any.
pub fn read_config(router_id: &str) -> Option<String> {
    std::fs::read_to_string(conf_file(router_id)).ok()
}

/// Replace the configuration, whole (a new file renamed over the old one).
pub fn write_config(router_id: &str, text: &str) -> anyhow::Result<()> {
    let dir = dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = conf_file(router_id);
    let tmp = dir.join(format!(".{router_id}.radvd.conf.new"));
    let _ = std::fs::remove_file(&tmp);
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o444))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

/// Start the router's radvd in namespace `ns`, not waiting for it: in the foreground of a
/// session of its own, the grandchild of qrouter (whose child exits at once), so nobody
/// need reap it and a Ctrl-C at qrouter's terminal does not reach it. `stale`: the pid of
/// one of ours that is not serving (left in a namespace deleted behind our back), stopped
/// first.
pub fn start(router_id: &str, ns: &str, stale: Option<i32>) -> anyhow::Result<()> {
    if stale.is_some_and(|pid| ours(pid, router_id).is_some()) {
        stop_process(router_id);
    }
    let namespace = netns::open(ns)?;
    let mut cmd = netns::command(&namespace, PROGRAM);
    netns::unblocked(&mut cmd, false);
    // SAFETY: setsid, fork and _exit are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            match libc::fork() {
                -1 => return Err(std::io::Error::last_os_error()),
                0 => {}
                _ => libc::_exit(0),
            }
            libc::setsid();
            Ok(())
        });
    }
    let log = file(router_id, "log");
    let status = cmd
        .arg("-n")
        .arg("-C")
        .arg(conf_file(router_id))
        .arg("-p")
        .arg(pid_file(router_id))
        .args(["-m", "logfile", "-l"])
        .arg(log)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .with_context(|| format!("{ns}: cannot run {PROGRAM} (install Debian's radvd)"))?;
    daemon::forget();
    if !status.success() {
        bail!("{ns}: radvd did not start ({status})");
    }
    Ok(())
}

/// Reread the configuration: SIGHUP.
pub fn reload(pid: i32) -> anyhow::Result<()> {
    kill(Pid::from_raw(pid), Signal::SIGHUP).with_context(|| format!("radvd {pid}: SIGHUP"))
}

/// Stop every radvd of ours for the router (SIGTERM: its last advertisement tells hosts the
/// router is gone), waiting until it has left.
fn stop_process(router_id: &str) {
    let stopped: Vec<i32> = find(router_id).iter().map(|p| p.pid).collect();
    daemon::terminate(&stopped, |pid| ours(pid, router_id).is_some());
}

/// Stop the router's radvd and remove its files.
pub fn stop(router_id: &str) -> anyhow::Result<()> {
    stop_process(router_id);
    for suffix in ["pid", "radvd.conf", "log"] {
        let path = file(router_id, suffix);
        daemon::remove(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}
