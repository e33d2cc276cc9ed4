//! Dual-stack routers as Neutron's legacy router runs them (issue 28): IPv6 addresses on
//! `qr-`/`qg-`, radvd per router namespace, a default route through the external subnet's
//! gateway (or the upstream's link-local), routed without NAT66 behind ip6tables' inbound
//! protection, written as ip6tables writes it. Instances: tests/ipv6_instances.rs.

mod common;

use common::dual_stack::*;
use common::*;

#[test]
fn dual_stack_router_lifecycle() {
    sandboxed(|| {
        let empty = kernel_snapshot() + &sh_ok("ip -6 route");
        dual_stack_seed();
        let ns = namespace_of("router", "router_100_101");
        let qr = router_device("router_100_101", "2001:db8:101::1");
        let qg = router_device("router_100_101", "10.10.10.2");
        // Addresses: the gateway address on qr-, an address of each external subnet on qg-,
        // and a link-local on both (radvd sends from it; forwarded packets' neighbour
        // solicitations leave from it).
        let qr_addrs = ip_in(&ns, &format!("-6 -o addr show dev {qr}"));
        assert!(qr_addrs.contains("inet6 2001:db8:101::1/64"), "{qr_addrs}");
        assert!(qr_addrs.contains("inet6 fe80::"), "{qr_addrs}");
        let qg_addrs = ip_in(&ns, &format!("-o addr show dev {qg}"));
        assert!(qg_addrs.contains("inet 10.10.10.2/24"), "{qg_addrs}");
        assert!(qg_addrs.contains("inet6 2001:db8:10::2/64"), "{qg_addrs}");
        // Forwarding, and no router advertisements taken where the gateway is known.
        assert_eq!(sysctl_in(&ns, "all/forwarding"), "1");
        assert_eq!(sysctl_in(&ns, &format!("{qg}/accept_ra")), "0");
        // The v6 default route through the external subnet's gateway.
        let routes = ip_in(&ns, "-6 route");
        assert!(
            routes.contains(&format!("default via 2001:db8:10::1 dev {qg}")),
            "{routes}"
        );
        // radvd advertises the SLAAC prefix on qr- (Neutron's template).
        let (pid, conf) = radvd("router_100_101").expect("radvd runs");
        assert!(conf.contains(&format!("interface {qr}\n{{")), "{conf}");
        assert!(
            conf.contains(
                "prefix 2001:db8:101::/64\n   {\n        AdvOnLink on;\n        AdvAutonomous on;"
            ),
            "{conf}"
        );
        // No NAT66: ip6tables has no nat rules, and its filter guards the tenant addresses.
        let filter = ip6tables(&ns);
        assert!(!filter.contains("*nat"), "{filter}");
        for line in [
            "-A FORWARD -j qrouter-FORWARD".to_string(),
            format!(
                "-A qrouter-FORWARD -i {qg} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
            ),
            format!("-A qrouter-FORWARD -i {qg} -p ipv6-icmp -m icmp6 --icmpv6-type 2 -j ACCEPT"),
            format!("-A qrouter-FORWARD -i {qg} -j DROP"),
        ] {
            assert!(filter.contains(&line), "no '{line}' in:\n{filter}");
        }
        // `router show` prints them next to IPv4's; a second apply changes nothing.
        let show = ok(&["router", "show", "router_100_101"]);
        assert!(
            show.contains("IPv6 firewall (ip6tables -t filter)"),
            "{show}"
        );
        assert!(show.contains("--icmpv6-type 4 -j ACCEPT"), "{show}");
        // No NAT66: what the upstream must route to the router.
        assert_eq!(
            value(
                &["router", "show", "router_100_101"],
                "ipv6_upstream_routes"
            ),
            "2001:db8:101::/64 via 2001:db8:10::2"
        );
        assert_eq!(
            ok(&["sync", "--dry-run"]).trim(),
            "in sync: the kernel matches the store"
        );
        ok(&["sync"]);
        assert_eq!(
            radvd("router_100_101").unwrap().0,
            pid,
            "sync restarted radvd"
        );

        // An extra IPv6 route, through a host on vlan101.
        let extra = "destination=2001:db8:500::/64,gateway=2001:db8:101::50";
        ok(&["router", "add", "route", "router_100_101", "--route", extra]);
        let routes = ip_in(&ns, "-6 route");
        assert!(
            routes.contains(&format!("2001:db8:500::/64 via 2001:db8:101::50 dev {qr}")),
            "{routes}"
        );
        ok(&[
            "router",
            "remove",
            "route",
            "router_100_101",
            "--route",
            extra,
        ]);
        assert!(!ip_in(&ns, "-6 route").contains("2001:db8:500::"));

        // A second SLAAC subnet on vlan101 joins the same qr- (Neutron: one port per network
        // for IPv6); radvd rereads its configuration and keeps running.
        slaac_subnet("v6b", "2001:db8:1011::/64");
        ok(&["router", "add", "subnet", "router_100_101", "v6b"]);
        assert_eq!(router_device("router_100_101", "2001:db8:1011::1"), qr);
        let (same, conf) = radvd("router_100_101").unwrap();
        assert_eq!(same, pid);
        assert!(conf.contains("prefix 2001:db8:1011::/64"), "{conf}");
        // Removing it takes its address, its prefix and its route, and nothing else.
        ok(&["router", "remove", "subnet", "router_100_101", "v6b"]);
        assert!(!ip_in(&ns, &format!("-6 addr show dev {qr}")).contains("2001:db8:1011"));
        assert!(!ip_in(&ns, "-6 route").contains("2001:db8:1011"));
        let (same, conf) = radvd("router_100_101").unwrap();
        assert_eq!(same, pid);
        assert!(!conf.contains("2001:db8:1011"), "{conf}");
        assert!(conf.contains("prefix 2001:db8:101::/64"), "{conf}");
        // The last IPv6 subnet of vlan101 goes: its qr-, its route and radvd go with it.
        ok(&["router", "remove", "subnet", "router_100_101", "v6a"]);
        assert!(!ip_in(&ns, "-o link").contains(&qr));
        assert!(!ip_in(&ns, "-6 route").contains("2001:db8:101::"));
        assert!(radvd("router_100_101").is_none());
        assert!(!alive(&pid), "radvd {pid} still runs");
        assert_eq!(
            ok(&["sync", "--dry-run"]).trim(),
            "in sync: the kernel matches the store"
        );

        // Nothing left after teardown.
        ok(&["router", "delete", "router_100_101", "--force"]);
        for instance in ["cirros-vm3", "upstream"] {
            ok(&["instance", "delete", instance]);
        }
        for subnet in ["v6a", "v6b", "ext6", "ext", "vlan100", "vlan101"] {
            ok(&["subnet", "delete", subnet]);
        }
        for network in ["vlan100", "vlan101", "ext_net"] {
            ok(&["network", "delete", network]);
        }
        assert_eq!(kernel_snapshot() + &sh_ok("ip -6 route"), empty);
        let left: Vec<_> = std::fs::read_dir(format!("{STATE_DIR}/ra"))
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in the ra directory: {left:?}");
    });
}

