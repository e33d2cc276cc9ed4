//! `qrouter batch`: many commands in one process. Without --atomic each line is applied in
//! turn; with --atomic a batch that fails anywhere changes neither the store nor the kernel.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;

fn batch(args: &[&str], script: &str) -> std::process::Output {
    let mut child = command(&[&["batch"][..], args].concat())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

const SEED: &str = "
# the seed topology, as a script would write it
network create vlan101
network create ext_net --external --bridge br-ex
subnet create vlan101 --network vlan101 --subnet-range 172.16.101.0/24
subnet create ext --network ext_net --subnet-range 10.10.10.0/24 --gateway 10.10.10.1
router create router_100_101
router add subnet router_100_101 vlan101
instance create cirros-vm3 --network vlan101 --fixed-ip 172.16.101.3
instance create upstream --network ext_net --fixed-ip 10.10.10.1
router set router_100_101 --external-gateway ext_net
";

#[test]
fn a_batch_builds_the_seed_and_traffic_flows() {
    sandboxed("a_batch_builds_the_seed_and_traffic_flows", || {
        let out = batch(&["-"], SEED);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            value(&["router", "show", "router_100_101"], "kernel"),
            "in sync"
        );
        vm3_pings_upstream();
    });
}

#[test]
fn an_atomic_batch_the_kernel_refuses_midway_leaves_nothing() {
    sandboxed(
        "an_atomic_batch_the_kernel_refuses_midway_leaves_nothing",
        || {
            // The lower device of a macvlan passes network create's checks, but the kernel
            // will not enslave it to a bridge.
            sh_ok(
                "ip link add pv0 type veth peer name pv1 && ip link add mv0 link pv0 type macvlan",
            );
            let (kernel, store) = (kernel_snapshot(), store_snapshot());
            // The routers are filled one by one while the next one's namespace is made on
            // another thread. One of them fails, on a network whose provider interface the
            // kernel refuses; the rollback must also undo the namespaces made ahead of it.
            let mut script = String::new();
            for i in 1..=6 {
                let provider = if i == 3 {
                    " --provider-interface pv0"
                } else {
                    ""
                };
                script += &format!(
                    "network create n{i}{provider}\n\
                     subnet create s{i} --network n{i} --subnet-range 10.{i}.0.0/24\n\
                     router create r{i}\n\
                     router add interface r{i} s{i}\n"
                );
            }
            let out = batch(&["--atomic", "-"], &script);
            assert_eq!(out.status.code(), Some(1));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("link pv0: cannot enslave it to brq"), "{err}");
            assert_eq!(kernel_snapshot(), kernel);
            assert_eq!(store_snapshot(), store);
        },
    );
}

#[test]
fn an_atomic_batch_that_fails_changes_nothing() {
    sandboxed("an_atomic_batch_that_fails_changes_nothing", || {
        let (kernel, store) = (kernel_snapshot(), store_snapshot());
        let bad = format!("{SEED}router add interface router_100_101 no-such-subnet\n");
        let out = batch(&["--atomic", "-"], &bad);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("line 12: router add interface router_100_101 no-such-subnet"),
            "{err}"
        );
        assert!(err.contains("no-such-subnet"), "{err}");
        assert_eq!(kernel_snapshot(), kernel);
        assert_eq!(store_snapshot(), store);

        // The same batch without the bad line applies whole, in one converge.
        let out = batch(&["--atomic", "-"], SEED);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        vm3_pings_upstream();

        // A router an atomic batch makes is printed and listed as being built; it is there
        // afterwards.
        let out = batch(&["--atomic", "-"], "router create r2 -f value -c status\n");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "BUILD\n");
        let out = batch(
            &["--atomic", "-"],
            "router create r4 -f value -c id\nrouter list -f value -c Name -c Status\n",
        );
        let listed = String::from_utf8_lossy(&out.stdout);
        assert!(listed.contains("\nrouter_100_101 ACTIVE\n"), "{listed}");
        assert!(listed.contains("\nr2 ACTIVE\n"), "{listed}");
        assert!(listed.contains("\nr4 BUILD\n"), "{listed}");
        assert_eq!(value(&["router", "show", "r2"], "status"), "ACTIVE");
        let out = batch(&["-"], "router create r3 -f value -c status\n");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ACTIVE\n");

        // Without --atomic, the lines before a failure stay applied.
        let out = batch(
            &["-"],
            "network create vlan300\nsubnet create x --network nope --subnet-range 10.9.0.0/24\n",
        );
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(value(&["network", "show", "vlan300"], "name"), "vlan300");
    });
}
