//! Dual-stack routers as Neutron's legacy router runs them (issue 28): IPv6 addresses on
//! `qr-`/`qg-`, radvd per router namespace, a default route through the external subnet's
//! gateway (or the upstream's link-local), routed without NAT66 behind ip6tables' inbound
//! protection; instances take their address by SLAAC. Each test checks real traffic and
//! what the kernel holds.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The seed made dual-stack (research/ipv6.md 7): vlan101 gains 2001:db8:101::/64 (SLAAC),
/// ext_net 2001:db8:10::/64 with the upstream at 2001:db8:10::1; the router's gateway is
/// set after both exist, so `qg-` takes an address of each.
fn dual_stack_seed() {
    seed_topology();
    ok(&[
        "subnet",
        "create",
        "ext6",
        "--network",
        "ext_net",
        "--subnet-range",
        "2001:db8:10::/64",
        "--gateway",
        "2001:db8:10::1",
    ]);
    slaac_subnet("v6a", "2001:db8:101::/64");
    // The upstream switch answers on its IPv6 address too.
    ok(&["instance", "delete", "upstream"]);
    ok(&[
        "instance",
        "create",
        "upstream",
        "--network",
        "ext_net",
        "--fixed-ip",
        "10.10.10.1",
        "--fixed-ip",
        "2001:db8:10::1",
    ]);
    set_gateway();
    ok(&["router", "add", "subnet", "router_100_101", "v6a"]);
}

fn slaac_subnet(name: &str, cidr: &str) {
    ok(&[
        "subnet",
        "create",
        name,
        "--network",
        "vlan101",
        "--subnet-range",
        cidr,
        "--ipv6-ra-mode",
        "slaac",
        "--ipv6-address-mode",
        "slaac",
    ]);
}

/// `ip ARGS` in namespace `ns`.
fn ip_in(ns: &str, args: &str) -> String {
    sh_ok(&format!("ip netns exec {ns} ip {args}"))
}

fn sysctl_in(ns: &str, key: &str) -> String {
    sh_ok(&format!(
        "ip netns exec {ns} cat /proc/sys/net/ipv6/conf/{key}"
    ))
    .trim()
    .to_string()
}

/// The router's radvd: its pid (from its pid file, alive) and its configuration.
fn radvd(router: &str) -> Option<(String, String)> {
    let id = value(&["router", "show", router], "id");
    let pid = std::fs::read_to_string(format!("{STATE_DIR}/ra/{id}.pid")).ok()?;
    let pid = pid.trim().to_string();
    assert!(alive(&pid), "radvd {pid} of router {router} is not running");
    let conf = std::fs::read_to_string(format!("{STATE_DIR}/ra/{id}.radvd.conf")).unwrap();
    Some((pid, conf))
}

/// Whether process `pid` runs (a zombie does not: the test, pid 1 of its sandbox, reaps no
/// orphan).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|s| !s.trim_start().starts_with('Z'))
    })
}

/// `ip6tables-save` of `ns` without its comments, with counters.
fn ip6tables(ns: &str) -> String {
    sh_ok(&format!(
        "ip netns exec {ns} ip6tables-save -c | sed '/^#/d'"
    ))
}

/// The link-local address of device `dev` in `ns`.
fn link_local(ns: &str, dev: &str) -> String {
    let out = ip_in(ns, &format!("-6 -o addr show dev {dev} scope link"));
    let word = out.split_whitespace().nth(3).expect("a link-local address");
    word.split('/').next().unwrap().to_string()
}

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

        // The upstream routes the tenant prefix to the router's qg- (research/ipv6.md 4).
        let upstream = namespace_of("instance", "upstream");
        ip_in(
            &upstream,
            "-6 route replace 2001:db8:101::/64 via 2001:db8:10::2",
        );
        ok(&[
            "instance",
            "exec",
            "vm6",
            "--",
            "ping",
            "-6",
            "-c",
            "1",
            "-W",
            "2",
            "2001:db8:10::1",
        ]);
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
        ];
        for (args, message) in &cases {
            let out = qrouter(args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "qrouter {}: {stderr}",
                args.join(" ")
            );
            assert!(
                stderr.contains(message),
                "qrouter {}: expected '{message}' in: {stderr}",
                args.join(" ")
            );
        }
        assert_eq!(store_snapshot(), store);
        assert_eq!(kernel_snapshot(), kernel);
    });
}

