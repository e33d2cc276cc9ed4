//! qrouter's rules as iptables-nft 1.8.9 writes them into nf_tables, so that `iptables-save`
//! and `iptables -S` print them exactly as if `iptables-restore` had written them: matches on
//! addresses and interfaces as native `payload`/`meta`/`cmp` expressions, `-m conntrack` as
//! the compat `match` (revision 3), a counter in every rule, `-j SNAT` and `-j DNAT` as compat
//! `target` expressions with the revision and info struct iptables-nft picks here (SNAT 0,
//! DNAT 2), verdicts as `immediate`. A native `snat` expression would make `iptables-save`
//! refuse the whole table ("Table `nat' is incompatible, use 'nft' tool").

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::rules::{Cond, CtStates, Family, IfName, Proto, Rule, Target};
use super::rules_edit::{Change, Op, Saved, SavedRule};
use crate::kernel::nft::{self, At, Batch, Hook};
use crate::kernel::nft_expr::{
    encode, Expr, NFT_PAYLOAD_NETWORK_HEADER, NFT_PAYLOAD_TRANSPORT_HEADER,
};

const NFT_META_IIFNAME: u32 = 6;
const NFT_META_OIFNAME: u32 = 7;
const NFT_META_L4PROTO: u32 = 16;
/// Offsets of the source and destination addresses in the IPv4 and the IPv6 header.
const IP_SADDR: u32 = 12;
const IP_DADDR: u32 = 16;
const IP6_SADDR: u32 = 8;
const IP6_DADDR: u32 = 24;
/// The destination port's offset in the TCP and the UDP header.
const DPORT: u32 = 2;
const NF_ACCEPT: i32 = 1;
const NF_DROP: i32 = 0;
const NFT_JUMP: i32 = -3;
const NFT_RETURN: i32 = -5;
/// `struct xt_conntrack_mtinfo3`, XT_ALIGNed: its flags and state mask at their offsets.
const CONNTRACK_INFO_LEN: usize = 168;
const CONNTRACK_MATCH_FLAGS: usize = 146;
const XT_CONNTRACK_STATE: u16 = 1;
/// NF_NAT_RANGE_MAP_IPS, NF_NAT_RANGE_PROTO_RANDOM_FULLY.
const MAP_IPS: u32 = 1;
const RANDOM_FULLY: u32 = 0x10;
/// How a rule qrouter cannot read is shown.
const UNREADABLE: &str = "(a rule qrouter cannot read";

/// The address offsets (source, destination) in `family`'s header.
fn address_offsets(family: Family) -> (u32, u32) {
    match family {
        Family::V4 => (IP_SADDR, IP_DADDR),
        Family::V6 => (IP6_SADDR, IP6_DADDR),
    }
}

