//! Faults on the multi-host rig (tests/hosts), each under real traffic, counted: a ping
//! every 0.2 s between instances on two compute hosts (vm3 on compute1 to vm4 on compute2,
//! over VXLAN) and from an instance through the router to the upstream (vm4 through
//! router_100_101 on network1 to 10.10.10.1). The data plane must not depend on the control
//! plane: etcd stopped or stalled, an agent killed, garbage written in etcd change nothing
//! that forwards (docs/multihost.md, "When things fail").

mod common;
mod etcd;
mod hosts;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use hosts::*;

/// Two network hosts (network1 also runs the upstream switch), two compute hosts.
const HOSTS: [(&str, &str, &str); 4] = [
    ("network1", "192.168.50.11", "all"),
    ("network2", "192.168.50.12", "network"),
    ("compute1", "192.168.50.13", "compute"),
    ("compute2", "192.168.50.14", "compute"),
];

/// A tenant network and an external one, both VXLAN segments (so the router may run on
/// either network host), the router on network1, the upstream switch (10.10.10.1) on
/// network1, vm3 on compute1 and vm4 on compute2.
const TOPOLOGY: &[&[&str]] = &[
    &["network", "create", "vlan101"],
    &[
        "subnet",
        "create",
        "vlan101",
        "--network",
        "vlan101",
        "--subnet-range",
        "172.16.101.0/24",
        "--no-dhcp",
    ],
    &[
        "network",
        "create",
        "ext_net",
        "--external",
        "--provider-network-type",
        "vxlan",
    ],
    &[
        "subnet",
        "create",
        "ext",
        "--network",
        "ext_net",
        "--subnet-range",
        "10.10.10.0/24",
        "--gateway",
        "10.10.10.1",
        "--no-dhcp",
    ],
    &[
        "router",
        "create",
        "router_100_101",
        "--host",
        "network1",
        "--external-gateway",
        "ext_net",
    ],
    &["router", "add", "subnet", "router_100_101", "vlan101"],
    &[
        "instance",
        "create",
        "upstream",
        "--network",
        "ext_net",
        "--fixed-ip",
        "10.10.10.1",
        "--host",
        "network1",
    ],
    &[
        "instance",
        "create",
        "vm3",
        "--network",
        "vlan101",
        "--fixed-ip",
        "172.16.101.3",
        "--host",
        "compute1",
    ],
    &[
        "instance",
        "create",
        "vm4",
        "--network",
        "vlan101",
        "--fixed-ip",
        "172.16.101.4",
        "--host",
        "compute2",
    ],
];

/// vm5 at 172.16.101.5 on `host`, once the agents apply changes again; its id.
fn vm5_on(host: &str) -> String {
    let at = ["--fixed-ip", "172.16.101.5", "--host", host];
    ok(&[
        &["instance", "create", "vm5", "--network", "vlan101"][..],
        &at,
    ]
    .concat());
    value(&["instance", "show", "vm5"], "id")
}

struct Rig {
    mh: MultiHost,
    vm3: String,
    vm4: String,
    router: String,
}

/// The rig with its agents started with `options`, the topology made, traffic flowing.
fn rig(options: &[&str]) -> Rig {
    let mh = MultiHost::started(&HOSTS, options);
    for step in TOPOLOGY {
        ok(step);
    }
    let id = |kind: &str, name: &str| value(&[kind, "show", name], "id");
    let (vm3, vm4) = (id("instance", "vm3"), id("instance", "vm4"));
    let router = id("router", "router_100_101");
    wait_for("vm3 reaches vm4, vm4 the upstream", || {
        pings(mh.host("compute1"), &vm3, "172.16.101.4")
            && pings(mh.host("compute2"), &vm4, "10.10.10.1")
    });
    Rig {
        mh,
        vm3,
        vm4,
        router,
    }
}

/// The two continuous pings, for `seconds`.
struct Traffic(Pinger, Pinger);

