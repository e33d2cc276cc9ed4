//! Drift made by hand behind qrouter's back: `router show` marks it, `sync --dry-run` lists it
//! and exits 1, `sync` repairs it, and traffic flows again. The three read one diff, so they
//! agree on every case of the table below.

mod common;

use common::*;

/// One kind of drift: a shell command run in the sandbox (`{ns}` the router's namespace,
/// `{qr}` its vlan101 device, `{qg}` its gateway device, `{tap}` the qg-'s host end) and
/// the line `sync --dry-run` prints for it.
struct Case {
    what: &'static str,
    break_it: &'static str,
    dry_run_says: &'static str,
}

const CASES: &[Case] = &[
    Case {
        what: "a deleted qr-",
        break_it: "ip netns exec {ns} ip link del {qr}",
        dry_run_says: "create veth {qr}",
    },
    Case {
        what: "a qr- set down",
        break_it: "ip netns exec {ns} ip link set {qr} down",
        dry_run_says: "set {qr} up",
    },
    Case {
        what: "ip_forward=0",
        break_it: "ip netns exec {ns} sysctl -qw net.ipv4.ip_forward=0",
        dry_run_says: "set sysctl net.ipv4.ip_forward",
    },
    Case {
        what: "a tap detached from its bridge",
        break_it: "ip link set {tap} nomaster",
        dry_run_says: "host: enslave {tap} to br-ex",
    },
    Case {
        what: "a rule added to a qrouter chain",
        break_it: "ip netns exec {ns} iptables -t nat -A qrouter-snat -j ACCEPT",
        dry_run_says: "update qrouter chains of table nat",
    },
    Case {
        what: "a rule removed from a qrouter chain",
        break_it: "ip netns exec {ns} iptables -t nat -F qrouter-snat",
        dry_run_says: "update qrouter chains of table nat",
    },
    Case {
        what: "a changed address",
        break_it: "ip netns exec {ns} sh -c 'ip addr del 172.16.101.1/24 dev {qr} && ip addr add 172.16.101.9/24 dev {qr}'",
        dry_run_says: "add address 172.16.101.1/24 to {qr}",
    },
    Case {
        what: "a missing route",
        break_it: "ip netns exec {ns} ip route del default",
        dry_run_says: "add route default via 10.10.10.1",
    },
];

#[test]
fn show_dry_run_and_sync_agree_on_every_drift() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        let ns = namespace_of("router", "router_100_101");
        let qr = router_device("router_100_101", "172.16.101.1");
        let qg = router_device("router_100_101", "10.10.10.2");
        let tap = qg.replacen("qg-", "tap", 1);
        let fill = |s: &str| {
            s.replace("{ns}", &ns)
                .replace("{qr}", &qr)
                .replace("{qg}", &qg)
                .replace("{tap}", &tap)
        };
        for case in CASES {
            sh_ok(&fill(case.break_it));
            let want = fill(case.dry_run_says);

            let show = json(&["router", "show", "router_100_101"]);
            assert_ne!(show["kernel"], "in sync", "show misses {}", case.what);
            let drift = show["drift"].to_string();
            assert!(
                drift.contains(&want),
                "show's Drift lacks '{want}' for {}: {drift}",
                case.what
            );

            let dry = qrouter(&["sync", "--dry-run"]);
            let listed = String::from_utf8_lossy(&dry.stdout).to_string();
            assert_eq!(dry.status.code(), Some(1), "dry run exit for {}", case.what);
            assert!(
                listed.contains(&want),
                "dry run lacks '{want}' for {}: {listed}",
                case.what
            );

            ok(&["sync"]);
            assert_eq!(
                json(&["router", "show", "router_100_101"])["kernel"],
                "in sync",
                "sync did not repair {}",
                case.what
            );
            assert_eq!(
                ok(&["sync", "--dry-run"]).trim(),
                "in sync: the kernel matches the store",
                "after repairing {}",
                case.what
            );
            vm3_pings_upstream();
        }
    });
}

