//! HA routers (issue 29): a copy on each of two network hosts, keepalived (VRRP) in each
//! choosing the one that holds the router's addresses. Checked with traffic from an
//! instance on a compute host through SNAT, counted across the master's host dying and
//! coming back, TCP connections through SNAT and a floating IP surviving it; and nothing
//! left anywhere once the router is deleted.

mod common;
mod etcd;
mod hosts;

use std::time::{Duration, Instant};

use common::*;
use hosts::*;

#[test]
fn the_embedded_store_refuses_ha() {
    sandboxed(|| {
        refused(
            &["router", "create", "r1", "--ha"],
            "router r1: --ha needs several network hosts",
        );
        assert_eq!(ok(&["router", "list", "-f", "value"]), "");
        assert_eq!(ok(&["network", "list", "-f", "value"]), "");
    });
}

/// The IPv4 addresses of the router's namespace on `host`, one per line, as `ip` prints
/// them ("dev address/prefix").
fn addresses(host: &Host, id: &str) -> String {
    host.sh_ok(&format!(
        "ip -n qrouter-{id} -4 -o addr show | awk '{{print $2, $4}}'"
    ))
}

/// Whether the copy on `host` holds the router's gateway and interface addresses.
fn holds(host: &Host, id: &str, gw: &str) -> bool {
    let a = addresses(host, id);
    a.contains(&format!(" {gw}/24")) && a.contains(" 172.16.80.1/24")
}

/// Each copy's host and HA state, as `router show` lists them.
fn copies(router: &str) -> Vec<(String, String)> {
    let show = json(&["router", "show", router]);
    let copies = show["ha_copies"].as_array().cloned().unwrap_or_default();
    copies
        .iter()
        .map(|c| {
            let state = c["ha_state"].as_str().unwrap_or("none");
            (c["host"].as_str().unwrap().to_string(), state.to_string())
        })
        .collect()
}

fn active(router: &str) -> Option<String> {
    let all = copies(router);
    let mut active = all.iter().filter(|(_, s)| s == "active");
    let first = active.next().map(|(h, _)| h.clone());
    assert!(active.next().is_none(), "two active copies: {all:?}");
    first
}

/// How many ICMP packets from `src` the upstream instance received since the last call.
fn upstream_from(host: &Host, upstream: &str, src: &str) -> u64 {
    let ns = format!("qinstance-{upstream}");
    let rule = format!("PREROUTING -s {src} -p icmp -j ACCEPT");
    let (listed, _) = host.sh(&format!("ip netns exec {ns} iptables -t raw -C {rule}"));
    if !listed {
        host.sh_ok(&format!("ip netns exec {ns} iptables -t raw -I {rule}"));
    }
    let out = host.sh_ok(&format!(
        "ip netns exec {ns} iptables -t raw -L PREROUTING 1 -v -x -n -Z"
    ));
    out.split_whitespace().next().unwrap().parse().unwrap()
}

/// A TCP connection from a client to a server, both instances on compute1, a byte every
/// 100 ms for `seconds`, each echoed back (python3 on both ends).
struct TcpFlow {
    server: std::process::Child,
    client: std::process::Child,
}

impl TcpFlow {
    /// The server listens on `listen` (address, port) in instance `server`'s namespace; the
    /// client in instance `client`'s connects to `target` (the same port): the listening
    /// address itself through SNAT, or a floating IP in front of it.
    fn start(
        rig: &MultiHost,
        (server, listen): (&str, &str),
        (client, target): (&str, &str),
        port: u16,
        seconds: u32,
    ) -> TcpFlow {
        let compute = rig.host("compute1");
        let server_code = format!(
            "import socket\n\
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind(('{listen}', {port})); s.listen(1); c, _ = s.accept()\n\
while True:\n    b = c.recv(64)\n    if not b: break\n    c.sendall(b)\n"
        );
        let client_code = format!(
            "import socket, time, sys\n\
c = socket.create_connection(('{target}', {port}), timeout=10)\n\
got = 0\n\
for i in range({}):\n    c.sendall(b'x'); got += len(c.recv(1)); time.sleep(0.1)\n\
print('echoed', got, 'of', {})\n",
            seconds * 10,
            seconds * 10
        );
        let spawn = |ns: &str, code: &str| {
            let mut cmd = compute.command("ip");
            cmd.args(["netns", "exec", ns, "python3", "-c", code])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            die_with_parent(&mut cmd);
            cmd.spawn().unwrap()
        };
        let server = spawn(&format!("qinstance-{server}"), &server_code);
        std::thread::sleep(Duration::from_millis(300));
        let client = spawn(&format!("qinstance-{client}"), &client_code);
        TcpFlow { server, client }
    }

