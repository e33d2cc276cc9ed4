//! Placement after the fact: objects made while no host of their role was alive are placed
//! when one starts; `router set --host` moves a router; with `--allow-automatic-failover`
//! a dead network host's router moves to a live one once its lease has expired, and the
//! host, back, removes what it no longer runs. Checked with traffic across hosts.

mod common;
mod etcd;
mod hosts;

use std::time::{Duration, Instant};

use common::*;
use hosts::*;

fn router_ns(host: &Host) -> Vec<String> {
    let all = namespaces(host);
    all.into_iter()
        .filter(|n| n.starts_with("qrouter-"))
        .collect()
}

#[test]
fn routers_are_placed_moved_and_failed_over() {
    sandboxed(|| {
        let mut rig = MultiHost::new(&[
            ("network1", "192.168.50.11", "network"),
            ("network2", "192.168.50.12", "network"),
            ("compute1", "192.168.50.13", "compute"),
        ]);
        let hosts = &mut rig.hosts;
        hosts[2].start_agent();
        wait_alive(1);
        // The external network spans hosts too, so the router may run on either.
        web_and_upstream("172.16.70.0/24");
        // No network host yet: the router runs nowhere, with a warning.
        let out = qrouter(&["router", "create", "r1", "--external-gateway", "ext_net"]);
        assert!(out.status.success());
        let warned = String::from_utf8_lossy(&out.stderr);
        assert!(
            warned.contains("router r1: no live network host"),
            "{warned}"
        );
        ok(&["router", "add", "subnet", "r1", "web"]);
        assert_eq!(value(&["router", "show", "r1"], "host"), "");
        assert_eq!(value(&["router", "show", "r1"], "status"), "BUILD");
        // An instance taking its address by DHCP, with no DHCP server anywhere yet: stored,
        // and its agent's error, naming it and its host, within the 10 s a command waits
        // (its client tries for 5 s, once: the agent does not try it again in that pass).
        let started = std::time::Instant::now();
        let out = qrouter(&["instance", "create", "vm", "--network", "web", "--dhcp"]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("instance vm on host compute1") && err.contains("got no lease"),
            "{err}"
        );
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
        let vm = value(&["instance", "show", "vm"], "id");

        // network1 starts: its agent places the router and the DHCP server on it, and
        // compute1's agent retries the instance, which now gets its lease and pings upstream.
        hosts[0].start_agent_with(&["--allow-automatic-failover", "--failover-grace", "3"]);
        wait_for("r1 placed on network1", || {
            value(&["router", "show", "r1"], "host") == "network1"
        });
        assert_eq!(value(&["network", "show", "web"], "dhcp_host"), "network1");
        wait_for("vm pings upstream through r1 on network1", || {
            pings(&hosts[2], &vm, "10.10.10.1")
        });
        assert_eq!(router_ns(&hosts[0]).len(), 1);

        // Moving by hand; a host that cannot take it is refused, and nothing changes.
        hosts[1].start_agent_with(&["--allow-automatic-failover", "--failover-grace", "3"]);
        wait_for("network2 alive", || {
            qrouter(&["host", "show", "network2", "-f", "value", "-c", "alive"]).stdout == b"true\n"
        });
        refused(
            &["router", "set", "r1", "--host", "compute1"],
            "a compute host runs no routers",
        );
        refused(
            &["router", "set", "r1", "--host", "nosuch"],
            "--host nosuch: no such host",
        );
        refused(
            &[
                "instance",
                "create",
                "x",
                "--network",
                "web",
                "--host",
                "network2",
            ],
            "a network host runs no instances",
        );
        assert_eq!(value(&["router", "show", "r1"], "host"), "network1");
        ok(&["router", "set", "r1", "--host", "network2"]);
        // The command waited for both hosts: the namespace moved.
        assert!(router_ns(&hosts[0]).is_empty());
        assert_eq!(router_ns(&hosts[1]).len(), 1);
        wait_for("vm pings upstream through r1 on network2", || {
            pings(&hosts[2], &vm, "10.10.10.1")
        });

        // network2 dies (cut off the underlay, its agent killed): once its lease has
        // expired, network1's agent moves r1 back, and traffic flows again.
        let died = Instant::now();
        hosts[1].sh_ok("ip link set eth0 down");
        hosts[1].kill_agent();
        assert_eq!(value(&["router", "show", "r1"], "host"), "network2");
        wait_for("r1 failed over to network1", || {
            value(&["router", "show", "r1"], "host") == "network1"
        });
        let moved = died.elapsed();
        assert!(
            moved >= Duration::from_secs(2),
            "moved before the lease expired: {moved:?}"
        );
        wait_for("vm pings upstream through r1 on network1 again", || {
            pings(&hosts[2], &vm, "10.10.10.1")
        });
        println!(
            "failover: router moved after {} ms, traffic back after {} ms",
            moved.as_millis(),
            died.elapsed().as_millis()
        );
        // network2 back: its agent's sync removes the router it no longer runs.
        hosts[1].sh_ok("ip link set eth0 up");
        assert_eq!(
            router_ns(&hosts[1]).len(),
            1,
            "a dead host keeps what it had"
        );
        hosts[1].start_agent();
        wait_for("network2 cleaned up", || router_ns(&hosts[1]).is_empty());
        assert_eq!(value(&["router", "show", "r1"], "host"), "network1");
        assert!(pings(&hosts[2], &vm, "10.10.10.1"));

        rig.finish();
    });
}
