//! Several hosts on one machine: each "host" its own network + mount namespace (a private
//! /run, so its own /run/netns and xtables lock), joined by an underlay bridge; etcd in a
//! namespace of its own; one `qrouter agent` per host; the CLI from the sandbox itself.
//! Checked with real traffic. Every agent, host and etcd started here is killed by pid when
//! the test ends, pass or fail (Drop), and by the kernel if the test process dies
//! (PR_SET_PDEATHSIG).

mod common;
mod etcd;
mod hosts;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hosts::*;

#[test]
fn the_seed_across_a_network_and_a_compute_host() {
    sandboxed(|| {
        let mut rig = MultiHost::started(
            &[
                ("network1", "192.168.50.11", "all"),
                ("compute1", "192.168.50.12", "compute"),
            ],
            &[],
        );
        let MultiHost {
            hosts,
            etcd: server,
        } = &mut rig;
        let [network1, compute1] = &mut hosts[..] else {
            unreachable!("two hosts")
        };
        // Tenant networks over VXLAN; the external network is br-ex on network1 only; the
        // router is scheduled to the only live network host. VLAN segments are refused.
        let vlan = qrouter(&["network", "create", "v", "--provider-network-type", "vlan"]);
        assert_eq!(vlan.status.code(), Some(2));
        for step in testbed::seed_across_hosts() {
            ok(&step);
        }
        ok(testbed::SET_GATEWAY);
        // With etcd a tenant network is a VXLAN segment by default; the external one stays
        // flat on br-ex.
        let kind = |n: &str| value(&["network", "show", n], "provider:network_type");
        assert_eq!(
            (kind("vlan101"), kind("ext_net")),
            ("vxlan".into(), "flat".into())
        );
        let hosts = ok(&["host", "show", "network1", "-f", "json"]);
        assert!(hosts.contains("router_100_101"), "{hosts}");
        let vm3 = value(&["instance", "show", "cirros-vm3"], "id");
        let router = value(&["router", "show", "router_100_101"], "id");
        // Each command waited until the agents had applied it.
        assert!(namespaces(compute1).contains(&format!("qinstance-{vm3}")));
        assert!(namespaces(network1).contains(&format!("qrouter-{router}")));

        // The seed's traffic, across hosts.
        wait_for("cirros-vm3 pings 10.10.10.1", || {
            pings(compute1, &vm3, "10.10.10.1")
        });
        // Each host has its own part only.
        assert!(namespaces(network1).contains(&format!("qrouter-{router}")));
        assert!(!namespaces(compute1)
            .iter()
            .any(|n| n.starts_with("qrouter-")));
        assert_eq!(namespaces(compute1), [format!("qinstance-{vm3}")]);
        // VXLAN: vxlan-2 (vlan101) with the local IP on the network's bridge, MTU 50 below
        // the underlay's 1500, flooding to the peer.
        let vx = compute1.sh_ok("ip -d link show vxlan-2");
        assert!(
            vx.contains("vxlan id 2") && vx.contains("local 192.168.50.12"),
            "{vx}"
        );
        assert!(vx.contains("mtu 1450") && vx.contains("master brq"), "{vx}");
        let fdb = compute1.sh_ok("bridge fdb show dev vxlan-2");
        assert!(fdb.contains("00:00:00:00:00:00 dst 192.168.50.11"), "{fdb}");
        // compute1 has nothing on vlan100: no device for it.
        assert!(!compute1.sh("ip link show vxlan-1").0);
        // Two hops: the router's qr- address, then upstream.
        let trace = compute1.sh_ok(&format!(
            "ip netns exec qinstance-{vm3} traceroute -n -q 1 -w 1 10.10.10.1"
        ));
        let hops: Vec<&str> = trace.lines().skip(1).collect();
        assert_eq!(hops.len(), 2, "{trace}");
        assert!(
            hops[0].contains("172.16.101.1") && hops[1].contains("10.10.10.1"),
            "{trace}"
        );
        // The instance's echo request, inside a VXLAN frame from compute1 to network1.
        let inner = Some(("172.16.101.3", "10.10.10.1"));
        let encapsulated = vxlan_echoes(network1, "192.168.50.12", inner, || {
            assert!(pings(compute1, &vm3, "10.10.10.1"));
        });
        assert_eq!(encapsulated, 1);
        // The agents reported ACTIVE.
        let status = ok(&["host", "show", "compute1", "-f", "json"]);
        assert!(
            status.contains("\"ACTIVE\"") && status.contains("cirros-vm3"),
            "{status}"
        );
        // `instance show` names the host and the status its agent reported.
        assert_eq!(
            value(&["instance", "show", "cirros-vm3"], "status"),
            "ACTIVE"
        );
        assert_eq!(
            value(&["instance", "show", "cirros-vm3"], "host"),
            "compute1"
        );
        // `router show` likewise: it runs on network1, not here.
        assert_eq!(
            value(&["router", "show", "router_100_101"], "host"),
            "network1"
        );
        assert_eq!(
            value(&["router", "show", "router_100_101"], "status"),
            "ACTIVE"
        );

        // kill -9 compute1's agent; a change meanwhile waits in etcd; restarted, it converges.
        compute1.kill_agent();
        ok(&[
            "instance",
            "create",
            "vm4",
            "--network",
            "vlan101",
            "--host",
            "compute1",
            "--no-wait",
        ]);
        let vm4 = value(&["instance", "show", "vm4"], "id");
        assert!(!namespaces(compute1).contains(&format!("qinstance-{vm4}")));
        compute1.start_agent();
        wait_for("vm4 pings vm3's router", || {
            pings(compute1, &vm4, "172.16.101.1")
        });
        assert_eq!(namespaces(compute1).len(), 2, "nothing duplicated");

        // The lease: a dead agent's host shows as down, and its objects' status says so.
        compute1.kill_agent();
        wait_for("compute1 down", || {
            value(&["host", "show", "compute1"], "alive") == "false"
        });
        let status = ok(&["host", "show", "compute1", "-f", "json"]);
        assert!(status.contains("\"DOWN\""), "{status}");
        assert_eq!(value(&["instance", "show", "cirros-vm3"], "status"), "DOWN");
        // A change for a host that is down: an error naming it, and the change is stored.
        let out = qrouter(&[
            "instance",
            "create",
            "vm6",
            "--network",
            "vlan101",
            "--host",
            "compute1",
        ]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("host compute1 is down"), "{err}");
        ok(&["instance", "delete", "vm6", "--no-wait"]);

        // A "reboot": compute1 loses every namespace and link; its agent alone rebuilds it.
        compute1.sh_ok(
            "for ns in $(ip netns list | cut -d' ' -f1); do ip netns delete $ns; done; \
             for l in $(ip -o link show | grep -o 'brq[^:@]*\\|vxlan-[0-9]*\\|tap[^:@]*' | sort -u); do ip link delete $l 2>/dev/null; done; true",
        );
        assert!(namespaces(compute1).is_empty());
        compute1.start_agent();
        wait_for("cirros-vm3 back after the reboot", || {
            pings(compute1, &vm3, "10.10.10.1")
        });

        // etcd stopped: the CLI fails cleanly; restarted: agents reconnect and converge.
        server.stop();
        let out = qrouter(&[
            "instance",
            "create",
            "vm5",
            "--network",
            "vlan101",
            "--host",
            "compute1",
        ]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains(ETCD_ADDR));
        // compute1's agent starts again while etcd is away (a host that boots first): it
        // waits for etcd, and then applies vm5 below.
        compute1.kill_agent();
        compute1.start_agent();
        server.restart();
        ok(&[
            "instance",
            "create",
            "vm5",
            "--network",
            "vlan101",
            "--host",
            "compute1",
        ]);
        let vm5 = value(&["instance", "show", "vm5"], "id");
        wait_for("vm5 after etcd's restart", || {
            pings(compute1, &vm5, "172.16.101.1")
        });

        // Deleting converges on the hosts too.
        ok(&["instance", "delete", "vm4", "vm5"]);
        wait_for("vm4 and vm5 gone", || namespaces(compute1).len() == 1);

        rig.finish();
    });
}

