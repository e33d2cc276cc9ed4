//! Shell completion and man pages: object names come from the store through the real
//! completion machinery (what the bash script runs on TAB), and the committed scripts and
//! man pages are exactly what the binary generates.

mod common;

use std::process::Command;

use common::*;

/// The candidates bash gets for the last word of `line` (the word being typed), options aside.
fn complete_bash(line: &[&str]) -> Vec<String> {
    let out = Command::new(qrouter_bin())
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", (line.len() - 1).to_string())
        .env("_CLAP_COMPLETE_COMP_TYPE", "9")
        .env("_CLAP_COMPLETE_SPACE", "true")
        .env("_CLAP_IFS", "\n")
        .env("QROUTER_STATE_DIR", STATE_DIR)
        .arg("--")
        .args(line)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut words: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|w| !w.starts_with('-'))
        .map(str::to_string)
        .collect();
    words.sort();
    words
}

#[test]
fn tab_offers_the_objects_in_the_store() {
    sandboxed(|| {
        seed_topology();
        assert_eq!(
            complete_bash(&["qrouter", "router", "show", ""]),
            ["router_100_101"]
        );
        assert_eq!(
            complete_bash(&[
                "qrouter",
                "router",
                "set",
                "router_100_101",
                "--external-gateway",
                ""
            ]),
            ["ext_net"]
        );
        // Both tenant subnets are attached already: nothing left to add.
        assert_eq!(
            complete_bash(&[
                "qrouter",
                "router",
                "add",
                "interface",
                "router_100_101",
                ""
            ]),
            Vec::<String>::new()
        );
        assert_eq!(
            complete_bash(&["qrouter", "instance", "exec", ""]),
            ["cirros-vm3", "upstream"]
        );
        assert_eq!(
            complete_bash(&["qrouter", "network", "delete", "vlan"]),
            ["vlan100", "vlan101"]
        );
        // Subcommands complete too.
        assert!(complete_bash(&["qrouter", "router", "s"]).contains(&"show".to_string()));
        // -c offers the columns or fields of the command being typed.
        let columns = complete_bash(&["qrouter", "router", "list", "--long", "-c", ""]);
        assert!(
            columns.contains(&"External gateway info".to_string()),
            "{columns:?}"
        );
        let fields = complete_bash(&["qrouter", "network", "show", "ext_net", "-c", "rou"]);
        assert_eq!(fields, ["router:external"]);
        // Ports by name where they have one; port delete offers only what it can delete.
        ok(&["port", "create", "web1", "--network", "vlan101"]);
        let ports = complete_bash(&["qrouter", "port", "set", ""]);
        assert!(ports.contains(&"web1".to_string()), "{ports:?}");
        assert_eq!(complete_bash(&["qrouter", "port", "delete", ""]), ["web1"]);
    });
}

/// Issue 15 item 16: TAB offers only what the command would accept, judged by the
/// operation's own check (`ops::router::check_add_interface` and its kind).
#[test]
fn tab_offers_only_what_would_succeed() {
    sandboxed(|| {
        seed_topology();
        tenant_network("vlan102", "172.16.102.0/24");
        ok(&["router", "create", "r2"]);
        ok(&["network", "create", "empty"]);
        let tab = |line: &[&str]| complete_bash(&[&["qrouter"][..], line, &[""]].concat());
        // vlan100 and vlan101: their gateways are router_100_101's; ext is external.
        assert_eq!(tab(&["router", "add", "interface", "r2"]), ["vlan102"]);
        assert_eq!(
            tab(&["router", "add", "subnet", "router_100_101"]),
            ["vlan102"]
        );
        // Only what the router has.
        assert_eq!(
            tab(&["router", "remove", "interface", "router_100_101"]),
            ["vlan100", "vlan101"]
        );
        // A network without a subnet gives no address; only an external one a floating IP.
        assert_eq!(
            tab(&["instance", "create", "vm9", "--network"]),
            ["empty", "ext_net", "vlan100", "vlan101", "vlan102"]
                .into_iter()
                .filter(|n| *n != "empty")
                .collect::<Vec<_>>()
        );
        assert_eq!(tab(&["floating", "ip", "create"]), ["ext_net"]);
        // --state-dir on the line is the store the candidates come from.
        let out = Command::new(qrouter_bin())
            .env("COMPLETE", "bash")
            .env("_CLAP_COMPLETE_INDEX", "5")
            .env("_CLAP_COMPLETE_COMP_TYPE", "9")
            .env("_CLAP_COMPLETE_SPACE", "true")
            .env("_CLAP_IFS", "\n")
            .env_remove("QROUTER_STATE_DIR")
            .args([
                "--",
                "qrouter",
                "--state-dir",
                STATE_DIR,
                "router",
                "show",
                "",
            ])
            .output()
            .unwrap();
        let words = String::from_utf8_lossy(&out.stdout);
        assert!(words.lines().any(|w| w == "r2"), "{words}");
    });
}

#[test]
fn committed_completions_and_man_pages_are_current() {
    let root = source_dir();
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(qrouter_bin())
            .args(["completion", shell])
            .env_remove("QROUTER_STATE_DIR")
            .output()
            .unwrap();
        let committed =
            std::fs::read(root.join(format!("completions/qrouter.{shell}"))).unwrap_or_default();
        assert!(
            out.stdout == committed,
            "completions/qrouter.{shell} is stale: run `cargo run -q -- completion {shell} > completions/qrouter.{shell}`"
        );
    }
    let fresh = std::env::temp_dir().join(format!("qrouter-man-{}", std::process::id()));
    let out = Command::new(qrouter_bin())
        .arg("man")
        .arg(&fresh)
        .env_remove("QROUTER_STATE_DIR")
        .output()
        .unwrap();
    assert!(out.status.success());
    let list = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    let committed = root.join("man");
    assert_eq!(
        list(&fresh),
        list(&committed),
        "man/ is stale: run `cargo run -q -- man man/`"
    );
    for page in list(&fresh) {
        assert!(
            std::fs::read(fresh.join(&page)).unwrap()
                == std::fs::read(committed.join(&page)).unwrap(),
            "man/{page} is stale: run `cargo run -q -- man man/`"
        );
    }
    assert!(list(&fresh).contains(&"qrouter-router-set.1".to_string()));
    // Issue 15 item 17: every page says how qrouter exits, what it reads from the environment
    // and which files it keeps.
    for page in list(&fresh) {
        let text = std::fs::read_to_string(fresh.join(&page)).unwrap();
        for needed in [
            ".SH \"EXIT STATUS\"",
            "143 SIGTERM",
            ".SH ENVIRONMENT",
            "QROUTER_STATE_DIR",
            ".SH FILES",
            "qrouter.db\\-wal",
            "qrouter.db\\-shm",
        ] {
            assert!(text.contains(needed), "man/{page} lacks {needed}");
        }
    }
    std::fs::remove_dir_all(&fresh).unwrap();
}
