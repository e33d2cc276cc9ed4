//! `qrouter demo --hosts`, the HA act: router_ha with a copy on each of two more network
//! hosts (network1 already runs router_100_101, so placement takes the two empty ones), its
//! gateway on an external VXLAN network both reach; an instance on compute1 pings the
//! upstream through SNAT while the master's host crashes (keepalived SIGKILLed, its VRRP
//! process first, its agent killed, its underlay down and the router's namespace gone, as
//! tests/ha.rs does it); the standby takes over, the lost pings counted; the host returns as
//! the standby; and everything of the act is deleted. The waits are those of tests/ha.rs:
//! 20 s for what the agents converge, the failover judged by its lost pings, not its time.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use super::{die_with_parent, in_host, kill_daemons, wait_for, wait_within};
use super::{Demo, HA_PID_FILES, STATE_DIR};
use crate::demo::testbed::PingCount;

/// The two network hosts the HA router's copies run on, and their underlay addresses.
const HOSTS: [(&str, &str); 2] = [("network2", "192.168.50.13"), ("network3", "192.168.50.14")];
/// The upstream on the HA router's external network, an instance on compute1.
const UPSTREAM: &str = "10.10.20.1";
/// The HA router's address on its tenant network, held by the master only.
const INTERFACE: &str = "172.16.120.1";
/// At most this many pings (one every 0.2 s) lost while the standby takes over: 3 s, the
/// issue's bound (tests/ha.rs measured 7-9).
const MOST_LOST: u32 = 15;

/// The act's topology, as an operator types it. No DHCP on its subnets: no dnsmasq on the
/// host that crashes, so what fails over is the router alone.
const BUILD: &[&[&str]] = &[
    &[
        "network",
        "create",
        "ha_ext",
        "--external",
        "--provider-network-type",
        "vxlan",
    ],
    &[
        "subnet",
        "create",
        "ha_ext",
        "--network",
        "ha_ext",
        "--subnet-range",
        "10.10.20.0/24",
        "--gateway",
        UPSTREAM,
        "--no-dhcp",
    ],
    &[
        "instance",
        "create",
        "ha_upstream",
        "--network",
        "ha_ext",
        "--fixed-ip",
        UPSTREAM,
        "--host",
        "compute1",
    ],
    &["network", "create", "ha_web"],
    &[
        "subnet",
        "create",
        "ha_web",
        "--network",
        "ha_web",
        "--subnet-range",
        "172.16.120.0/24",
        "--no-dhcp",
    ],
    &[
        "router",
        "create",
        "router_ha",
        "--ha",
        "--external-gateway",
        "ha_ext",
    ],
    &["router", "add", "subnet", "router_ha", "ha_web"],
    &[
        "instance",
        "create",
        "ha_vm",
        "--network",
        "ha_web",
        "--fixed-ip",
        "172.16.120.3",
        "--host",
        "compute1",
    ],
];

/// The act's objects, deleted at its end.
const TEARDOWN: &[&[&str]] = &[
    &["router", "delete", "router_ha", "--force"],
    &["instance", "delete", "ha_vm"],
    &["instance", "delete", "ha_upstream"],
    &["network", "delete", "ha_web"],
    &["network", "delete", "ha_ext"],
];

/// What the act learns of router_ha once it runs.
struct Router {
    id: String,
    gateway: String,
    vm: String,
    upstream: String,
}

