//! The router's iptables rules as data, written exactly as `iptables-save` prints them,
//! so that what is applied, what is read back and what the tests expect are the same text.
//! Layout follows Neutron's legacy router (see design.md), in chains named `qrouter-*`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// What the rules of one router depend on.
#[derive(Debug, Default)]
pub struct RouterNat {
    /// The `qg-` device and the router's address on the external subnet.
    pub gateway: Option<(String, Ipv4Addr)>,
    pub snat: bool,
    /// The router's tenant subnets, for hairpin NAT to floating IPs.
    pub internal: Vec<Ipv4Net>,
    /// (floating IP, fixed IP) pairs.
    pub floating: Vec<(Ipv4Addr, Ipv4Addr)>,
}

/// One table: our chains with their rules, and the jumps from built-in chains into them.
#[derive(Debug, PartialEq)]
pub struct Table {
    pub name: &'static str,
    pub chains: Vec<(String, Vec<String>)>,
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
    for (fip, fixed) in &r.floating {
        pre.push(format!("-d {fip}/32 -j DNAT --to-destination {fixed}"));
        out.push(format!("-d {fip}/32 -j DNAT --to-destination {fixed}"));
        float_snat.push(format!(
            "-s {fixed}/32 -j SNAT --to-source {fip} --random-fully"
        ));
    }
    // Traffic between tenant networks keeps its addresses.
    post.push(format!("! -o {qg} -m conntrack ! --ctstate DNAT -j ACCEPT"));
    post.push(format!("-j {}", chain("snat")));
    snat.push(format!("-j {}", chain("float-snat")));
    // Hairpin: a tenant reaching a floating IP behind this router gets the reply back through it.
    for net in &r.internal {
        snat.push(format!(
            "-s {net} -m conntrack --ctstate DNAT -j SNAT --to-source {gw_ip} --random-fully"
        ));
    }
    if r.snat {
        snat.push(format!(
            "-o {qg} -j SNAT --to-source {gw_ip} --random-fully"
        ));
    }
    // Inbound protection: from outside only replies and connections to floating IPs.
    forward.push(format!(
        "-i {qg} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    ));
    forward.push(format!("-i {qg} -m conntrack --ctstate DNAT -j ACCEPT"));
    forward.push(format!("-i {qg} -j DROP"));
    let own = |name: &str, rules: Vec<String>| (chain(name), rules);
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
pub fn host_forward(bridges: &[&str], policy_drops: bool) -> Table {
    if !policy_drops || bridges.is_empty() {
        return Table::empty("filter");
    }
    let accept = bridges
        .iter()
        .map(|b| format!("-i {b} -o {b} -j ACCEPT"))
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
    fn empty(name: &'static str) -> Table {
        Table {
            name,
            chains: vec![],
            jumps: vec![],
        }
    }

    /// What `iptables-save` prints once this table is applied (our part of it).
    pub fn as_saved(&self) -> Saved {
        let mut saved = Saved::default();
        let rule = |spec: String| SavedRule {
            spec,
            counters: None,
        };
        for (builtin, ours) in &self.jumps {
            saved
                .chains
                .entry(builtin.to_string())
                .or_default()
                .push(rule(format!("-j {ours}")));
        }
        for (name, rules) in &self.chains {
            saved
                .chains
                .insert(name.clone(), rules.iter().cloned().map(rule).collect());
        }
        saved
    }
}

/// One table as `iptables-save [-c]` prints it: rules per chain in order, counters if present.
#[derive(Debug, Default, PartialEq)]
pub struct Saved {
    pub chains: BTreeMap<String, Vec<SavedRule>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SavedRule {
    /// The rule without `-A CHAIN `.
    pub spec: String,
    /// (packets, bytes) with `-c`.
    pub counters: Option<(u64, u64)>,
}

/// Parse the output of `iptables-save [-c] -t TABLE`.
pub fn parse_save(text: &str) -> Saved {
    let mut saved = Saved::default();
    for line in text.lines() {
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or_default();
            saved.chains.entry(name.to_string()).or_default();
            continue;
        }
        let (counters, rule) = match line.strip_prefix('[').and_then(|l| l.split_once("] ")) {
            Some((c, rule)) => (
                c.split_once(':')
                    .and_then(|(p, b)| Some((p.parse().ok()?, b.parse().ok()?))),
                rule,
            ),
            None => (None, line),
        };
        let Some(rest) = rule.strip_prefix("-A ") else {
            continue;
        };
        let (chain, spec) = rest.split_once(' ').unwrap_or((rest, ""));
        saved
            .chains
            .entry(chain.to_string())
            .or_default()
            .push(SavedRule {
                spec: spec.to_string(),
                counters,
            });
    }
    saved
}

/// Parse the output of `iptables-save [-c]` for all tables: table name -> its chains.
pub fn parse_save_tables(text: &str) -> BTreeMap<String, Saved> {
    let mut tables = BTreeMap::new();
    let mut rest = text;
    while let Some(start) = rest
        .find("\n*")
        .map(|i| i + 1)
        .or(rest.starts_with('*').then_some(0))
    {
        let body = &rest[start..];
        let name = body[1..]
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let end = body.find("\nCOMMIT").map_or(body.len(), |i| i + 1);
        tables.insert(name, parse_save(&body[..end]));
        rest = &body[end..];
    }
    tables
}

impl Saved {
    fn rules(&self, chain: &str) -> Vec<&str> {
        self.chains
            .get(chain)
            .map(|r| r.iter().map(|r| r.spec.as_str()).collect())
            .unwrap_or_default()
    }
}

/// The `iptables-restore --noflush` batch that makes `saved` equal to `table`, or None when
/// nothing differs. Built-in chains are only appended to when our jump is missing, so rules
/// that others put there are left alone. A chain of ours that exists is edited rule by rule,
/// so that a change that only adds rules deletes none: iptables-nft waits out an RCU grace
/// period as it exits after any deletion (15-30 ms here), and not after additions alone.
/// A chain where a rule appears twice, or that is missing, is declared (emptied) and written.
pub fn restore_batch(table: &Table, saved: &Saved) -> Option<String> {
    if table.chains.is_empty() {
        return removal_batch(table.name, saved);
    }
    let (mut declare, mut delete, mut write) = (String::new(), String::new(), String::new());
    for (name, want) in &table.chains {
        let edit = saved.chains.get(name).and_then(|have| {
            Edit::between(
                &have.iter().map(|r| r.spec.as_str()).collect::<Vec<_>>(),
                want,
            )
        });
        let Some(edit) = edit else {
            declare += &format!(":{name} - [0:0]\n");
            want.iter()
                .for_each(|rule| write += &format!("-A {name} {rule}\n"));
            continue;
        };
        edit.deletes
            .iter()
            .for_each(|rule| delete += &format!("-D {name} {rule}\n"));
        for (at, rule) in edit.inserts {
            write += &match at {
                Some(at) => format!("-I {name} {at} {rule}\n"),
                None => format!("-A {name} {rule}\n"),
            };
        }
    }
    let jumps: String = table
        .jumps
        .iter()
        .filter(|(builtin, ours)| {
            !saved
                .rules(builtin)
                .contains(&format!("-j {ours}").as_str())
        })
        .map(|(builtin, ours)| format!("-A {builtin} -j {ours}\n"))
        .collect();
    if declare.is_empty() && delete.is_empty() && jumps.is_empty() && write.is_empty() {
        return None;
    }
    Some(format!(
        "*{}\n{declare}{delete}{jumps}{write}COMMIT\n",
        table.name
    ))
}

/// How one chain's rules become another's in place: the rules to delete, then the ones to
/// insert, each at its 1-based position (None: at the end) once those before it are there.
#[derive(Debug, PartialEq)]
struct Edit<'a> {
    deletes: Vec<&'a str>,
    inserts: Vec<(Option<usize>, &'a str)>,
}

impl<'a> Edit<'a> {
    /// None where a rule appears twice in either list: its text would not say which one.
    fn between(have: &[&'a str], want: &'a [String]) -> Option<Edit<'a>> {
        let wanted_at: HashMap<&str, usize> = want
            .iter()
            .enumerate()
            .map(|(i, r)| (r.as_str(), i))
            .collect();
        let had: HashSet<&str> = have.iter().copied().collect();
        if wanted_at.len() != want.len() || had.len() != have.len() {
            return None;
        }
        // The rules to keep: the longest run of present rules already in the wanted order.
        let order: Vec<usize> = have
            .iter()
            .filter_map(|r| wanted_at.get(r).copied())
            .collect();
        let kept: HashSet<usize> = longest_increasing(&order).into_iter().collect();
        let deletes = have
            .iter()
            .filter(|r| !wanted_at.get(*r).is_some_and(|i| kept.contains(i)))
            .copied()
            .collect();
        // Each insert lands where the wanted order puts it, or at the end of the chain as
        // it is by then (the kept rules and the inserts before it).
        let inserts = want
            .iter()
            .enumerate()
            .filter(|(i, _)| !kept.contains(i))
            .zip(kept.len()..)
            .map(|((i, rule), len)| ((i < len).then_some(i + 1), rule.as_str()))
            .collect();
        Some(Edit { deletes, inserts })
    }
}

/// The values of the longest strictly increasing subsequence of `seq` (patience sorting).
fn longest_increasing(seq: &[usize]) -> Vec<usize> {
    // tails[k]: index into seq of the smallest tail of an increasing run of length k + 1.
    let mut tails: Vec<usize> = Vec::new();
    let mut before = vec![None; seq.len()];
    for (i, v) in seq.iter().enumerate() {
        let k = tails.partition_point(|&t| seq[t] < *v);
        before[i] = k.checked_sub(1).map(|k| tails[k]);
        if k == tails.len() {
            tails.push(i);
        } else {
            tails[k] = i;
        }
    }
    let mut run = Vec::new();
    let mut at = tails.last().copied();
    while let Some(i) = at {
        run.push(seq[i]);
        at = before[i];
    }
    run.reverse();
    run
}

/// The batch that removes our jumps and chains from a table, or None when none are there.
fn removal_batch(table: &str, saved: &Saved) -> Option<String> {
    let jumps: Vec<String> = saved
        .chains
        .iter()
        .filter(|(chain, _)| !chain.starts_with(PREFIX))
        .flat_map(|(chain, rules)| {
            rules
                .iter()
                .filter(|r| r.spec.starts_with(&format!("-j {PREFIX}")))
                .map(move |r| format!("-D {chain} {}\n", r.spec))
        })
        .collect();
    let ours: Vec<&String> = saved
        .chains
        .keys()
        .filter(|c| c.starts_with(PREFIX))
        .collect();
    if jumps.is_empty() && ours.is_empty() {
        return None;
    }
    // Jumps out first, then our chains emptied (declared), then deleted.
    let mut batch = format!("*{table}\n{}", jumps.concat());
    ours.iter()
        .for_each(|c| batch += &format!(":{c} - [0:0]\n"));
    ours.iter().for_each(|c| batch += &format!("-X {c}\n"));
    batch += "COMMIT\n";
    Some(batch)
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
