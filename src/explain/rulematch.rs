//! The router's iptables rules, as the exact text `iptables-save` prints them, evaluated
//! against one packet: which rule of qrouter's chains decides, and what it does. Only the
//! matches qrouter writes are understood; a rule with anything else never matches and says so.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::model::rules::{Family, Table, PREFIX};

/// What the rules see of a packet at one hook.
#[derive(Clone, Debug)]
pub struct Packet<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: &'a str,
    pub iif: Option<&'a str>,
    pub oif: Option<&'a str>,
    /// conntrack: a reply or related packet of a known connection.
    pub established: bool,
    /// conntrack: the connection's destination was translated.
    pub dnat: bool,
}

/// A rule that decided, as `iptables -S` prints it (`-A CHAIN SPEC`), with its table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleHit {
    pub table: String,
    pub chain: String,
    pub rule: String,
    /// ACCEPT, DROP, SNAT, DNAT.
    pub target: String,
    /// The address a SNAT or DNAT rule translates to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<IpAddr>,
}

/// The first terminal rule that matches `p` from qrouter's chain `chain` of `table` on,
/// following jumps into qrouter's other chains. None: no rule decides (the built-in chain's
/// policy, ACCEPT in a router namespace, applies; nat does nothing).
pub fn decide(tables: &[Table], table: &str, chain: &str, p: &Packet) -> Option<RuleHit> {
    // iptables' tables see IPv4 packets, ip6tables' IPv6 ones.
    let family = match p.src {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    };
    let t = tables
        .iter()
        .find(|t| t.name == table && t.family == family)?;
    walk(t, chain, p, 0)
}

fn walk(t: &Table, chain: &str, p: &Packet, depth: usize) -> Option<RuleHit> {
    let (_, rules) = t.chains.iter().find(|(c, _)| c == chain)?;
    for spec in rules.iter().map(ToString::to_string) {
        let Some(rule) = parse(&spec) else { continue };
        if !rule.matches(p) {
            continue;
        }
        match rule.target {
            "RETURN" => return None,
            target if target.starts_with(PREFIX) && depth < 8 => {
                if let Some(hit) = walk(t, target, p, depth + 1) {
                    return Some(hit);
                }
            }
            target => {
                return Some(RuleHit {
                    table: t.name.to_string(),
                    chain: chain.to_string(),
                    rule: format!("-A {chain} {spec}"),
                    target: target.to_string(),
                    to: rule.to,
                })
            }
        }
    }
    None
}

/// One rule's matches and target.
#[derive(Debug, Default)]
struct Rule<'a> {
    conds: Vec<(bool, Cond<'a>)>,
    target: &'a str,
    to: Option<IpAddr>,
}