/// Without a gateway in any IPv6 subnet of the external network, the network's
/// `--ipv6-gateway` (the upstream's link-local) is the default route; without that either,
/// qg- takes the upstream's router advertisements (accept_ra=2), as Neutron's
/// `_configure_ipv6_params_on_gw` does.
#[test]
fn the_ipv6_default_route_follows_the_upstream_link_local() {
    sandboxed(|| {
        seed_topology();
        ok(&["network", "set", "ext_net", "--ipv6-gateway", "fe80::1"]);
        slaac_subnet("v6a", "2001:db8:101::/64");
        set_gateway();
        ok(&["router", "add", "subnet", "router_100_101", "v6a"]);
        let ns = namespace_of("router", "router_100_101");
        let qg = router_device("router_100_101", "10.10.10.2");
        let routes = ip_in(&ns, "-6 route");
        assert!(
            routes.contains(&format!("default via fe80::1 dev {qg}")),
            "{routes}"
        );
        assert_eq!(sysctl_in(&ns, &format!("{qg}/accept_ra")), "0");
        ok(&["network", "unset", "ext_net", "--ipv6-gateway"]);
        assert!(!ip_in(&ns, "-6 route").contains("default"));
        assert_eq!(sysctl_in(&ns, &format!("{qg}/accept_ra")), "2");
        assert_eq!(
            ok(&["sync", "--dry-run"]).trim(),
            "in sync: the kernel matches the store"
        );
    });
}

