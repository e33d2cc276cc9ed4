//! `qrouter batch`: many commands in one process. Without --atomic each line is applied in
//! turn; with --atomic a batch that fails anywhere changes neither the store nor the kernel.

mod common;

use std::process::Stdio;

use common::*;

/// The seed topology (testbed::SEED, then its gateway), as a script would write it.
fn seed_script() -> String {
    let lines = testbed::SEED.iter().chain([&testbed::SET_GATEWAY]);
    let commands: Vec<String> = lines.map(|words| words.join(" ")).collect();
    format!("# the seed topology\n{}\n", commands.join("\n"))
}

#[test]
fn a_batch_builds_the_seed_and_traffic_flows() {
    sandboxed(|| {
        let out = batch(&["-"], &seed_script());
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
    sandboxed(|| {
        // The lower device of a macvlan passes network create's checks, but the kernel
        // will not enslave it to a bridge.
        sh_ok("ip link add pv0 type veth peer name pv1 && ip link add mv0 link pv0 type macvlan");
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
    });
}

#[test]
fn an_atomic_batch_that_fails_changes_nothing() {
    sandboxed(|| {
        let (kernel, store) = (kernel_snapshot(), store_snapshot());
        let bad = format!(
            "{}router add interface router_100_101 no-such-subnet\n",
            seed_script()
        );
        let out = batch(&["--atomic", "-"], &bad);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        let line = seed_script().lines().count() + 1;
        let said = format!("line {line}: router add interface router_100_101 no-such-subnet");
        assert!(err.contains(&said), "{err}");
        assert!(err.contains("no-such-subnet"), "{err}");
        assert_eq!(kernel_snapshot(), kernel);
        assert_eq!(store_snapshot(), store);

        // The same batch without the bad line applies whole, in one converge.
        let out = batch(&["--atomic", "-"], &seed_script());
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

/// Issue 15 item 12: SIGTERM or SIGHUP during a batch. The line in progress finishes, the
/// batch stops after it and says on stderr which line that was and what is done and not;
/// the exit code is the shell's for the signal (143, 129). The kernel matches the store.
#[test]
fn a_signal_stops_a_batch_after_a_whole_line_and_says_where() {
    sandboxed(|| {
        let names = |prefix: &str| -> usize {
            ok(&["network", "list", "-f", "value", "-c", "Name"])
                .lines()
                .filter(|n| n.starts_with(prefix))
                .count()
        };
        for (signal, code, prefix) in [
            (nix::sys::signal::Signal::SIGTERM, 143, "t"),
            (nix::sys::signal::Signal::SIGHUP, 129, "h"),
        ] {
            const LINES: usize = 400;
            let script: String = (0..LINES)
                .map(|i| format!("network create {prefix}{i}\n"))
                .collect();
            std::fs::write("/run/lines.txt", script).unwrap();
            let job = command(&["batch", "/run/lines.txt"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // Some lines in, far from the end.
            let started = std::time::Instant::now();
            while names(prefix) < 3 {
                assert!(started.elapsed().as_secs() < 20, "the batch never started");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(job.id() as i32), signal).unwrap();
            let out = job.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(code), "{err}");
            // "qrouter: batch stopped by SIGTERM after line N: N of 400 lines done, M not run"
            let said = format!("qrouter: batch stopped by {signal} after line ");
            let rest = err
                .strip_prefix(&said)
                .unwrap_or_else(|| panic!("{said:?} in {err:?}"));
            let line: usize = rest.split(':').next().unwrap().parse().unwrap();
            assert!(line < LINES, "{err}");
            assert_eq!(
                rest.trim_end(),
                format!(
                    "{line}: {line} of {LINES} lines done, {} not run",
                    LINES - line
                )
            );
            // Exactly the lines it says are done are in the store, and in the kernel.
            assert_eq!(names(prefix), line, "{err}");
            let out = qrouter(&["sync", "--dry-run"]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    });
}
