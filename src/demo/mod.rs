//! `qrouter demo`: the seed scenario (README.md, "The seed scenario, worked") end to end, in a private
//! network + mount namespace this process makes for itself. Every step runs the real CLI;
//! every check uses real traffic or reads the kernel; everything is torn down at the end.
//! The sandbox and what works in it as an ordinary user: docs/kernel.md, "Sandboxes".

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::kernel::{self, addr, link, netns, route, Kernel};
use testbed::Filter;

pub mod hosts;
mod ipv6;
// The seed's steps, probe and capture; the integration tests include the same file.
pub(crate) mod testbed;

const STATE_DIR: &str = "/run/qrouter-demo";

struct Demo {
    exe: PathBuf,
    passed: usize,
    failed: usize,
}

pub fn run() -> i32 {
    // The sandbox first: an ordinary user has CAP_NET_ADMIN only in the one it makes.
    let setup = netns::enter_sandbox().and_then(|_| kernel::preflight());
    if let Err(err) = setup {
        eprintln!("qrouter demo: {err:#}");
        return 1;
    }
    let mut demo = Demo {
        exe: std::env::current_exe().expect("own executable"),
        passed: 0,
        failed: 0,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(err) = runtime.block_on(demo.scenario()) {
        eprintln!("qrouter demo: {err:#}");
        demo.failed += 1;
    }
    println!("\n{} passed, {} failed", demo.passed, demo.failed);
    i32::from(demo.failed > 0)
}

impl Demo {
    /// Run `qrouter ARGS` as an operator would, showing the command and its output.
    fn step(&self, args: &[&str]) -> anyhow::Result<()> {
        println!("\n$ qrouter {}", args.join(" "));
        std::io::stdout().flush()?;
        let status = self.qrouter(args).status()?;
        if !status.success() {
            bail!("'qrouter {}' failed", args.join(" "));
        }
        Ok(())
    }

    /// Run `qrouter ARGS -f json` quietly and parse what it prints.
    fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let out = self
            .qrouter(args)
            .args(["-f", "json"])
            .stderr(Stdio::inherit())
            .output()?;
        if !out.status.success() {
            bail!("'qrouter {}' failed", args.join(" "));
        }
        serde_json::from_slice(&out.stdout).context("qrouter printed invalid JSON")
    }

    fn output(&self, args: &[&str]) -> anyhow::Result<(bool, String)> {
        println!("\n$ qrouter {}", args.join(" "));
        let out = self.qrouter(args).stderr(Stdio::inherit()).output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{text}");
        Ok((out.status.success(), text))
    }

    fn qrouter(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args(args).env("QROUTER_STATE_DIR", STATE_DIR);
        cmd
    }

    fn check(&mut self, what: &str, ok: bool) {
        if ok {
            self.passed += 1;
            println!("PASS  {what}");
        } else {
            self.failed += 1;
            println!("FAIL  {what}");
        }
    }

    async fn scenario(&mut self) -> anyhow::Result<()> {
        println!(
            "== The seed topology: two tenant networks, an external network, a router, an instance"
        );
        for args in testbed::seed_with_dhcp() {
            self.step(args)?;
        }

        println!("\n== cirros-vm3 took its address by DHCP, as the article's VM did");
        self.step(&["instance", "show", "cirros-vm3"])?;
        let vm3 = self.json(&["instance", "show", "cirros-vm3"])?;
        let lease = &vm3["dhcp_lease"];
        let vm_ns = vm3["namespace"].as_str().unwrap_or_default().to_string();
        let mut k = Kernel::connect()?;
        let held = addr::list(&k.ns(&vm_ns)?).await?;
        self.check(
            "cirros-vm3's DHCP client got 172.16.101.3/24, gateway 172.16.101.1 and DNS server \
             172.16.101.2 from vlan101's dnsmasq, and eth0 holds the address",
            lease["address"] == "172.16.101.3/24"
                && lease["router"] == "172.16.101.1"
                && lease["dns"] == "172.16.101.2"
                && held
                    .iter()
                    .any(|a| a.net == "172.16.101.3/24".parse::<ipnet::IpNet>().unwrap()),
        );

        println!("\n== Step 1: set the router's gateway on ext_net");
        self.step(testbed::SET_GATEWAY)?;
        self.step(&["router", "show", "router_100_101"])?;
        let show = self.json(&["router", "show", "router_100_101"])?;
        let ifaces = show["interfaces_live"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let gw = ifaces
            .iter()
            .find(|i| i["Type"] == "external gateway")
            .cloned()
            .unwrap_or_default();
        let qg = gw["Device"].as_str().unwrap_or_default().to_string();
        let tap = gw["Host Tap"].as_str().unwrap_or_default().to_string();
        let has = |v: &Value, s: &str| v.as_array().is_some_and(|a| a.iter().any(|x| x == s));
        self.check(
            "step 2: the router has an interface holding 10.10.10.2",
            has(&gw["Fixed IPs"], "10.10.10.2/24"),
        );

        let host_links = link::list(k.host()).await?;
        let br_ex = host_links
            .iter()
            .find(|l| l.name == "br-ex")
            .map(|l| l.index);
        let tap_master = host_links
            .iter()
            .find(|l| l.name == tap)
            .and_then(|l| l.controller);
        self.check(
            &format!("step 3: the host's br-ex has the tap device {tap}"),
            br_ex.is_some() && tap_master == br_ex,
        );
        self.check(
            &format!(
                "step 4: its peer {qg} in {} holds 10.10.10.2",
                show["namespace"].as_str().unwrap_or_default()
            ),
            qg.starts_with("qg-") && qg[3..] == tap[3..] && gw["Kernel"] == "ok",
        );
        let routes = show["routes_live"].as_array().cloned().unwrap_or_default();
        let default = routes.iter().any(|r| {
            r["Destination"] == "default"
                && r["Gateway"] == "10.10.10.1"
                && r["Device"] == qg.as_str()
        });
        self.check(
            "step 5: the router's default route is via 10.10.10.1",
            default,
        );
        let nets: Vec<&str> = ifaces
            .iter()
            .filter_map(|i| i["Network"].as_str())
            .collect();
        self.check(
            "step 6: the router is connected to vlan100, vlan101 and ext_net",
            ["vlan100", "vlan101", "ext_net"]
                .iter()
                .all(|n| nets.contains(n)),
        );

        println!("\n== The topology, as Horizon draws it");
        let (drawn, topology) = self.output(&["topology"])?;
        self.check(
            "topology: router_100_101 on ext_net with its gateway 10.10.10.2, cirros-vm3 at \
             172.16.101.3 on vlan101",
            drawn
                && ["ext_net", "vlan101", "router router_100_101", "10.10.10.2"]
                    .iter()
                    .all(|s| topology.contains(s))
                && topology
                    .lines()
                    .any(|l| l.contains("instance cirros-vm3") && l.contains("172.16.101.3")),
        );

        println!("\n== Step 7: from cirros-vm3, ping and traceroute 10.10.10.1");
        let (ping, _) = self.output(&[
            "instance",
            "exec",
            "cirros-vm3",
            "--",
            "ping",
            "-c",
            "2",
            "-W",
            "1",
            "10.10.10.1",
        ])?;
        self.check("step 7: cirros-vm3 pings 10.10.10.1", ping);
        let (_, trace) = self.output(&[
            "instance",
            "exec",
            "cirros-vm3",
            "--",
            "traceroute",
            "-n",
            "-q",
            "1",
            "-w",
            "1",
            "10.10.10.1",
        ])?;
        let hops: Vec<&str> = trace
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        self.check(
            "step 7: traceroute shows 172.16.101.1, then 10.10.10.1",
            hops == ["172.16.101.1", "10.10.10.1"],
        );

        let snat = format!("-A qrouter-snat -o {qg} -j SNAT --to-source 10.10.10.2 --random-fully");
        println!("\n== Step 7, explained: the path hop by hop");
        self.output(&["trace", "cirros-vm3", "10.10.10.1"])?;
        let t = self.json(&["trace", "cirros-vm3", "10.10.10.1"])?;
        let hops = t["hops"].as_array().cloned().unwrap_or_default();
        let names: Vec<&str> = hops
            .iter()
            .filter_map(|h| h["node"]["name"].as_str())
            .collect();
        self.check(
            &format!(
                "trace: cirros-vm3 -> router_100_101 -> upstream, SNAT'ed to 10.10.10.2 by '{snat}'"
            ),
            t["outcome"] == "delivered"
                && names == ["cirros-vm3", "router_100_101", "upstream"]
                && has_rule(&hops[1], &snat)
                && hops[1]["leaves"]["src"] == "10.10.10.2",
        );

        println!("\n== Step 8: the SNAT rule in the router's namespace");
        let nat = show["nat"].as_array().cloned().unwrap_or_default();
        self.check(
            &format!("step 8: iptables -t nat shows '{snat}'"),
            nat.iter().any(|r| r["Rule"] == snat.as_str()),
        );

        println!(
            "\n== Step 9: tcpdump on both sides of the router while cirros-vm3 pings 10.10.10.1"
        );
        let router_ns = show["namespace"].as_str().unwrap_or_default().to_string();
        let qr = ifaces
            .iter()
            .find(|i| i["Network"] == "vlan101")
            .and_then(|i| i["Device"].as_str())
            .unwrap_or_default()
            .to_string();
        let ping = || {
            let _ = self.qrouter(testbed::VM3_PINGS_UPSTREAM).output();
        };
        let inside = testbed::capture(&router_ns, &qr, Filter::Icmp, ping)?;
        let outside = testbed::capture(&router_ns, &qg, Filter::Icmp, ping)?;
        println!("tcpdump -i {qr}: {inside}\ntcpdump -i {qg}: {outside}");
        self.check(
            &format!("step 9: on {qr} the ICMP request comes from 172.16.101.3"),
            inside.contains("172.16.101.3 > 10.10.10.1"),
        );
        self.check(
            &format!("step 9: on {qg} it comes from 10.10.10.2"),
            outside.contains("10.10.10.2 > 10.10.10.1"),
        );
        let up_ns = self.json(&["instance", "show", "upstream"])?["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let seen = testbed::tcp_probe(&up_ns, "10.10.10.1:8080", &vm_ns)?;
        println!("a TCP connection from cirros-vm3 to 10.10.10.1:8080 arrives from {seen:?}");
        self.check(
            "step 8: the upstream side sees the connection from 10.10.10.2",
            seen.map(|a| a.ip()) == Some(Ipv4Addr::new(10, 10, 10, 2).into()),
        );

        println!("\n== Step 10: the outside cannot open a connection to cirros-vm3");
        // Give upstream a route to the tenant subnet, the way a neighbour router could.
        let up = k.ns(&up_ns)?;
        route::replace(
            &up,
            "172.16.101.0/24".parse()?,
            &[Ipv4Addr::new(10, 10, 10, 2).into()],
            None,
        )
        .await?;
        println!("(upstream now routes 172.16.101.0/24 via 10.10.10.2)");
        let inbound = testbed::tcp_probe(&vm_ns, "172.16.101.3:22", &up_ns)?;
        println!("a TCP connection from upstream to 172.16.101.3:22 arrives from {inbound:?}");
        self.check(
            "step 10: upstream cannot connect to 172.16.101.3:22",
            inbound.is_none(),
        );
        let (ping_in, _) = self.output(&[
            "instance",
            "exec",
            "upstream",
            "--",
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "172.16.101.3",
        ])?;
        self.check("step 10: upstream cannot ping 172.16.101.3", !ping_in);
        println!("\n== Step 10, explained: which rule drops it, and why");
        let args = [
            "trace",
            "upstream",
            "172.16.101.3",
            "--protocol",
            "tcp",
            "--port",
            "22",
        ];
        self.output(&args)?;
        let t = self.json(&args)?;
        let hops = t["hops"].as_array().cloned().unwrap_or_default();
        let drop = format!("-A qrouter-FORWARD -i {qg} -j DROP");
        self.check(
            &format!("trace: upstream -> 172.16.101.3:22 is dropped in router_100_101 by '{drop}'"),
            t["outcome"] == "dropped"
                && hops
                    .last()
                    .is_some_and(|h| h["node"]["name"] == "router_100_101" && has_rule(h, &drop)),
        );

        println!("\n== A floating IP: the outside reaches cirros-vm3 through 10.10.10.3");
        let port = vm3["port_id"].as_str().unwrap_or_default().to_string();
        self.step(&["floating", "ip", "create", "ext_net", "--port", &port])?;
        let fip = self.json(&["floating", "ip", "list"])?[0]["Floating IP Address"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.output(&["trace", "upstream", &fip])?;
        let t = self.json(&["trace", "upstream", &fip])?;
        let hops = t["hops"].as_array().cloned().unwrap_or_default();
        let dnat =
            format!("-A qrouter-PREROUTING -d {fip}/32 -j DNAT --to-destination 172.16.101.3");
        self.check(
            &format!("trace: upstream -> {fip} is DNAT'ed to 172.16.101.3 by '{dnat}'"),
            t["outcome"] == "delivered"
                && hops.len() == 3
                && has_rule(&hops[1], &dnat)
                && hops[1]["leaves"]["dst"] == "172.16.101.3",
        );
        let inbound =
            testbed::tcp_probe_to(&vm_ns, "172.16.101.3:22", &format!("{fip}:22"), &up_ns)?;
        println!(
            "a TCP connection from upstream to {fip}:22 arrives at cirros-vm3 from {inbound:?}"
        );
        self.check(
            &format!("upstream connects to cirros-vm3 through {fip}"),
            inbound.map(|a| a.ip()) == Some(Ipv4Addr::new(10, 10, 10, 1).into()),
        );

        // Whatever happens in it, the teardown runs (and checks that radvd is gone too).
        if let Err(err) = self.ipv6_act(&mut k, &vm_ns, &up_ns).await {
            self.check(&format!("the IPv6 act: {err:#}"), false);
        }

        println!("\n== Teardown");
        for args in [
            &["floating", "ip", "delete", &fip][..],
            &["instance", "delete", "cirros-vm3", "upstream"],
            &["router", "delete", "router_100_101", "--force"],
            &["network", "delete", "vlan100", "vlan101", "ext_net"],
        ] {
            self.step(args)?;
        }
        let left_links: Vec<String> = link::list(k.host())
            .await?
            .into_iter()
            .map(|l| l.name)
            .filter(|n| n != "lo")
            .collect();
        let left_ns = netns::names();
        println!("links left: {left_links:?}; namespaces left: {left_ns:?}");
        self.check(
            "teardown leaves no namespace and no link behind",
            left_links.is_empty() && left_ns.is_empty(),
        );
        // This sandbox has no PID namespace of its own: the processes it started are found
        // by the mount namespace they share with it.
        let left = our_daemons();
        println!("dnsmasq, radvd and udhcpc processes left: {left:?}");
        self.check(
            "teardown leaves no dnsmasq, no radvd and no udhcpc running",
            left.is_empty(),
        );
        Ok(())
    }
}

/// Whether a trace hop matched the rule `rule` (as iptables -S prints it).
fn has_rule(hop: &Value, rule: &str) -> bool {
    hop["rules"]
        .as_array()
        .is_some_and(|rules| rules.iter().any(|r| r["rule"] == rule))
}

/// The dnsmasq, radvd and udhcpc processes in this process's mount namespace (its sandbox's):
/// `pid: command line`.
fn our_daemons() -> Vec<String> {
    let mine = std::fs::read_link("/proc/self/ns/mnt").ok();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        if std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok() != mine {
            return None;
        }
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let first = args.first()?;
        let daemon = first.ends_with("dnsmasq")
            || first.ends_with("radvd")
            || args.iter().take(2).any(|a| a.ends_with("udhcpc"));
        daemon.then(|| format!("{pid}: {}", args.join(" ").trim()))
    })
    .collect()
}