impl Demo {
    pub(super) fn ha_act(&mut self, compute1: u32) -> anyhow::Result<()> {
        println!(
            "\n== HA: router_ha runs a copy on each of two more network hosts; keepalived \
             (VRRP) in each chooses the one that holds its addresses"
        );
        for (name, ip) in HOSTS {
            let pid = self.host(name, ip)?;
            self.agent(pid, name, ip, "network")?;
        }
        wait_for("four agents", || {
            self.quiet(&["host", "list", "-f", "value", "-c", "Alive"])
                .is_ok_and(|o| o == "true\n".repeat(4))
        })?;
        for args in BUILD {
            self.qrouter(args)?;
        }
        let show = self.json(&["router", "show", "router_ha"])?;
        let gateway = &show["external_gateway_info"]["external_fixed_ips"][0]["ip_address"];
        let r = Router {
            id: show["id"].as_str().unwrap_or_default().to_string(),
            gateway: gateway.as_str().unwrap_or_default().to_string(),
            vm: self.json(&["instance", "show", "ha_vm"])?["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            upstream: self.json(&["instance", "show", "ha_upstream"])?["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        };
        let settled = wait_for("one active and one standby copy of router_ha", || {
            let mut states = self.copies().unwrap_or_default();
            states.sort_by(|a, b| a.1.cmp(&b.1));
            let states: Vec<&str> = states.iter().map(|(_, s)| s.as_str()).collect();
            states == ["active", "standby"]
        });
        self.qrouter(&["router", "show", "router_ha"])?;
        let copies = self.copies()?;
        let mut on: Vec<&str> = copies.iter().map(|(h, _)| h.as_str()).collect();
        on.sort();
        self.check(
            "router_ha has a copy on network2 and one on network3: one active, one standby",
            settled.is_ok() && on == ["network2", "network3"],
        );
        let Some(master) = copies
            .iter()
            .find(|(_, s)| s == "active")
            .map(|c| c.0.clone())
        else {
            bail!("router_ha has no active copy: {copies:?}");
        };
        let backup = HOSTS.iter().map(|h| h.0).find(|h| *h != master);
        let backup = backup.context("two copies")?.to_string();
        let (m, b) = (self.host_pid(&master)?, self.host_pid(&backup)?);
        println!(
            "\n(on {master}, then {backup}) $ ip -n qrouter-{} -4 -o addr",
            r.id
        );
        let active = addresses(m, &r.id);
        let standby = addresses(b, &r.id);
        let has = |a: &str, ip: &str| a.contains(&format!(" {ip}/"));
        self.check(
            &format!(
                "keepalived runs in both copies; {master} (active) holds {} and {INTERFACE}, \
                 {backup} (standby) neither",
                r.gateway
            ),
            keepaliveds(m) == 1
                && keepaliveds(b) == 1
                && has(&active, &r.gateway)
                && has(&active, INTERFACE)
                && !has(&standby, &r.gateway)
                && !has(&standby, INTERFACE),
        );

        println!(
            "\n(on compute1) $ ip netns exec qinstance-{} ping -c 1 {UPSTREAM}",
            r.vm
        );
        let reached = wait_for("ha_vm's first ping", || ping(compute1, &r.vm));
        upstream_saw(compute1, &r, &r.gateway);
        let snat = ping(compute1, &r.vm) && upstream_saw(compute1, &r, &r.gateway) == 1;
        self.check(
            &format!(
                "ha_vm on compute1 pings {UPSTREAM} through router_ha's master, which the \
                 upstream sees as {} (SNAT)",
                r.gateway
            ),
            reached.is_ok() && snat,
        );

        self.crash(compute1, &master, &backup, &r)?;
        self.revive(compute1, &master, &backup, &r)?;
        self.ha_teardown()
    }

    /// `master`'s host crashes while ha_vm pings the upstream: `backup` takes over.
    fn crash(
        &mut self,
        compute1: u32,
        master: &str,
        backup: &str,
        r: &Router,
    ) -> anyhow::Result<()> {
        println!(
            "\n== {master} crashes: keepalived and conntrackd SIGKILLed (no VRRP goodbye), its \
             agent killed, its underlay down, router_ha's namespace gone; ha_vm pings \
             {UPSTREAM} every 0.2 s meanwhile"
        );
        let (m, b) = (self.host_pid(master)?, self.host_pid(backup)?);
        let pinger = Pinger::start(compute1, &r.vm, 40)?;
        std::thread::sleep(Duration::from_secs(2));
        let died = Instant::now();
        kill_daemons(m, HA_PID_FILES);
        self.kill_agent(master);
        in_host(
            m,
            &format!("ip link set eth0 down && ip netns del qrouter-{}", r.id),
        )?;
        let took = wait_for("the standby to hold router_ha's addresses", || holds(b, r));
        let took = took.map(|_| died.elapsed());
        let PingCount {
            lost, sent, gap, ..
        } = pinger.lost()?;
        if let Ok(took) = took {
            println!(
                "{backup} held router_ha's addresses {} ms after the crash; {lost} of {sent} \
                 pings lost, none answered for {gap:.1} s",
                took.as_millis()
            );
        }
        if took.is_err() || lost > MOST_LOST {
            // What keepalived made of it on the survivor, for whoever reads the failure.
            let logs =
                format!("tail -n 20 {STATE_DIR}/ha/*/state.log {STATE_DIR}/ha/*/keepalived.log");
            print!("{}", in_host(b, &logs).unwrap_or_default());
        }
        self.check(
            &format!(
                "{backup} took over: it holds router_ha's addresses, {lost} of {sent} pings \
                 lost (at most {MOST_LOST}: 3 s)"
            ),
            took.is_ok() && lost <= MOST_LOST,
        );
        // The dead host's last report stands until its lease (10 s) expires.
        let reported = wait_within(
            &format!("{backup} reported active, alone"),
            Duration::from_secs(30),
            || {
                self.copies()
                    .is_ok_and(|c| c.iter().all(|(h, s)| (h == backup) == (s == "active")))
            },
        );
        self.qrouter(&["router", "show", "router_ha"])?;
        upstream_saw(compute1, r, &r.gateway);
        let snat = ping(compute1, &r.vm) && upstream_saw(compute1, r, &r.gateway) == 1;
        self.check(
            &format!(
                "router show: {backup} active, {master} no longer; ha_vm still reaches \
                 {UPSTREAM} as {}",
                r.gateway
            ),
            reported.is_ok() && snat,
        );
        Ok(())
    }

    /// `host`, crashed, returns: its agent makes its copy again, which stays standby
    /// (`nopreempt`): no second interruption.
    fn revive(
        &mut self,
        compute1: u32,
        host: &str,
        master: &str,
        r: &Router,
    ) -> anyhow::Result<()> {
        println!("\n== {host} returns: its underlay up, its agent started again");
        let pid = self.host_pid(host)?;
        let ip = HOSTS.iter().find(|h| h.0 == host).context("an HA host")?.1;
        let pinger = Pinger::start(compute1, &r.vm, 25)?;
        in_host(pid, "ip link set eth0 up")?;
        self.agent(pid, host, ip, "network")?;
        let standby = wait_for(&format!("{host}'s copy reported standby"), || {
            self.copies()
                .is_ok_and(|c| c.contains(&(host.to_string(), "standby".to_string())))
        });
        let PingCount { lost, sent, .. } = pinger.lost()?;
        self.qrouter(&["router", "show", "router_ha"])?;
        let copies = self.copies().unwrap_or_default();
        self.check(
            &format!(
                "{host}'s copy is back as the standby, {master} still active; {lost} of {sent} \
                 pings lost meanwhile (at most 2)"
            ),
            standby.is_ok()
                && copies.contains(&(master.to_string(), "active".to_string()))
                && lost <= 2,
        );
        Ok(())
    }

    fn ha_teardown(&mut self) -> anyhow::Result<()> {
        println!("\n== The act's router, instances and networks deleted");
        for args in TEARDOWN {
            self.qrouter(args)?;
        }
        let networks = self.quiet(&["network", "list", "-f", "value", "-c", "Name"])?;
        let mut clean = true;
        for (name, _) in HOSTS {
            let pid = self.host_pid(name)?;
            let gone = wait_for(&format!("nothing of router_ha left on {name}"), || {
                let links = in_host(pid, "ip -o link show").unwrap_or_default();
                let namespaces = in_host(pid, "ip netns list").unwrap_or_default();
                keepaliveds(pid) == 0
                    && !links.contains(" tha")
                    && !links.contains(" ha-")
                    && !namespaces.contains("qrouter-")
            });
            clean &= gone.is_ok();
        }
        self.check(
            "router_ha deleted: no keepalived, conntrackd, ha- device or router namespace on \
             network2 and network3, no HA network in the store",
            clean && !networks.contains("ha-network"),
        );
        Ok(())
    }

    /// Each copy of router_ha: its host and its HA state, as `router show` lists them.
    fn copies(&self) -> anyhow::Result<Vec<(String, String)>> {
        let show = self.json(&["router", "show", "router_ha"])?;
        let copies = show["ha_copies"].as_array().cloned().unwrap_or_default();
        Ok(copies
            .iter()
            .map(|c| {
                let field = |k: &str| c[k].as_str().unwrap_or("none").to_string();
                (field("host"), field("ha_state"))
            })
            .collect())
    }

    /// `qrouter ARGS -f json`, quietly.
    fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let out = self.quiet(&[args, &["-f", "json"]].concat())?;
        serde_json::from_str(&out).context("qrouter printed invalid JSON")
    }

