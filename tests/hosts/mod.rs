//! Fake hosts for the multi-host tests: each "host" a network + mount namespace of its own
//! (a private /run, so its own /run/netns, xtables lock and qrouter state), joined by an
//! underlay bridge; etcd in a namespace of its own; one `qrouter agent` per host. Every
//! process started here is killed by pid when its owner is dropped, pass or fail, and by the
//! kernel if the test process dies (PR_SET_PDEATHSIG).
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::etcd::EtcdServer;

pub const ETCD_ADDR: &str = "192.168.50.10:23790";
pub const UNDERLAY: &str = "uly";
/// Each host's `--state-dir`, in its private /run.
pub const HOST_STATE_DIR: &str = "/run/qrouter-state";

pub fn url() -> String {
    format!("etcd://{ETCD_ADDR}")
}

pub fn die_with_parent(cmd: &mut Command) {
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// One fake host: a process holding a new network and mount namespace, an underlay veth
/// with `ip`, and its agent.
pub struct Host {
    pub name: String,
    pub ip: String,
    pub role: &'static str,
    holder: Child,
    agent: Option<Child>,
}

impl Host {
    pub fn new(name: &str, ip: &str, role: &'static str) -> Host {
        let mut cmd = Command::new("unshare");
        cmd.args(["--net", "--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs host /run && mkdir -p /run/netns && ip link set lo up && touch /run/ready && exec sleep infinity")
            .stdin(Stdio::null());
        die_with_parent(&mut cmd);
        let holder = cmd.spawn().unwrap();
        let host = Host {
            name: name.into(),
            ip: ip.into(),
            role,
            holder,
            agent: None,
        };
        wait_for(&format!("host {name} ready"), || {
            host.sh("test -e /run/ready").0
        });
        let pid = host.holder.id();
        let veth = format!("u-{name}");
        sh_ok(&format!(
            "ip link add {veth} type veth peer name eth0 netns {pid} && ip link set {veth} master {UNDERLAY} up"
        ));
        host.sh_ok(&format!(
            "ip addr add {ip}/24 dev eth0 && ip link set eth0 up"
        ));
        host
    }

    /// A command inside this host (its network and mount namespaces).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args([
            "-t",
            &self.holder.id().to_string(),
            "--net",
            "--mount",
            program,
        ]);
        cmd
    }

    pub fn sh(&self, script: &str) -> (bool, String) {
        let out = self.command("sh").args(["-c", script]).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    pub fn sh_ok(&self, script: &str) -> String {
        let (ok, out) = self.sh(script);
        assert!(ok, "on {}: `{script}` failed: {out}", self.name);
        out
    }

    pub fn start_agent(&mut self) {
        self.start_agent_with(&[]);
    }

    /// Its agent, with more options.
    pub fn start_agent_with(&mut self, extra: &[&str]) {
        assert!(self.agent.is_none());
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(format!("/run/agent-{}.log", self.name))
            .unwrap();
        let mut cmd = self.command(qrouter_bin().to_str().unwrap());
        cmd.args([
            "agent",
            "--host",
            &self.name,
            "--local-ip",
            &self.ip,
            "--role",
            self.role,
        ])
        .args(match extra.contains(&"--lease-ttl") {
            true => &[][..],
            false => &["--lease-ttl", "3"][..],
        })
        .args(extra)
        .env("QROUTER_STORE", url())
        // The host's own state (dnsmasq's pid files) in its private /run.
        .env("QROUTER_STATE_DIR", HOST_STATE_DIR)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
        die_with_parent(&mut cmd);
        self.agent = Some(cmd.spawn().unwrap());
    }

    /// The host's processes: its namespace holder, its agent and the dnsmasqs it started.
    pub fn pids(&self) -> Vec<u32> {
        std::iter::once(self.holder.id())
            .chain(self.agent.as_ref().map(Child::id))
            .chain(self.dnsmasqs())
            .collect()
    }

    /// The agent's pid.
    pub fn agent_pid(&self) -> u32 {
        self.agent.as_ref().expect("its agent runs").id()
    }

    /// The dnsmasqs the host's agent started, from their pid files.
    pub fn dnsmasqs(&self) -> Vec<u32> {
        let (_, out) = self.sh(&format!("cat {HOST_STATE_DIR}/dhcp/*.pid 2>/dev/null"));
        out.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// SIGTERM, by pid, as systemd stops it; waits for it to exit.
    pub fn stop_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(a.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .unwrap();
            let _ = a.wait();
        }
    }

    /// kill -9, by pid.
    pub fn kill_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill_agent();
        // dnsmasq daemonizes: the sandbox's pid 1, this test, is its parent and reaps it.
        for pid in self.dnsmasqs() {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).is_ok() {
                let _ = nix::sys::wait::waitpid(pid, None);
            }
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Every process the test started is gone (killed and reaped).
pub fn nothing_left(pids: &[u32]) {
    let left: Vec<&u32> = pids
        .iter()
        .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
        .collect();
    assert!(left.is_empty(), "left running: {left:?}");
}

pub fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}\n{}",
            sh("tail -n 30 /run/agent-*.log").1
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait until `count` hosts are registered and alive.
pub fn wait_alive(count: usize) {
    let all_alive = "true\n".repeat(count);
    wait_for(&format!("{count} hosts alive"), || {
        cli(&["host", "list", "-f", "value", "-c", "Alive"]).stdout == all_alive.as_bytes()
    });
}

pub fn cli(args: &[&str]) -> std::process::Output {
    command(args).env("QROUTER_STORE", url()).output().unwrap()
}

pub fn cli_ok(args: &[&str]) -> String {
    succeeded(args, cli(args))
}

pub fn cli_value(args: &[&str], column: &str) -> String {
    let mut all = args.to_vec();
    all.extend(["-f", "value", "-c", column]);
    cli_ok(&all).trim().to_string()
}

/// The underlay bridge and etcd in a namespace of its own on it.
pub fn underlay_and_etcd() -> EtcdServer {
    sh_ok(&format!(
        "ip link add {UNDERLAY} type bridge && ip addr add 192.168.50.1/24 dev {UNDERLAY} && ip link set {UNDERLAY} up \
         && ip netns add etcd && ip link add u-etcd type veth peer name eth0 netns etcd \
         && ip link set u-etcd master {UNDERLAY} up \
         && ip -n etcd addr add 192.168.50.10/24 dev eth0 && ip -n etcd link set eth0 up && ip -n etcd link set lo up"
    ));
    EtcdServer::start_at(ETCD_ADDR, Some("etcd"))
}

/// `ping` from instance `name` on `host` to `dst`.
pub fn pings(host: &Host, instance_id: &str, dst: &str) -> bool {
    host.sh(&format!(
        "ip netns exec qinstance-{instance_id} ping -c 1 -W 1 {dst}"
    ))
    .0
}

pub fn namespaces(host: &Host) -> Vec<String> {
    host.sh_ok("ip netns list | cut -d' ' -f1")
        .lines()
        .map(str::to_string)
        .collect()
}
