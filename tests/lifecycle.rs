//! Routers over their whole life: a second router beside the seed's, isolation between them,
//! and a full create -> use -> delete cycle that must leave the sandbox exactly as it was.

mod common;

use common::*;

#[test]
fn tenants_behind_different_routers_reach_each_other_only_through_floating_ips() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        let gw_b = second_router();
        let (vm3, vm_b, upstream) = (
            namespace_of("instance", "cirros-vm3"),
            namespace_of("instance", "vm-b"),
            namespace_of("instance", "upstream"),
        );
        // The upstream switch routes each tenant range to its router, as a neighbour would:
        // the only thing still keeping the tenants apart is the routers themselves.
        sh_ok(&format!(
                "ip netns exec {upstream} sh -c 'sysctl -qw net.ipv4.ip_forward=1 && ip route add 172.16.101.0/24 via 10.10.10.2 && ip route add 172.16.200.0/24 via {gw_b}'"
            ));
        // Both reach the outside.
        assert!(tcp_probe(&upstream, "10.10.10.1:80", &vm3).is_some());
        assert!(tcp_probe(&upstream, "10.10.10.1:80", &vm_b).is_some());
        // Neither reaches the other's private address, in either direction.
        assert_eq!(tcp_probe(&vm_b, "172.16.200.3:22", &vm3), None);
        assert_eq!(tcp_probe(&vm3, "172.16.101.3:22", &vm_b), None);
        let (pinged, _) = sh(&format!("ip netns exec {vm3} ping -c 1 -W 1 172.16.200.3"));
        assert!(!pinged, "cirros-vm3 pinged vm-b's private address");

        // With a floating IP, vm-b is reachable, through it only; it sees router A's SNAT.
        let fip = value(
            &["floating", "ip", "create", "ext_net", "--instance", "vm-b"],
            "floating_ip_address",
        );
        let seen = tcp_probe_to(&vm_b, "172.16.200.3:22", &format!("{fip}:22"), &vm3)
            .expect("TCP to vm-b's floating IP");
        assert_eq!(seen.ip().to_string(), "10.10.10.2");
        assert_eq!(tcp_probe(&vm_b, "172.16.200.3:22", &vm3), None);
    });
}

#[test]
fn full_cycle_leaves_the_sandbox_as_it_was() {
    sandboxed(|| {
        let (kernel_before, store_before) = (kernel_snapshot(), store_snapshot());
        seed_topology();
        set_gateway();
        second_router();
        let ns = namespace_of("router", "router_100_101");
        let upstream = namespace_of("instance", "upstream");

        // Extra route, SNAT off and on, rename: each lands in the namespace.
        let route = "destination=192.168.50.0/24,gateway=172.16.101.254";
        ok(&["router", "add", "route", "router_100_101", "--route", route]);
        let routes = sh_ok(&format!("ip netns exec {ns} ip route"));
        assert!(
            routes.contains("192.168.50.0/24 via 172.16.101.254"),
            "{routes}"
        );
        let snat = format!(
            "-o {} -j SNAT --to-source 10.10.10.2 --random-fully",
            router_device("router_100_101", "10.10.10.2")
        );
        let nat = || {
            sh_ok(&format!(
                "ip netns exec {ns} iptables -t nat -S qrouter-snat"
            ))
        };
        ok(&["router", "set", "router_100_101", "--disable-snat"]);
        assert!(!nat().contains(&snat), "{}", nat());
        ok(&["router", "set", "router_100_101", "--enable-snat"]);
        assert!(nat().contains(&snat), "{}", nat());
        ok(&["router", "set", "router_100_101", "--name", "edge"]);
        assert_eq!(namespace_of("router", "edge"), ns);

        // Use: floating IPs on both routers answer from upstream.
        for instance in ["cirros-vm3", "vm-b"] {
            let fip = value(
                &[
                    "floating",
                    "ip",
                    "create",
                    "ext_net",
                    "--instance",
                    instance,
                ],
                "floating_ip_address",
            );
            sh_ok(&format!("ip netns exec {upstream} ping -c 1 -W 2 {fip}"));
        }
        vm3_pings_upstream();

        // Delete in the order an operator would; each step is refused while something depends on it.
        let refused = qrouter(&["router", "delete", "edge"]);
        assert_eq!(refused.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&refused.stderr).contains("qr-"));
        let fips = ok(&["floating", "ip", "list", "-f", "value", "-c", "ID"]);
        let fips: Vec<&str> = fips.lines().collect();
        ok(&[&["floating", "ip", "delete"][..], &fips].concat());
        ok(&["router", "remove", "route", "edge", "--route", route]);
        for router in ["edge", "router_b"] {
            ok(&["router", "unset", router, "--external-gateway"]);
        }
        ok(&["router", "remove", "interface", "edge", "vlan100"]);
        ok(&["router", "remove", "subnet", "edge", "vlan101"]);
        ok(&["instance", "delete", "cirros-vm3", "upstream", "vm-b"]);
        ok(&["router", "delete", "edge"]);
        ok(&["router", "delete", "router_b", "--force"]);
        ok(&["subnet", "delete", "vlan100", "vlan101", "vlan200", "ext"]);
        ok(&[
            "network", "delete", "vlan100", "vlan101", "vlan200", "ext_net",
        ]);

        assert_eq!(kernel_snapshot(), kernel_before);
        assert_eq!(store_snapshot(), store_before);
        assert_eq!(ok(&["floating", "ip", "list", "-f", "value"]), "");
    });
}