    fn host_pid(&self, name: &str) -> anyhow::Result<u32> {
        let found = self.hosts.iter().find(|(h, _)| h == name);
        found.map(|(_, pid)| *pid).context("no such host")
    }
}

/// The IPv4 addresses of router `id`'s namespace on a host, "dev address/prefix" a line.
fn addresses(host: u32, id: &str) -> String {
    let script = format!("ip -n qrouter-{id} -4 -o addr show | awk '{{print $2, $4}}'");
    let out = in_host(host, &script).unwrap_or_default();
    print!("{out}");
    out
}

/// Whether the copy on a host holds the router's gateway and interface addresses.
fn holds(host: u32, r: &Router) -> bool {
    let script = format!("ip -n qrouter-{} -4 -o addr show", r.id);
    let out = in_host(host, &script).unwrap_or_default();
    out.contains(&format!(" {}/", r.gateway)) && out.contains(&format!(" {INTERFACE}/"))
}

/// How many keepalived VRRP processes of HA router copies run on a host (by pid file).
fn keepaliveds(host: u32) -> usize {
    let script = format!(
        "for f in {STATE_DIR}/ha/*/vrrp.pid; do kill -0 $(cat $f) 2>/dev/null && echo $f; done; true"
    );
    in_host(host, &script).unwrap_or_default().lines().count()
}