/// The expressions of `rule` in a table of `family`, with its counters, in the order
/// iptables-nft writes them (seen with `nft --debug=netlink`): interfaces, the protocol
/// (`meta l4proto`, ip6tables' tables), addresses, the destination port (natively), the
/// matches (ICMPv6's type and conntrack as compat matches), counter, target.
pub fn expressions(rule: &Rule, family: Family, packets: u64, bytes: u64) -> Vec<Expr> {
    let mut exprs = Vec::new();
    for (key, c) in [(NFT_META_IIFNAME, &rule.iif), (NFT_META_OIFNAME, &rule.oif)] {
        if let Some(c) = c {
            exprs.push(Expr::Meta { key });
            let mut name = c.value.as_str().as_bytes().to_vec();
            name.push(0);
            exprs.push(Expr::Cmp {
                equal: !c.negated,
                data: name,
            });
        }
    }
    if let Some(p) = rule.proto {
        exprs.push(Expr::Meta {
            key: NFT_META_L4PROTO,
        });
        exprs.push(Expr::Cmp {
            equal: true,
            data: vec![p.number()],
        });
    }
    let (saddr, daddr) = address_offsets(family);
    for (offset, c) in [(saddr, &rule.src), (daddr, &rule.dst)] {
        if let Some(c) = c {
            address(&mut exprs, offset, c);
        }
    }
    if let Some(port) = rule.dport {
        exprs.push(Expr::Payload {
            base: NFT_PAYLOAD_TRANSPORT_HEADER,
            offset: DPORT,
            len: 2,
        });
        exprs.push(Expr::Cmp {
            equal: true,
            data: port.to_be_bytes().to_vec(),
        });
    }
    if let Some(t) = rule.icmpv6_type {
        // struct ip6t_icmp: type, code range (any: 0 to 255), flags; XT_ALIGNed to 8.
        exprs.push(Expr::Match {
            name: "icmp6".into(),
            revision: 0,
            info: vec![t, 0, 0xff, 0, 0, 0, 0, 0],
        });
    }
    if let Some(c) = &rule.ctstate {
        exprs.push(conntrack(c));
    }
    exprs.push(Expr::Counter { packets, bytes });
    exprs.push(match &rule.target {
        Target::Accept => verdict(NF_ACCEPT),
        Target::Drop => verdict(NF_DROP),
        Target::Return => verdict(NFT_RETURN),
        Target::Jump(chain) => Expr::Verdict {
            code: NFT_JUMP,
            chain: Some(chain.clone()),
        },
        Target::Snat { to, random_fully } => {
            // struct nf_nat_ipv4_multi_range_compat: one range, its flags, min and max
            // address, min and max port; 20 bytes, XT_ALIGNed to 24.
            let flags = MAP_IPS | if *random_fully { RANDOM_FULLY } else { 0 };
            let mut info = 1u32.to_ne_bytes().to_vec();
            info.extend(flags.to_ne_bytes());
            info.extend(to.octets());
            info.extend(to.octets());
            info.resize(24, 0);
            target("SNAT", 0, info)
        }
        Target::Dnat { to } => {
            // struct nf_nat_range2: flags, min and max address (16 bytes each), min, max
            // and base port; 42 bytes, XT_ALIGNed to 48.
            let mut info = MAP_IPS.to_ne_bytes().to_vec();
            for _ in 0..2 {
                info.extend(to.octets());
                info.extend([0; 12]);
            }
            info.resize(48, 0);
            target("DNAT", 2, info)
        }
    });
    exprs
}

fn verdict(code: i32) -> Expr {
    Expr::Verdict { code, chain: None }
}

fn target(name: &str, revision: u32, info: Vec<u8>) -> Expr {
    Expr::Target {
        name: name.into(),
        revision,
        info,
    }
}

/// iptables-nft's `add_addr`: whole bytes of the prefix compared, or all of the address
/// (4 bytes, 16 for IPv6) masked first.
fn address(exprs: &mut Vec<Expr>, offset: u32, c: &Cond<IpNet>) {
    let size = octets(c.value.network()).len();
    let whole = c.value.prefix_len().is_multiple_of(8);
    let len = if whole {
        c.value.prefix_len() as usize / 8
    } else {
        size
    };
    exprs.push(Expr::Payload {
        base: NFT_PAYLOAD_NETWORK_HEADER,
        offset,
        len: len as u32,
    });
    if !whole {
        exprs.push(Expr::Bitwise {
            mask: octets(c.value.netmask()),
        });
    }
    exprs.push(Expr::Cmp {
        equal: !c.negated,
        data: octets(c.value.network())[..len].to_vec(),
    });
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    }
}

/// The prefix `data` (some of the address's bytes, or all of them under `mask`) is, in
/// `family`.
fn prefix(family: Family, data: &[u8], mask: Option<&Vec<u8>>) -> Option<IpNet> {
    let size = if family == Family::V4 { 4 } else { 16 };
    let mut octets = vec![0u8; size];
    octets.get_mut(..data.len())?.copy_from_slice(data);
    let len = match mask {
        Some(m) if m.len() == size => m.iter().map(|b| b.leading_ones()).sum::<u32>(),
        Some(_) => return None,
        None => data.len() as u32 * 8,
    };
    let ip = match family {
        Family::V4 => IpAddr::from(<[u8; 4]>::try_from(octets).ok()?),
        Family::V6 => IpAddr::from(<[u8; 16]>::try_from(octets).ok()?),
    };
    IpNet::new(ip, len as u8).ok()
}

fn conntrack(c: &Cond<CtStates>) -> Expr {
    let mut info = vec![0u8; CONNTRACK_INFO_LEN];
    let at = CONNTRACK_MATCH_FLAGS;
    let invert = if c.negated { XT_CONNTRACK_STATE } else { 0 };
    info[at..at + 2].copy_from_slice(&XT_CONNTRACK_STATE.to_ne_bytes());
    info[at + 2..at + 4].copy_from_slice(&invert.to_ne_bytes());
    info[at + 4..at + 6].copy_from_slice(&c.value.0.to_ne_bytes());
    Expr::Match {
        name: "conntrack".into(),
        revision: 3,
        info,
    }
}

