//! The router's iptables rules as typed data: a rule is its matches and its target, with
//! interface names validated and addresses as `std::net` / `ipnet` values, so nothing read
//! from the store is ever spliced into rules text. Two renderings come from one rule: the
//! text `iptables-save` prints for it (what is compared, shown and fed to
//! `iptables-restore` on hosts that use iptables-legacy) and the nf_tables expressions
//! iptables-nft writes for it (`rules_nft.rs`). Layout follows Neutron's legacy router
//! (see design.md), in chains named `qrouter-*`; how a table is edited: `rules_edit.rs`.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

pub use super::rules_edit::{
    change, parse_save, parse_save_tables, restore_batch, Change, Op, Saved, SavedRule,
};

/// What the rules of one router depend on.
#[derive(Debug, Default)]
pub struct RouterNat {
    /// The `qg-` device and the router's address on the external subnet.
    pub gateway: Option<(IfName, Ipv4Addr)>,
    pub snat: bool,
    /// The router's tenant subnets, for hairpin NAT to floating IPs.
    pub internal: Vec<Ipv4Net>,
    /// (floating IP, fixed IP) pairs.
    pub floating: Vec<(Ipv4Addr, Ipv4Addr)>,
}

/// An interface name as the kernel takes it (IFNAMSIZ): 1-15 bytes of `[A-Za-z0-9_.-]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IfName(String);

