//! Named network namespaces, made the way `ip netns add` makes them but without forking:
//! a file under /run/netns with the namespace bind-mounted on it.
//! `setns` only moves the calling thread: an entry lasts one synchronous call on the calling
//! thread (`run_in`; qrouter's runtimes are single-threaded, so no other task runs there
//! meanwhile), or a thread of its own, or a child process before it execs.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use anyhow::Context;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

pub(super) const NETNS_DIR: &str = "/run/netns";
const NSFS_MAGIC: i64 = 0x6e73_6673;

pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// The names of the namespaces made here (the files under `/run/netns`).
pub fn names() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect()
}

/// Whether `name` is a live named namespace (the file exists and has a namespace mounted on it).
pub fn exists(name: &str) -> bool {
    nix::sys::statfs::statfs(&path(name)).is_ok_and(|fs| fs.filesystem_type().0 == NSFS_MAGIC)
}

/// Make namespace `name`, its `lo` marked with `mark`, and move the calling thread into it:
/// only for a thread of its own. The name appears only once the mark is there.
pub fn create_here(name: &str, mark: &str) -> anyhow::Result<()> {
    // Once per process: the remount walks every namespace mounted below /run/netns.
    static PREPARED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut prepared = PREPARED.lock().expect("no panic holds it");
    if !*prepared {
        prepare_netns_dir()?;
        *prepared = true;
    }
    drop(prepared);
    unshare(CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("namespace {name}: cannot create it"))?;
    mark_loopback_here(mark).with_context(|| format!("namespace {name}"))?;
    let target = path(name);
    match File::options().write(true).create_new(true).open(&target) {
        // Left by a process killed before it mounted the namespace on it: used as it is.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && !exists(name) => {}
        made => {
            made.with_context(|| format!("namespace {name}: cannot create {}", target.display()))?;
        }
    }
    // /proc/self would name the main thread's namespace: use this thread's.
    let made = mount(
        Some("/proc/thread-self/ns/net"),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    );
    if let Err(e) = made {
        let _ = std::fs::remove_file(&target);
        return Err(e).with_context(|| format!("namespace {name}: cannot create it"));
    }
    Ok(())
}

/// /run/netns must be a shared mount so namespaces made here are seen from other mount
/// namespaces too, as iproute2 does it.
fn prepare_netns_dir() -> anyhow::Result<()> {
    std::fs::create_dir_all(NETNS_DIR).with_context(|| format!("cannot create {NETNS_DIR}"))?;
    let shared = |dir| {
        mount(
            None::<&str>,
            dir,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    if shared(NETNS_DIR).is_err() {
        mount(
            Some(NETNS_DIR),
            NETNS_DIR,
            Some("none"),
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .with_context(|| format!("cannot bind-mount {NETNS_DIR}"))?;
        shared(NETNS_DIR).with_context(|| format!("cannot make {NETNS_DIR} a shared mount"))?;
    }
    Ok(())
}

/// Put `alias` on `lo` of the namespace the calling thread is in, with a socket of its own:
/// a namespace is marked before its name is published, so none is ever seen unmarked.
fn mark_loopback_here(alias: &str) -> anyhow::Result<()> {
    let set = rtnetlink::LinkUnspec::new_with_name("lo")
        .alias(alias)
        .build();
    let msg = rtnetlink::packet_route::RouteNetlinkMessage::SetLink(set);
    super::rawlink::request_here(msg, true)
        .with_context(|| format!("lo: cannot mark it as qrouter's ({alias})"))?;
    Ok(())
}

/// Unmount and remove a named namespace. Links inside should be deleted first: the kernel
/// destroys a namespace lazily, and its veth peers on the host would linger until then.
pub fn delete(name: &str) -> anyhow::Result<()> {
    let target = path(name);
    if exists(name) {
        umount2(&target, MntFlags::MNT_DETACH)
            .with_context(|| format!("namespace {name}: cannot unmount it"))?;
    }
    match std::fs::remove_file(&target) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("namespace {name}: cannot remove {}", target.display()))
        }
        _ => Ok(()),
    }
}

pub fn open(name: &str) -> anyhow::Result<File> {
    File::open(path(name)).with_context(|| format!("namespace {name}: cannot open it"))
}

