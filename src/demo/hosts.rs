//! `qrouter demo --hosts`: the seed scenario across hosts, in a private sandbox. Each "host"
//! is a network + mount namespace of its own (its own /run/netns), on an underlay bridge;
//! etcd runs in a namespace of its own; one `qrouter agent` per host; the CLI from the
//! sandbox. network1 runs router_100_101, the networks' dnsmasqs and the upstream 10.10.10.1
//! on br-ex; cirros-vm3 runs on compute1 and takes 172.16.101.3 by DHCP from network1;
//! vlan100 and vlan101 are VXLAN segments. Then an HA router across two more network hosts,
//! whose master's host crashes (`ha.rs`). Every process it starts is killed when it ends
//! (and by the kernel if it dies first), and so are the daemons its agents started.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::kernel::{self, netns};

mod ha;

const ETCD: &str = "192.168.50.10:23790";

struct Demo {
    exe: PathBuf,
    children: Vec<Child>,
    /// Each host's name and the pid holding its namespaces.
    hosts: Vec<(String, u32)>,
    /// Each host's agent: the host's name and the agent's pid (its child in `children`).
    agents: Vec<(String, u32)>,
    passed: usize,
    failed: usize,
}

/// Each host's `--state-dir` (the daemons' pid files), in its private /run.
const STATE_DIR: &str = "/run/qrouter-state";

/// The pid files of the daemons an agent starts for HA router copies, under its
/// `STATE_DIR`: keepalived's VRRP process before its parent (a parent that dies first makes
/// its child hand over cleanly, no crash).
const HA_PID_FILES: &[&str] = &[
    "ha/*/conntrackd.pid",
    "ha/*/vrrp.pid",
    "ha/*/keepalived.pid",
];