#[test]
fn a_bridge_made_anew_gets_its_taps_back() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        sh_ok("ip link del br-ex && ip link add br-ex type bridge && ip link set br-ex up");
        let dry = qrouter(&["sync", "--dry-run"]);
        let listed = String::from_utf8_lossy(&dry.stdout).to_string();
        assert_eq!(dry.status.code(), Some(1));
        assert!(listed.contains("enslave tap"), "{listed}");
        ok(&["sync"]);
        vm3_pings_upstream();
        // A bridge deleted outright is made once, not once per router on it.
        sh_ok("ip link del br-ex");
        let listed = String::from_utf8_lossy(&qrouter(&["sync", "--dry-run"]).stdout).to_string();
        assert_eq!(listed.matches("create bridge br-ex").count(), 1, "{listed}");
        ok(&["sync"]);
        vm3_pings_upstream();
    });
}

#[test]
fn every_gateway_change_leaves_a_working_router() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        let ns = namespace_of("router", "router_100_101");
        // A new address: a new qg- replaces the old one, with the default route.
        ok(&[
            "router",
            "set",
            "router_100_101",
            "--external-gateway",
            "ext_net",
            "--fixed-ip",
            "ip-address=10.10.10.200",
        ]);
        let routes = sh_ok(&format!("ip -n {ns} route show default"));
        assert!(routes.contains("via 10.10.10.1"), "{routes}");
        vm3_pings_upstream();
        let upstream = namespace_of("instance", "upstream");
        let vm3 = namespace_of("instance", "cirros-vm3");
        let seen = tcp_probe(&upstream, "10.10.10.1:80", &vm3).expect("TCP out");
        assert_eq!(seen.ip().to_string(), "10.10.10.200");
        // SNAT off and on again.
        ok(&["router", "set", "router_100_101", "--disable-snat"]);
        ok(&["router", "set", "router_100_101", "--enable-snat"]);
        vm3_pings_upstream();
        // Off the external network and back.
        ok(&["router", "unset", "router_100_101", "--external-gateway"]);
        set_gateway();
        vm3_pings_upstream();
        assert_eq!(
            ok(&["sync", "--dry-run"]).trim(),
            "in sync: the kernel matches the store"
        );
    });
}

#[test]
fn extra_routes_to_one_destination_are_one_multipath_route() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        let ns = namespace_of("router", "router_100_101");
        for via in ["10.10.10.5", "10.10.10.6"] {
            ok(&[
                "router",
                "add",
                "route",
                "router_100_101",
                "--route",
                &format!("destination=8.8.8.0/24,gateway={via}"),
            ]);
        }
        let route = sh_ok(&format!("ip -n {ns} route show 8.8.8.0/24"));
        assert!(route.contains("nexthop via 10.10.10.5"), "{route}");
        assert!(route.contains("nexthop via 10.10.10.6"), "{route}");
        ok(&[
            "router",
            "remove",
            "route",
            "router_100_101",
            "--route",
            "destination=8.8.8.0/24,gateway=10.10.10.5",
        ]);
        let route = sh_ok(&format!("ip -n {ns} route show 8.8.8.0/24"));
        assert_eq!(
            route.trim(),
            "8.8.8.0/24 via 10.10.10.6 dev ".to_string()
                + &router_device("router_100_101", "10.10.10.2")
                + " proto static"
        );
        assert_eq!(
            ok(&["sync", "--dry-run"]).trim(),
            "in sync: the kernel matches the store"
        );
    });
}

#[test]
fn an_atomic_batch_that_fails_flushes_no_connection() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        let fip = value(
            &[
                "floating",
                "ip",
                "create",
                "ext_net",
                "--instance",
                "cirros-vm3",
            ],
            "floating_ip_address",
        );
        let ns = namespace_of("router", "router_100_101");
        let upstream = namespace_of("instance", "upstream");
        // A tracked connection to the floating IP.
        sh_ok(&format!("ip netns exec {upstream} ping -c 1 -W 2 {fip}"));
        let tracked = || {
            sh_ok(&format!(
                "ip netns exec {ns} conntrack -L -d {fip} 2>/dev/null"
            ))
        };
        assert!(tracked().contains(&fip));
        let batch = format!("floating ip unset {fip} --port\nrouter show no-such-router\n");
        let out = command(&["batch", "--atomic", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(batch.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(!out.status.success());
        // Nothing changed: the association, its rules, and its connections.
        assert!(
            tracked().contains(&fip),
            "the failed batch flushed the entries"
        );
        assert_eq!(value(&["floating", "ip", "show", &fip], "status"), "ACTIVE");
        // Applied, the unset flushes them, after the rules are gone.
        ok(&["floating", "ip", "unset", &fip, "--port"]);
        assert!(!tracked().contains(&fip));
    });
}