/// One ping from ha_vm (instance `vm`, on compute1) to the upstream.
fn ping(compute1: u32, vm: &str) -> bool {
    let script = format!("ip netns exec qinstance-{vm} ping -c 1 -W 1 {UPSTREAM}");
    in_host(compute1, &script).is_ok()
}

/// How many ICMP packets from `src` the upstream (on compute1) received since the last call:
/// a counting rule in its namespace's raw table.
fn upstream_saw(compute1: u32, r: &Router, src: &str) -> u64 {
    let ns = format!("qinstance-{}", r.upstream);
    let rule = format!("PREROUTING -s {src} -p icmp -j ACCEPT");
    let script = format!(
        "ip netns exec {ns} iptables -t raw -C {rule} 2>/dev/null \
         || ip netns exec {ns} iptables -t raw -I {rule}; \
         ip netns exec {ns} iptables -t raw -L PREROUTING 1 -v -x -n -Z"
    );
    let out = in_host(compute1, &script).unwrap_or_default();
    let packets = out.split_whitespace().next().and_then(|n| n.parse().ok());
    packets.unwrap_or(0)
}

/// Pings from ha_vm to the upstream, one every 0.2 s, each waited for 1 s, counted.
struct Pinger(Child);

impl Pinger {
    fn start(compute1: u32, vm: &str, count: u32) -> anyhow::Result<Pinger> {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &compute1.to_string(), "--net", "--mount", "ip"])
            .args(["netns", "exec", &format!("qinstance-{vm}")])
            .args(["ping", "-D", "-n", "-i", "0.2", "-W", "1"])
            .args(["-c", &count.to_string()])
            .arg(UPSTREAM)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        Ok(Pinger(cmd.spawn().context("ping")?))
    }

    /// Wait for the last reply, and count.
    fn lost(self) -> anyhow::Result<PingCount> {
        let out = self.0.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(count) = crate::demo::testbed::count_pings(&text) else {
            bail!("ping printed no summary: {text}");
        };
        Ok(count)
    }
}
