//! qrouter writes its rules into nf_tables itself, exactly as iptables-nft writes them: for
//! every kind of rule it makes (SNAT, DNAT, floating-IP SNAT, hairpin, inbound protection,
//! conntrack states, the host's FORWARD chain), what `iptables-save` reads back equals what
//! `iptables-restore` of the same text makes in a fresh namespace, and `nft --debug=netlink`
//! shows the same expressions.

mod common;

use std::collections::BTreeMap;

use common::*;

/// `iptables-save` without its comment lines, in namespace `ns` (the host with "").
fn save(ns: &str) -> String {
    let prefix = match ns {
        "" => String::new(),
        ns => format!("ip netns exec {ns} "),
    };
    sh_ok(&format!("{prefix}iptables-save | sed '/^#/d'"))
}

/// Each chain's rules as `nft --debug=netlink list ruleset` shows their expressions: handles
/// and counters left out, chains that hold no rule too (iptables-restore makes the built-in
/// chains a saved table declares, iptables-nft only those its rules need).
fn expressions(ns: &str) -> BTreeMap<String, Vec<String>> {
    let prefix = match ns {
        "" => String::new(),
        ns => format!("ip netns exec {ns} "),
    };
    let text = sh_ok(&format!("{prefix}nft --debug=netlink list ruleset"));
    let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for block in text.split("\n\n") {
        let mut lines = block.lines().filter(|l| !l.starts_with('#'));
        let Some(head) = lines.next() else { continue };
        let words: Vec<&str> = head.split_whitespace().collect();
        // "ip nat qrouter-snat 17 16": family, table, chain, handle, position.
        if words.len() < 4 || words[0] != "ip" || head.contains('{') {
            continue;
        }
        let rule: Vec<String> = lines
            .take_while(|l| l.trim_start().starts_with('['))
            .filter(|l| !l.contains("[ counter"))
            .map(|l| l.trim().to_string())
            .collect();
        chains
            .entry(format!("{} {}", words[1], words[2]))
            .or_default()
            .push(rule.join(" "));
    }
    chains
}

/// What `iptables-restore` of `text` makes in a new namespace: its save and expressions.
fn restored(text: &str) -> (String, BTreeMap<String, Vec<String>>) {
    sh_ok("ip netns add by-iptables");
    std::fs::write("/run/rules.txt", text).unwrap();
    sh_ok("ip netns exec by-iptables iptables-restore < /run/rules.txt");
    let out = (save("by-iptables"), expressions("by-iptables"));
    sh_ok("ip netns del by-iptables");
    out
}

#[test]
fn rules_written_in_process_are_those_iptables_restore_writes() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        ok(&[
            "floating",
            "ip",
            "create",
            "ext_net",
            "--floating-ip-address",
            "10.10.10.3",
            "--instance",
            "cirros-vm3",
        ]);
        let ns = namespace_of("router", "router_100_101");
        let ours = save(&ns);
        for kind in [
            "-j SNAT --to-source 10.10.10.2 --random-fully",
            "-j DNAT --to-destination 172.16.101.3",
            "-s 172.16.101.3/32 -j SNAT --to-source 10.10.10.3 --random-fully",
            "-m conntrack --ctstate DNAT -j SNAT",
            "! -o qg-",
            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-j DROP",
        ] {
            assert!(ours.contains(kind), "no '{kind}' in:\n{ours}");
        }
        let (theirs, their_exprs) = restored(&ours);
        assert_eq!(ours, theirs);
        assert_eq!(expressions(&ns), their_exprs);
        // Edited in place by qrouter (a rule inserted, one deleted), still the same.
        ok(&["floating", "ip", "delete", "10.10.10.3"]);
        tenant_network("vlan102", "172.16.102.0/24");
        ok(&["router", "add", "interface", "router_100_101", "vlan102"]);
        let ours = save(&ns);
        assert!(ours.contains("-s 172.16.102.0/24 -m conntrack --ctstate DNAT"));
        assert!(!ours.contains("DNAT --to-destination"), "{ours}");
        let (theirs, their_exprs) = restored(&ours);
        assert_eq!(ours, theirs);
        assert_eq!(expressions(&ns), their_exprs);
        // iptables itself edits qrouter's chains as its own, and `sync` takes them back.
        sh_ok(&format!(
            "ip netns exec {ns} iptables -t nat -I qrouter-snat 2 -s 10.0.0.0/8 -j RETURN"
        ));
        assert_eq!(qrouter(&["sync", "--dry-run"]).status.code(), Some(1));
        ok(&["sync"]);
        assert_eq!(save(&ns), ours);
    });
}

#[test]
fn the_hosts_forward_chain_is_written_as_iptables_writes_it() {
    sandboxed(|| {
        if !sh("test \"$(cat /proc/sys/net/bridge/bridge-nf-call-iptables)\" = 1").0 {
            eprintln!("note: bridge netfilter is off on this host: qrouter adds no FORWARD rules");
            return;
        }
        sh_ok("iptables -P FORWARD DROP");
        seed_topology();
        let ours = save("");
        assert!(
            ours.contains("-A qrouter-FORWARD -i br-ex -o br-ex -j ACCEPT"),
            "{ours}"
        );
        let (theirs, their_exprs) = restored(&ours);
        assert_eq!(ours, theirs);
        assert_eq!(expressions(""), their_exprs);
    });
}

#[test]
fn with_iptables_legacy_the_rules_go_through_iptables_restore() {
    sandboxed(|| {
        if !needs_real_root(
            "iptables-legacy needs the ip_tables module, which a user namespace cannot load",
        ) {
            return;
        }
        // The host's iptables is iptables-legacy, as Debian's alternatives make it.
        std::fs::create_dir_all("/run/legacy").unwrap();
        for tool in ["iptables", "iptables-save", "iptables-restore"] {
            let legacy = format!(
                "/usr/sbin/{}",
                tool.replacen("iptables", "iptables-legacy", 1)
            );
            std::os::unix::fs::symlink(legacy, format!("/run/legacy/{tool}")).unwrap();
        }
        let path = std::env::var("PATH").unwrap_or_default();
        std::env::set_var("PATH", format!("/run/legacy:{path}"));
        seed_topology();
        set_gateway();
        let ns = namespace_of("router", "router_100_101");
        let nat = sh_ok(&format!("ip netns exec {ns} iptables-save -t nat"));
        assert!(
            nat.contains("-j SNAT --to-source 10.10.10.2 --random-fully"),
            "{nat}"
        );
        // Nothing in nf_tables: the two backends are never mixed in one namespace.
        assert_eq!(sh_ok(&format!("ip netns exec {ns} nft list ruleset")), "");
        vm3_pings_upstream();
        assert_eq!(
            ok(&["sync", "--dry-run"]).trim(),
            "in sync: the kernel matches the store"
        );
    });
}