/// Run `f` on the calling thread entered into namespace `name`, and put the thread back in
/// its own namespace after, `f` panicking or not. What `f` opens is in `name`; the sockets
/// the thread had stay where they were made. A thread of its own per entry had cost a spawn
/// and a join, two per router in a `sync` (2000 of them, 0.27 s of a 1.4 s `sync` of 1000
/// routers under strace); two `setns` cost a few microseconds.
pub fn run_in<T>(name: &str, f: impl FnOnce() -> T) -> anyhow::Result<T> {
    run_in_opened(&open(name)?, name, f)
}

/// `run_in` the namespace `ns`, opened from `name`.
pub fn run_in_opened<T>(ns: &File, name: &str, f: impl FnOnce() -> T) -> anyhow::Result<T> {
    let home =
        File::open("/proc/thread-self/ns/net").context("cannot open this thread's namespace")?;
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("namespace {name}: cannot enter it"))?;
    let _back = Back(home);
    Ok(f())
}

/// Puts the thread back into the namespace it holds when dropped.
struct Back(File);

impl Drop for Back {
    fn drop(&mut self) {
        if setns(self.0.as_fd(), CloneFlags::CLONE_NEWNET).is_err() {
            // Whatever this thread did next would change another namespace than it means to.
            eprintln!("qrouter: cannot return to this thread's own network namespace");
            std::process::abort();
        }
    }
}

/// Spawn `cmd` inside namespace `name`, from a thread that entered it: a child starts in the
/// namespace of the thread that makes it. The thread is not waited for, only its answer: its
/// exit would compete for a CPU with the process it just started (1.6 ms measured).
pub fn spawn_in(name: &str, mut cmd: Command) -> anyhow::Result<Child> {
    let ns = open(name)?;
    let (answer, spawned) = std::sync::mpsc::sync_channel(1);
    std::thread::spawn(move || {
        let child = setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(anyhow::Error::from)
            .and_then(|()| Ok(cmd.spawn()?));
        let _ = answer.send(child);
    });
    spawned
        .recv()
        .expect("the spawning thread answers before it ends")
        .with_context(|| format!("namespace {name}: cannot start a process in it"))
}

/// A command that runs inside namespace `name` (`ip netns exec`); `ns` must stay open until spawned.
pub fn command(ns: &File, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new(program);
    // SAFETY: setns is async-signal-safe, and the fd stays open until the child has exec'd.
    unsafe {
        cmd.pre_exec(move || {
            setns(BorrowedFd::borrow_raw(fd), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
        });
    }
    cmd
}

/// A program qrouter starts from a change (dnsmasq, radvd, a DHCP client) starts with no
/// signal blocked: a change runs with SIGHUP and SIGTERM blocked, and a blocked mask
/// survives exec, so a daemon would never reload nor stop. With `dies_with_us`, a client
/// run in the foreground also gets SIGTERM when qrouter dies (parent-death signal).
pub fn unblocked(cmd: &mut Command, dies_with_us: bool) {
    // SAFETY: prctl and sigprocmask are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if dies_with_us && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&nix::sys::signal::SigSet::empty()),
                None,
            )
            .map_err(io::Error::from)
        });
    }
}

/// Move this single-threaded process into a private network and mount namespace with its own
/// /run (so /run/netns and the xtables lock are private): nothing made afterwards is seen by,
/// or touches, the machine's own network.
/// An ordinary user first gets a user namespace in which it is root, as
/// `unshare --user --map-root-user` makes it (the kernel must allow unprivileged user
/// namespaces); the processes it starts afterwards are root there too.
pub fn enter_sandbox() -> anyhow::Result<()> {
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    let mut flags = CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS;
    if !uid.is_root() {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    unshare(flags).context(if uid.is_root() {
        "cannot make a private network namespace"
    } else {
        "cannot make a private user and network namespace (are unprivileged user namespaces allowed?)"
    })?;
    if !uid.is_root() {
        // setgroups must be denied before an unprivileged process may write its gid map.
        for (file, line) in [
            ("/proc/self/setgroups", "deny".to_string()),
            ("/proc/self/uid_map", format!("0 {uid} 1")),
            ("/proc/self/gid_map", format!("0 {gid} 1")),
        ] {
            std::fs::write(file, line).with_context(|| format!("cannot write {file}"))?;
        }
    }
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    mount(
        Some("qrouter-sandbox"),
        "/run",
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .context("cannot mount a private /run")?;
    Ok(())
}
