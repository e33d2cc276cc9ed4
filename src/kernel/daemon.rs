//! The daemons qrouter owns (a dnsmasq per network with DHCP, a radvd per router with IPv6):
//! where their pid files live, and how a process is proven qrouter's. A process is ours
//! when it is the program and names its pid file, under this store's state directory, on
//! its command line, in this process's mount namespace: a pid alone proves nothing (pids
//! are reused), and no other process is ever signalled.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

static STATE_DIR: OnceLock<PathBuf> = OnceLock::new();

/// The store's state directory, where pid files live; set once when the command line is read.
pub fn set_state_dir(dir: &Path) {
    let _ = STATE_DIR.set(dir.to_path_buf());
}

pub fn state_dir() -> PathBuf {
    STATE_DIR
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from("/var/lib/qrouter"))
}

/// The ids whose pid files (`<id><suffix>`) are in `dir`: what `sync` checks for orphans.
pub fn ids_with_pid_files(dir: &Path, suffix: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(dir) else {
        return vec![];
    };
    dir.filter_map(|e| {
        let name = e.ok()?.file_name().into_string().ok()?;
        name.strip_suffix(suffix).map(str::to_string)
    })
    .collect()
}

/// A daemon of ours as it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    /// Its arguments, without the program.
    pub args: Vec<String>,
}

/// What the pid file of a daemon says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// No pid file, and no process of ours for it.
    Absent,
    Running(Process),
    /// A pid file whose process is gone (or is not ours).
    Dead(i32),
}

pub fn cmdline(pid: i32) -> Vec<String> {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return vec![];
    };
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The process `pid` if it is `program` and its command line holds `names` (its pid file
/// option; a zombie names nothing), in this process's mount namespace: a path means
/// something only there, and a host that shares its pid namespace with others (containers,
/// the multi-host tests' fake hosts) sees their daemons, with the same paths.
pub fn ours(pid: i32, program: &str, names: &[&str]) -> Option<Process> {
    let mut argv = cmdline(pid);
    if argv.is_empty() || !argv[0].ends_with(program) {
        return None;
    }
    if !names.iter().all(|n| argv.iter().any(|a| a == n)) {
        return None;
    }
    let mount = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/mnt")).ok();
    if mount(&pid.to_string()) != mount("self") {
        return None;
    }
    argv.remove(0);
    Some(Process { pid, args: argv })
}

/// The pids of every process of `program` running, as last listed: listed once per
/// command (a `sync` asks for every network and router), and again after qrouter started
/// or stopped one (`forget`).
pub fn pids_of(program: &str) -> Vec<i32> {
    let mut cache = LISTED.lock().expect("no panic holds it");
    if let Some((_, pids)) = cache.iter().find(|(p, _)| p == program) {
        return pids.clone();
    }
    let pids: Vec<i32> = match std::fs::read_dir("/proc") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| cmdline(*pid).first().is_some_and(|a| a.ends_with(program)))
            .collect(),
        Err(_) => vec![],
    };
    cache.push((program.to_string(), pids.clone()));
    pids
}

/// Every program's processes, as last listed.
static LISTED: Mutex<Vec<(String, Vec<i32>)>> = Mutex::new(Vec::new());

/// The process list changed (a daemon started or stopped): list again when next asked.
pub fn forget() {
    LISTED.lock().expect("no panic holds it").clear();
}

/// The daemon's pid from `pid_file` if that process is still ours (`still_ours`).
pub fn from_pid_file(pid_file: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
}

/// Send SIGTERM to `pids` and wait until none is ours (`still_ours`) any more: what it holds
/// (a namespace) goes only once it has left. After three seconds, SIGKILL.
pub fn terminate(pids: &[i32], still_ours: impl Fn(i32) -> bool) {
    for pid in pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    forget();
    let deadline = Instant::now() + Duration::from_secs(3);
    while pids.iter().any(|pid| still_ours(*pid)) {
        if Instant::now() > deadline {
            for pid in pids {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Remove a file that may be gone already.
pub fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
