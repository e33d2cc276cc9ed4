//! Neutron's legacy-router functional tests (neutron/tests/functional/agent/l3/
//! test_legacy_router.py and framework.py) that qrouter failed, replayed through the command
//! line with their own assertions: the router's namespace rebuilt right after it was deleted
//! (`test_legacy_router_ns_rebuild`), and every change leaving every router it affects
//! converged (`_assert_onlink_subnet_routes`, `_assert_iptables_rules_converged`).

mod common;

use common::*;

/// `count` namespaces, each holding one end of a veth whose other end is on the host,
/// deleted together: the kernel destroys them in the background for a while (about 150 ms
/// here for 200), and a namespace deleted just after waits behind them, its veths' host ends
/// still there.
fn churn_namespaces(count: usize) {
    let batch = |lines: &dyn Fn(usize) -> String| {
        let text: String = (0..count).map(|i| lines(i) + "\n").collect();
        std::fs::write("/run/churn.batch", text).unwrap();
        sh_ok("ip -batch /run/churn.batch");
    };
    batch(&|i| format!("netns add churn{i}"));
    batch(&|i| format!("link add name churn{i} type veth peer name eth0 netns churn{i}"));
    batch(&|i| format!("netns del churn{i}"));
}

/// The router's `qr-`/`qg-` devices, as `port list` names them.
fn router_devices(router: &str) -> Vec<String> {
    let ports = json(&["port", "list", "--router", router]);
    ports
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Device Name"].as_str().unwrap().to_string())
        .collect()
}

/// test_legacy_router_ns_rebuild: the namespace deleted behind the agent's back (`ip netns
/// del`), the router processed again at once: every port is back in the namespace. The
/// kernel tears the old namespace down lazily, so its veths' host ends still hold their names
/// then: qrouter's own are deleted; one that carries no mark of the store (made before
/// marks, say) is waited for until the kernel has removed it.
#[test]
fn router_namespace_rebuilt_right_after_ip_netns_del() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        let ns = namespace_of("router", "router_100_101");
        let devices = router_devices("router_100_101");
        assert_eq!(devices.len(), 3, "{devices:?}");
        for unmarked in [false, true] {
            if unmarked {
                for dev in &devices {
                    let tap = dev.replacen("qr-", "tap", 1).replacen("qg-", "tap", 1);
                    sh_ok(&format!("ip link set {tap} alias ''"));
                }
            }
            churn_namespaces(200);
            sh_ok(&format!("ip netns del {ns}"));
            let out = qrouter(&["sync"]);
            succeeded(&["sync"], out);
            for dev in &devices {
                assert!(
                    sh(&format!("ip -n {ns} link show {dev}")).0,
                    "{dev} is back in {ns} (unmarked taps: {unmarked})"
                );
            }
            let dry = qrouter(&["sync", "--dry-run"]);
            assert!(
                dry.status.success(),
                "in sync after the rebuild: {}",
                String::from_utf8_lossy(&dry.stdout)
            );
            vm3_pings_upstream();
        }
    });
}

/// `sync --dry-run` finds nothing to do: the last change left every router converged
/// (Neutron's `_assert_iptables_rules_converged` and the route checks, for every object).
fn assert_converged(after: &str) {
    let dry = qrouter(&["sync", "--dry-run"]);
    assert!(
        dry.status.success(),
        "after `{after}`, sync --dry-run finds:\n{}{}",
        String::from_utf8_lossy(&dry.stdout),
        String::from_utf8_lossy(&dry.stderr)
    );
}

/// The on-link routes of `router`'s gateway device, as `ip route` prints them.
fn onlink_routes(router: &str, gateway_ip: &str) -> Vec<String> {
    let ns = namespace_of("router", router);
    let qg = router_device(router, gateway_ip);
    sh_ok(&format!("ip -n {ns} route show dev {qg} scope link"))
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

/// _assert_onlink_subnet_routes, and every change after it: a subnet made on the external
/// network is an on-link route in each router with its gateway there at once, and a subnet
/// deleted takes it away; no change, on the external network or elsewhere, leaves a router
/// for `sync` to fix.
#[test]
fn every_change_leaves_every_router_converged() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        let b_gateway = second_router();
        assert_converged("the seed and router_b");
        let routers = [
            ("router_100_101", "10.10.10.2"),
            ("router_b", b_gateway.as_str()),
        ];
        let onlink = |want: &[&str]| {
            for (router, gateway) in routers {
                let mut routes = onlink_routes(router, gateway);
                routes.sort();
                assert_eq!(routes, want, "on-link routes of {router}");
            }
        };
        onlink(&["10.10.10.0/24"]);
        let changes = "
            subnet create ext_extra --network ext_net --subnet-range 9.4.5.0/24 --gateway none
            subnet set ext_extra --name ext_extra_renamed --description d
            subnet set ext_extra_renamed --no-allocation-pool --allocation-pool start=9.4.5.10,end=9.4.5.20
            subnet set ext_extra_renamed --gateway 9.4.5.1
            subnet unset ext_extra_renamed --gateway
            network set ext_net --name ext_net_renamed
            network set ext_net_renamed --name ext_net
            network set ext_net --disable
            network set ext_net --enable
            network set vlan101 --disable
            network set vlan101 --enable
            floating ip create ext_net --instance cirros-vm3
            network create vlan300
            subnet create vlan300 --network vlan300 --subnet-range 172.16.30.0/24
            router add interface router_b vlan300
            router remove interface router_b vlan300
            router add route router_100_101 --route destination=192.168.50.0/24,gateway=10.10.10.1
            router remove route router_100_101 --route destination=192.168.50.0/24,gateway=10.10.10.1
            router set router_100_101 --disable-snat
            router set router_100_101 --enable-snat
            router set router_b --disable
            router set router_b --enable
            subnet create ext_more --network ext_net --subnet-range 9.4.6.0/24 --dhcp";
        for change in changes.lines().map(str::trim).filter(|l| !l.is_empty()) {
            ok(&change.split_whitespace().collect::<Vec<_>>());
            assert_converged(change);
        }
        onlink(&["10.10.10.0/24", "9.4.5.0/24", "9.4.6.0/24"]);
        ok(&["subnet", "delete", "ext_extra_renamed"]);
        assert_converged("subnet delete ext_extra_renamed");
        onlink(&["10.10.10.0/24", "9.4.6.0/24"]);
        // The same in an atomic batch, applied together.
        let script =
            "subnet create ext_batch --network ext_net --subnet-range 9.4.7.0/24 --gateway none\n\
                      subnet delete ext_more\n";
        let out = batch(&["--atomic", "-"], script);
        assert!(out.status.success(), "the atomic batch applies");
        assert_converged("batch --atomic");
        onlink(&["10.10.10.0/24", "9.4.7.0/24"]);
        vm3_pings_upstream();
    });
}
