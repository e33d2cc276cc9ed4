//! The seed scenario (README.md, "The seed scenario, worked"), every observable step, with
//! real traffic.

mod common;

use common::*;

#[test]
fn seed_steps_1_to_10() {
    sandboxed(|| {
        seed_topology();
        // Step 1: set the gateway. Its address is announced with a gratuitous ARP once up.
        let upstream = namespace_of("instance", "upstream");
        let garp = capture(
            &upstream,
            "eth0",
            Filter::ArpHost([10, 10, 10, 2].into()),
            set_gateway,
        );
        assert!(
            garp.contains("ARP, Request who-has 10.10.10.2 tell 10.10.10.2"),
            "{garp}"
        );
        let router = json(&["router", "show", "router_100_101"]);
        let ns = router["namespace"].as_str().unwrap().to_string();
        assert!(ns.starts_with("qrouter-") && ns.ends_with(router["id"].as_str().unwrap()));
        assert_eq!(router["external_gateway_ip"], "10.10.10.2");

        // Steps 2-4: the gateway port, its tap on br-ex, its qg- peer holding 10.10.10.2.
        let ports = json(&["port", "list", "--router", "router_100_101"]);
        let gw = ports
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["Device Owner"] == "network:router_gateway")
            .unwrap();
        let port_id = gw["ID"].as_str().unwrap();
        let (qg, tap) = (
            format!("qg-{}", &port_id[..11]),
            format!("tap{}", &port_id[..11]),
        );
        assert_eq!(gw["Device Name"], qg.as_str());
        // As in Neutron, a router's port has no name of its own.
        assert_eq!(gw["Name"], "");
        assert!(
            sh_ok(&format!("ip -o link show {tap}")).contains("master br-ex"),
            "tap on br-ex"
        );
        // No multicast snooping: the bridge does not join the all-snoopers group itself.
        let br_ex = sh_ok("ip -d link show br-ex");
        assert!(br_ex.contains("mcast_snooping 0"), "{br_ex}");
        assert!(!sh_ok("ip maddr show dev br-ex").contains("224.0.0.106"));
        let qg_addr = sh_ok(&format!("ip netns exec {ns} ip -o -4 addr show dev {qg}"));
        assert!(qg_addr.contains("inet 10.10.10.2/24"), "{qg_addr}");
        assert_eq!(
            sh_ok(&format!("ip netns exec {ns} ip -o link show {qg}"))
                .matches("state UP")
                .count(),
            1
        );

        // Step 5: default via 10.10.10.1.
        let routes = sh_ok(&format!("ip netns exec {ns} ip route"));
        assert!(
            routes.contains(&format!("default via 10.10.10.1 dev {qg}")),
            "{routes}"
        );

        // Step 6: connected to vlan100, vlan101 and ext_net (and Neutron's sysctls).
        let links = sh_ok(&format!("ip netns exec {ns} ip -o -4 addr"));
        for net in ["172.16.100.1/24", "172.16.101.1/24", "10.10.10.2/24"] {
            assert!(links.contains(net), "{net} in {links}");
        }
        assert_eq!(
            sh_ok(&format!("ip netns exec {ns} sysctl -n net.ipv4.ip_forward")).trim(),
            "1"
        );
        // IPv4 routers: no IPv6 link-local address on qr- or qg-, whose solicitations would
        // be flooded into every router on the external bridge.
        let ipv6 = sh_ok(&format!("ip netns exec {ns} ip -o -6 addr"));
        assert!(!ipv6.contains("qr-") && !ipv6.contains("qg-"), "{ipv6}");
        assert_eq!(
            sh_ok("sysctl -n net.ipv4.ip_forward").trim(),
            "0",
            "the sandbox's own namespace does not forward"
        );

        // Step 7: ping and a two-hop traceroute from cirros-vm3.
        ok(&[
            "instance",
            "exec",
            "cirros-vm3",
            "--",
            "ping",
            "-c",
            "2",
            "-W",
            "2",
            "10.10.10.1",
        ]);
        let trace = ok(&[
            "instance",
            "exec",
            "cirros-vm3",
            "--",
            "traceroute",
            "-n",
            "-q",
            "1",
            "-w",
            "2",
            "10.10.10.1",
        ]);
        let hops: Vec<&str> = trace
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        assert_eq!(hops, ["172.16.101.1", "10.10.10.1"], "{trace}");

        // Step 8: the SNAT rule exactly as iptables prints it.
        let nat = sh_ok(&format!("ip netns exec {ns} iptables -t nat -S"));
        assert!(
            nat.contains(&format!(
                "-A qrouter-snat -o {qg} -j SNAT --to-source 10.10.10.2 --random-fully\n"
            )),
            "{nat}"
        );
        assert!(nat.contains(&format!(
            "-A qrouter-POSTROUTING ! -o {qg} -m conntrack ! --ctstate DNAT -j ACCEPT\n"
        )));
        assert!(nat.contains("-A POSTROUTING -j qrouter-POSTROUTING\n"));

        // Step 9: tcpdump on both sides of the router; the far side sees 10.10.10.2.
        let vlan101 = value(&["subnet", "show", "vlan101"], "id");
        let qr = ports
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["Fixed IP Addresses"].to_string().contains("172.16.101.1"))
            .map(|p| p["Device Name"].as_str().unwrap().to_string())
            .unwrap();
        assert!(!vlan101.is_empty());
        let ping = || {
            vm3_pings_upstream();
        };
        let inside = capture_icmp(&ns, &qr, ping);
        assert!(
            inside.contains("172.16.101.3 > 10.10.10.1: ICMP echo request"),
            "{inside:?}"
        );
        let outside = capture_icmp(&ns, &qg, ping);
        assert!(
            outside.contains("10.10.10.2 > 10.10.10.1: ICMP echo request"),
            "{outside}"
        );
        let vm = namespace_of("instance", "cirros-vm3");
        let upstream = namespace_of("instance", "upstream");
        let seen = tcp_probe(&upstream, "10.10.10.1:8080", &vm)
            .expect("cirros-vm3 reaches upstream over TCP");
        assert_eq!(seen.ip().to_string(), "10.10.10.2");

        // Step 10: the outside cannot open a connection to the instance, even with a route.
        sh_ok(&format!(
            "ip netns exec {upstream} ip route add 172.16.101.0/24 via 10.10.10.2"
        ));
        assert_eq!(tcp_probe(&vm, "172.16.101.3:22", &upstream), None);
        let (pinged, _) = sh(&format!(
            "ip netns exec {upstream} ping -c 1 -W 1 172.16.101.3"
        ));
        assert!(!pinged, "upstream must not reach 172.16.101.3");
        // ...while the instance's own connections still flow back through the same gateway.
        assert!(tcp_probe(&upstream, "10.10.10.1:8081", &vm).is_some());
    });
}