#[test]
fn two_compute_hosts_and_a_floating_ip() {
    sandboxed(|| {
        let mut rig = MultiHost::started(
            &[
                ("network1", "192.168.50.11", "all"),
                ("compute1", "192.168.50.12", "compute"),
                ("compute2", "192.168.50.13", "compute"),
            ],
            &[],
        );
        let hosts = &mut rig.hosts;
        ok(&[
            "network",
            "create",
            "vlan101",
            "--provider-network-type",
            "vxlan",
            "--provider-segment",
            "101",
        ]);
        ok(&[
            "network",
            "create",
            "ext_net",
            "--external",
            "--bridge",
            "br-ex",
        ]);
        ok(&[
            "subnet",
            "create",
            "vlan101",
            "--network",
            "vlan101",
            "--subnet-range",
            "172.16.101.0/24",
        ]);
        ok(&[
            "subnet",
            "create",
            "ext",
            "--network",
            "ext_net",
            "--subnet-range",
            "10.10.10.0/24",
            "--gateway",
            "10.10.10.1",
        ]);
        ok(&[
            "router",
            "create",
            "router_100_101",
            "--external-gateway",
            "ext_net",
        ]);
        ok(&["router", "add", "subnet", "router_100_101", "vlan101"]);
        ok(&[
            "instance",
            "create",
            "upstream",
            "--network",
            "ext_net",
            "--fixed-ip",
            "10.10.10.1",
            "--host",
            "network1",
        ]);
        // Without --host: the live compute host with the fewest instances, in turn.
        ok(&[
            "instance",
            "create",
            "vm-a",
            "--network",
            "vlan101",
            "--fixed-ip",
            "172.16.101.3",
        ]);
        ok(&[
            "instance",
            "create",
            "vm-b",
            "--network",
            "vlan101",
            "--fixed-ip",
            "172.16.101.4",
        ]);
        let hosts_json: serde_json::Value =
            serde_json::from_str(&ok(&["host", "list", "-f", "json"])).unwrap();
        let on = |host: &str| -> String {
            hosts_json
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["Name"] == host)
                .map(|h| h["Instances"].to_string())
                .unwrap()
        };
        assert!(
            on("compute1").contains("vm-a") && on("compute2").contains("vm-b"),
            "{hosts_json}"
        );
        let [network1, compute1, compute2] = &hosts[..] else {
            unreachable!("three hosts")
        };
        let (a, b) = (
            value(&["instance", "show", "vm-a"], "id"),
            value(&["instance", "show", "vm-b"], "id"),
        );
        // Two instances on two compute hosts, one network: straight over VXLAN.
        wait_for("vm-a reaches vm-b", || pings(compute1, &a, "172.16.101.4"));
        let fdb = compute1.sh_ok("bridge fdb show dev vxlan-101");
        assert!(
            fdb.contains("dst 192.168.50.11") && fdb.contains("dst 192.168.50.13"),
            "{fdb}"
        );
        unicast_goes_to_its_host_alone(network1, compute1, compute2, &a);
        // A floating IP from upstream (network1) to vm-b (compute2).
        let fip = value(
            &["floating", "ip", "create", "ext_net", "--instance", "vm-b"],
            "floating_ip_address",
        );
        let upstream = value(&["instance", "show", "upstream"], "id");
        wait_for("upstream reaches vm-b's floating IP", || {
            pings(network1, &upstream, &fip)
        });
        assert!(pings(compute2, &b, "10.10.10.1"));
        // 20 CLIs at once, 10 from network1 and 10 from compute1 (over the underlay): no
        // address handed out twice, and every host's kernel agrees with the store.
        let clis: Vec<Child> = (0..20)
            .map(|i| {
                let from = if i % 2 == 0 { network1 } else { compute1 };
                let on = if i % 4 < 2 { "compute1" } else { "compute2" };
                let name = format!("par{i}");
                from.command(qrouter_bin().to_str().unwrap())
                    .args([
                        "instance",
                        "create",
                        &name,
                        "--network",
                        "vlan101",
                        "--host",
                        on,
                    ])
                    .env("QROUTER_STORE", url())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in clis {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let ports: serde_json::Value =
            serde_json::from_str(&ok(&["port", "list", "-f", "json"])).unwrap();
        let ips: Vec<String> = ports
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["Fixed IP Addresses"].to_string())
            .collect();
        let distinct: std::collections::BTreeSet<&String> = ips.iter().collect();
        assert_eq!(distinct.len(), ips.len(), "{ips:?}");
        // An instance's port has the status its host's agent reported for the instance.
        let rows = ports.as_array().unwrap().iter();
        let instances = rows.filter(|p| p["Device Owner"] == "compute:none");
        assert!(instances.clone().count() >= 20);
        assert!(
            instances.clone().all(|p| p["Status"] == "ACTIVE"),
            "{ports:#}"
        );
        // Each CLI waited for its host: the namespaces are there already.
        let count = |h: &Host| {
            namespaces(h)
                .iter()
                .filter(|n| n.starts_with("qinstance-"))
                .count()
        };
        assert_eq!((count(compute1), count(compute2)), (11, 11));
        // A deleted instance's MAC leaves the other hosts' VXLAN devices (par2 ran on compute2).
        let par2 = value(&["instance", "show", "par2"], "mac_address");
        let entry = format!("{par2} dst 192.168.50.13");
        wait_for("compute1 sends par2's MAC to compute2", || {
            compute1
                .sh_ok("bridge fdb show dev vxlan-101")
                .contains(&entry)
        });
        ok(&["instance", "delete", "par2"]);
        wait_for("par2's MAC gone from compute1", || {
            !compute1
                .sh_ok("bridge fdb show dev vxlan-101")
                .contains(&entry)
        });
        // An agent stopped with SIGTERM ends its lease: the host is down at once, not after
        // the lease's TTL (3 s here).
        let stopped = Instant::now();
        hosts[2].stop_agent();
        assert_eq!(value(&["host", "show", "compute2"], "alive"), "false");
        assert!(stopped.elapsed() < Duration::from_secs(2));
        rig.finish();
    });
}

/// l2population: each compute host sends the other's instance MAC straight to its VTEP, so
/// network1, which has vlan101 too (the router's qr- port), receives none of the unicast
/// frames between vm-a (compute1, `vm_a` its id) and vm-b (compute2). With compute1's entry
/// deleted by hand they are flooded to network1 too, until `sync` puts it back.
fn unicast_goes_to_its_host_alone(network1: &Host, compute1: &Host, compute2: &Host, vm_a: &str) {
    let mac = |name: &str| value(&["instance", "show", name], "mac_address");
    let (mac_a, mac_b) = (mac("vm-a"), mac("vm-b"));
    let fdb = |h: &Host| h.sh_ok("bridge fdb show dev vxlan-101");
    let to_b = format!("{mac_b} dst 192.168.50.13");
    wait_for("each compute host sends the other's instance to it", || {
        fdb(compute1).contains(&to_b)
            && fdb(compute2).contains(&format!("{mac_a} dst 192.168.50.12"))
    });
    // The echo requests and replies (inside VXLAN) that reach network1 during 10 pings,
    // ARP settled by the pings before.
    let echoes_at_network1 = || {
        vxlan_echoes(network1, "192.168.50.12", None, || {
            compute1.sh_ok(&format!(
                "ip netns exec qinstance-{vm_a} ping -c 10 -i 0.02 -W 1 172.16.101.4"
            ));
        })
    };
    assert_eq!(echoes_at_network1(), 0);
    compute1.sh_ok(&format!("bridge fdb del {mac_b} dev vxlan-101"));
    assert!(echoes_at_network1() >= 10, "the requests are flooded");
    // The drift, then the repair.
    let would = format!("would: host: vxlan-101 sends {mac_b} to 192.168.50.13");
    let out = qrouter(&["sync", "--dry-run", "--host", "compute1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.code() == Some(1) && text.contains(&would),
        "{text}"
    );
    assert!(
        !fdb(compute1).contains(&to_b),
        "the dry run changed nothing"
    );
    let text = ok(&["sync", "--host", "compute1"]);
    assert!(
        text.contains(&format!("host: vxlan-101 sends {mac_b} to 192.168.50.13")),
        "{text}"
    );
    assert!(fdb(compute1).contains(&to_b));
}