#[test]
fn a_live_router_changes_its_rules_in_place() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        let ns = namespace_of("router", "router_100_101");
        let qg = router_device("router_100_101", "10.10.10.2");
        let snat_chain = || {
            sh_ok(&format!(
                "ip netns exec {ns} iptables -t nat -S qrouter-snat"
            ))
        };
        let hairpin = |net: &str| {
            format!("-A qrouter-snat -s {net} -m conntrack --ctstate DNAT -j SNAT --to-source 10.10.10.2 --random-fully\n")
        };
        let (head, tail) = (
            "-N qrouter-snat\n-A qrouter-snat -j qrouter-float-snat\n",
            format!("-A qrouter-snat -o {qg} -j SNAT --to-source 10.10.10.2 --random-fully\n"),
        );

        // A third tenant network after the gateway: its rule goes in before the SNAT rule.
        tenant_network("vlan102", "172.16.102.0/24");
        ok(&["router", "add", "interface", "router_100_101", "vlan102"]);
        let nets = ["172.16.100.0/24", "172.16.101.0/24", "172.16.102.0/24"];
        let rules: String = nets.iter().map(|n| hairpin(n)).collect();
        let chain = snat_chain();
        // The tenant networks' rules come in port order.
        let mut lines: Vec<&str> = chain.lines().collect();
        lines[2..5].sort();
        assert_eq!(
            lines.join("\n") + "\n",
            format!("{head}{rules}{tail}"),
            "{chain}"
        );
        assert_eq!(
            ok(&["sync", "--dry-run"]).trim(),
            "in sync: the kernel matches the store"
        );

        // A floating IP and the removal of the third network: the kernel still matches.
        ok(&[
            "floating",
            "ip",
            "create",
            "ext_net",
            "--instance",
            "cirros-vm3",
        ]);
        ok(&["router", "remove", "interface", "router_100_101", "vlan102"]);
        let chain = snat_chain();
        assert!(!chain.contains("172.16.102.0/24"), "{chain}");
        assert!(chain.ends_with(&tail), "{chain}");
        assert_eq!(
            ok(&["sync", "--dry-run"]).trim(),
            "in sync: the kernel matches the store"
        );
        vm3_pings_upstream();
    });
}
