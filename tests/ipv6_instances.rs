//! Instances on dual-stack networks (issue 28): SLAAC from the router's advertisements,
//! DHCPv6 from the network's dnsmasq, routed without NAT66 (the far side sees the instance's
//! own address), east-west across the router, and the inbound protection with what the
//! operator opens in it.

mod common;

use std::time::{Duration, Instant};

use common::dual_stack::*;
use common::*;

/// An instance on a SLAAC subnet forms the store's EUI-64 address from the router's
/// advertisement and routes through the router's link-local; its traffic reaches the
/// upstream with its own address (no NAT66); the upstream cannot open a connection to it.
#[test]
fn an_instance_takes_slaac_and_is_routed_without_nat() {
    sandboxed(|| {
        dual_stack_seed();
        let router_ns = namespace_of("router", "router_100_101");
        let qr = router_device("router_100_101", "2001:db8:101::1");
        let qr_lla = link_local(&router_ns, &qr);
        let started = Instant::now();
        ok(&["instance", "create", "vm6", "--network", "vlan101"]);
        let vm = namespace_of("instance", "vm6");
        let fixed = value(&["instance", "show", "vm6"], "fixed_ips");
        let eui64 = fixed
            .split(", ")
            .find(|a| a.starts_with("2001:db8:101:"))
            .unwrap_or_else(|| panic!("no SLAAC address in the store: {fixed}"))
            .to_string();
        // Within 10 s: the address out of DAD, and the default route from the RA.
        let (mut addrs, mut routes) = (String::new(), String::new());
        while started.elapsed() < Duration::from_secs(10) {
            addrs = ip_in(&vm, "-6 -o addr show dev eth0 scope global");
            routes = ip_in(&vm, "-6 route");
            let usable = addrs.contains(&format!("{eui64}/64")) && !addrs.contains("tentative");
            if usable && routes.contains(&format!("default via {qr_lla} dev eth0 proto ra")) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "SLAAC address and default route after {:?}",
            started.elapsed()
        );
        assert!(
            addrs.contains(&format!("{eui64}/64")) && !addrs.contains("tentative"),
            "{addrs}"
        );
        assert!(
            routes.contains(&format!("default via {qr_lla} dev eth0 proto ra")),
            "{routes}"
        );

        // The network's DNS answers AAAA for the instance's name with its SLAAC address.
        let aaaa = common::vm::dns_query(&vm, "172.16.101.2", "vm6.openstacklocal", 28)
            .expect("an answer from the network's DNS server");
        assert_eq!(
            (
                aaaa.rcode,
                aaaa.addresses6
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
            ),
            (0, vec![eui64.clone()]),
            "AAAA of vm6"
        );

        // The upstream routes the tenant prefix to the router's qg- (research/ipv6.md 4).
        let upstream = namespace_of("instance", "upstream");
        upstream_routes_to_router(&upstream, "2001:db8:101::/64");
        pings6_upstream("vm6");
        let seen = tcp_probe(&upstream, "[2001:db8:10::1]:8080", &vm);
        assert_eq!(
            seen.map(|a| a.ip().to_string()),
            Some(eui64.clone()),
            "the upstream saw the instance's own address"
        );

        // From outside: no new connection in, and the DROP rule says why.
        let inbound = tcp_probe(&vm, &format!("[{eui64}]:22"), &upstream);
        assert_eq!(inbound, None, "the upstream opened a connection to {eui64}");
        let filter = ip6tables(&router_ns);
        let drop = filter
            .lines()
            .find(|l| l.ends_with("-j DROP"))
            .unwrap_or_else(|| panic!("no DROP rule:\n{filter}"));
        assert!(!drop.starts_with("[0:"), "nothing was dropped:\n{filter}");
        // The operator opens TCP port 22 of the instance, and only that.
        let opening = format!("destination={eui64}/128,protocol=tcp,port=22");
        ok(&[
            "router",
            "set",
            "router_100_101",
            "--allow-inbound",
            &opening,
        ]);
        assert_eq!(
            value(&["router", "show", "router_100_101"], "allow_inbound"),
            opening
        );
        let opened = tcp_probe(&vm, &format!("[{eui64}]:22"), &upstream);
        assert_eq!(
            opened.map(|a| a.ip().to_string()),
            Some("2001:db8:10::1".to_string())
        );
        assert_eq!(tcp_probe(&vm, &format!("[{eui64}]:23"), &upstream), None);
        ok(&[
            "router",
            "unset",
            "router_100_101",
            "--allow-inbound",
            &opening,
        ]);
        assert_eq!(tcp_probe(&vm, &format!("[{eui64}]:22"), &upstream), None);
        // Without the filter the same connection arrives: the route back is there.
        sh_ok(&format!(
            "ip netns exec {router_ns} ip6tables -F qrouter-FORWARD"
        ));
        let opened = tcp_probe(&vm, &format!("[{eui64}]:22"), &upstream);
        assert_eq!(
            opened.map(|a| a.ip().to_string()),
            Some("2001:db8:10::1".to_string())
        );
        // sync puts the protection back.
        assert_eq!(qrouter(&["sync", "--dry-run"]).status.code(), Some(1));
        ok(&["sync"]);
        assert_eq!(tcp_probe(&vm, &format!("[{eui64}]:22"), &upstream), None);
    });
}

