//! What the command line tells an operator before anything runs: a user who is not root is
//! told that qrouter needs root, before any store is opened or made.

mod common;

use std::process::Command;

use common::*;

/// Issue 15 item 17: root first. Without CAP_NET_ADMIN a mutating command says qrouter needs
/// root, and makes no store; a reader of a store it may not open is told the same first.
#[test]
fn a_user_without_cap_net_admin_is_told_to_run_as_root() {
    sandboxed(|| {
        seed_topology();
        let said = |cmd: &mut Command| {
            let out = cmd.output().unwrap();
            assert_eq!(out.status.code(), Some(1));
            String::from_utf8_lossy(&out.stderr).into_owned()
        };
        // The same uid without CAP_NET_ADMIN, on a state directory that does not exist yet.
        let err = said(
            Command::new("setpriv")
                .args(["--bounding-set", "-net_admin", "--inh-caps", "-net_admin"])
                .arg(qrouter_bin())
                .args(["--state-dir", "/run/new", "router", "create", "r1"]),
        );
        assert!(
            err.contains("run it as root (it needs CAP_NET_ADMIN)"),
            "{err}"
        );
        assert!(
            !std::path::Path::new("/run/new").exists(),
            "a store was made for a command that could not run"
        );
        if !needs_real_root("switching to another uid") {
            return;
        }
        // Another user on root's store: told to be root, not (only) that the store is not
        // theirs.
        for args in [&["router", "create", "r1"][..], &["router", "list"]] {
            let err = said(
                Command::new("setpriv")
                    .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
                    .arg(qrouter_bin())
                    .args(["--state-dir", STATE_DIR])
                    .args(args),
            );
            assert!(
                err.starts_with(
                    "qrouter: qrouter changes network namespaces, links and iptables: run it as root (it needs CAP_NET_ADMIN)"
                ),
                "{err}"
            );
        }
    });
}