#[test]
fn bad_ipv6_input_is_refused_and_changes_nothing() {
    sandboxed(|| {
        seed_topology();
        ok(&[
            "subnet",
            "create",
            "external-ra",
            "--network",
            "vlan100",
            "--subnet-range",
            "2001:db8:100::/64",
            "--ipv6-address-mode",
            "slaac",
        ]);
        let (store, kernel) = (store_snapshot(), kernel_snapshot());
        let subnet = |extra: &[&'static str]| -> Vec<&'static str> {
            [
                &["subnet", "create", "x", "--network", "vlan101"][..],
                extra,
            ]
            .concat()
        };
        let cases = [
            (
                subnet(&["--subnet-range", "10.0.0.0/24", "--ip-version", "6"]),
                "cidr '10.0.0.0/24' does not match the ip_version '6'",
            ),
            (
                subnet(&["--subnet-range", "2001:db8:1::/80", "--ipv6-ra-mode", "slaac"]),
                "Invalid CIDR 2001:db8:1::/80 for IPv6 address mode. OpenStack uses the EUI-64 address format, which requires the prefix to be /64",
            ),
            (
                subnet(&["--subnet-range", "2001:db8:1::/64", "--ipv6-ra-mode", "foo"]),
                "invalid value 'foo' for '--ipv6-ra-mode <IPV6_RA_MODE>'",
            ),
            (
                subnet(&["--subnet-range", "2001:db8:1::/64", "--gateway", "2001:db8:2::1"]),
                "subnet x: gateway 2001:db8:2::1 is not a host address of 2001:db8:1::/64",
            ),
            (
                subnet(&[
                    "--subnet-range",
                    "2001:db8:1::/64",
                    "--ipv6-ra-mode",
                    "slaac",
                    "--ipv6-address-mode",
                    "dhcpv6-stateful",
                ]),
                "If both attributes are set, they must be the same value",
            ),
            (
                subnet(&["--subnet-range", "10.0.0.0/24", "--ipv6-ra-mode", "slaac"]),
                "ipv6_ra_mode is not valid when ip_version is 4",
            ),
            (
                vec!["router", "add", "subnet", "router_100_101", "external-ra"],
                "IPv6 subnet configured to receive RAs from an external router cannot be added to a router",
            ),
            (
                vec!["network", "set", "ext_net", "--ipv6-gateway", "2001:db8::1"],
                "is not a link-local address",
            ),
            (
                vec![
                    "router",
                    "add",
                    "route",
                    "router_100_101",
                    "--route",
                    "destination=2001:db8:500::/64,gateway=172.16.101.50",
                ],
                "router_100_101",
            ),
            (
                vec!["router", "set", "router_100_101", "--allow-inbound", "destination=172.16.101.3/32"],
                "router router_100_101: --allow-inbound 'destination=172.16.101.3/32': '172.16.101.3/32' is IPv4: IPv4 is opened by floating IPs",
            ),
            (
                vec!["router", "set", "router_100_101", "--allow-inbound", "destination=2001:db8:101::/64,port=22"],
                "a port needs protocol=tcp or protocol=udp",
            ),
            (
                vec!["router", "set", "router_100_101", "--allow-inbound", "destination=2001:db8:101::/64,protocol=sctp"],
                "protocol 'sctp' is not one of tcp, udp, icmp",
            ),
        ];
        for (args, message) in &cases {
            refused(args, message);
        }
        assert_eq!(store_snapshot(), store);
        assert_eq!(kernel_snapshot(), kernel);
    });
}

/// qrouter writes the IPv6 filter into nf_tables itself, as ip6tables-nft writes it: what
/// ip6tables-save reads back and the expressions `nft --debug=netlink` shows equal what
/// `ip6tables-restore` of the same text makes in a fresh namespace.
#[test]
fn ipv6_rules_written_in_process_are_those_ip6tables_restore_writes() {
    sandboxed(|| {
        dual_stack_seed();
        for opening in [
            "destination=2001:db8:101::5/128,protocol=tcp,port=22",
            "destination=2001:db8:101::/64,protocol=udp,port=53",
            "destination=2001:db8:101::/64,protocol=icmp",
            "destination=2001:db8:101::7",
        ] {
            ok(&[
                "router",
                "set",
                "router_100_101",
                "--allow-inbound",
                opening,
            ]);
        }
        let ns = namespace_of("router", "router_100_101");
        let ours = ip6tables_plain(&ns);
        assert!(ours.contains("--icmpv6-type 1 -j ACCEPT"), "{ours}");
        assert!(ours.contains("-d 2001:db8:101::5/128 -i qg-"), "{ours}");
        assert!(
            ours.contains("-p tcp -m tcp --dport 22 -j ACCEPT"),
            "{ours}"
        );
        sh_ok("ip netns add by-ip6tables");
        std::fs::write("/run/rules6.txt", &ours).unwrap();
        sh_ok("ip netns exec by-ip6tables ip6tables-restore < /run/rules6.txt");
        assert_eq!(ip6tables_plain("by-ip6tables"), ours);
        let expressions = |ns: &str| -> Vec<String> {
            let text = sh_ok(&format!(
                "ip netns exec {ns} nft --debug=netlink list table ip6 filter"
            ));
            text.split("\n\n")
                .filter(|b| b.trim_start().starts_with("ip6 filter qrouter-FORWARD"))
                .map(|b| {
                    b.lines()
                        .skip(1)
                        .filter(|l| l.trim_start().starts_with('[') && !l.contains("[ counter"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect()
        };
        let theirs = expressions("by-ip6tables");
        assert_eq!(theirs.len(), 10, "{theirs:?}");
        assert_eq!(expressions(&ns), theirs);
    });
}

#[test]
fn with_iptables_legacy_the_ipv6_rules_go_through_ip6tables_restore() {
    sandboxed(|| {
        if !needs_real_root(
            "iptables-legacy needs the ip6_tables module, which a user namespace cannot load",
        ) {
            return;
        }
        std::fs::create_dir_all("/run/legacy").unwrap();
        for family in ["iptables", "ip6tables"] {
            for tool in ["", "-save", "-restore"] {
                let legacy = format!("/usr/sbin/{family}-legacy{tool}");
                std::os::unix::fs::symlink(legacy, format!("/run/legacy/{family}{tool}")).unwrap();
            }
        }
        let path = std::env::var("PATH").unwrap_or_default();
        std::env::set_var("PATH", format!("/run/legacy:{path}"));
        dual_stack_seed();
        let ns = namespace_of("router", "router_100_101");
        let filter = ip6tables_plain(&ns);
        assert!(filter.contains("--icmpv6-type 4 -j ACCEPT"), "{filter}");
        assert!(filter.contains("-j DROP"), "{filter}");
        assert_eq!(sh_ok(&format!("ip netns exec {ns} nft list ruleset")), "");
        assert_eq!(
            ok(&["sync", "--dry-run"]).trim(),
            "in sync: the kernel matches the store"
        );
        // Removing the IPv6 side removes its rules.
        ok(&["router", "remove", "subnet", "router_100_101", "v6a"]);
        ok(&["router", "unset", "router_100_101", "--external-gateway"]);
        assert!(
            !ip6tables_plain(&ns).contains("qrouter"),
            "{}",
            ip6tables_plain(&ns)
        );
    });
}