/// A DHCPv6-stateful network: radvd advertises it managed (M flag, prefix not autonomous),
/// the instance's DHCPv6 client (`--dhcp`) gets its port's address from the network's
/// dnsmasq; and IPv6 crosses the router between two tenant networks with its addresses
/// unchanged.
#[test]
fn a_dhcpv6_stateful_instance_gets_its_ports_address_and_talks_east_west() {
    sandboxed(|| {
        dual_stack_seed();
        let vm6 = vm6_on_dhcpv6_network("dhcpv6-stateful");
        let (_, conf) = radvd("router_100_101").expect("radvd runs");
        assert!(conf.contains("AdvManagedFlag on;"), "{conf}");
        assert!(
            conf.contains(
                "prefix 2001:db8:102::/64\n   {\n        AdvOnLink on;\n        AdvAutonomous off;"
            ),
            "{conf}"
        );
        let address = store_address("vm6", "2001:db8:102:");
        let lease = json(&["instance", "show", "vm6"])["dhcp_lease"].clone();
        assert_eq!(lease["address6"], format!("{address}/128"), "{lease}");
        assert!(usable("vm6", &address), "vm6 does not hold {address}");
        let routes = ip_in(&vm6, "-6 route");
        assert!(routes.contains("default via fe80::"), "{routes}");

        // East-west: cirros-vm3 (SLAAC on vlan101) reaches vm6, which sees its address.
        let vm3_address = store_address("cirros-vm3", "2001:db8:101:");
        assert!(usable("cirros-vm3", &vm3_address));
        let vm3 = namespace_of("instance", "cirros-vm3");
        let seen = tcp_probe(&vm6, &format!("[{address}]:8080"), &vm3);
        assert_eq!(seen.map(|a| a.ip().to_string()), Some(vm3_address));
    });
}

/// A DHCPv6-stateless network: radvd advertises the other-config flag (O) with an
/// autonomous prefix and no managed flag (M); the instance forms its EUI-64 address by SLAAC
/// and (`--dhcp`) asks the network's dnsmasq for the rest by an information request, which
/// names the DHCP port's own address as DNS server; its traffic reaches the upstream with its
/// own address.
#[test]
fn a_dhcpv6_stateless_instance_takes_slaac_and_its_dns_server_by_dhcpv6() {
    sandboxed(|| {
        dual_stack_seed();
        let vm6 = vm6_on_dhcpv6_network("dhcpv6-stateless");
        // What radvd sends, as the instance receives it when it solicits.
        let ra = sh_ok(&format!("ip netns exec {vm6} rdisc6 -1 eth0"));
        let field = |name: &str| {
            ra.lines()
                .find(|l| l.trim_start().starts_with(name))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
                .unwrap_or_else(|| panic!("no '{name}' in the RA:\n{ra}"))
        };
        assert_eq!(field("Stateful address conf."), "No", "M flag:\n{ra}");
        assert_eq!(field("Stateful other conf."), "Yes", "O flag:\n{ra}");
        assert!(
            ra.contains("Prefix                   : 2001:db8:102::/64"),
            "{ra}"
        );
        assert_eq!(field("Autonomous address conf."), "Yes", "A flag:\n{ra}");
        assert!(!ra.contains("Recursive DNS server"), "RDNSS:\n{ra}");

        // The address by SLAAC: the store's EUI-64 one.
        let address = store_address("vm6", "2001:db8:102:");
        assert!(usable("vm6", &address), "vm6 does not hold {address}");
        // The DNS server by DHCPv6: dnsmasq's own address on the subnet.
        let dhcp_port = value(&["network", "show", "vlan102"], "dhcp_addresses");
        let server = dhcp_port.split('/').next().unwrap();
        assert!(server.starts_with("2001:db8:102:"), "{dhcp_port}");
        let lease = json(&["instance", "show", "vm6"])["dhcp_lease"].clone();
        assert_eq!(lease["dns6"], server, "{lease}");
        assert_eq!(lease["domain6"], "openstacklocal.", "{lease}");
        assert!(lease.get("address6").is_none(), "{lease}");
        // Once informed, nothing is left to do.
        ok(&["sync", "--dry-run"]);

        // Routed without NAT66: ping6 across the router, and the upstream sees the
        // instance's own address.
        let upstream = namespace_of("instance", "upstream");
        upstream_routes_to_router(&upstream, "2001:db8:102::/64");
        pings6_upstream("vm6");
        let seen = tcp_probe(&upstream, "[2001:db8:10::1]:8080", &vm6);
        assert_eq!(seen.map(|a| a.ip().to_string()), Some(address));
    });
}

/// vlan102 with a 2001:db8:102::/64 subnet in DHCPv6 `mode` on the seed's router, and vm6
/// on it taking its configuration by DHCP; vm6's namespace.
fn vm6_on_dhcpv6_network(mode: &str) -> String {
    ok(&["network", "create", "vlan102"]);
    v6_subnet("v6", "vlan102", "2001:db8:102::/64", mode);
    ok(&["router", "add", "subnet", "router_100_101", "v6"]);
    ok(&[
        "instance",
        "create",
        "vm6",
        "--network",
        "vlan102",
        "--dhcp",
    ]);
    namespace_of("instance", "vm6")
}
