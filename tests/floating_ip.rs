//! Floating IPs (README.md, "Floating IPs"): 1:1 NAT reaches the instance from outside,
//! the instance only sees its private address, and unset removes address, rules and state.

mod common;

use common::*;

#[test]
fn floating_ip_reaches_the_instance_and_unset_removes_it() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        let upstream = namespace_of("instance", "upstream");
        let mut fip = Default::default();
        // The new address is announced with a gratuitous ARP, as `arping -U` sends it.
        let garp = capture(
            &upstream,
            "eth0",
            Filter::ArpHost([10, 10, 10, 3].into()),
            || {
                fip = json(&[
                    "floating",
                    "ip",
                    "create",
                    "ext_net",
                    "--instance",
                    "cirros-vm3",
                ]);
            },
        );
        assert!(
            garp.contains("ARP, Request who-has 10.10.10.3 tell 10.10.10.3"),
            "{garp}"
        );
        assert_eq!(fip["floating_ip_address"], "10.10.10.3");
        assert_eq!(fip["fixed_ip_address"], "172.16.101.3");
        assert_eq!(fip["router"], "router_100_101");

        let ns = namespace_of("router", "router_100_101");
        let addrs = sh_ok(&format!("ip netns exec {ns} ip -o -4 addr"));
        assert!(addrs.contains("inet 10.10.10.3/32"), "{addrs}");
        let nat = sh_ok(&format!("ip netns exec {ns} iptables -t nat -S"));
        for rule in [
            "-A qrouter-PREROUTING -d 10.10.10.3/32 -j DNAT --to-destination 172.16.101.3\n",
            "-A qrouter-OUTPUT -d 10.10.10.3/32 -j DNAT --to-destination 172.16.101.3\n",
            "-A qrouter-float-snat -s 172.16.101.3/32 -j SNAT --to-source 10.10.10.3 --random-fully\n",
        ] {
            assert!(nat.contains(rule), "{rule} in {nat}");
        }

        // Repair order: the DNAT rules first, then the address that draws the traffic.
        sh_ok(&format!(
                "ip netns exec {ns} sh -c 'ip addr del 10.10.10.3/32 dev {qg} && iptables -t nat -F qrouter-PREROUTING'",
                qg = router_device("router_100_101", "10.10.10.2")
            ));
        let plan = qrouter(&["sync", "--dry-run"]);
        let plan = String::from_utf8_lossy(&plan.stdout);
        let rules_at = plan
            .find("update qrouter chains of table nat")
            .expect("rules drift");
        let addr_at = plan
            .find("add address 10.10.10.3/32")
            .expect("address drift");
        assert!(rules_at < addr_at, "{plan}");
        ok(&["sync"]);

        // From upstream: ping and TCP reach cirros-vm3, which sees the caller's real address.
        let vm = namespace_of("instance", "cirros-vm3");
        sh_ok(&format!(
            "ip netns exec {upstream} ping -c 1 -W 2 10.10.10.3"
        ));
        let seen = tcp_probe_to(&vm, "172.16.101.3:22", "10.10.10.3:22", &upstream)
            .expect("TCP through the floating IP");
        assert_eq!(seen.ip().to_string(), "10.10.10.1");
        // cirros-vm3's own connections now leave as 10.10.10.3.
        let out = tcp_probe(&upstream, "10.10.10.1:8080", &vm).unwrap();
        assert_eq!(out.ip().to_string(), "10.10.10.3");
        // tcpdump: 10.10.10.3 on the qg- side, 172.16.101.3 on the qr- side.
        let (qg, qr) = (
            router_device("router_100_101", "10.10.10.2"),
            router_device("router_100_101", "172.16.101.1"),
        );
        let ping = || {
            sh_ok(&format!(
                "ip netns exec {upstream} ping -c 1 -W 2 10.10.10.3"
            ))
            .len()
        };
        assert!(capture_icmp(&ns, &qg, || {
            ping();
        })
        .contains("10.10.10.1 > 10.10.10.3: ICMP echo request"));
        assert!(capture_icmp(&ns, &qr, || {
            ping();
        })
        .contains("10.10.10.1 > 172.16.101.3: ICMP echo request"));

        // Hairpin: another instance behind the same router reaches the floating IP.
        ok(&["instance", "create", "vm4", "--network", "vlan101"]);
        let vm4 = namespace_of("instance", "vm4");
        assert!(tcp_probe_to(&vm, "172.16.101.3:80", "10.10.10.3:80", &vm4).is_some());

        // A router change that would strand the floating IP is refused.
        let refused = qrouter(&["router", "unset", "router_100_101", "--external-gateway"]);
        assert_eq!(refused.status.code(), Some(2));

        // Unset: address, rules and conntrack entries are gone; the connection fails again.
        ok(&["floating", "ip", "unset", "10.10.10.3", "--port"]);
        assert!(!sh_ok(&format!("ip netns exec {ns} ip -o -4 addr")).contains("10.10.10.3"));
        assert!(!sh_ok(&format!("ip netns exec {ns} iptables -t nat -S")).contains("10.10.10.3"));
        assert_eq!(
            tcp_probe_to(&vm, "172.16.101.3:22", "10.10.10.3:22", &upstream),
            None
        );
        let (_, ct) = sh(&format!("ip netns exec {ns} conntrack -L -d 10.10.10.3"));
        assert!(!ct.contains("10.10.10.3"), "{ct}");
        ok(&["floating", "ip", "delete", "10.10.10.3"]);
        assert_eq!(ok(&["floating", "ip", "list", "-f", "value"]), "");
    });
}