/// `ip6tables-save` of `ns` without comments or counters.
fn ip6tables_plain(ns: &str) -> String {
    sh_ok(&format!("ip netns exec {ns} ip6tables-save | sed '/^#/d'"))
}

/// qrouter writes the IPv6 filter into nf_tables itself, as ip6tables-nft writes it: what
/// ip6tables-save reads back and the expressions `nft --debug=netlink` shows equal what
/// `ip6tables-restore` of the same text makes in a fresh namespace.
#[test]
fn ipv6_rules_written_in_process_are_those_ip6tables_restore_writes() {
    sandboxed(|| {
        dual_stack_seed();
        let ns = namespace_of("router", "router_100_101");
        let ours = ip6tables_plain(&ns);
        assert!(ours.contains("--icmpv6-type 1 -j ACCEPT"), "{ours}");
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
        assert_eq!(theirs.len(), 6, "{theirs:?}");
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

/// Address of `instance` in the store on the subnet whose addresses start with `prefix`.
fn store_address(instance: &str, prefix: &str) -> String {
    let fixed = value(&["instance", "show", instance], "fixed_ips");
    fixed
        .split(", ")
        .find(|a| a.starts_with(prefix))
        .unwrap_or_else(|| panic!("{instance} has no address in {prefix}: {fixed}"))
        .to_string()
}

/// Wait up to 10 s until `instance`'s eth0 holds `address` out of DAD; whether it did.
fn usable(instance: &str, address: &str) -> bool {
    let ns = namespace_of("instance", instance);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let addrs = ip_in(&ns, "-6 -o addr show dev eth0 scope global");
        if addrs.contains(&format!("{address}/")) && !addrs.contains("tentative") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A DHCPv6-stateful network: radvd advertises it managed (M flag, prefix not autonomous),
/// the instance's DHCPv6 client (`--dhcp`) gets its port's address from the network's
/// dnsmasq; and IPv6 crosses the router between two tenant networks with its addresses
/// unchanged.
#[test]
fn a_dhcpv6_stateful_instance_gets_its_ports_address_and_talks_east_west() {
    sandboxed(|| {
        dual_stack_seed();
        ok(&["network", "create", "vlan102"]);
        ok(&[
            "subnet",
            "create",
            "v6stateful",
            "--network",
            "vlan102",
            "--subnet-range",
            "2001:db8:102::/64",
            "--ipv6-ra-mode",
            "dhcpv6-stateful",
            "--ipv6-address-mode",
            "dhcpv6-stateful",
        ]);
        ok(&["router", "add", "subnet", "router_100_101", "v6stateful"]);
        let (_, conf) = radvd("router_100_101").expect("radvd runs");
        assert!(conf.contains("AdvManagedFlag on;"), "{conf}");
        assert!(
            conf.contains(
                "prefix 2001:db8:102::/64\n   {\n        AdvOnLink on;\n        AdvAutonomous off;"
            ),
            "{conf}"
        );
        ok(&[
            "instance",
            "create",
            "vm6",
            "--network",
            "vlan102",
            "--dhcp",
        ]);
        let address = store_address("vm6", "2001:db8:102:");
        let lease = json(&["instance", "show", "vm6"])["dhcp_lease"].clone();
        assert_eq!(lease["address6"], format!("{address}/128"), "{lease}");
        assert!(usable("vm6", &address), "vm6 does not hold {address}");
        let vm6 = namespace_of("instance", "vm6");
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