impl Rig {
    fn traffic(&self, seconds: u32) -> Traffic {
        let count = seconds * 5;
        Traffic(
            Pinger::start(self.mh.host("compute1"), &self.vm3, "172.16.101.4", count),
            Pinger::start(self.mh.host("compute2"), &self.vm4, "10.10.10.1", count),
        )
    }

    fn router_host(&self) -> String {
        value(&["router", "show", "router_100_101"], "host")
    }

    fn router_namespaces(&self, host: &str) -> usize {
        let ns = format!("qrouter-{}", self.router);
        namespaces(self.mh.host(host))
            .iter()
            .filter(|n| **n == ns)
            .count()
    }
}

impl Traffic {
    /// At most one ping lost on each path while `fault` lasted.
    fn at_most_one_lost(self, fault: &str) {
        at_most_one_lost(self.0, fault);
        at_most_one_lost(self.1, fault);
    }
}

fn at_most_one_lost(pings: Pinger, fault: &str) {
    let (lost, sent) = pings.lost();
    assert!(lost <= 1, "{fault}: {lost} of {sent} pings lost");
}

fn sleep(seconds: u64) {
    std::thread::sleep(Duration::from_secs(seconds));
}

/// Every host and every namespace on it: its iptables rules, as iptables-save prints them.
fn all_rules(rig: &Rig) -> String {
    let dump = "iptables-save; for ns in $(ip netns list | cut -d' ' -f1); do \
                ip netns exec $ns iptables-save; done";
    rig.mh.hosts.iter().map(|h| h.sh_ok(dump)).collect()
}

#[test]
fn etcd_stopped_or_stalled_changes_nothing_that_forwards() {
    sandboxed(|| {
        // Failover on, with its default grace: an etcd fault must never look like a death.
        let mut rig = rig(&["--allow-automatic-failover"]);
        let traffic = rig.traffic(27);
        sleep(2);
        rig.mh.etcd.stop();
        sleep(20);
        rig.mh.etcd.restart();
        traffic.at_most_one_lost("etcd stopped 20 s");
        wait_alive(HOSTS.len());

        let etcd = nix::unistd::Pid::from_raw(rig.mh.etcd.pid().unwrap() as i32);
        let signal = |s| nix::sys::signal::kill(etcd, s).unwrap();
        let traffic = rig.traffic(25);
        sleep(2);
        signal(nix::sys::signal::Signal::SIGSTOP);
        sleep(15);
        signal(nix::sys::signal::Signal::SIGCONT);
        let resumed = Instant::now();
        traffic.at_most_one_lost("etcd stalled 15 s");
        // Every lease ended as etcd resumed; the agents took new ones. Past the failover
        // grace (three lease periods, 9 s) since then, no router moved.
        wait_alive(HOSTS.len());
        std::thread::sleep(Duration::from_secs(11).saturating_sub(resumed.elapsed()));
        assert_eq!(rig.router_host(), "network1");
        assert_eq!(rig.router_namespaces("network2"), 0);
        assert_eq!(rig.router_namespaces("network1"), 1);
        // The agents caught up: a change is applied, and every host is in sync.
        let vm5 = vm5_on("compute1");
        assert!(pings(rig.mh.host("compute1"), &vm5, "172.16.101.4"));
        let out = qrouter(&["sync", "--dry-run"]);
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{said}");
        rig.mh.finish();
    });
}

