use super::*;
use crate::kernel::nft_expr::{decode, encode};
use crate::model::rules::Inbound;
use crate::model::rules_router::{build, RouterNat};

fn seed() -> Vec<crate::model::rules::Table> {
    build(&RouterNat {
        gateway: Some((
            IfName::new("qg-b8b32a88-03").unwrap(),
            "10.10.10.2".parse().unwrap(),
        )),
        snat: true,
        internal: vec!["172.16.101.0/24".parse().unwrap()],
        floating: vec![(
            "10.10.10.3".parse().unwrap(),
            "172.16.101.3".parse().unwrap(),
        )],
        ipv6_uplink: Some(IfName::new("qg-b8b32a88-03").unwrap()),
        inbound: vec![
            Inbound::parse("destination=2001:db8:101::5/128,protocol=tcp,port=22").unwrap(),
            Inbound::parse("destination=2001:db8:101::/64,protocol=icmp").unwrap(),
            Inbound::parse("destination=2001:db8:101:0:f816:3eff:fe00:1").unwrap(),
        ],
    })
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn every_rule_reads_back_as_itself() {
    for table in seed() {
        for (_, rule) in table.rules() {
            let dumped = encode(&expressions(&rule, table.family, 7, 420));
            let exprs = decode(dumped.as_bytes()).unwrap();
            assert_eq!(super::rule(&exprs, table.family), Some((rule, (7, 420))));
        }
    }
}

/// The info structs iptables-nft 1.8.9 sent here for the seed's rules (strace of
/// `iptables-restore`), byte for byte.
#[test]
fn compat_infos_are_iptables_nfts() {
    let dnat = Rule::to(Target::Dnat {
        to: "172.16.101.3".parse().unwrap(),
    })
    .dst("10.10.10.3/32".parse().unwrap());
    let Expr::Target { revision, info, .. } = expressions(&dnat, Family::V4, 0, 0).pop().unwrap()
    else {
        panic!()
    };
    assert_eq!(revision, 2);
    let mut want = unhex("01000000ac106503000000000000000000000000ac106503");
    want.resize(48, 0);
    assert_eq!(info, want);

    let ct = Rule::to(Target::Accept).ctstate(true, CtStates::DNAT);
    let Expr::Match { info, revision, .. } = &expressions(&ct, Family::V4, 0, 0)[0] else {
        panic!()
    };
    assert_eq!(*revision, 3);
    assert_eq!(info.len(), 168);
    assert!(info[..146].iter().all(|b| *b == 0));
    assert_eq!(&info[146..152], &unhex("010001008000"));
}

#[test]
fn addresses_are_compared_as_iptables_nft_compares_them() {
    let on_byte = Rule::to(Target::Accept).src("172.16.101.0/24".parse().unwrap());
    assert_eq!(
        expressions(&on_byte, Family::V4, 0, 0)[..2],
        [
            Expr::Payload {
                base: 1,
                offset: 12,
                len: 3
            },
            Expr::Cmp {
                equal: true,
                data: vec![172, 16, 101]
            }
        ]
    );
    let masked = Rule::to(Target::Accept).src("172.16.101.128/25".parse().unwrap());
    assert_eq!(
        expressions(&masked, Family::V4, 0, 0)[..3],
        [
            Expr::Payload {
                base: 1,
                offset: 12,
                len: 4
            },
            Expr::Bitwise {
                mask: vec![255, 255, 255, 128]
            },
            Expr::Cmp {
                equal: true,
                data: vec![172, 16, 101, 128]
            }
        ]
    );
}

#[test]
fn what_qrouter_would_not_write_is_unreadable() {
    // `-i eth+` (no NUL: a prefix match), and SNAT with a port range.
    let wildcard = vec![
        Expr::Meta { key: 6 },
        Expr::Cmp {
            equal: true,
            data: b"eth".to_vec(),
        },
        Expr::Counter {
            packets: 0,
            bytes: 0,
        },
        Expr::Verdict {
            code: 1,
            chain: None,
        },
    ];
    assert_eq!(rule(&wildcard, Family::V4), None);
    let snat = Rule::to(Target::Snat {
        to: "10.10.10.2".parse().unwrap(),
        random_fully: false,
    });
    let mut exprs = expressions(&snat, Family::V4, 0, 0);
    if let Some(Expr::Target { info, .. }) = exprs.last_mut() {
        info[4] |= 2; // NF_NAT_RANGE_PROTO_SPECIFIED
    }
    assert_eq!(rule(&exprs, Family::V4), None);
    let rules = [nft::Rule {
        table: "nat".into(),
        chain: "qrouter-snat".into(),
        handle: 9,
        expressions: encode(&wildcard).as_bytes().to_vec(),
    }];
    let saved = saved(Family::V4, &[], &rules);
    assert!(unreadable(&saved["nat"]));
}
