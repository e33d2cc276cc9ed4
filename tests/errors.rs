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
        ];
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