#[test]
fn an_agent_killed_leaves_its_host_forwarding() {
    sandboxed(|| {
        let mut rig = rig(&[]);
        let vni = value(&["network", "show", "vlan101"], "provider:segmentation_id");
        let traffic = rig.traffic(27);
        sleep(2);
        rig.mh.host_mut("network1").kill_agent();
        wait_for("network1 down", || {
            value(&["host", "show", "network1"], "alive") == "false"
        });
        // Its lease is gone, its host still forwards: the others keep sending to it.
        let fdb = rig
            .mh
            .host("compute1")
            .sh_ok(&format!("bridge fdb show dev vxlan-{vni}"));
        assert!(fdb.contains("00:00:00:00:00:00 dst 192.168.50.11"), "{fdb}");
        sleep(16);
        rig.mh.host_mut("network1").start_agent();
        traffic.at_most_one_lost("network1's agent killed 20 s");
        wait_alive(HOSTS.len());
        let out = qrouter(&["sync", "--dry-run"]);
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "converged after its restart: {said}"
        );
        assert_eq!(rig.router_host(), "network1");

        // Moved while its old host is down: applied where it runs now (exit 0, the old host
        // warned of). The old host, back, tears its copy down first; then the new one
        // announces itself again, and the traffic follows it.
        rig.mh.host_mut("network1").kill_agent();
        wait_for("network1 down", || {
            value(&["host", "show", "network1"], "alive") == "false"
        });
        let out = qrouter(&["router", "set", "router_100_101", "--host", "network2"]);
        let warned = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{warned}");
        assert!(warned.contains("host network1 is down"), "{warned}");
        assert_eq!(rig.router_namespaces("network2"), 1);
        assert_eq!(rig.router_namespaces("network1"), 1, "its agent is away");
        rig.mh.host_mut("network1").start_agent();
        wait_for("network1's copy torn down", || {
            rig.router_namespaces("network1") == 0
        });
        wait_for("network2 announces the router again", || {
            sh("cat /run/agent-network2.log")
                .1
                .contains("addresses announced again")
        });
        wait_for("vm4 reaches the upstream through network2", || {
            pings(rig.mh.host("compute2"), &rig.vm4, "10.10.10.1")
        });
        rig.mh.finish();
    });
}

#[test]
fn corrupt_keys_are_set_aside_and_named_and_everything_else_goes_on() {
    sandboxed(|| {
        let rig = rig(&[]);
        let traffic = rig.traffic(12);
        rig.mh.put_raw("/qrouter/state/router/junk", b"not json {");
        rig.mh.put_raw("/qrouter/hosts/junk", b"garbage");
        // A registration that claims another host's name.
        let evil =
            br#"{"name":"network1","role":"network","local_ip":"192.168.50.99","started":0}"#;
        rig.mh.put_raw("/qrouter/hosts/evil", evil);
        for (list, listed) in [
            ("router", "router_100_101"),
            ("network", "vlan101"),
            ("host", "compute2"),
        ] {
            let out = qrouter(&[list, "list"]);
            let (said, warned) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            assert_eq!(out.status.code(), Some(0), "{list} list: {warned}");
            assert!(said.contains(listed), "{said}");
            let bad = match list {
                "host" => "/qrouter/hosts/junk",
                _ => "/qrouter/state/router/junk",
            };
            assert!(warned.contains(bad), "{list} list: {warned}");
        }
        assert_eq!(
            ok(&["host", "list", "-f", "value", "-c", "Name"])
                .lines()
                .count(),
            HOSTS.len()
        );
        // The agents go on: a change is applied, and the keys are named by the agents too.
        let vm5 = vm5_on("compute2");
        assert!(pings(rig.mh.host("compute2"), &vm5, "172.16.101.3"));
        let shown = json(&["host", "show", "compute1"]);
        let named = shown["quarantined"].to_string();
        assert!(
            named.contains("/qrouter/state/router/junk") && named.contains("/qrouter/hosts/evil"),
            "{shown}"
        );
        let out = qrouter(&["sync", "--dry-run"]);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.code() == Some(0)
                && said.contains("quarantined: /qrouter/state/router/junk"),
            "{said}"
        );
        traffic.at_most_one_lost("corrupt keys");
        rig.mh.finish();
    });
}