/// The rule that `exprs` are, with its counters (packets, bytes); None for anything qrouter
/// would not have written exactly so (it is then never taken for one of qrouter's rules).
pub fn rule(exprs: &[Expr], family: Family) -> Option<(Rule, (u64, u64))> {
    let mut rule = Rule::to(Target::Return);
    let mut counters = None;
    let mut rest = exprs;
    let (saddr, daddr) = address_offsets(family);
    while let Some((first, tail)) = rest.split_first() {
        rest = tail;
        match first {
            Expr::Meta { key } => {
                let Some((Expr::Cmp { equal, data }, tail)) = rest.split_first() else {
                    return None;
                };
                rest = tail;
                if *key == NFT_META_L4PROTO {
                    rule.proto = Some(Proto::from_number(*data.first()?)?);
                    continue;
                }
                let name = std::str::from_utf8(data.strip_suffix(&[0])?).ok()?;
                let c = Some(Cond {
                    negated: !equal,
                    value: IfName::new(name).ok()?,
                });
                match *key {
                    NFT_META_IIFNAME => rule.iif = c,
                    NFT_META_OIFNAME => rule.oif = c,
                    _ => return None,
                }
            }
            Expr::Payload {
                base: NFT_PAYLOAD_TRANSPORT_HEADER,
                offset: DPORT,
                ..
            } => {
                let Some((Expr::Cmp { data, .. }, tail)) = rest.split_first() else {
                    return None;
                };
                rest = tail;
                rule.dport = Some(u16::from_be_bytes(data.as_slice().try_into().ok()?));
            }
            Expr::Payload {
                base: NFT_PAYLOAD_NETWORK_HEADER,
                offset,
                ..
            } => {
                let (mask, tail) = match rest.split_first() {
                    Some((Expr::Bitwise { mask }, tail)) => (Some(mask), tail),
                    _ => (None, rest),
                };
                let Some((Expr::Cmp { equal, data }, tail)) = tail.split_first() else {
                    return None;
                };
                rest = tail;
                let c = Some(Cond {
                    negated: !equal,
                    value: prefix(family, data, mask)?,
                });
                match *offset {
                    o if o == saddr => rule.src = c,
                    o if o == daddr => rule.dst = c,
                    _ => return None,
                }
            }
            // Another base, or a port elsewhere: not qrouter's.
            Expr::Payload { .. } => return None,
            Expr::Match { name, info, .. } if name == "icmp6" => {
                rule.icmpv6_type = Some(*info.first()?);
            }
            Expr::Match { info, .. } => {
                let at = CONNTRACK_MATCH_FLAGS;
                let half =
                    |i: usize| Some(u16::from_ne_bytes(info.get(i..i + 2)?.try_into().ok()?));
                rule.ctstate = Some(Cond {
                    negated: half(at + 2)? != 0,
                    value: CtStates(half(at + 4)?),
                });
            }
            Expr::Counter { packets, bytes } => counters = Some((*packets, *bytes)),
            Expr::Verdict { code, chain } => {
                rule.target = match (*code, chain) {
                    (NF_ACCEPT, None) => Target::Accept,
                    (NF_DROP, None) => Target::Drop,
                    (NFT_RETURN, None) => Target::Return,
                    (NFT_JUMP, Some(chain)) => Target::Jump(chain.clone()),
                    _ => return None,
                }
            }
            Expr::Target { name, info, .. } => {
                let ip = |at: usize| {
                    Some(Ipv4Addr::from(
                        <[u8; 4]>::try_from(info.get(at..at + 4)?).ok()?,
                    ))
                };
                let flags = u32::from_ne_bytes(info.get(4..8)?.try_into().ok()?);
                rule.target = match name.as_str() {
                    "SNAT" => Target::Snat {
                        to: ip(8)?,
                        random_fully: flags & RANDOM_FULLY != 0,
                    },
                    "DNAT" => Target::Dnat { to: ip(4)? },
                    _ => return None,
                }
            }
            Expr::Bitwise { .. } | Expr::Cmp { .. } => return None,
        }
    }
    // Read back as written, or not at all: what was read must be what qrouter writes for it.
    let counters = counters?;
    (expressions(&rule, family, counters.0, counters.1) == exprs).then_some((rule, counters))
}

