use super::super::rules_edit::{
    change, longest_increasing, parse_save, parse_save_tables, restore_batch, Op, Saved, SavedRule,
};
use super::super::rules_router::{build, host_forward, RouterNat};
use super::*;
use std::net::Ipv4Addr;

fn name(n: &str) -> IfName {
    IfName::new(n).unwrap()
}

fn seed() -> RouterNat {
    RouterNat {
        gateway: Some((name("qg-b8b32a88-03"), "10.10.10.2".parse().unwrap())),
        snat: true,
        internal: vec!["172.16.101.0/24".parse().unwrap()],
        floating: vec![],
        ipv6_uplink: None,
        inbound: vec![],
    }
}

fn rules(tables: &[Table], chain: &str) -> Vec<String> {
    tables
        .iter()
        .flat_map(|t| &t.chains)
        .find(|(c, _)| c == chain)
        .map(|(_, r)| r.iter().map(Rule::to_string).collect())
        .unwrap()
}

#[test]
fn seed_snat_rules_as_iptables_save_prints_them() {
    let t = build(&seed());
    assert_eq!(
        rules(&t, "qrouter-POSTROUTING"),
        [
            "! -o qg-b8b32a88-03 -m conntrack ! --ctstate DNAT -j ACCEPT",
            "-j qrouter-snat"
        ]
    );
    assert_eq!(
        rules(&t, "qrouter-snat"),
        [
            "-j qrouter-float-snat",
            "-s 172.16.101.0/24 -m conntrack --ctstate DNAT -j SNAT --to-source 10.10.10.2 --random-fully",
            "-o qg-b8b32a88-03 -j SNAT --to-source 10.10.10.2 --random-fully"
        ]
    );
    assert_eq!(
        rules(&t, "qrouter-FORWARD").last().unwrap(),
        "-i qg-b8b32a88-03 -j DROP"
    );
}

#[test]
fn disable_snat_keeps_floating_ips() {
    let mut nat = seed();
    nat.snat = false;
    nat.floating.push((
        "10.10.10.3".parse().unwrap(),
        "172.16.101.3".parse().unwrap(),
    ));
    let t = build(&nat);
    assert!(!rules(&t, "qrouter-snat")
        .iter()
        .any(|r| r.starts_with("-o qg-")));
    assert_eq!(
        rules(&t, "qrouter-PREROUTING"),
        ["-d 10.10.10.3/32 -j DNAT --to-destination 172.16.101.3"]
    );
    assert_eq!(
        rules(&t, "qrouter-OUTPUT"),
        ["-d 10.10.10.3/32 -j DNAT --to-destination 172.16.101.3"]
    );
    assert_eq!(
        rules(&t, "qrouter-float-snat"),
        ["-s 172.16.101.3/32 -j SNAT --to-source 10.10.10.3 --random-fully"]
    );
}

/// No NAT66, and IPv4's inbound protection in ip6tables' filter table, as ip6tables-save
/// prints it (research/ipv6.md 5, measured): ICMPv6 types as numbers.
#[test]
fn ipv6_is_guarded_and_never_translated() {
    let mut nat = seed();
    assert!(build(&nat)
        .iter()
        .all(|t| t.family == Family::V4 || t.chains.is_empty()));
    nat.ipv6_uplink = Some(name("qg-b8b32a88-03"));
    let t = build(&nat);
    let v6: Vec<&Table> = t.iter().filter(|t| t.family == Family::V6).collect();
    assert_eq!(v6.len(), 1);
    assert_eq!(
        (v6[0].name, v6[0].key()),
        ("filter", "ip6 filter".to_string())
    );
    let forward: Vec<String> = v6[0].chains[0].1.iter().map(Rule::to_string).collect();
    assert_eq!(
        forward,
        [
            "-i qg-b8b32a88-03 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-i qg-b8b32a88-03 -p ipv6-icmp -m icmp6 --icmpv6-type 1 -j ACCEPT",
            "-i qg-b8b32a88-03 -p ipv6-icmp -m icmp6 --icmpv6-type 2 -j ACCEPT",
            "-i qg-b8b32a88-03 -p ipv6-icmp -m icmp6 --icmpv6-type 3 -j ACCEPT",
            "-i qg-b8b32a88-03 -p ipv6-icmp -m icmp6 --icmpv6-type 4 -j ACCEPT",
            "-i qg-b8b32a88-03 -j DROP",
        ]
    );
    assert_eq!(v6[0].jumps, [("FORWARD", chain("FORWARD"))]);
    // Its text round-trips through the save parser, so a second apply changes nothing.
    let saved = parse_save_tables(&format!(
        "*filter\n:FORWARD ACCEPT [0:0]\n:qrouter-FORWARD - [0:0]\n-A FORWARD -j qrouter-FORWARD\n{}COMMIT\n",
        forward.iter().map(|r| format!("-A qrouter-FORWARD {r}\n")).collect::<String>()
    ));
    assert_eq!(change(v6[0], &saved["filter"]), None);
}