#[test]
fn values_read_from_etcd_never_reach_the_rules() {
    sandboxed(|| {
        let rig = rig(&[]);
        let network1 = rig.mh.host("network1");
        // The operator's own rule, and a host whose bridged frames cross a FORWARD chain
        // that drops: qrouter then writes rules naming its bridges there.
        network1.sh_ok(
            "iptables -A INPUT -s 7.7.7.7 -j DROP && iptables -P FORWARD DROP && \
             echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables",
        );
        // Its agent lets its bridges' frames through that chain again.
        ok(&["sync", "--host", "network1"]);
        assert!(network1
            .sh_ok("iptables -S FORWARD")
            .contains("qrouter-FORWARD"));
        let traffic = rig.traffic(15);
        // Each string that reaches rules text (a bridge, the port ids in device names,
        // names), set by hand to a value with a newline and an iptables line.
        let inject = "e\n-I INPUT -s 6.6.6.6 -j ACCEPT\n#";
        // (The ids read before the first edit: what it sets aside is no longer shown.)
        let id = |kind: &str, name: &str| value(&[kind, "show", name], "id");
        let (vlan101, ext_net) = (id("network", "vlan101"), id("network", "ext_net"));
        let port = value(&["port", "list", "--device-id", &rig.vm4], "ID");
        let edit = |kind: &str, id: &str, field: &str, to: &str| {
            let key = format!("/qrouter/state/{kind}/{id}");
            let mut body: serde_json::Value =
                serde_json::from_slice(&rig.mh.get_raw(&key).unwrap()).unwrap();
            body[field] = to.into();
            rig.mh.put_raw(&key, body.to_string().as_bytes());
        };
        edit("network", &vlan101, "bridge", inject);
        edit("network", &ext_net, "bridge", "e\n-F\n#");
        edit("router", &rig.router, "name", inject);
        let port_key = format!("/qrouter/state/port/{port}");
        let mut body: serde_json::Value =
            serde_json::from_slice(&rig.mh.get_raw(&port_key).unwrap()).unwrap();
        let bad_id = format!("{port}\n-A INPUT -s 6.6.6.6 -j ACCEPT");
        body["id"] = bad_id.clone().into();
        rig.mh.put_raw(
            &format!("/qrouter/state/port/{bad_id}"),
            body.to_string().as_bytes(),
        );
        // A change on network1 meanwhile: a network, its bridge, the host's FORWARD rules.
        for step in [
            // (Its segment given: the lowest free one may be held by a key set aside.)
            &["network", "create", "t2", "--provider-segment", "99"][..],
            &[
                "subnet",
                "create",
                "t2",
                "--network",
                "t2",
                "--subnet-range",
                "172.16.102.0/24",
                "--no-dhcp",
            ],
            &["router", "create", "r2", "--host", "network1"],
            &["router", "add", "subnet", "r2", "t2"],
        ] {
            ok(step);
        }
        let rules = all_rules(&rig);
        assert!(!rules.contains("6.6.6.6"), "{rules}");
        assert!(
            network1
                .sh_ok("iptables -S INPUT")
                .contains("-A INPUT -s 7.7.7.7/32 -j DROP"),
            "the operator's rule is gone"
        );
        traffic.at_most_one_lost("values injected in etcd");
        rig.mh.finish();
    });
}

