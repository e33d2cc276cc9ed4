//! Bad input exits 2 with a message naming the object and the reason, and changes nothing;
//! a kernel failure midway exits 1 and rolls the store and the kernel back.

mod common;

use common::*;

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    sandboxed("bad_input_is_refused_and_changes_nothing", || {
        seed_topology();
        set_gateway();
        ok(&["network", "create", "vlan102"]);
        ok(&[
            "subnet",
            "create",
            "vlan101b",
            "--network",
            "vlan102",
            "--subnet-range",
            "172.16.101.128/25",
        ]);
        ok(&[
            "subnet",
            "create",
            "nogw",
            "--network",
            "vlan102",
            "--subnet-range",
            "172.16.102.0/24",
            "--gateway",
            "none",
        ]);
        // A pool of one address, already taken.
        ok(&["network", "create", "tinynet"]);
        ok(&[
            "subnet",
            "create",
            "tiny",
            "--network",
            "tinynet",
            "--subnet-range",
            "172.16.210.0/24",
            "--allocation-pool",
            "start=172.16.210.5,end=172.16.210.5",
        ]);
        ok(&["instance", "create", "vmtiny", "--network", "tinynet"]);
        let (store, kernel) = (store_snapshot(), kernel_snapshot());
        let cases: &[(&[&str], &str)] = &[
            (&["subnet", "create", "x", "--network", "vlan101", "--subnet-range", "172.16.200.1/24"], "has host bits set; did you mean 172.16.200.0/24?"),
            (&["subnet", "create", "x", "--network", "vlan101", "--subnet-range", "172.16.300.0/24"], "is not an IPv4 CIDR"),
            (&["subnet", "create", "x", "--network", "vlan101", "--subnet-range", "172.16.200.0/24", "--gateway", "172.16.201.1"], "gateway 172.16.201.1 is not a host address of 172.16.200.0/24"),
            (&["subnet", "create", "x", "--network", "vlan101", "--subnet-range", "172.16.200.0/24", "--allocation-pool", "start=172.16.200.1,end=172.16.200.9"], "contains the gateway 172.16.200.1"),
            (&["subnet", "create", "vlan101", "--network", "vlan101", "--subnet-range", "172.16.200.0/24"], "subnet vlan101: a subnet with that name exists"),
            (&["subnet", "create", "x", "--network", "nonet", "--subnet-range", "172.16.200.0/24"], "network nonet: no such network"),
            (&["network", "create", "bad name"], "network 'bad name': character ' ' is not allowed"),
            (&["network", "create", "vlan101"], "network vlan101: a network with that name exists"),
            (&["router", "show", "router_100_10"], "router router_100_10: no such router; did you mean 'router_100_101'?"),
            (&["router", "set", "router_100_101", "--external-gateway", "vlan100"], "network vlan100: not an external network"),
            (&["router", "add", "interface", "router_100_101", "ext"], "subnet ext: it is on external network ext_net"),
            (&["router", "add", "interface", "router_100_101", "vlan101"], "router router_100_101: it already has an interface on subnet vlan101"),
            (&["router", "add", "interface", "router_100_101", "vlan101b"], "subnet vlan101b: 172.16.101.128/25 overlaps subnet vlan101 (172.16.101.0/24) on router router_100_101"),
            (&["router", "add", "interface", "router_100_101", "nogw"], "subnet nogw: it has no gateway IP"),
            (&["router", "add", "route", "router_100_101", "--route", "destination=192.168.0.0/24,gateway=192.168.9.1"], "next hop 192.168.9.1 is not on any subnet"),
            (&["router", "delete", "router_100_101"], "router router_100_101: it still has interfaces"),
            (&["instance", "create", "vm", "--network", "vlan101", "--fixed-ip", "172.16.101.3"], "172.16.101.3 is already in use"),
            (&["instance", "create", "vm", "--network", "vlan101", "--fixed-ip", "172.16.99.3"], "172.16.99.3 is in none of its subnets"),
            (&["instance", "create", "vm", "--network", "vlan101", "--fixed-ip", "172.16.101.1"], "outside its allocation pools"),
            (&["network", "delete", "vlan101"], "network vlan101: in use by"),
            (&["subnet", "delete", "vlan101"], "subnet vlan101: in use by"),
            (&["router", "list", "-c", "Colour"], "column 'colour' does not exist"),
            // CIDRs, gateways and pools.
            (&["subnet", "create", "x", "--network", "vlan101", "--subnet-range", "172.16.200.0/33"], "subnet x: '172.16.200.0/33' is not an IPv4 CIDR"),
            (&["subnet", "create", "x", "--network", "vlan101", "--subnet-range", "172.16.200.0/24", "--allocation-pool", "start=172.16.201.2,end=172.16.201.9"], "subnet x: allocation pool 172.16.201.2-172.16.201.9 is outside the host addresses of 172.16.200.0/24"),
            (&["subnet", "create", "x", "--network", "vlan101", "--subnet-range", "172.16.200.0/24", "--allocation-pool", "start=172.16.200.9,end=172.16.200.2"], "subnet x: --allocation-pool: start 172.16.200.9 is after end 172.16.200.2"),
            (&["subnet", "create", "x", "--network", "vlan101", "--subnet-range", "172.16.200.0/24", "--allocation-pool", "start=172.16.200.2"], "subnet x: --allocation-pool: 'start=172.16.200.2' needs both start=IP and end=IP"),
            (&["subnet", "create", "x", "--network", "vlan101", "--subnet-range", "172.16.200.0/24", "--gateway", "172.16.200.0"], "subnet x: gateway 172.16.200.0 is not a host address"),
            (&["subnet", "create", "x", "--network", "vlan101", "--subnet-range", "172.16.200.0/24", "--gateway", "172.16.200.255"], "subnet x: gateway 172.16.200.255 is not a host address"),
            (&["subnet", "create", "x", "--network", "ext_net", "--subnet-range", "10.10.10.128/25"], "subnet x: 10.10.10.128/25 overlaps subnet ext (10.10.10.0/24) on network ext_net"),
            // Names that would be unsafe in a kernel name, a path or an iptables rule.
            (&["network", "create", "x", "--bridge", "averyveryverylongbridge"], "--bridge 'averyveryverylongbridge': an interface name must be 1 to 15 characters long"),
            (&["network", "create", "x", "--bridge", "br;x"], "--bridge 'br;x': not a valid interface name"),
            (&["network", "create", "x", "--provider-interface", "eth0/../x"], "--provider-interface 'eth0/../x': not a valid interface name"),
            (&["network", "create", "x", "--bridge", "br-ex"], "network x: bridge br-ex already carries network ext_net"),
            (&["network", "create", "x", "--mtu", "20"], "20 is not in 68..=65535"),
            (&["network", "create", ""], "network '': a name must be 1 to 64 characters long"),
            (&["network", "create", "a$(reboot)"], "network 'a$(reboot)': character '$' is not allowed"),
            (&["router", "create", "r 1"], "router 'r 1': character ' ' is not allowed"),
            (&["router", "create", &"x".repeat(65)], "a name must be 1 to 64 characters long"),
            (&["router", "create", "router_100_101"], "router router_100_101: a router with that name exists"),
            // Gateways, interfaces and routes.
            (&["router", "set", "nosuch", "--external-gateway", "ext_net"], "router nosuch: no such router"),
            (&["router", "set", "router_100_101", "--external-gateway", "ext_net", "--fixed-ip", "subnet=ext,ip-address=10.10.10.300"], "router router_100_101: external gateway: --fixed-ip: '10.10.10.300' is not an IPv4 address"),
            (&["router", "set", "router_100_101", "--external-gateway", "ext_net", "--fixed-ip", "subnet=ext,ip-address=10.10.11.5"], "subnet ext: 10.10.11.5 is outside 10.10.10.0/24"),
            (&["router", "set", "router_100_101", "--external-gateway", "ext_net", "--fixed-ip", "subnet=vlan101,ip-address=172.16.101.9"], "subnet vlan101: not on network ext_net"),
            (&["router", "set", "router_100_101", "--external-gateway", "ext_net", "--fixed-ip", "subnet=ext,ip-address=10.10.10.1"], "10.10.10.1 is outside its allocation pools (10.10.10.2-10.10.10.254)"),
            (&["router", "add", "interface", "router_100_101", "nosuch"], "subnet nosuch: no such subnet"),
            (&["router", "remove", "interface", "router_100_101", "tiny"], "router router_100_101: it has no interface on subnet tiny"),
            (&["router", "add", "route", "router_100_101", "--route", "destination=10.0.0.0/8"], "router router_100_101: --route: 'destination=10.0.0.0/8' needs destination=CIDR,gateway=IP"),
            (&["router", "add", "route", "router_100_101", "--route", "destination=192.168.0.1/24,gateway=172.16.101.9"], "router router_100_101: --route destination: '192.168.0.1/24' has host bits set; did you mean 192.168.0.0/24?"),
            (&["router", "remove", "route", "router_100_101", "--route", "destination=192.168.0.0/24,gateway=172.16.101.9"], "router router_100_101: it has no route to 192.168.0.0/24 via 172.16.101.9"),
            // Floating IPs.
            (&["floating", "ip", "create", "vlan101"], "network vlan101: not an external network"),
            (&["floating", "ip", "create", "ext_net", "--floating-ip-address", "10.10.11.3"], "network ext_net: 10.10.11.3 is in none of its subnets"),
            (&["floating", "ip", "create", "ext_net", "--floating-ip-address", "10.10.10.2"], "subnet ext: 10.10.10.2 is already in use"),
            (&["floating", "ip", "create", "ext_net", "--instance", "nosuch"], "instance nosuch: no such instance"),
            (&["floating", "ip", "create", "ext_net", "--instance", "vmtiny"], "instance vmtiny: its subnet is not attached to a router with a gateway on ext_net"),
            (&["floating", "ip", "set", "10.10.10.99", "--instance", "cirros-vm3"], "floating ip 10.10.10.99: no such floating ip"),
            // Instances and addresses.
            (&["instance", "create", "vm", "--network", "ext_net", "--fixed-ip", "10.10.10.2"], "instance vm: subnet ext: 10.10.10.2 is already in use"),
            (&["instance", "create", "vm2", "--network", "tinynet"], "instance vm2: subnet tiny: no free address left in its allocation pools"),
            (&["instance", "create", "vm", "--network", "vlan101", "--fixed-ip", "172.16.101.300"], "instance vm: --fixed-ip: '172.16.101.300' is not an IPv4 address"),
            (&["instance", "exec", "nosuch", "--", "true"], "instance nosuch: no such instance"),
            (&["port", "show", "nosuch"], "port nosuch: no such port"),
            (&["network", "delete", "ext_net"], "network ext_net: in use by"),
            // Usage.
            (&["router", "list", "-f", "xml"], "invalid value 'xml' for '--format <FORMAT>'"),
            (&["router", "frobnicate"], "unrecognized subcommand 'frobnicate'"),
        ];
        assert!(cases.len() >= 60, "{} cases", cases.len());
        for (args, message) in cases {
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

#[test]
fn a_broken_environment_is_reported_and_changes_nothing() {
    sandboxed(
        "a_broken_environment_is_reported_and_changes_nothing",
        || {
            seed_topology();
            let (store, kernel) = (store_snapshot(), kernel_snapshot());
            let failing = |cmd: &mut std::process::Command, says: &str| {
                let out = cmd.env("QROUTER_STATE_DIR", STATE_DIR).output().unwrap();
                let err = String::from_utf8_lossy(&out.stderr);
                assert_eq!(out.status.code(), Some(1), "{err}");
                assert!(err.contains(says), "expected '{says}' in: {err}");
            };
            let qrouter = || std::process::Command::new(qrouter_bin());
            // Not root: the same uid without CAP_NET_ADMIN.
            failing(
                std::process::Command::new("setpriv")
                    .args(["--bounding-set", "-net_admin", "--inh-caps", "-net_admin"])
                    .arg(qrouter_bin())
                    .args(["router", "create", "r2"]),
                "run it as root (it needs CAP_NET_ADMIN)",
            );
            // iptables missing.
            failing(
                qrouter()
                    .args(["router", "create", "r2"])
                    .env("PATH", "/nonexistent"),
                "iptables-save not found in PATH: install the Debian package 'iptables'",
            );
            assert_eq!(store_snapshot(), store);
            assert_eq!(kernel_snapshot(), kernel);
            // A corrupt store and an unreadable one: named, and left as they are.
            std::fs::create_dir_all("/run/corrupt").unwrap();
            std::fs::write(
                "/run/corrupt/qrouter.db",
                "not a database at all, just text",
            )
            .unwrap();
            failing(
                qrouter().args(["--state-dir", "/run/corrupt", "router", "list"]),
                "store /run/corrupt/qrouter.db: not a qrouter store, or unreadable",
            );
            assert_eq!(
                std::fs::read_to_string("/run/corrupt/qrouter.db").unwrap(),
                "not a database at all, just text"
            );
            std::fs::write("/run/notadir", "").unwrap();
            failing(
                qrouter().args(["--state-dir", "/run/notadir/x", "router", "list"]),
                "state directory /run/notadir/x: cannot create it",
            );
        },
    );
}

#[test]
fn kernel_failure_rolls_back_store_and_kernel() {
    sandboxed("kernel_failure_rolls_back_store_and_kernel", || {
        let (store, kernel) = (store_snapshot(), kernel_snapshot());
        // The bridge gets made, then enslaving a missing interface fails: nothing may remain.
        let out = qrouter(&[
            "network",
            "create",
            "physnet",
            "--provider-interface",
            "nosuch0",
        ]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr)
            .contains("provider interface nosuch0 does not exist"));
        assert_eq!(store_snapshot(), store);
        assert_eq!(kernel_snapshot(), kernel);
    });
}