#[test]
fn no_gateway_means_no_chains_and_nothing_to_write() {
    let t = build(&RouterNat::default());
    assert!(t.iter().all(|t| t.chains.is_empty() && t.jumps.is_empty()));
    assert_eq!(restore_batch(&t[0], &Saved::default()), None);
}

#[test]
fn losing_the_gateway_removes_our_jumps_and_chains() {
    let with = build(&seed());
    let without = build(&RouterNat::default());
    let batch = restore_batch(&without[0], &with[0].as_saved()).unwrap();
    assert!(
        batch.starts_with("*nat\n-D OUTPUT -j qrouter-OUTPUT\n"),
        "{batch}"
    );
    assert!(batch.contains("-D PREROUTING -j qrouter-PREROUTING\n:qrouter-OUTPUT - [0:0]\n"));
    assert!(batch.ends_with("-X qrouter-snat\nCOMMIT\n"), "{batch}");
    // Applied, the table holds nothing of ours.
    assert_eq!(restore_batch(&without[1], &Saved::default()), None);
}

#[test]
fn a_table_applied_matches_what_it_wants() {
    for t in build(&seed()) {
        assert_eq!(restore_batch(&t, &t.as_saved()), None);
    }
}

#[test]
fn batch_is_none_when_kernel_matches() {
    let t = build(&seed());
    let nat = &t[0];
    let empty = parse_save("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n");
    let batch = restore_batch(nat, &empty).unwrap();
    assert!(batch.starts_with("*nat\n:qrouter-PREROUTING - [0:0]\n"));
    assert!(batch.contains("-A POSTROUTING -j qrouter-POSTROUTING\n"));
    assert!(batch.ends_with("COMMIT\n"));
    // What the kernel holds after applying the batch, as iptables-save -c prints it.
    let applied: String = batch
        .lines()
        .map(|l| {
            if l.starts_with("-A") {
                format!("[3:252] {l}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let saved = parse_save(&applied);
    assert_eq!(saved.chains["qrouter-snat"][0].counters, Some((3, 252)));
    assert_eq!(restore_batch(nat, &saved), None);
}

#[test]
fn one_save_holds_every_table() {
    let text = "# Generated by iptables-save\n*filter\n:FORWARD ACCEPT [0:0]\n\
        -A FORWARD -j qrouter-FORWARD\nCOMMIT\n# Completed\n*nat\n:qrouter-snat - [0:0]\n\
        [5:300] -A qrouter-snat -o qg-x -j SNAT --to-source 10.10.10.2\nCOMMIT\n";
    let tables = parse_save_tables(text);
    assert_eq!(tables.keys().collect::<Vec<_>>(), ["filter", "nat"]);
    assert_eq!(tables["filter"].rules("FORWARD"), ["-j qrouter-FORWARD"]);
    assert_eq!(
        tables["nat"].chains["qrouter-snat"][0].counters,
        Some((5, 300))
    );
    assert!(parse_save_tables("").is_empty());
}

#[test]
fn host_rules_only_where_the_forward_policy_drops() {
    let t = host_forward(&[name("br-ex"), name("brq1234")], true, Family::V4);
    assert_eq!(
        rules(&[t], "qrouter-FORWARD"),
        [
            "-i br-ex -o br-ex -j ACCEPT",
            "-i brq1234 -o brq1234 -j ACCEPT"
        ]
    );
    assert!(host_forward(&[name("br-ex")], false, Family::V4)
        .chains
        .is_empty());
    assert!(host_forward(&[], true, Family::V6).chains.is_empty());
    // ip6tables' alike, in its own family.
    let t6 = host_forward(&[name("br-ex")], true, Family::V6);
    assert_eq!(t6.family, Family::V6);
    assert_eq!(
        rules(&[t6], "qrouter-FORWARD"),
        ["-i br-ex -o br-ex -j ACCEPT"]
    );
    let save = "*nat\n:FORWARD ACCEPT [0:0]\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [5:300]\nCOMMIT\n";
    assert_eq!(policy(save, "filter", "FORWARD"), Some("DROP"));
    assert_eq!(policy(save, "filter", "OUTPUT"), None);
    assert_eq!(policy("", "filter", "FORWARD"), None);
}

#[test]
fn drift_in_one_rule_replaces_that_rule_but_not_the_jumps() {
    let t = build(&seed());
    let nat = &t[0];
    let mut text = restore_batch(nat, &Saved::default()).unwrap();
    text = text.replace(
        "--to-source 10.10.10.2 --random-fully\nCOMMIT",
        "--to-source 10.10.10.9 --random-fully\nCOMMIT",
    );
    let batch = restore_batch(nat, &parse_save(&text)).unwrap();
    assert_eq!(
        batch,
        "*nat\n\
         -D qrouter-snat -o qg-b8b32a88-03 -j SNAT --to-source 10.10.10.9 --random-fully\n\
         -A qrouter-snat -o qg-b8b32a88-03 -j SNAT --to-source 10.10.10.2 --random-fully\n\
         COMMIT\n"
    );
}

/// What `batch` does to `saved`, the way iptables-restore --noflush applies it.
fn apply(batch: &str, saved: &Saved) -> Saved {
    let mut chains = saved.chains.clone();
    for line in batch.lines() {
        let words: Vec<&str> = line.splitn(3, ' ').collect();
        if let Some(chain) = line.strip_prefix(':') {
            chains.insert(chain.split(' ').next().unwrap().into(), vec![]);
            continue;
        }
        let rule = |spec: &str| SavedRule::new(spec.into());
        match words[..] {
            ["-A", chain, spec] => chains.get_mut(chain).unwrap().push(rule(spec)),
            ["-D", chain, spec] => {
                let rules = chains.get_mut(chain).unwrap();
                let at = rules.iter().position(|r| r.spec == spec).expect(spec);
                rules.remove(at);
            }
            ["-I", chain, rest] => {
                let (at, spec) = rest.split_once(' ').unwrap();
                let rules = chains.get_mut(chain).unwrap();
                let at: usize = at.parse().unwrap();
                assert!(at >= 1 && at <= rules.len(), "{line}: use -A at the end");
                rules.insert(at - 1, rule(spec));
            }
            _ => assert!(line.starts_with('*') || line == "COMMIT", "{line}"),
        }
    }
    Saved { chains }
}

#[test]
fn rules_that_are_only_added_are_inserted_in_place() {
    let mut nat = seed();
    let before = build(&nat);
    nat.internal.push("172.16.102.0/24".parse().unwrap());
    nat.floating.push((
        "10.10.10.3".parse().unwrap(),
        "172.16.101.3".parse().unwrap(),
    ));
    let after = build(&nat);
    let batch = restore_batch(&after[0], &before[0].as_saved()).unwrap();
    // Nothing emptied, nothing deleted: iptables does not wait for a grace period.
    assert!(!batch.contains("\n:") && !batch.contains("-D "), "{batch}");
    assert!(
        batch.contains("-I qrouter-snat 3 -s 172.16.102.0/24 -m conntrack --ctstate DNAT -j SNAT")
    );
    assert_eq!(apply(&batch, &before[0].as_saved()), after[0].as_saved());
    assert_eq!(restore_batch(&after[1], &before[1].as_saved()), None);
}

#[test]
fn any_edit_of_a_chain_ends_in_the_wanted_rules() {
    let rules = |s: &str| -> Vec<Rule> {
        s.chars()
            .map(|c| {
                let host =
                    ipnet::IpNet::from(std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, c as u8)));
                Rule::to(Target::Accept).src(host)
            })
            .collect()
    };
    for (have, want) in [
        ("abc", "abcd"),
        ("abc", "xabc"),
        ("abc", "axbyc"),
        ("abcd", "bd"),
        ("abcd", "dcba"),
        ("abc", ""),
        ("", "ab"),
        ("aab", "ab"),
        ("ab", "abb"),
    ] {
        let table = Table {
            name: "nat",
            family: Family::V4,
            chains: vec![(chain("snat"), rules(want))],
            jumps: vec![],
        };
        let saved = Table {
            chains: vec![(chain("snat"), rules(have))],
            ..Table::empty("nat")
        }
        .as_saved();
        let wanted = table.as_saved();
        match restore_batch(&table, &saved) {
            Some(batch) => {
                assert_eq!(apply(&batch, &saved), wanted, "{have} -> {want}: {batch}")
            }
            None => assert_eq!(saved, wanted),
        }
    }
}

#[test]
fn longest_increasing_keeps_the_most_rules() {
    assert_eq!(longest_increasing(&[3, 0, 1, 4, 2]), [0, 1, 2]);
    assert_eq!(longest_increasing(&[2, 1, 0]).len(), 1);
    assert!(longest_increasing(&[]).is_empty());
}

#[test]
fn interface_names_are_what_the_kernel_takes() {
    assert!(IfName::new("qg-b8b32a88-03").is_ok());
    assert!(IfName::new("br_ex.1").is_ok());
    for bad in ["", "sixteen-bytes-xx", "a b", "eth0\n-A", "x;y", "tap+"] {
        assert!(IfName::new(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn rules_print_as_iptables_save_prints_them() {
    let r = Rule::to(Target::Accept)
        .src("172.16.101.7/24".parse().unwrap())
        .ctstate(true, CtStates::NEW | CtStates::RELATED | CtStates::DNAT);
    assert_eq!(
        r.to_string(),
        "-s 172.16.101.0/24 -m conntrack ! --ctstate NEW,RELATED,DNAT -j ACCEPT"
    );
    // 0.0.0.0/0 is no match at all, as iptables writes it.
    let any = Rule::to(Target::Return).dst("0.0.0.0/0".parse().unwrap());
    assert_eq!(any.to_string(), "-j RETURN");
}

#[test]
fn an_edit_in_nf_tables_inserts_before_the_kept_rule_that_follows() {
    let mut nat = seed();
    let before = build(&nat)[0].as_saved();
    let mut with_handles = before.clone();
    for (i, r) in with_handles.chains.values_mut().flatten().enumerate() {
        r.handle = Some(100 + i as u64);
    }
    nat.internal.insert(0, "172.16.100.0/24".parse().unwrap());
    let after = &build(&nat)[0];
    let change = change(after, &with_handles).unwrap();
    let snat_first = with_handles.chains["qrouter-snat"][1].handle;
    assert_eq!(change.ops.len(), 1);
    match &change.ops[0] {
        Op::Add {
            chain,
            position,
            before,
            ..
        } => {
            assert_eq!(chain, "qrouter-snat");
            assert_eq!(*position, Some(2));
            assert_eq!(*before, snat_first);
        }
        op => panic!("{op:?}"),
    }
}

#[test]
fn an_ipv6_opening_reads_as_the_operator_wrote_it_and_becomes_one_accept() {
    let o = Inbound::parse("destination=2001:db8:101::5/128,protocol=tcp,port=22").unwrap();
    assert_eq!(
        o.to_string(),
        "destination=2001:db8:101::5/128,protocol=tcp,port=22"
    );
    assert_eq!(
        o.rule(&name("qg-x")).to_string(),
        "-d 2001:db8:101::5/128 -i qg-x -p tcp -m tcp --dport 22 -j ACCEPT"
    );
    let host = Inbound::parse("destination=2001:db8:101::7,protocol=icmp").unwrap();
    assert_eq!(
        host.to_string(),
        "destination=2001:db8:101::7/128,protocol=icmp"
    );
    assert_eq!(
        host.rule(&name("qg-x")).to_string(),
        "-d 2001:db8:101::7/128 -i qg-x -p ipv6-icmp -j ACCEPT"
    );
    for (bad, why) in [
        ("destination=10.0.0.0/24", "is IPv4"),
        ("destination=2001:db8:101::1/64", "has host bits set"),
        (
            "destination=2001:db8::/64,port=22",
            "a port needs protocol=tcp",
        ),
        (
            "destination=2001:db8::/64,protocol=icmp,port=1",
            "a port needs protocol=tcp",
        ),
        (
            "destination=2001:db8::/64,port=0,protocol=tcp",
            "is not a port number",
        ),
        ("protocol=tcp", "destination=CIDR is missing"),
        ("destination=2001:db8::/64,via=x", "is not destination=CIDR"),
    ] {
        let err = Inbound::parse(bad).unwrap_err();
        assert!(err.contains(why), "{bad}: {err}");
    }
    // Openings go just before the DROP, after the fixed lines.
    let mut nat = seed();
    nat.ipv6_uplink = Some(name("qg-x"));
    nat.inbound = vec![o];
    let t = build(&nat);
    let forward = &t.iter().find(|t| t.family == Family::V6).unwrap().chains[0].1;
    let n = forward.len();
    assert_eq!(forward[n - 2].dport, Some(22));
    assert_eq!(forward[n - 1].target, Target::Drop);
}