    /// Wait for the client: what it said (or its error).
    fn finish(self) -> String {
        let out = self.client.wait_with_output().unwrap();
        let mut server = self.server;
        let _ = server.kill();
        let _ = server.wait();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }
}

fn epoch() -> f64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.unwrap().as_secs_f64()
}

/// `host` crashes: its keepalived SIGKILLed (its VRRP process first: no goodbye), its agent
/// killed, its underlay down and router `id`'s namespace gone.
fn crash(rig: &mut MultiHost, host: &str, id: &str) {
    let dead = rig.host_mut(host);
    dead.kill_keepaliveds();
    dead.kill_agent();
    dead.sh_ok(&format!(
        "ip link set eth0 down && ip netns del qrouter-{id}"
    ));
}

/// `dying`, the host of r1's master, crashes (keepalived SIGKILLed, its VRRP process first:
/// no goodbye; its agent, its underlay and the router's namespace gone) while the instance
/// pings the upstream: `survivor` takes the addresses over, losing at most 15 pings at
/// 0.2 s (3 s).
fn failover(rig: &mut MultiHost, dying: &str, survivor: &str, id: &str, gw: &str, vm: &str) {
    let pinger = Pinger::start(rig.host("compute1"), vm, "10.10.10.1", 30);
    std::thread::sleep(Duration::from_secs(2));
    let died = Instant::now();
    println!("{dying} dies at {:.2}", epoch());
    crash(rig, dying, id);
    let survivor = rig.host(survivor);
    wait_for("the backup holds r1's addresses", || {
        holds(survivor, id, gw)
    });
    let took = died.elapsed();
    println!("{} holds the addresses at {:.2}", survivor.name, epoch());
    let (lost, sent) = pinger.lost();
    println!(
        "failover: the backup held the addresses after {} ms; {lost} of {sent} pings lost",
        took.as_millis()
    );
    assert!(
        lost <= 15,
        "{lost} of {sent} pings lost\n{}\n{}",
        sh("tail -n 40 /run/agent-*.log").1,
        survivor.sh_ok(&format!(
            "cat {HOST_STATE_DIR}/ha/*/state.log {HOST_STATE_DIR}/ha/*/keepalived.log"
        ))
    );
}