#[test]
fn a_bridge_that_is_no_longer_a_bridge_is_flagged_and_left_alone() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        sh_ok("ip link del br-ex && ip link add br-ex type veth peer name brx1");
        let dry = qrouter(&["sync", "--dry-run"]);
        let listed = String::from_utf8_lossy(&dry.stdout).to_string();
        assert_eq!(dry.status.code(), Some(1));
        assert!(
            listed.contains("network ext_net: br-ex is a veth device, not a bridge"),
            "{listed}"
        );
        let out = qrouter(&["sync"]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            err.contains("br-ex is a veth device, not a bridge"),
            "{err}"
        );
        // The operator's device stays as it is.
        assert!(sh_ok("ip -d link show br-ex").contains("veth"));
    });
}

#[test]
fn an_extra_veth_pair_in_a_router_is_removed_and_sync_succeeds() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        let ns = namespace_of("router", "router_100_101");
        sh_ok(&format!("ip -n {ns} link add xa type veth peer name xb"));
        // Both ends are stale; deleting one takes its twin, which is no error.
        let out = ok(&["sync"]);
        assert!(out.contains("delete stale device xa"), "{out}");
        assert_eq!(
            ok(&["sync", "--dry-run"]).trim(),
            "in sync: the kernel matches the store"
        );
    });
}

/// One router sync cannot converge (a device of someone else's holds its tap's name) holds
/// no other object back: the other router's drift is repaired and a killed dnsmasq is
/// started again; then sync exits 1 naming the router and why. Once the device is gone, the
/// next sync converges it too.
#[test]
fn sync_converges_everything_it_can_and_names_what_it_cannot() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        second_router();
        let ns_b = namespace_of("router", "router_b");
        let qr_b = router_device("router_b", "172.16.200.1");
        let tap_b = qr_b.replacen("qr-", "tap", 1);
        sh_ok(&format!(
            "ip -n {ns_b} link del {qr_b} && ip link add {tap_b} type veth peer name foreign0"
        ));
        let ns = namespace_of("router", "router_100_101");
        let qr = router_device("router_100_101", "172.16.101.1");
        sh_ok(&format!("ip -n {ns} link set {qr} down"));
        let pid = value(&["network", "show", "vlan101"], "dnsmasq_pid");
        sh_ok(&format!("kill {pid}"));

        let out = qrouter(&["sync"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!(
                "qrouter: router router_b: {tap_b}: a device of that name exists and carries no mark of this store"
            )),
            "{err}"
        );
        assert!(
            err.contains("qrouter: sync: 1 object failed; everything else was converged"),
            "{err}"
        );
        // Everything else: router_100_101's device is up, vlan101's dnsmasq runs again.
        assert!(sh_ok(&format!("ip -n {ns} -o link show {qr}")).contains("state UP"));
        assert_eq!(value(&["network", "show", "vlan101"], "dnsmasq"), "running");
        vm3_pings_upstream();
        // What is left to do is router_b's alone.
        let dry = qrouter(&["sync", "--dry-run"]);
        let said = String::from_utf8_lossy(&dry.stdout);
        assert_eq!(dry.status.code(), Some(1), "{said}");
        for line in said.lines().filter(|l| l.starts_with("would:")) {
            assert!(line.contains(&ns_b) || line.contains(&tap_b), "{said}");
        }

        sh_ok(&format!("ip link del {tap_b}"));
        ok(&["sync"]);
        assert_eq!(
            ok(&["sync", "--dry-run"]).trim(),
            "in sync: the kernel matches the store"
        );
        pings_upstream("vm-b");
    });
}