/// The hook iptables-nft gives built-in chain `chain` of `table`.
fn builtin_hook(table: &str, chain: &str) -> Option<Hook> {
    let (number, priority) = match (table, chain) {
        ("filter", "INPUT") => (1, 0),
        ("filter", "FORWARD") => (2, 0),
        ("filter", "OUTPUT") => (3, 0),
        ("nat", "PREROUTING") => (0, -100),
        ("nat", "INPUT") => (1, 100),
        ("nat", "OUTPUT") => (3, -100),
        ("nat", "POSTROUTING") => (4, 100),
        ("raw", "PREROUTING") => (0, -300),
        ("raw", "OUTPUT") => (3, -300),
        _ => return None,
    };
    let kind = if table == "nat" { "nat" } else { "filter" };
    Some(Hook {
        number,
        priority,
        kind,
    })
}

/// Each table's chains and rules as `iptables-save -c` would print them, from nf_tables'
/// dumps; a rule qrouter cannot read shows as text no rule of qrouter's has.
/// The tables are keyed as `Table::key` keys them (`filter`, `ip6 filter`).
pub fn saved(
    family: Family,
    chains: &[nft::Chain],
    rules: &[nft::Rule],
) -> BTreeMap<String, Saved> {
    let mut tables: BTreeMap<String, Saved> = BTreeMap::new();
    for c in chains {
        let table = tables.entry(family.key(&c.table)).or_default();
        table.chains.entry(c.name.clone()).or_default();
    }
    for r in rules {
        let read = crate::kernel::nft_expr::decode(&r.expressions).and_then(|e| rule(&e, family));
        let (spec, counters) = match read {
            Some((rule, counters)) => (rule.to_string(), Some(counters)),
            None => (format!("{UNREADABLE}, handle {})", r.handle), None),
        };
        let table = tables.entry(family.key(&r.table)).or_default();
        table
            .chains
            .entry(r.chain.clone())
            .or_default()
            .push(SavedRule {
                spec,
                counters,
                handle: Some(r.handle),
            });
    }
    tables
}

/// Whether a rule of the table could not be read.
pub fn unreadable(saved: &Saved) -> bool {
    saved
        .chains
        .values()
        .flatten()
        .any(|r| r.spec.starts_with(UNREADABLE))
}

/// The nf_tables family (NFPROTO_*) of `family`'s tables.
pub fn nfproto(family: Family) -> u8 {
    match family {
        Family::V4 => nft::IPV4,
        Family::V6 => nft::IPV6,
    }
}

/// Add `change` to an nf_tables batch of its family; an error names what cannot be done so.
pub fn add_to(batch: &mut Batch, change: &Change) -> anyhow::Result<()> {
    let table = change.table;
    batch.table(table);
    for op in &change.ops {
        match op {
            Op::Declare {
                chain,
                exists: true,
            } => batch.flush_chain(table, chain),
            Op::Declare { chain, .. } => batch.new_chain(table, chain, None),
            Op::BuiltIn(chain) => {
                let hook = builtin_hook(table, chain).ok_or_else(|| {
                    anyhow::anyhow!("table {table}: {chain} is no built-in chain iptables knows")
                })?;
                batch.new_chain(table, chain, Some(hook));
            }
            Op::Delete {
                chain,
                handle: Some(handle),
                ..
            } => batch.delete_rule(table, chain, *handle),
            Op::Delete { chain, spec, .. } => {
                anyhow::bail!("table {table}: no handle for '-A {chain} {spec}'")
            }
            Op::Add {
                chain,
                rule,
                before,
                ..
            } => {
                let at = before.map_or(At::End, At::Before);
                let exprs = expressions(rule, change.family, 0, 0);
                // iptables-nft gives a rule the compat protocol its `-p` names.
                let protocol = rule.proto.map_or(0, Proto::number);
                batch.new_rule(table, chain, &encode(&exprs), protocol, at);
            }
            Op::DeleteChain(chain) => batch.delete_chain(table, chain),
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "rules_nft_tests.rs"]
mod tests;