/// `host`, dead, returns: its agent makes its copy again, which stays standby; at most 2
/// pings lost meanwhile.
fn revive(rig: &mut MultiHost, host: &str, id: &str, vm: &str) {
    let pinger = Pinger::start(rig.host("compute1"), vm, "10.10.10.1", 25);
    let back = rig.host_mut(host);
    back.sh_ok("ip link set eth0 up");
    back.start_agent();
    let returned = Instant::now();
    while !copies("r1").contains(&(host.to_string(), "standby".to_string())) {
        assert!(
            returned.elapsed() < Duration::from_secs(20),
            "the returning copy does not report standby: {:?}\n{}{}",
            copies("r1"),
            rig.host(host)
                .sh(&format!(
                    "ip -n qrouter-{id} -o addr; cat {HOST_STATE_DIR}/ha/*/state.log"
                ))
                .1,
            sh(&format!("tail -n 20 /run/agent-{host}.log")).1
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (lost, sent) = pinger.lost();
    println!("return: {lost} of {sent} pings lost");
    assert!(
        lost <= 2,
        "{lost} of {sent} pings lost while {host} returned"
    );
}

/// The rig: network1, network2 (and network3 with `third`) and compute1, their agents
/// started with `extra`; the tenant network web, ext_net and the upstream.
fn rig(third: bool, extra: &[&str]) -> MultiHost {
    let mut hosts = vec![
        ("network1", "192.168.50.11", "network"),
        ("network2", "192.168.50.12", "network"),
        ("compute1", "192.168.50.13", "compute"),
    ];
    if third {
        hosts.push(("network3", "192.168.50.14", "network"));
    }
    let rig = MultiHost::started(&hosts, extra);
    web_and_upstream("172.16.80.0/24");
    rig
}

/// HA router r1 on web, its gateway on ext_net: its id.
fn create_r1() -> String {
    let create = ["router", "create", "r1", "--ha"];
    ok(&[&create[..], &["--external-gateway", "ext_net"]].concat());
    ok(&["router", "add", "subnet", "r1", "web"]);
    value(&["router", "show", "r1"], "id")
}

#[test]
fn an_ha_router_fails_over_in_seconds_and_leaves_nothing_behind() {
    sandboxed(|| {
        let mut rig = rig(false, &[]);
        // Bad input changes nothing: three copies on two network hosts, a legacy router's
        // switch while it forwards.
        refused(
            &["router", "create", "r0", "--ha", "--ha-hosts", "3"],
            "router r0: --ha-hosts 3: needs 3 live network hosts, 2 available",
        );
        refused(
            &["router", "create", "r0", "--ha", "--ha-hosts", "1"],
            "an HA router runs 2..=8 copies",
        );
        ok(&["router", "create", "legacy"]);
        refused(
            &["router", "set", "legacy", "--ha"],
            "--ha and --no-ha change a disabled router only",
        );
        let routers = ok(&["router", "list", "-f", "value", "-c", "Name"]);
        assert_eq!(routers, "legacy\n");
        assert!(!ok(&["network", "list"]).contains("ha-network"));
        ok(&["router", "delete", "legacy"]);

        let id = create_r1();
        let gw = json(&["router", "show", "r1"])["external_gateway_info"]["external_fixed_ips"][0]
            ["ip_address"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(value(&["router", "show", "r1"], "ha"), "true");
        let vm = ok(&[
            "instance",
            "create",
            "vm",
            "--network",
            "web",
            "-f",
            "value",
            "-c",
            "id",
        ]);
        let vm = vm.trim().to_string();
        let upstream = value(&["instance", "show", "upstream"], "id");

        // keepalived in both copies, exactly one of which holds the router's addresses;
        // the other holds only its own ha- address.
        wait_for("one active copy of r1", || active("r1").is_some());
        let master = active("r1").unwrap();
        let backup = ["network1", "network2"].into_iter().find(|h| *h != master);
        let backup = backup.unwrap();
        let hosts_of: Vec<String> = copies("r1").into_iter().map(|(h, _)| h).collect();
        assert_eq!(hosts_of.len(), 2, "{hosts_of:?}");
        for h in ["network1", "network2"] {
            assert_eq!(rig.host(h).keepaliveds().len(), 1, "keepalived on {h}");
        }
        assert!(holds(rig.host(&master), &id, &gw));
        let standby = addresses(rig.host(backup), &id);
        assert!(
            !standby.contains(&gw) && !standby.contains("172.16.80.1"),
            "{standby}"
        );
        assert!(standby.contains(" 169.254.192."), "{standby}");
        let ha_routers = value(&["host", "show", backup], "ha_routers");
        assert!(ha_routers.contains("r1 standby"), "{ha_routers}");

        // The instance reaches the upstream, which sees the router's gateway address.
        wait_for("vm pings upstream through r1", || {
            pings(rig.host("compute1"), &vm, "10.10.10.1")
        });
        upstream_from(rig.host("compute1"), &upstream, &gw);
        assert!(pings(rig.host("compute1"), &vm, "10.10.10.1"));
        assert_eq!(upstream_from(rig.host("compute1"), &upstream, &gw), 1);

        // A second instance with a floating IP (vm's traffic stays SNATed to the router's
        // gateway address): the upstream reaches it through the floating IP.
        ok(&["instance", "create", "fipvm", "--network", "web"]);
        let fipvm = value(&["instance", "show", "fipvm"], "id");
        let fipvm_ip = value(&["instance", "show", "fipvm"], "fixed_ip");
        let fip = value(
            &["floating", "ip", "create", "ext_net", "--instance", "fipvm"],
            "floating_ip_address",
        );
        wait_for("the upstream pings fipvm's floating IP", || {
            pings(rig.host("compute1"), &upstream, &fip)
        });

        // The master's host dies: the backup takes over, through SNAT to the same address;
        // a TCP connection through SNAT (--random-fully) and one from the upstream to the
        // floating IP (DNAT) go on: conntrackd synced their entries to the backup's kernel.
        let outbound = TcpFlow::start(
            &rig,
            (&upstream, "10.10.10.1"),
            (&vm, "10.10.10.1"),
            7000,
            8,
        );
        let inbound = TcpFlow::start(&rig, (&fipvm, &fipvm_ip), (&upstream, &fip), 7001, 8);
        failover(&mut rig, &master, backup, &id, &gw, &vm);
        let said = outbound.finish();
        assert!(said.contains("echoed 80 of 80"), "through SNAT: {said}");
        let said = inbound.finish();
        assert!(
            said.contains("echoed 80 of 80"),
            "through the floating IP: {said}"
        );
        upstream_from(rig.host("compute1"), &upstream, &gw);
        assert!(pings(rig.host("compute1"), &vm, "10.10.10.1"));
        assert_eq!(upstream_from(rig.host("compute1"), &upstream, &gw), 1);
        wait_for("the survivor reports active", || {
            active("r1").as_deref() == Some(backup)
        });
        // The old master's host returns: it becomes the backup, no second interruption.
        revive(&mut rig, &master, &id, &vm);
        assert_eq!(active("r1").as_deref(), Some(backup));

        // With etcd stopped (no agent can do anything) the new master's host dies: VRRP
        // needs no control plane, and frames to the router's MACs reach every copy.
        rig.etcd.stop();
        failover(&mut rig, backup, &master, &id, &gw, &vm);
        rig.etcd.restart();
        // (The dead host's last report stands until its lease, renewed by etcd's restart,
        // expires.)
        wait_for("the old master reports active, alone", || {
            let now = copies("r1");
            now.contains(&(master.clone(), "active".into()))
                && !now.contains(&(backup.into(), "active".into()))
        });
        revive(&mut rig, backup, &id, &vm);

        // A keepalived that dies is drift: the agent starts it again (the copy stays
        // standby). A configuration changed by hand is drift `sync` lists and repairs.
        let killed = rig.host(backup).keepaliveds();
        rig.host(backup).kill_keepaliveds();
        wait_for("the standby's keepalived running again", || {
            let now = rig.host(backup).keepaliveds();
            now.len() == 1 && now != killed
        });
        let conf = format!("{HOST_STATE_DIR}/ha/{id}/keepalived.conf");
        rig.host(backup)
            .sh_ok(&format!("echo '# changed' > {conf}"));
        let out = qrouter(&["sync", "--dry-run", "--host", backup]);
        let drift = String::from_utf8_lossy(&out.stdout);
        assert!(
            drift.contains("rewrite keepalived.conf and reload keepalived"),
            "{drift}"
        );
        ok(&["sync", "--host", backup]);
        let written = rig.host(backup).sh_ok(&format!("cat {conf}"));
        assert!(written.contains("virtual_router_id"), "{written}");
        assert_eq!(active("r1").as_deref(), Some(master.as_str()));
        assert!(pings(rig.host("compute1"), &vm, "10.10.10.1"));

        // Back to one copy (a disabled router, as Neutron requires): on the host of its
        // first copy, no keepalived, no HA network; and HA again.
        ok(&["router", "set", "r1", "--disable"]);
        ok(&["router", "set", "r1", "--no-ha"]);
        ok(&["router", "set", "r1", "--enable"]);
        let host = value(&["router", "show", "r1"], "host");
        assert!(host == "network1" || host == "network2", "{host}");
        assert!(!ok(&["network", "list"]).contains("ha-network"));
        assert_eq!(value(&["router", "show", "r1"], "ha"), "false");
        for h in ["network1", "network2"] {
            assert!(rig.host(h).keepaliveds().is_empty(), "keepalived on {h}");
        }
        assert!(holds(rig.host(&host), &id, &gw));
        wait_for("vm pings upstream through the legacy r1", || {
            pings(rig.host("compute1"), &vm, "10.10.10.1")
        });
        ok(&["router", "set", "r1", "--disable"]);
        ok(&["router", "set", "r1", "--ha"]);
        ok(&["router", "set", "r1", "--enable"]);
        wait_for("one active copy of r1 again", || active("r1").is_some());
        wait_for("vm pings upstream through the HA r1 again", || {
            pings(rig.host("compute1"), &vm, "10.10.10.1")
        });

        // Deleted: no keepalived, no ha- device, no HA network anywhere.
        let vni = value(
            &["network", "show", "ha-network"],
            "provider:segmentation_id",
        );
        ok(&["floating", "ip", "delete", &fip]);
        ok(&["router", "delete", "r1", "--force"]);
        assert!(!ok(&["network", "list"]).contains("ha-network"));
        for h in ["network1", "network2"] {
            let host = rig.host(h);
            wait_for(&format!("nothing of r1 left on {h}"), || {
                let links = host.sh_ok("ip -o link show");
                host.keepaliveds().is_empty()
                    && !links.contains(&format!("vxlan-{vni}"))
                    && !links.contains("tha")
                    && !namespaces(host).iter().any(|n| n.starts_with("qrouter-"))
            });
        }
        rig.finish();
    });
}

/// A network host running a copy dies for good: once it is confirmed dead (its lease gone
/// for the failover grace), the copy is placed again on the free network host, which runs it
/// as the standby, the traffic through the master undisturbed. With no free host left,
/// `host delete --force` of a second dead host leaves the router degraded on its one copy,
/// still forwarding; a network host that returns gives it its second copy back.
#[test]
fn an_ha_routers_copy_on_a_dead_host_is_placed_again_or_it_runs_degraded() {
    sandboxed(|| {
        let failover = ["--allow-automatic-failover", "--failover-grace", "5"];
        let mut rig = rig(true, &failover);
        let id = create_r1();
        let vm = value(&["instance", "create", "vm", "--network", "web"], "id");
        wait_for("one active copy of r1", || active("r1").is_some());
        let master = active("r1").unwrap();
        let hosts_of = |r: &str| -> Vec<String> { copies(r).into_iter().map(|c| c.0).collect() };
        let placed = hosts_of("r1");
        let networks = ["network1", "network2", "network3"];
        let standby = placed.iter().find(|h| **h != master).unwrap().clone();
        let free = networks.iter().find(|h| !placed.contains(&h.to_string()));
        let free = free.unwrap().to_string();
        assert_eq!(
            value(&["router", "show", "r1"], "ha_redundancy"),
            "2 of 2 copies"
        );
        wait_for("vm pings upstream through r1", || {
            pings(rig.host("compute1"), &vm, "10.10.10.1")
        });

        // The standby's host dies: its copy goes to the free host once the death is
        // confirmed, where keepalived runs it as the standby; the master forwards throughout
        // (a copy that joins hears the master before it would claim the addresses).
        let pinger = Pinger::start(rig.host("compute1"), &vm, "10.10.10.1", 75);
        crash(&mut rig, &standby, &id);
        let died = Instant::now();
        while !copies("r1").contains(&(free.clone(), "standby".to_string())) {
            assert!(
                died.elapsed() < Duration::from_secs(30),
                "no standby copy on {free}: {:?}\n{}",
                copies("r1"),
                sh("tail -n 20 /run/agent-*.log").1
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        println!(
            "{free} runs the standby copy {} ms after {standby} died",
            died.elapsed().as_millis()
        );
        let (lost, sent) = pinger.lost();
        assert!(lost <= 2, "{lost} of {sent} pings lost as the copy moved");
        let mut now = hosts_of("r1");
        now.sort();
        let mut want = vec![master.clone(), free.clone()];
        want.sort();
        assert_eq!(now, want);
        assert_eq!(rig.host(&free).keepaliveds().len(), 1);
        assert_eq!(active("r1").as_deref(), Some(master.as_str()));
        assert!(!addresses(rig.host(&free), &id).contains("172.16.80.1"));

        // The new standby's host dies too, and is deleted as soon as its lease is gone
        // (before the failover grace): no host is free to take its copy, so the router runs
        // on its master alone, degraded, and says so.
        crash(&mut rig, &free, &id);
        wait_for(&format!("{free}'s lease gone"), || {
            let list = ok(&["host", "list", "-f", "value", "-c", "Name", "-c", "Alive"]);
            list.contains(&format!("{free} false"))
        });
        let pinger = Pinger::start(rig.host("compute1"), &vm, "10.10.10.1", 25);
        let out = qrouter(&["host", "delete", &free, "--force"]);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{said}");
        assert!(said.contains("degraded, 1 of 2 copies"), "{said}");
        assert_eq!(hosts_of("r1"), std::slice::from_ref(&master));
        let redundancy = value(&["router", "show", "r1"], "ha_redundancy");
        assert!(
            redundancy.starts_with("degraded: 1 of 2 copies"),
            "{redundancy}"
        );
        let (lost, sent) = pinger.lost();
        assert!(
            lost <= 2,
            "{lost} of {sent} pings lost as the router was degraded\n{}",
            rig.host(&master).sh_ok(&format!(
                "ip -n qrouter-{id} -o -4 addr; cat {HOST_STATE_DIR}/ha/*/state.log; \
                 tail -n 30 {HOST_STATE_DIR}/ha/*/keepalived.log; cat {HOST_STATE_DIR}/ha/*/keepalived.conf"
            ))
        );

        // The first dead host returns: the router gets its second copy there, the standby,
        // without a second interruption.
        let pinger = Pinger::start(rig.host("compute1"), &vm, "10.10.10.1", 40);
        let back = rig.host_mut(&standby);
        back.sh_ok("ip link set eth0 up");
        back.start_agent_with(&failover);
        wait_for(&format!("a standby copy on {standby} again"), || {
            copies("r1").contains(&(standby.clone(), "standby".to_string()))
        });
        let (lost, sent) = pinger.lost();
        assert!(
            lost <= 2,
            "{lost} of {sent} pings lost as the copy came back"
        );
        assert_eq!(
            value(&["router", "show", "r1"], "ha_redundancy"),
            "2 of 2 copies"
        );
        assert_eq!(active("r1").as_deref(), Some(master.as_str()));
        rig.finish();
    });
}
