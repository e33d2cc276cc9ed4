//! The keepalived processes of HA routers, one per router copy, in the router's namespace:
//! its files under `<state dir>/ha/<router id>/` (keepalived.conf, the notify script, the
//! state file the script writes, the pid files). Debian's keepalived 2.2.7, measured in
//! /work/research/ha.md:
//! - `-P` (VRRP only: a parent and its VRRP child), and pid files of its own with `-p`/`-r`:
//!   with the defaults a second keepalived on the host refuses to start ("daemon is
//!   already running"); `TMPDIR` its directory (its dumps go there, by fixed names);
//! - it is detached (`setsid --fork`), so it outlives the agent: an agent restarted never
//!   restarts a master (that would be a failover); its log is keepalived.log beside it;
//! - SIGHUP reloads the configuration without a transition (a floating IP added, 0 pings
//!   lost); SIGTERM makes a master send a priority-0 advert and drop its addresses (the
//!   other copy takes over within 0.4 s).
//!
//! A process is ours when it is keepalived, names our configuration on its command line and
//! runs in our mount namespace (the pid file alone proves nothing: pids are reused, and the
//! tests' fake hosts share a pid namespace). The same ideas as dnsmasq's (`dnsmasq.rs`).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::netns;
use crate::model::ha::{HaState, NOTIFY_SCRIPT};

pub const PROGRAM: &str = "keepalived";

/// The directory of router `id`'s copy.
pub fn dir(router_id: &str) -> PathBuf {
    super::daemon::state_dir().join("ha").join(router_id)
}

fn config_path(router_id: &str) -> PathBuf {
    dir(router_id).join("keepalived.conf")
}

/// The command keepalived runs on a transition (it appends the instance and the state).
pub fn notify_command(router_id: &str) -> String {
    let d = dir(router_id);
    format!("{}/notify.sh {}", d.display(), d.display())
}

/// What runs for one router copy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Seen {
    /// keepalived's parent's pid, if it runs and is ours.
    pub pid: Option<i32>,
    /// Its configuration file as written.
    pub config: Option<String>,
    /// conntrackd's pid, if it runs and is ours.
    pub conntrackd: Option<i32>,
    /// Its configuration file as written.
    pub conntrackd_config: Option<String>,
}

/// Read what runs for router `id`.
pub fn observe(router_id: &str) -> Seen {
    let d = dir(router_id);
    let read = |name: &str| std::fs::read_to_string(d.join(name)).ok();
    let running = |pid_file: &str, program: &str, conf: &str| {
        let pid = read(pid_file).and_then(|t| t.trim().parse::<i32>().ok());
        pid.filter(|pid| ours(*pid, program, &d.join(conf)))
    };
    Seen {
        pid: running("keepalived.pid", PROGRAM, "keepalived.conf"),
        config: read("keepalived.conf"),
        conntrackd: running("conntrackd.pid", CONNTRACKD, "conntrackd.conf"),
        conntrackd_config: read("conntrackd.conf"),
    }
}

/// Whether `pid` is a `program` of ours that names `conf` (keepalived's parent or its
/// VRRP child, or conntrackd).
fn ours(pid: i32, program: &str, conf: &std::path::Path) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let argv: Vec<&[u8]> = raw.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
    let named = argv.contains(&conf.as_os_str().as_encoded_bytes());
    let is_program = argv
        .first()
        .is_some_and(|a| a.ends_with(program.as_bytes()));
    let mount = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/mnt")).ok();
    is_program && named && mount(&pid.to_string()) == mount("self")
}

pub const CONNTRACKD: &str = "conntrackd";