#[derive(Debug)]
enum Cond<'a> {
    Src(IpNet),
    Dst(IpNet),
    In(&'a str),
    Out(&'a str),
    Proto(&'a str),
    CtState(Vec<&'a str>),
}

fn net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// None for a rule with a match this evaluator does not know.
fn parse(spec: &str) -> Option<Rule<'_>> {
    let mut rule = Rule::default();
    let mut words = spec.split_whitespace();
    let mut negate = false;
    while let Some(w) = words.next() {
        let cond = match w {
            "!" => {
                negate = true;
                continue;
            }
            "-s" => Cond::Src(net(words.next()?)?),
            "-d" => Cond::Dst(net(words.next()?)?),
            "-i" => Cond::In(words.next()?),
            "-o" => Cond::Out(words.next()?),
            "-p" => Cond::Proto(words.next()?),
            "-m" => {
                words.next()?;
                continue;
            }
            "--ctstate" => Cond::CtState(words.next()?.split(',').collect()),
            "-j" => {
                rule.target = words.next()?;
                while let Some(opt) = words.next() {
                    match opt {
                        "--to-source" | "--to-destination" => {
                            rule.to = words.next()?.split(':').next()?.parse().ok();
                        }
                        "--random-fully" | "--random" | "--persistent" => {}
                        _ => return None,
                    }
                }
                break;
            }
            _ => return None,
        };
        rule.conds.push((negate, cond));
        negate = false;
    }
    (!rule.target.is_empty()).then_some(rule)
}

impl Rule<'_> {
    fn matches(&self, p: &Packet) -> bool {
        self.conds.iter().all(|(negate, c)| {
            let hit = match c {
                Cond::Src(n) => n.contains(&p.src),
                Cond::Dst(n) => n.contains(&p.dst),
                Cond::In(d) => p.iif == Some(*d),
                Cond::Out(d) => p.oif == Some(*d),
                Cond::Proto(proto) => *proto == p.protocol,
                Cond::CtState(states) => states.iter().any(|s| match *s {
                    "NEW" => !p.established,
                    "ESTABLISHED" | "RELATED" => p.established,
                    "DNAT" => p.dnat,
                    _ => false,
                }),
            };
            hit != *negate
        })
    }
}

/// The rule said in words: why it decided as it did.
pub fn words(hit: &RuleHit) -> String {
    let r = &hit.rule;
    match hit.target.as_str() {
        "DROP" if r.contains("-i qg-") => {
            "a new connection from the external network that was not DNAT'ed to a floating IP"
                .into()
        }
        "DROP" => "dropped by this rule".into(),
        "ACCEPT" if r.contains("RELATED,ESTABLISHED") => {
            "a reply to a connection that was opened from inside".into()
        }
        // `! --ctstate DNAT` (qrouter-POSTROUTING) is the rule below: not a floating IP's.
        "ACCEPT" if r.contains("--ctstate DNAT") && !r.contains("! --ctstate DNAT") => {
            "a connection to a floating IP, DNAT'ed to its instance".into()
        }
        "ACCEPT" if hit.table == "nat" => {
            "not leaving through the gateway: traffic between tenant networks keeps its addresses"
                .into()
        }
        "ACCEPT" => "accepted by this rule".into(),
        "SNAT" if r.contains("--ctstate DNAT") => format!(
            "hairpin: a tenant reaching a floating IP behind this router; the source becomes the \
             gateway address {} so the reply comes back through the router",
            show(hit.to)
        ),
        "SNAT" if r.contains("-o qg-") => format!(
            "leaving through the gateway: source NAT to the router's gateway address {}",
            show(hit.to)
        ),
        "SNAT" => format!(
            "the instance has a floating IP: its source becomes {}",
            show(hit.to)
        ),
        "DNAT" => format!(
            "floating IP: the destination becomes the instance's fixed IP {}",
            show(hit.to)
        ),
        other => format!("target {other}"),
    }
}

fn show(ip: Option<IpAddr>) -> String {
    ip.map_or("?".into(), |ip| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rules_router::{build, RouterNat};

    fn seed() -> Vec<Table> {
        build(&RouterNat {
            gateway: Some((
                crate::model::rules::IfName::new("qg-b8b32a88-03").unwrap(),
                "10.10.10.2".parse().unwrap(),
            )),
            snat: true,
            internal: vec!["172.16.101.0/24".parse().unwrap()],
            floating: vec![(
                "10.10.10.3".parse().unwrap(),
                "172.16.101.3".parse().unwrap(),
            )],
            ipv6_uplink: None,
            inbound: vec![],
        })
    }

    fn packet<'a>(src: &str, dst: &str, iif: &'a str, oif: &'a str) -> Packet<'a> {
        Packet {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: "icmp",
            iif: Some(iif),
            oif: Some(oif),
            established: false,
            dnat: false,
        }
    }

    #[test]
    fn floating_ip_source_nat_comes_before_the_router_snat() {
        let t = seed();
        let p = packet("172.16.101.3", "10.10.10.1", "qr-x", "qg-b8b32a88-03");
        let hit = decide(&t, "nat", "qrouter-POSTROUTING", &p).unwrap();
        assert_eq!(
            hit.rule,
            "-A qrouter-float-snat -s 172.16.101.3/32 -j SNAT --to-source 10.10.10.3 --random-fully"
        );
        let p = packet("172.16.101.4", "10.10.10.1", "qr-x", "qg-b8b32a88-03");
        let hit = decide(&t, "nat", "qrouter-POSTROUTING", &p).unwrap();
        assert_eq!(hit.to, Some("10.10.10.2".parse().unwrap()));
        assert_eq!(hit.chain, "qrouter-snat");
    }

    #[test]
    fn inbound_new_is_dropped_and_dnat_accepted() {
        let t = seed();
        let mut p = packet("10.10.10.1", "172.16.101.3", "qg-b8b32a88-03", "qr-x");
        let hit = decide(&t, "filter", "qrouter-FORWARD", &p).unwrap();
        assert_eq!(hit.rule, "-A qrouter-FORWARD -i qg-b8b32a88-03 -j DROP");
        assert!(words(&hit).contains("not DNAT'ed to a floating IP"));
        p.dnat = true;
        assert_eq!(
            decide(&t, "filter", "qrouter-FORWARD", &p).unwrap().target,
            "ACCEPT"
        );
        let unknown = parse("-m set --match-set x src -j DROP");
        assert!(unknown.is_none());
    }
}
