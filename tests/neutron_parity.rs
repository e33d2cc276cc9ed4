//! Neutron's legacy-router functional tests (neutron/tests/functional/agent/l3/
//! test_legacy_router.py and framework.py) that qrouter failed, replayed through the command
//! line with their own assertions: the router's namespace rebuilt right after it was deleted
//! (`test_legacy_router_ns_rebuild`).

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
