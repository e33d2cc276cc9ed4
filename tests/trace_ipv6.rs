//! `qrouter trace` and `qrouter topology` on a dual-stack router (issue 28): IPv6 paths
//! walked from the store and checked live, routed without SNAT, the instance's default
//! route learnt from the router's advertisement, the inbound protection of ip6tables.

mod common;

use common::dual_stack::*;
use common::trace_check::*;
use common::*;

#[test]
fn ipv6_paths_are_routed_without_snat_static_and_live() {
    sandboxed(|| {
        dual_stack_seed();
        let vm3 = store_address("cirros-vm3", "2001:db8:101:");
        assert!(usable("cirros-vm3", &vm3), "cirros-vm3 has no {vm3}");
        let router_ns = namespace_of("router", "router_100_101");
        let qr = router_device("router_100_101", "2001:db8:101::1");
        let qr_lla = link_local(&router_ns, &qr);
        let qg = router_device("router_100_101", "2001:db8:10::2");
        let upstream = namespace_of("instance", "upstream");
        upstream_routes_to_router(&upstream, "2001:db8:101::/64");

        // Out to the upstream: through the router's link-local (the RA's default route),
        // no NAT rule on the way, the instance's own address leaving the router.
        let live = agree("cirros-vm3", "2001:db8:10::1", &[]);
        assert_eq!(live["probe"]["result"], "answered", "{live:#}");
        assert_eq!(live["static"]["outcome"], "delivered");
        let hops = live["static"]["hops"].as_array().unwrap();
        assert_eq!(hops.len(), 3, "{live:#}");
        assert_eq!(
            hops[0]["route"],
            format!("default via {qr_lla} dev eth0 proto ra"),
            "{live:#}"
        );
        assert_eq!(hops[0]["next_hop"], qr_lla.as_str());
        assert_eq!(hops[0]["leaves"]["src"], vm3.as_str());
        let hop = router_hop(&live, "router_100_101");
        assert!(rules_of(&hop).is_empty(), "{hop:#}");
        assert_eq!(hop["leaves"], hop["arrives"]);
        assert_eq!(hop["leaves"]["src"], vm3.as_str());
        assert_eq!(hops[2]["node"]["name"], "upstream");
        assert_eq!(hops[2]["arrives"]["src"], vm3.as_str());
        // The same trace named by the instance: its IPv6 address, the destination's family.
        let named = json(&["trace", "cirros-vm3", "2001:db8:10::1"]);
        assert_eq!(named["hops"], live["static"]["hops"]);

        // In from the outside: the upstream's IPv6 address (the family of the address
        // given), dropped by ip6tables' inbound protection, as the kernel traces it.
        let live = agree("upstream", &vm3, &["--protocol", "tcp", "--port", "22"]);
        assert_eq!(live["static"]["hops"][0]["leaves"]["src"], "2001:db8:10::1");
        assert_eq!(live["static"]["outcome"], "dropped");
        let drop = format!("-A qrouter-FORWARD -i {qg} -j DROP");
        assert_eq!(
            live["static"]["summary"],
            format!("dropped by `{drop}`: a new connection from the external network that was not DNAT'ed to a floating IP")
        );
        assert_ne!(live["probe"]["result"], "answered");
        let traced = &live["hops"][1]["traced"];
        assert_eq!(traced, &serde_json::json!([drop]), "{live:#}");

        // East-west between two IPv6 tenant networks: routed, addresses unchanged.
        ok(&["network", "create", "vlan102"]);
        v6_subnet("v6b", "vlan102", "2001:db8:102::/64", "slaac");
        ok(&["router", "add", "subnet", "router_100_101", "v6b"]);
        ok(&["instance", "create", "vm102", "--network", "vlan102"]);
        let vm102 = store_address("vm102", "2001:db8:102:");
        assert!(usable("vm102", &vm102));
        let live = agree("cirros-vm3", "vm102", &[]);
        assert_eq!(live["probe"]["result"], "answered", "{live:#}");
        let hop = router_hop(&live, "router_100_101");
        assert!(rules_of(&hop).is_empty(), "{hop:#}");
        assert_eq!(hop["leaves"]["src"], vm3.as_str());
        assert_eq!(hop["leaves"]["dst"], vm102.as_str());
        let reply = live["static"]["reply"].as_array().unwrap();
        assert_eq!(reply.last().unwrap()["arrives"]["src"], vm102.as_str());
        nothing_left_behind();
        // A chain a killed IPv6 trace left in ip6tables' raw table is drift sync removes.
        sh_ok(&format!(
            "ip netns exec {router_ns} sh -c 'ip6tables -t raw -N qrouter-trace && \
             ip6tables -t raw -A PREROUTING -j qrouter-trace'"
        ));
        assert_eq!(qrouter(&["sync", "--dry-run"]).status.code(), Some(1));
        ok(&["sync"]);
        nothing_left_behind();

        // topology: the IPv6 subnets and addresses beside the IPv4 ones (the router's IPv6
        // subnet on its own qr-, as Neutron keeps the families on separate ports).
        let t = json(&["topology"]);
        let network = |name: &str| {
            t["networks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["name"] == name)
                .unwrap_or_else(|| panic!("no {name}: {t:#}"))
                .clone()
        };
        assert_eq!(
            network("vlan101")["subnets"],
            serde_json::json!(["172.16.101.0/24", "2001:db8:101::/64"])
        );
        assert_eq!(
            network("ext_net")["subnets"],
            serde_json::json!(["10.10.10.0/24", "2001:db8:10::/64"])
        );
        let text = topology_text(&["--network", "vlan101"], "C");
        assert!(
            text.starts_with("vlan101 172.16.101.0/24, 2001:db8:101::/64"),
            "{text}"
        );
        assert!(
            text.contains(&format!("router router_100_101  {qr}  2001:db8:101::1")),
            "{text}"
        );
        assert!(
            text.contains(&format!("instance cirros-vm3  eth0  172.16.101.3, {vm3}")),
            "{text}"
        );
    });
}
