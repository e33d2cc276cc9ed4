//! Fake hosts for the multi-host tests: each "host" a network + mount namespace of its own
//! (a private /run, so its own /run/netns, xtables lock and qrouter state), joined by an
//! underlay bridge; etcd in a namespace of its own; one `qrouter agent` per host. Every
//! process started here is killed by pid when its owner is dropped, pass or fail, and by the
//! kernel if the test process dies (PR_SET_PDEATHSIG).
//!
//! `MultiHost` is the rig in one value: the underlay, etcd, the hosts and their agents.
//! Commands go through `tests/common`'s `ok`, `json`, `value` and `qrouter`, which it points
//! at its etcd (QROUTER_STORE in the test's own process, alone in its sandbox). It all runs
//! as an ordinary user too: the namespaces the test makes belong to the sandbox's user
//! namespace, in which the test is root, so it may enter them.
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

    /// The host's processes: its namespace holder, its agent and the daemons it started.
    pub fn pids(&self) -> Vec<u32> {
        std::iter::once(self.holder.id())
            .chain(self.agent.as_ref().map(Child::id))
            .chain(self.dnsmasqs())
            .chain(self.keepaliveds().into_iter().flat_map(|(c, p)| [c, p]))
            .chain(self.conntrackds())
            .collect()
    }

    /// The conntrackd of each HA router copy here, from its pid files.
    pub fn conntrackds(&self) -> Vec<u32> {
        let (_, out) = self.sh(&format!(
            "cat {HOST_STATE_DIR}/ha/*/conntrackd.pid 2>/dev/null"
        ));
        out.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// The keepalived of each HA router copy here, from its pid files: (its VRRP child,
    /// its parent).
    pub fn keepaliveds(&self) -> Vec<(u32, u32)> {
        let (_, out) = self.sh(&format!(
            "for d in {HOST_STATE_DIR}/ha/*/; do echo $(cat $d/vrrp.pid) $(cat $d/keepalived.pid); done 2>/dev/null"
        ));
        out.lines()
            .filter_map(|l| {
                let mut pids = l.split_whitespace().filter_map(|p| p.parse().ok());
                Some((pids.next()?, pids.next()?))
            })
            .collect()
    }

    /// kill -9 every conntrackd and keepalived here, keepalived's VRRP child first (a
    /// parent that dies first makes its child say goodbye: a clean hand-over, not a
    /// crash), and reap them: daemons, they are children of the sandbox's pid 1, this
    /// test, once their parent is gone.
    pub fn kill_keepaliveds(&self) {
        for pid in self.conntrackds() {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        for (child, parent) in self.keepaliveds() {
            for pid in [child, parent] {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            for pid in [parent, child] {
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
            }
        }
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
        self.kill_keepaliveds();
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
        qrouter(&["host", "list", "-f", "value", "-c", "Alive"]).stdout == all_alive.as_bytes()
    });
}

/// The rig: the underlay, etcd on it, and the hosts, each with its agent once started.
pub struct MultiHost {
    pub hosts: Vec<Host>,
    pub etcd: EtcdServer,
}

impl MultiHost {
    /// The underlay, etcd, and `hosts` as (name, underlay address, role), their agents not
    /// started yet; the commands of `tests/common` go to this etcd from now on.
    pub fn new(hosts: &[(&str, &str, &'static str)]) -> MultiHost {
        let etcd = underlay_and_etcd();
        // The test runs alone in its process (its sandbox): nothing else reads the
        // environment meanwhile.
        std::env::set_var("QROUTER_STORE", url());
        let hosts = hosts
            .iter()
            .map(|(name, ip, role)| Host::new(name, ip, role))
            .collect();
        MultiHost { hosts, etcd }
    }

    /// `new`, with every host's agent started (with `extra` options) and alive.
    pub fn started(hosts: &[(&str, &str, &'static str)], extra: &[&str]) -> MultiHost {
        let mut rig = MultiHost::new(hosts);
        rig.hosts.iter_mut().for_each(|h| h.start_agent_with(extra));
        wait_alive(rig.hosts.len());
        rig
    }

    pub fn host(&self, name: &str) -> &Host {
        let found = self.hosts.iter().find(|h| h.name == name);
        found.unwrap_or_else(|| panic!("no host {name} in the rig"))
    }

    pub fn host_mut(&mut self, name: &str) -> &mut Host {
        let found = self.hosts.iter_mut().find(|h| h.name == name);
        found.unwrap_or_else(|| panic!("no host {name} in the rig"))
    }

    /// Write `value` under `key` in etcd behind qrouter's back, as anyone who can write one
    /// key could.
    pub fn put_raw(&self, key: &str, value: &[u8]) {
        let mut client = qrouter::store::etcd::client::Client::new(&self.etcd.addr).unwrap();
        client.put(key, value, 0).unwrap();
    }

    /// What etcd holds under `key`, read behind qrouter's back.
    pub fn get_raw(&self, key: &str) -> Option<Vec<u8>> {
        let mut client = qrouter::store::etcd::client::Client::new(&self.etcd.addr).unwrap();
        client.get(key).unwrap().map(|kv| kv.value)
    }

    /// Stop everything, and check that no process the test started is left.
    pub fn finish(self) {
        let pids: Vec<u32> = (self.hosts.iter().flat_map(Host::pids))
            .chain(self.etcd.pid())
            .collect();
        drop(self);
        nothing_left(&pids);
    }
}

/// A continuous ping from an instance, counted: one every 0.2 s, each waited for 1 s.
pub struct Pinger {
    child: Child,
    what: String,
}

impl Pinger {
    /// `count` pings from instance `instance_id` on `host` to `dst`.
    pub fn start(host: &Host, instance_id: &str, dst: &str, count: u32) -> Pinger {
        let ns = format!("qinstance-{instance_id}");
        let mut cmd = host.command("ip");
        cmd.args([
            "netns", "exec", &ns, "ping", "-D", "-n", "-i", "0.2", "-W", "1",
        ])
        .args(["-c", &count.to_string(), dst])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        Pinger {
            child: cmd.spawn().unwrap(),
            what: format!("{ns} on {} to {dst}", host.name),
        }
    }

    /// Wait for the last reply: how many were lost of how many sent.
    pub fn lost(self) -> (u32, u32) {
        let out = self.child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let count = testbed::count_pings(&text)
            .unwrap_or_else(|| panic!("ping {}: no summary in {text}", self.what));
        println!(
            "ping {}: {}/{} answered, longest gap {:.2} s",
            self.what,
            count.sent - count.lost,
            count.sent,
            count.gap,
        );
        (count.lost, count.sent)
    }
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

/// A tenant network `web` on `cidr`; the external network `ext_net`, a VXLAN segment too,
/// so a router may run on any network host, with 10.10.10.0/24; and the upstream on it, an
/// instance at 10.10.10.1.
pub fn web_and_upstream(cidr: &str) {
    ok(&["network", "create", "web"]);
    ok(&[
        "subnet",
        "create",
        "web",
        "--network",
        "web",
        "--subnet-range",
        cidr,
    ]);
    let vxlan = ["--provider-network-type", "vxlan"];
    ok(&[
        "network",
        "create",
        "ext_net",
        "--external",
        vxlan[0],
        vxlan[1],
    ]);
    let range = ["--subnet-range", "10.10.10.0/24", "--gateway", "10.10.10.1"];
    ok(&[
        &["subnet", "create", "ext", "--network", "ext_net"][..],
        &range,
    ]
    .concat());
    let upstream = ["instance", "create", "upstream", "--network", "ext_net"];
    ok(&[&upstream[..], &["--fixed-ip", "10.10.10.1"]].concat());
}

/// `ping` from instance `name` on `host` to `dst`.
pub fn pings(host: &Host, instance_id: &str, dst: &str) -> bool {
    host.sh(&format!(
        "ip netns exec qinstance-{instance_id} ping -c 1 -W 1 {dst}"
    ))
    .0
}

/// How many VXLAN frames from `from` (an underlay address) reach `host` carrying an ICMP
/// echo request (from and to the `inner` addresses, when given) while `traffic` runs:
/// counted by a rule of the host's own raw table (u32 matches on the inner frame), which
/// works as an ordinary user, where tcpdump cannot drop its privileges.
pub fn vxlan_echoes(
    host: &Host,
    from: &str,
    inner: Option<(&str, &str)>,
    traffic: impl FnOnce(),
) -> u64 {
    // Offsets from the outer IPv4 header: UDP at 20, VXLAN at 28, the inner Ethernet at
    // 36 (its type at 48), the inner IPv4 at 50 (protocol at 59, addresses at 62 and 66),
    // its ICMP type at 70.
    let mut u32 = "46&0xFFFF=0x0800 && 56&0xFF=0x1 && 67&0xFF=0x8".to_string();
    if let Some((src, dst)) = inner {
        let hex = |ip: &str| {
            format!(
                "0x{:08x}",
                u32::from(ip.parse::<std::net::Ipv4Addr>().unwrap())
            )
        };
        u32 += &format!(" && 62={} && 66={}", hex(src), hex(dst));
    }
    let rule = format!("PREROUTING -s {from} -p udp --dport 4789 -m u32 --u32 \"{u32}\" -j ACCEPT");
    host.sh_ok(&format!("iptables -t raw -I {rule}"));
    traffic();
    let counted = host.sh_ok("iptables -t raw -L PREROUTING 1 -v -x -n");
    host.sh_ok(&format!("iptables -t raw -D {rule}"));
    counted.split_whitespace().next().unwrap().parse().unwrap()
}

pub fn namespaces(host: &Host) -> Vec<String> {
    host.sh_ok("ip netns list | cut -d' ' -f1")
        .lines()
        .map(str::to_string)
        .collect()
}