/// (Re)start router `id`'s conntrackd in namespace `ns` with `config`, and wait for its
/// control socket (the notify script talks to it). It has no pid file option: a shell
/// writes its own pid, then becomes conntrackd; detached like keepalived.
pub fn start_conntrackd(router_id: &str, ns: &str, config: &str) -> anyhow::Result<()> {
    stop_conntrackd(router_id);
    let d = dir(router_id);
    std::fs::create_dir_all(&d).with_context(|| format!("cannot make {}", d.display()))?;
    std::fs::write(d.join("conntrackd.conf"), config)?;
    // A lock file or socket left by one that was killed stops the next one.
    for stale in ["conntrackd.lock", "conntrackd.ctl"] {
        let _ = std::fs::remove_file(d.join(stale));
    }
    let file = netns::open(ns)?;
    let status = netns::command(&file, "setsid")
        .args([
            "--fork",
            "sh",
            "-c",
            "echo $$ > \"$0\" && exec conntrackd -C \"$1\"",
        ])
        .arg(d.join("conntrackd.pid"))
        .arg(d.join("conntrackd.conf"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .with_context(|| format!("router {router_id}: cannot run {CONNTRACKD}"))?;
    if !status.success() {
        anyhow::bail!("router {router_id}: {CONNTRACKD} refused to start ({status})");
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while !d.join("conntrackd.ctl").exists() || observe(router_id).conntrackd.is_none() {
        if Instant::now() > deadline {
            anyhow::bail!(
                "router {router_id}: {CONNTRACKD} did not start (see {})",
                d.join("conntrackd.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Stop router `id`'s conntrackd, if one of ours runs.
fn stop_conntrackd(router_id: &str) {
    if let Some(pid) = observe(router_id).conntrackd {
        let conf = dir(router_id).join("conntrackd.conf");
        terminate(pid, || ours(pid, CONNTRACKD, &conf));
    }
}

/// SIGTERM, and SIGKILL if it is still `running` after 3 s.
fn terminate(pid: i32, running: impl Fn() -> bool) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(3);
    while running() {
        if Instant::now() > deadline {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Write the configuration and the notify script (root's, not writable by others:
/// keepalived runs it as root).
pub fn write_config(router_id: &str, config: &str) -> anyhow::Result<()> {
    let d = dir(router_id);
    std::fs::create_dir_all(&d).with_context(|| format!("cannot make {}", d.display()))?;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))?;
    let script = d.join("notify.sh");
    std::fs::write(&script, NOTIFY_SCRIPT)?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    let tmp = d.join("keepalived.conf.tmp");
    std::fs::write(&tmp, config)?;
    std::fs::rename(&tmp, config_path(router_id))
        .with_context(|| format!("cannot write {}", config_path(router_id).display()))
}

/// Start keepalived for router `id` in namespace `ns` (its configuration written), and wait
/// until it has written its pid file.
pub fn start(router_id: &str, ns: &str) -> anyhow::Result<()> {
    let d = dir(router_id);
    // A copy that starts is not the master until keepalived says so.
    let _ = std::fs::remove_file(d.join("state"));
    let file = netns::open(ns)?;
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(d.join("keepalived.log"))?;
    // In the foreground (-n) with its log on its stderr (-l -G: this keepalived has no log
    // file option, and a host may have no syslog), in a session of its own that `setsid
    // --fork` detaches: its parent exits at once, so it outlives the agent like a daemon.
    let status = netns::command(&file, "setsid")
        .args(["--fork", PROGRAM, "-n", "-l", "-G", "-P", "-f"])
        .arg(config_path(router_id))
        .arg("-p")
        .arg(d.join("keepalived.pid"))
        .arg("-r")
        .arg(d.join("vrrp.pid"))
        .env("TMPDIR", &d)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("router {router_id}: cannot run {PROGRAM}"))?;
    if !status.success() {
        anyhow::bail!("router {router_id}: {PROGRAM} refused to start ({status})");
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while observe(router_id).pid.is_none() || !d.join("vrrp.pid").exists() {
        if Instant::now() > deadline {
            anyhow::bail!("router {router_id}: {PROGRAM} started but did not stay running");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    realtime(router_id);
    Ok(())
}

/// The real-time priority of a VRRP process (keepalived's `vrrp_rt_priority` of the
/// measurements).
const RT_PRIORITY: i32 = 50;

/// Put router `id`'s VRRP process on SCHED_RR, where it is not yet (a respawned one is
/// not), with RLIMIT_RTTIME at 200 ms of CPU without blocking (SIGKILL at 250 ms): a
/// runaway loop cannot take a core. keepalived's own setting cannot be used (see
/// `model::ha::Vrrp::render`). Where real-time scheduling is not allowed (a user
/// namespace, a cgroup without an RT budget) it stays on CFS, and says so once.
pub fn realtime(router_id: &str) {
    let pid = std::fs::read_to_string(dir(router_id).join("vrrp.pid"))
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .filter(|pid| ours(*pid, PROGRAM, &config_path(router_id)));
    let Some(pid) = pid else { return };
    // SAFETY: plain system calls on a pid, with values that live through the call.
    unsafe {
        if libc::sched_getscheduler(pid) == libc::SCHED_RR {
            return;
        }
        let limit = libc::rlimit {
            rlim_cur: 200_000,
            rlim_max: 250_000,
        };
        libc::prlimit(pid, libc::RLIMIT_RTTIME, &limit, std::ptr::null_mut());
        let param = libc::sched_param {
            sched_priority: RT_PRIORITY,
        };
        if libc::sched_setscheduler(pid, libc::SCHED_RR, &param) != 0 {
            static SAID: std::sync::Once = std::sync::Once::new();
            let e = std::io::Error::last_os_error();
            SAID.call_once(|| log::warn!("keepalived stays on CFS: SCHED_RR refused: {e}"));
        }
    }
}

/// Reload its configuration (SIGHUP to the parent).
pub fn reload(pid: i32) -> anyhow::Result<()> {
    kill(Pid::from_raw(pid), Signal::SIGHUP).context("cannot signal keepalived")
}

/// Stop router `id`'s keepalived, if one of ours runs (SIGTERM: a master hands over at
/// once; SIGKILL after 3 s), and its conntrackd, and remove their files.
pub fn stop(router_id: &str) -> anyhow::Result<()> {
    if let Some(pid) = observe(router_id).pid {
        let conf = config_path(router_id);
        terminate(pid, || ours(pid, PROGRAM, &conf));
    }
    stop_conntrackd(router_id);
    match std::fs::remove_dir_all(dir(router_id)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Whether router `id` has files here (a copy that ran).
pub fn present(router_id: &str) -> bool {
    dir(router_id).exists()
}

/// What keepalived last told the notify script, if it ran.
pub fn notified(router_id: &str) -> Option<HaState> {
    let text = std::fs::read_to_string(dir(router_id).join("state")).ok()?;
    HaState::parse_keepalived(&text)
}
