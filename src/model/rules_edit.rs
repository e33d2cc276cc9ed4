//! How a table of qrouter's rules is made to match what the kernel holds: the kernel's side
//! as `iptables-save` prints it (`Saved`, read from nf_tables or from the text), the change
//! between the two as operations (`Change`), which render as an `iptables-restore
//! --noflush` batch or as one nf_tables batch (`rules_nft.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

use super::rules::{Family, Rule, Table, PREFIX};

/// One table as `iptables-save [-c]` prints it: rules per chain in order, counters if present.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Saved {
    pub chains: BTreeMap<String, Vec<SavedRule>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SavedRule {
    /// The rule without `-A CHAIN `.
    pub spec: String,
    /// (packets, bytes) with `-c`.
    pub counters: Option<(u64, u64)>,
    /// Its nf_tables handle, where it was read from nf_tables.
    pub handle: Option<u64>,
}

impl SavedRule {
    pub fn new(spec: String) -> SavedRule {
        SavedRule {
            spec,
            counters: None,
            handle: None,
        }
    }
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
                counters,
                ..SavedRule::new(spec.to_string())
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
    pub fn rules(&self, chain: &str) -> Vec<&str> {
        self.chains
            .get(chain)
            .map(|r| r.iter().map(|r| r.spec.as_str()).collect())
            .unwrap_or_default()
    }
}

/// What makes one table's kernel side match the wanted table, in the order it is done.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub table: &'static str,
    pub family: Family,
    pub ops: Vec<Op>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// `:CHAIN - [0:0]`: a chain of ours made, or emptied where it `exists`.
    Declare { chain: String, exists: bool },
    /// A built-in chain that nf_tables does not hold yet (iptables-nft makes them as rules
    /// first need them; iptables-legacy always has them).
    BuiltIn(String),
    /// `-D CHAIN SPEC`, by handle in nf_tables.
    Delete {
        chain: String,
        spec: String,
        handle: Option<u64>,
    },
    /// `-I CHAIN POSITION RULE`, or `-A CHAIN RULE` without a position; in nf_tables before
    /// the rule with handle `before`, or at the end.
    Add {
        chain: String,
        rule: Rule,
        position: Option<usize>,
        before: Option<u64>,
    },
    /// `-X CHAIN`, once it is empty and nothing jumps to it.
    DeleteChain(String),
}

impl Change {
    /// The `iptables-restore --noflush` batch.
    pub fn restore_text(&self) -> String {
        let mut text = format!("*{}\n", self.table);
        for op in &self.ops {
            let _ = match op {
                Op::Declare { chain, .. } => writeln!(text, ":{chain} - [0:0]"),
                Op::BuiltIn(_) => Ok(()),
                Op::Delete { chain, spec, .. } => writeln!(text, "-D {chain} {spec}"),
                Op::Add {
                    chain,
                    rule,
                    position: Some(at),
                    ..
                } => writeln!(text, "-I {chain} {at} {rule}"),
                Op::Add { chain, rule, .. } => writeln!(text, "-A {chain} {rule}"),
                Op::DeleteChain(chain) => writeln!(text, "-X {chain}"),
            };
        }
        text + "COMMIT\n"
    }
}

/// The `iptables-restore --noflush` batch that makes `saved` equal to `table`, or None when
/// nothing differs.
pub fn restore_batch(table: &Table, saved: &Saved) -> Option<String> {
    change(table, saved).map(|c| c.restore_text())
}

/// What makes `saved` equal to `table`, or None when nothing differs. Built-in chains are
/// only appended to when our jump is missing, so rules that others put there are left
/// alone. A chain of ours that exists is edited rule by rule, so that a change that only
/// adds rules deletes none: iptables-nft waits out an RCU grace period as it exits after
/// any deletion (15-30 ms here), and not after additions alone. A chain where a rule
/// appears twice, or that is missing, is declared (emptied) and written.
pub fn change(table: &Table, saved: &Saved) -> Option<Change> {
    if table.chains.is_empty() {
        return removal(table.name, table.family, saved);
    }
    let (mut declare, mut delete, mut write) = (Vec::new(), Vec::new(), Vec::new());
    for (name, want) in &table.chains {
        let specs: Vec<String> = want.iter().map(Rule::to_string).collect();
        let have = saved.chains.get(name);
        let Some(edit) = have.and_then(|have| Edit::between(have, &specs)) else {
            declare.push(Op::Declare {
                chain: name.clone(),
                exists: have.is_some(),
            });
            write.extend(want.iter().map(|rule| Op::Add {
                chain: name.clone(),
                rule: rule.clone(),
                position: None,
                before: None,
            }));
            continue;
        };
        delete.extend(edit.deletes.iter().map(|r| Op::Delete {
            chain: name.clone(),
            spec: r.spec.clone(),
            handle: r.handle,
        }));
        write.extend(
            edit.inserts
                .into_iter()
                .map(|(i, position, before)| Op::Add {
                    chain: name.clone(),
                    rule: want[i].clone(),
                    position,
                    before,
                }),
        );
    }
    let mut jumps = Vec::new();
    for (builtin, ours) in &table.jumps {
        let rule = Rule::jump(ours);
        if saved.rules(builtin).contains(&rule.to_string().as_str()) {
            continue;
        }
        if !saved.chains.contains_key(*builtin) {
            jumps.push(Op::BuiltIn(builtin.to_string()));
        }
        jumps.push(Op::Add {
            chain: builtin.to_string(),
            rule,
            position: None,
            before: None,
        });
    }
    let ops: Vec<Op> = [declare, delete, jumps, write].concat();
    (!ops.is_empty()).then_some(Change {
        table: table.name,
        family: table.family,
        ops,
    })
}