#[test]
fn tenant_networks_on_one_router_reach_each_other_without_nat() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        ok(&["instance", "create", "vm100", "--network", "vlan100"]);
        // 172.16.100.2 is the network's DHCP port (Neutron's order).
        assert_eq!(
            value(&["instance", "show", "vm100"], "fixed_ip"),
            "172.16.100.3"
        );
        let seen = tcp_probe(
            &namespace_of("instance", "vm100"),
            "172.16.100.3:9000",
            &namespace_of("instance", "cirros-vm3"),
        );
        assert_eq!(
            seen.map(|a| a.ip().to_string()).as_deref(),
            Some("172.16.101.3"),
            "no SNAT between tenant networks"
        );
    });
}

#[test]
fn router_show_reports_live_kernel_views_and_drift() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        let show = json(&["router", "show", "router_100_101"]);
        assert_eq!(show["kernel"], "in sync");
        assert_eq!(show["interfaces_live"].as_array().unwrap().len(), 3);
        let nat = show["nat"].as_array().unwrap();
        assert!(nat.iter().all(|r| r["Kernel"] == "ok"));
        let ns = show["namespace"].as_str().unwrap();
        let qr = show["interfaces_live"][1]["Device"].as_str().unwrap();
        sh_ok(&format!("ip netns exec {ns} ip link del {qr}"));
        sh_ok(&format!(
            "ip netns exec {ns} iptables -t nat -F qrouter-snat"
        ));
        let drift = json(&["router", "show", "router_100_101"]);
        assert_ne!(drift["kernel"], "in sync");
        assert_eq!(drift["interfaces_live"][1]["Kernel"], "MISSING");
        assert!(drift["nat"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["Kernel"] == "MISSING"));

        // sync --dry-run reports and exits 1; sync repairs; then nothing is left to do.
        let dry = qrouter(&["sync", "--dry-run"]);
        assert_eq!(dry.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&dry.stdout).contains(&format!("create veth {qr}")));
        ok(&["sync"]);
        assert_eq!(
            json(&["router", "show", "router_100_101"])["kernel"],
            "in sync"
        );
        assert_eq!(
            ok(&["sync", "--dry-run"]).trim(),
            "in sync: the kernel matches the store"
        );
        vm3_pings_upstream();
    });
}

#[test]
fn second_converge_changes_nothing() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        let before = kernel_snapshot();
        assert_eq!(
            ok(&["sync"]).trim(),
            "in sync: the kernel matches the store"
        );
        // Same ifindexes, addresses, routes and rules: nothing was recreated.
        assert_eq!(kernel_snapshot(), before);
        // Repeating a command that changes nothing is accepted and changes nothing.
        set_gateway();
        assert_eq!(kernel_snapshot(), before);
    });
}

#[test]
fn sync_rebuilds_everything_after_a_reboot() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        // A reboot: every namespace, veth and bridge is gone; the store remains.
        sh_ok("for n in $(ip netns list | cut -d' ' -f1); do ip netns del $n; done");
        sh_ok("for b in $(ip -o link show type bridge | cut -d' ' -f2 | tr -d :); do ip link del $b; done");
        assert_eq!(
            value(&["router", "show", "router_100_101"], "status"),
            "DOWN"
        );
        // The router's namespace file is there without a namespace on it, as a process
        // killed between making the file and mounting the namespace leaves it.
        let ns = value(&["router", "show", "router_100_101"], "namespace");
        std::fs::write(format!("/run/netns/{ns}"), "").unwrap();
        ok(&["sync"]);
        assert_eq!(
            value(&["router", "show", "router_100_101"], "kernel"),
            "in sync"
        );
        vm3_pings_upstream();
    });
}

#[test]
fn deleting_everything_leaves_nothing_behind() {
    sandboxed(|| {
        let empty = kernel_snapshot();
        seed_topology();
        set_gateway();
        ok(&["router", "unset", "router_100_101", "--external-gateway"]);
        set_gateway();
        ok(&["router", "remove", "interface", "router_100_101", "vlan100"]);
        ok(&["instance", "delete", "cirros-vm3", "upstream"]);
        ok(&["router", "delete", "router_100_101", "--force"]);
        ok(&["subnet", "delete", "vlan100"]);
        ok(&["network", "delete", "vlan100", "vlan101", "ext_net"]);
        assert_eq!(kernel_snapshot(), empty);
        assert_eq!(ok(&["router", "list", "-f", "value"]), "");
    });
}