impl IfName {
    pub fn new(name: &str) -> Result<IfName, String> {
        let fits = (1..=15).contains(&name.len());
        let plain = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if fits && plain {
            Ok(IfName(name.to_string()))
        } else {
            Err(format!(
                "interface name '{}': 1-15 of A-Z a-z 0-9 _ . - expected",
                name.escape_debug()
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A match, or with `negated` its opposite (`! -o qg-…`).
#[derive(Clone, Debug, PartialEq)]
pub struct Cond<T> {
    pub negated: bool,
    pub value: T,
}

/// conntrack states as `-m conntrack --ctstate` names them (the kernel's bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtStates(pub u16);

impl CtStates {
    pub const INVALID: CtStates = CtStates(1);
    pub const ESTABLISHED: CtStates = CtStates(1 << 1);
    pub const RELATED: CtStates = CtStates(1 << 2);
    pub const NEW: CtStates = CtStates(1 << 3);
    pub const SNAT: CtStates = CtStates(1 << 6);
    pub const DNAT: CtStates = CtStates(1 << 7);
    pub const UNTRACKED: CtStates = CtStates(1 << 8);
    /// In the order iptables prints them.
    const NAMES: [(CtStates, &'static str); 7] = [
        (CtStates::INVALID, "INVALID"),
        (CtStates::NEW, "NEW"),
        (CtStates::RELATED, "RELATED"),
        (CtStates::ESTABLISHED, "ESTABLISHED"),
        (CtStates::UNTRACKED, "UNTRACKED"),
        (CtStates::SNAT, "SNAT"),
        (CtStates::DNAT, "DNAT"),
    ];

    pub fn contains(self, other: CtStates) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for CtStates {
    type Output = CtStates;
    fn bitor(self, other: CtStates) -> CtStates {
        CtStates(self.0 | other.0)
    }
}

impl fmt::Display for CtStates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = CtStates::NAMES
            .iter()
            .filter(|(s, _)| self.contains(*s))
            .map(|(_, n)| *n)
            .collect();
        f.write_str(&names.join(","))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Accept,
    Drop,
    Return,
    /// Into another chain of the same table (qrouter's own, named by `chain`).
    Jump(String),
    Snat {
        to: Ipv4Addr,
        random_fully: bool,
    },
    Dnat {
        to: Ipv4Addr,
    },
}

/// One rule: its matches, each at most once, and its target.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub src: Option<Cond<Ipv4Net>>,
    pub dst: Option<Cond<Ipv4Net>>,
    pub iif: Option<Cond<IfName>>,
    pub oif: Option<Cond<IfName>>,
    pub ctstate: Option<Cond<CtStates>>,
    pub target: Target,
}

fn cond<T>(negated: bool, value: T) -> Option<Cond<T>> {
    Some(Cond { negated, value })
}

/// An address match; 0.0.0.0/0 matches everything, and iptables writes no match for it.
fn net(negated: bool, net: Ipv4Net) -> Option<Cond<Ipv4Net>> {
    (negated || net.prefix_len() > 0).then(|| Cond {
        negated,
        value: net.trunc(),
    })
}

impl Rule {
    pub fn to(target: Target) -> Rule {
        Rule {
            src: None,
            dst: None,
            iif: None,
            oif: None,
            ctstate: None,
            target,
        }
    }

    pub fn jump(chain: &str) -> Rule {
        Rule::to(Target::Jump(chain.to_string()))
    }

    pub fn src(self, n: Ipv4Net) -> Rule {
        Rule {
            src: net(false, n),
            ..self
        }
    }

    pub fn dst(self, n: Ipv4Net) -> Rule {
        Rule {
            dst: net(false, n),
            ..self
        }
    }

    pub fn iif(self, name: &IfName) -> Rule {
        Rule {
            iif: cond(false, name.clone()),
            ..self
        }
    }

    pub fn oif(self, negated: bool, name: &IfName) -> Rule {
        Rule {
            oif: cond(negated, name.clone()),
            ..self
        }
    }

    pub fn ctstate(self, negated: bool, states: CtStates) -> Rule {
        Rule {
            ctstate: cond(negated, states),
            ..self
        }
    }
}

/// The rule as `iptables-save` prints it, without `-A CHAIN `.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn put(words: &mut Vec<String>, negated: bool, flag: &str, value: String) {
            if negated {
                words.push("!".into());
            }
            words.push(flag.into());
            words.push(value);
        }
        let mut words: Vec<String> = Vec::new();
        if let Some(c) = &self.src {
            put(&mut words, c.negated, "-s", c.value.to_string());
        }
        if let Some(c) = &self.dst {
            put(&mut words, c.negated, "-d", c.value.to_string());
        }
        if let Some(c) = &self.iif {
            put(&mut words, c.negated, "-i", c.value.to_string());
        }
        if let Some(c) = &self.oif {
            put(&mut words, c.negated, "-o", c.value.to_string());
        }
        if let Some(c) = &self.ctstate {
            words.extend(["-m".into(), "conntrack".into()]);
            put(&mut words, c.negated, "--ctstate", c.value.to_string());
        }
        words.push("-j".into());
        match &self.target {
            Target::Accept => words.push("ACCEPT".into()),
            Target::Drop => words.push("DROP".into()),
            Target::Return => words.push("RETURN".into()),
            Target::Jump(chain) => words.push(chain.clone()),
            Target::Snat { to, random_fully } => {
                words.extend(["SNAT".into(), "--to-source".into(), to.to_string()]);
                if *random_fully {
                    words.push("--random-fully".into());
                }
            }
            Target::Dnat { to } => {
                words.extend(["DNAT".into(), "--to-destination".into(), to.to_string()])
            }
        }
        f.write_str(&words.join(" "))
    }
}

/// One table: our chains with their rules, and the jumps from built-in chains into them.
#[derive(Debug, PartialEq)]
pub struct Table {
    pub name: &'static str,
    pub chains: Vec<(String, Vec<Rule>)>,
    /// (built-in chain, our chain)
    pub jumps: Vec<(&'static str, String)>,
}

pub const PREFIX: &str = "qrouter-";

pub fn chain(name: &str) -> String {
    format!("{PREFIX}{name}")
}

pub fn build(r: &RouterNat) -> Vec<Table> {
    // Without a gateway there is nothing to translate or protect: no chains, no jumps.
    let Some((qg, gw_ip)) = &r.gateway else {
        return ["nat", "filter"].map(Table::empty).into();
    };
    let (mut pre, mut out, mut post) = (Vec::new(), Vec::new(), Vec::new());
    let (mut snat, mut float_snat, mut forward) = (Vec::new(), Vec::new(), Vec::new());
    let snat_to = |to: Ipv4Addr| Target::Snat {
        to,
        random_fully: true,
    };
    for (fip, fixed) in &r.floating {
        let dnat = Rule::to(Target::Dnat { to: *fixed }).dst(Ipv4Net::from(*fip));
        pre.push(dnat.clone());
        out.push(dnat);
        float_snat.push(Rule::to(snat_to(*fip)).src(Ipv4Net::from(*fixed)));
    }
    // Traffic between tenant networks keeps its addresses.
    post.push(
        Rule::to(Target::Accept)
            .oif(true, qg)
            .ctstate(true, CtStates::DNAT),
    );
    post.push(Rule::jump(&chain("snat")));
    snat.push(Rule::jump(&chain("float-snat")));
    // Hairpin: a tenant reaching a floating IP behind this router gets the reply back through it.
    for net in &r.internal {
        snat.push(
            Rule::to(snat_to(*gw_ip))
                .src(*net)
                .ctstate(false, CtStates::DNAT),
        );
    }
    if r.snat {
        snat.push(Rule::to(snat_to(*gw_ip)).oif(false, qg));
    }
    // Inbound protection: from outside only replies and connections to floating IPs.
    let established = CtStates::RELATED | CtStates::ESTABLISHED;
    forward.push(Rule::to(Target::Accept).iif(qg).ctstate(false, established));
    forward.push(
        Rule::to(Target::Accept)
            .iif(qg)
            .ctstate(false, CtStates::DNAT),
    );
    forward.push(Rule::to(Target::Drop).iif(qg));
    let own = |name: &str, rules: Vec<Rule>| (chain(name), rules);
    vec![
        Table {
            name: "nat",
            chains: vec![
                own("PREROUTING", pre),
                own("OUTPUT", out),
                own("POSTROUTING", post),
                own("snat", snat),
                own("float-snat", float_snat),
            ],
            jumps: vec![
                ("PREROUTING", chain("PREROUTING")),
                ("OUTPUT", chain("OUTPUT")),
                ("POSTROUTING", chain("POSTROUTING")),
            ],
        },
        Table {
            name: "filter",
            chains: vec![own("FORWARD", forward)],
            jumps: vec![("FORWARD", chain("FORWARD"))],
        },
    ]
}

/// The host's side: bridged frames cross the host's FORWARD chain when bridge netfilter is
/// on. Where its policy is DROP (Docker sets that), qrouter accepts the frames that stay
/// within each of its bridges, and nothing else; with no need, or no networks, no chain.
pub fn host_forward(bridges: &[IfName], policy_drops: bool) -> Table {
    if !policy_drops || bridges.is_empty() {
        return Table::empty("filter");
    }
    let accept = bridges
        .iter()
        .map(|b| Rule::to(Target::Accept).iif(b).oif(false, b))
        .collect();
    Table {
        name: "filter",
        chains: vec![(chain("FORWARD"), accept)],
        jumps: vec![("FORWARD", chain("FORWARD"))],
    }
}

/// The policy of a built-in chain, from `iptables-save` (`:FORWARD DROP [0:0]`).
pub fn policy<'a>(save: &'a str, table: &str, chain: &str) -> Option<&'a str> {
    let start = save.find(&format!("*{table}\n"))?;
    save[start..]
        .lines()
        .take_while(|l| *l != "COMMIT")
        .find_map(|l| l.strip_prefix(&format!(":{chain} ")))
        .and_then(|rest| rest.split_whitespace().next())
}

impl Table {
    /// A table where qrouter wants nothing: applied, it removes our chains and jumps.
    pub fn empty(name: &'static str) -> Table {
        Table {
            name,
            chains: vec![],
            jumps: vec![],
        }
    }

    /// Every rule of the table as (chain, rule): the jumps, then our chains' rules.
    pub fn rules(&self) -> impl Iterator<Item = (&str, Rule)> + '_ {
        let jumps = self.jumps.iter().map(|(b, o)| (*b, Rule::jump(o)));
        let ours = self
            .chains
            .iter()
            .flat_map(|(c, rules)| rules.iter().map(move |r| (c.as_str(), r.clone())));
        jumps.chain(ours)
    }

    /// What `iptables-save` prints once this table is applied (our part of it).
    pub fn as_saved(&self) -> Saved {
        let mut saved = Saved::default();
        for (name, _) in &self.chains {
            saved.chains.entry(name.clone()).or_default();
        }
        for (chain, rule) in self.rules() {
            saved
                .chains
                .entry(chain.to_string())
                .or_default()
                .push(SavedRule::new(rule.to_string()));
        }
        saved
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