/// How one chain's rules become another's in place: the rules to delete, then the ones to
/// insert (by index into the wanted list), each at its 1-based position (None: at the end)
/// once those before it are there, and before the kept rule that follows it (None: at the
/// end) for nf_tables, where a position is a handle.
#[derive(Debug, PartialEq)]
struct Edit<'a> {
    deletes: Vec<&'a SavedRule>,
    inserts: Vec<(usize, Option<usize>, Option<u64>)>,
}

impl<'a> Edit<'a> {
    /// None where a rule appears twice in either list: its text would not say which one.
    fn between(have: &'a [SavedRule], want: &[String]) -> Option<Edit<'a>> {
        let wanted_at: HashMap<&str, usize> = want
            .iter()
            .enumerate()
            .map(|(i, r)| (r.as_str(), i))
            .collect();
        let had: HashSet<&str> = have.iter().map(|r| r.spec.as_str()).collect();
        if wanted_at.len() != want.len() || had.len() != have.len() {
            return None;
        }
        // The rules to keep: the longest run of present rules already in the wanted order.
        let order: Vec<usize> = have
            .iter()
            .filter_map(|r| wanted_at.get(r.spec.as_str()).copied())
            .collect();
        let kept: HashSet<usize> = longest_increasing(&order).into_iter().collect();
        let kept_handle: HashMap<usize, Option<u64>> = have
            .iter()
            .filter_map(|r| {
                let i = *wanted_at.get(r.spec.as_str())?;
                kept.contains(&i).then_some((i, r.handle))
            })
            .collect();
        let deletes = have
            .iter()
            .filter(|r| {
                !wanted_at
                    .get(r.spec.as_str())
                    .is_some_and(|i| kept.contains(i))
            })
            .collect();
        // Each insert lands where the wanted order puts it, or at the end of the chain as
        // it is by then (the kept rules and the inserts before it).
        let inserts = (0..want.len())
            .filter(|i| !kept.contains(i))
            .zip(kept.len()..)
            .map(|(i, len)| {
                let before = (i + 1..want.len()).find_map(|j| kept_handle.get(&j).copied());
                (i, (i < len).then_some(i + 1), before.flatten())
            })
            .collect();
        Some(Edit { deletes, inserts })
    }
}

/// The values of the longest strictly increasing subsequence of `seq` (patience sorting).
pub(super) fn longest_increasing(seq: &[usize]) -> Vec<usize> {
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

/// What removes our jumps and chains from a table, or None when none are there.
fn removal(table: &'static str, family: Family, saved: &Saved) -> Option<Change> {
    let jumps = saved
        .chains
        .iter()
        .filter(|(chain, _)| !chain.starts_with(PREFIX))
        .flat_map(|(chain, rules)| {
            rules
                .iter()
                .filter(|r| r.spec.starts_with(&format!("-j {PREFIX}")))
                .map(move |r| Op::Delete {
                    chain: chain.clone(),
                    spec: r.spec.clone(),
                    handle: r.handle,
                })
        });
    let ours: Vec<&String> = saved
        .chains
        .keys()
        .filter(|c| c.starts_with(PREFIX))
        .collect();
    // Jumps out first, then our chains emptied (declared), then deleted.
    let ops: Vec<Op> = jumps
        .chain(ours.iter().map(|c| Op::Declare {
            chain: c.to_string(),
            exists: true,
        }))
        .chain(ours.iter().map(|c| Op::DeleteChain(c.to_string())))
        .collect();
    (!ops.is_empty()).then_some(Change { table, family, ops })
}

impl Table {
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