#[test]
fn an_operators_bridge_survives_the_networks_deletion() {
    sandboxed(|| {
        let rig = rig(&[]);
        let network1 = rig.mh.host("network1");
        // br-ex on network1, the operator's, with its uplink; the command line's host has
        // none, which must not make it qrouter's.
        network1.sh_ok(
            "ip link add br-ex type bridge && ip link add up0 type veth peer name up1 && \
             ip link set up0 master br-ex && ip link set up0 up && ip link set br-ex up",
        );
        let traffic = rig.traffic(12);
        for step in [
            &[
                "network",
                "create",
                "ext2",
                "--external",
                "--bridge",
                "br-ex",
            ][..],
            &[
                "subnet",
                "create",
                "ext2",
                "--network",
                "ext2",
                "--subnet-range",
                "10.20.0.0/24",
                "--no-dhcp",
            ],
            &[
                "router",
                "create",
                "r2",
                "--host",
                "network1",
                "--external-gateway",
                "ext2",
            ],
        ] {
            ok(step);
        }
        let r2 = value(&["router", "show", "r2"], "id");
        let on_br_ex = network1.sh_ok("ip -o link show master br-ex");
        assert!(
            on_br_ex.contains("up0") && on_br_ex.contains("tap"),
            "{on_br_ex}"
        );
        assert!(namespaces(network1).contains(&format!("qrouter-{r2}")));
        ok(&["router", "delete", "r2"]);
        ok(&["subnet", "delete", "ext2"]);
        ok(&["network", "delete", "ext2"]);
        let on_br_ex = network1.sh_ok("ip -o link show master br-ex");
        assert!(
            on_br_ex.contains("up0"),
            "br-ex or its uplink went: {on_br_ex}"
        );
        traffic.at_most_one_lost("an operator's bridge used and released");
        rig.mh.finish();
    });
}

#[test]
fn a_router_namespace_deleted_by_hand_is_rebuilt_by_its_agent() {
    sandboxed(|| {
        let rig = rig(&[]);
        let network1 = rig.mh.host("network1");
        let traffic = rig.traffic(10);
        sleep(1);
        let deleted = Instant::now();
        network1.sh_ok(&format!("ip netns delete qrouter-{}", rig.router));
        // No command is run: its agent sees its devices go, and rebuilds it.
        while !pings(rig.mh.host("compute2"), &rig.vm4, "10.10.10.1") {
            assert!(
                deleted.elapsed() < Duration::from_secs(40),
                "not rebuilt within 40 s\n{}",
                sh("tail -n 20 /run/agent-network1.log").1
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        println!(
            "router namespace rebuilt, traffic back, {} ms after its deletion",
            deleted.elapsed().as_millis()
        );
        let Traffic(between, through) = traffic;
        let (lost, sent) = through.lost();
        println!("through the router: {lost} of {sent} pings lost while it was rebuilt");
        at_most_one_lost(
            between,
            "a router namespace deleted, between the compute hosts",
        );
        assert_eq!(rig.router_namespaces("network1"), 1);
        rig.mh.finish();
    });
}

#[test]
fn an_agent_is_refused_a_wrong_underlay_address_or_a_live_hosts_name() {
    sandboxed(|| {
        let rig = rig(&[]);
        let traffic = rig.traffic(8);
        let compute1 = rig.mh.host("compute1");
        // network1's address, seen from compute1; and an address of compute1's own that no
        // host holds, to claim another host's name with.
        compute1
            .sh_ok("ip addr add 192.168.50.11/32 dev lo && ip addr add 192.168.50.77/32 dev lo");
        let agent = |args: &[&str]| {
            let out = compute1
                .command(qrouter_bin().to_str().unwrap())
                .arg("agent")
                .args(args)
                .env("QROUTER_STORE", url())
                .stdin(Stdio::null())
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        for (args, says) in [
            (
                &["--host", "c9", "--local-ip", "10.99.0.99"][..],
                "--local-ip 10.99.0.99: no interface",
            ),
            (
                &["--host", "c9", "--local-ip", "127.0.0.1"],
                "--local-ip 127.0.0.1: not an underlay address",
            ),
            (
                &["--host", "c9", "--local-ip", "192.168.50.11"],
                "host network1's live agent has that underlay address",
            ),
            (
                &["--host", "network1", "--local-ip", "192.168.50.77"],
                "--host network1: a live agent holds it (pid",
            ),
        ] {
            let (code, err) = agent(args);
            assert_eq!(code, Some(2), "{args:?}: {err}");
            assert!(err.contains(says), "{args:?}: {err}");
        }
        assert_eq!(
            ok(&["host", "list", "-f", "value", "-c", "Name"])
                .lines()
                .count(),
            HOSTS.len()
        );
        traffic.at_most_one_lost("agents refused");
        rig.mh.finish();
    });
}