/// kill -9 the daemons whose pid files on the host holding `pid`'s namespaces match
/// `patterns` (under `STATE_DIR`), in that order.
fn kill_daemons(host: u32, patterns: &[&str]) {
    for pattern in patterns {
        let pids = in_host(
            host,
            &format!("cat {STATE_DIR}/{pattern} 2>/dev/null; true"),
        );
        for pid in pids.unwrap_or_default().split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // The dnsmasqs, keepaliveds and conntrackds the agents started are daemons, no
        // children of ours: by their pid files.
        for (_, host) in &self.hosts {
            kill_daemons(*host, &["dhcp/*.pid"]);
            kill_daemons(*host, HA_PID_FILES);
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn run() -> i32 {
    let setup = netns::enter_sandbox().and_then(|_| kernel::preflight());
    if let Err(err) = setup {
        eprintln!("qrouter demo --hosts: {err:#}");
        return 1;
    }
    let mut demo = Demo {
        exe: std::env::current_exe().expect("own executable"),
        children: vec![],
        hosts: vec![],
        agents: vec![],
        passed: 0,
        failed: 0,
    };
    if let Err(err) = demo.scenario() {
        eprintln!("qrouter demo --hosts: {err:#}");
        demo.failed += 1;
    }
    println!("\n{} passed, {} failed", demo.passed, demo.failed);
    i32::from(demo.failed > 0)
}

fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

fn sh(script: &str) -> anyhow::Result<String> {
    let out = Command::new("sh").args(["-c", script]).output()?;
    if !out.status.success() {
        bail!(
            "`{script}`: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Demo {
    fn spawn(&mut self, mut cmd: Command) -> anyhow::Result<u32> {
        die_with_parent(&mut cmd);
        let child = cmd.stdin(Stdio::null()).spawn()?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// A host: a process holding a new network and mount namespace; returns its pid.
    fn host(&mut self, name: &str, ip: &str) -> anyhow::Result<u32> {
        let mut cmd = Command::new("unshare");
        cmd.args(["--net", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                "mount -t tmpfs host /run && mkdir -p /run/netns && ip link set lo up \
             && touch /run/ready && exec sleep infinity",
            );
        let pid = self.spawn(cmd)?;
        self.hosts.push((name.to_string(), pid));
        wait_for(&format!("host {name}"), || {
            in_host(pid, "test -e /run/ready").is_ok()
        })?;
        sh(&format!(
            "ip link add u-{name} type veth peer name eth0 netns {pid} && ip link set u-{name} master uly up"
        ))?;
        in_host(
            pid,
            &format!("ip addr add {ip}/24 dev eth0 && ip link set eth0 up"),
        )?;
        println!("host {name}: its own network and mount namespace, {ip} on the underlay");
        Ok(pid)
    }

    fn agent(&mut self, pid: u32, name: &str, ip: &str, role: &str) -> anyhow::Result<()> {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &pid.to_string(), "--net", "--mount"])
            .arg(&self.exe)
            .args(["agent", "--host", name, "--local-ip", ip, "--role", role])
            .env("QROUTER_STORE", format!("etcd://{ETCD}"))
            .env("QROUTER_STATE_DIR", STATE_DIR)
            .stdout(Stdio::null());
        let log = format!("/run/agent-{name}.log");
        cmd.stderr(
            std::fs::File::options()
                .create(true)
                .append(true)
                .open(log)?,
        );
        let agent = self.spawn(cmd)?;
        self.agents.push((name.to_string(), agent));
        println!("$ qrouter agent --host {name} --local-ip {ip} --role {role}   (on {name})");
        Ok(())
    }

    fn qrouter(&self, args: &[&str]) -> anyhow::Result<String> {
        println!("\n$ qrouter {}", args.join(" "));
        let out = Command::new(&self.exe)
            .args(args)
            .env("QROUTER_STORE", format!("etcd://{ETCD}"))
            .stdin(Stdio::null())
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{text}");
        if !out.status.success() {
            bail!(
                "'qrouter {}' failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(text)
    }

    fn check(&mut self, what: &str, ok: bool) {
        println!("{} {what}", if ok { "PASS" } else { "FAIL" });
        match ok {
            true => self.passed += 1,
            false => self.failed += 1,
        }
    }

    fn scenario(&mut self) -> anyhow::Result<()> {
        if kernel::find_program("etcd").is_none() {
            bail!("etcd is not installed (apt-get install etcd-server)");
        }
        sh("ip link set lo up && ip link add uly type bridge && ip addr add 192.168.50.1/24 dev uly && ip link set uly up \
            && ip netns add etcd && ip link add u-etcd type veth peer name eth0 netns etcd \
            && ip link set u-etcd master uly up && ip -n etcd addr add 192.168.50.10/24 dev eth0 \
            && ip -n etcd link set eth0 up && ip -n etcd link set lo up")?;
        let mut etcd = Command::new("ip");
        etcd.args([
            "netns",
            "exec",
            "etcd",
            "etcd",
            "--data-dir",
            "/run/etcd-demo",
        ])
        .arg(format!("--listen-client-urls=http://{ETCD}"))
        .arg(format!("--advertise-client-urls=http://{ETCD}"))
        .arg("--listen-peer-urls=http://127.0.0.1:23791")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        self.spawn(etcd)?;
        println!("etcd at {ETCD}, in a namespace of its own");
        wait_for("etcd", || {
            crate::store::etcd::client::Client::new(ETCD)
                .and_then(|mut c| c.get("/qrouter/meta/id"))
                .is_ok()
        })?;
        let network1 = self.host("network1", "192.168.50.11")?;
        let compute1 = self.host("compute1", "192.168.50.12")?;
        self.agent(network1, "network1", "192.168.50.11", "all")?;
        self.agent(compute1, "compute1", "192.168.50.12", "compute")?;
        wait_for("both agents", || {
            self.quiet(&["host", "list", "-f", "value", "-c", "Alive"])
                .is_ok_and(|o| o == "true\ntrue\n")
        })?;
        let seed = super::testbed::seed_across_hosts();
        let steps = seed.iter().map(Vec::as_slice);
        for args in steps.chain([super::testbed::SET_GATEWAY, &["host", "list"][..]]) {
            self.qrouter(args)?;
        }
        let vm3 = self.quiet(&["instance", "show", "cirros-vm3", "-f", "value", "-c", "id"])?;
        let ns = format!("qinstance-{}", vm3.trim());
        let lease = format!("/run/qrouter/udhcpc/{}.lease", vm3.trim());
        println!("\n(on compute1) $ cat {lease}");
        let got = in_host(compute1, &format!("cat {lease}")).unwrap_or_default();
        print!("{got}");
        self.check(
            "cirros-vm3 on compute1 got 172.16.101.3 by DHCP from vlan101's dnsmasq on network1",
            got.contains("address=172.16.101.3/24") && got.contains("server=172.16.101.2"),
        );
        println!("\n(on compute1) $ ip netns exec {ns} ping -c 1 10.10.10.1");
        let ping = wait_for("the first ping", || {
            in_host(
                compute1,
                &format!("ip netns exec {ns} ping -c 1 -W 1 10.10.10.1"),
            )
            .is_ok()
        });
        self.check(
            "cirros-vm3 on compute1 pings 10.10.10.1 through router_100_101 on network1",
            ping.is_ok(),
        );
        println!("\n(on compute1) $ ip netns exec {ns} traceroute -n -q 1 10.10.10.1");
        let trace = in_host(
            compute1,
            &format!("ip netns exec {ns} traceroute -n -q 1 -w 1 10.10.10.1"),
        )
        .unwrap_or_default();
        print!("{trace}");
        let hops: Vec<&str> = trace.lines().skip(1).collect();
        self.check(
            "two hops: 172.16.101.1 (qr- on network1), then 10.10.10.1",
            hops.len() == 2 && hops[0].contains("172.16.101.1") && hops[1].contains("10.10.10.1"),
        );
        println!("\n(on compute1) $ bridge fdb show dev vxlan-2");
        let fdb = in_host(compute1, "bridge fdb show dev vxlan-2").unwrap_or_default();
        print!("{fdb}");
        self.check(
            "vxlan-2 floods to network1's VTEP 192.168.50.11",
            fdb.contains("00:00:00:00:00:00 dst 192.168.50.11"),
        );
        self.qrouter(&["host", "show", "compute1"])?;
        self.ha_act(compute1)
    }

    /// kill -9 the agent of host `name`, as a crash would, and reap it.
    fn kill_agent(&mut self, name: &str) {
        let Some(at) = self.agents.iter().position(|(h, _)| h == name) else {
            return;
        };
        let (_, pid) = self.agents.remove(at);
        if let Some(at) = self.children.iter().position(|c| c.id() == pid) {
            let mut agent = self.children.remove(at);
            let _ = agent.kill();
            let _ = agent.wait();
        }
    }

    fn quiet(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.exe)
            .args(args)
            .env("QROUTER_STORE", format!("etcd://{ETCD}"))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!("'qrouter {}' failed", args.join(" "));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn in_host(pid: u32, script: &str) -> anyhow::Result<String> {
    let out = Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "--net",
            "--mount",
            "sh",
            "-c",
            script,
        ])
        .output()
        .context("nsenter (util-linux)")?;
    if !out.status.success() {
        bail!("`{script}` failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_for(what: &str, ok: impl FnMut() -> bool) -> anyhow::Result<()> {
    wait_within(what, Duration::from_secs(20), ok)
}

fn wait_within(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while !ok() {
        if start.elapsed() > limit {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
