//! Port security, converged like every other kernel object: the wanted filter of each
//! guarded port (`model::portsec`) as data, the store's nf_tables table read back
//! (`kernel::portsec`), one diff into steps (`sync --dry-run` lists them, with the rules
//! missing and extra), applied in one `nft -f` transaction. A port's chain goes with the
//! port, the table with the last guarded port; only the table named after this store and
//! carrying its mark is ever touched.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;

use super::{dhcp, Changes, Touched};
use crate::kernel::portsec::{self as kernel, Change, Rule, Seen};
use crate::model::{naming, portsec, Port, PortRole, State};

/// What the diff judges: the wanted rules of each guarded tap, and every tap it may judge
/// (those of the ports of the networks a change touched), with what it belongs to
/// (`port web1`, `instance cirros-vm3`).
#[derive(Debug, Default, PartialEq)]
pub struct Wanted {
    pub guards: BTreeMap<String, Vec<Rule>>,
    pub scope: BTreeMap<String, String>,
}

/// The taps of `ports` in `state`, wanted filters included.
fn wanted<'a>(state: &'a State, ports: impl Iterator<Item = &'a Port>) -> Wanted {
    let mut w = Wanted::default();
    for port in ports {
        let owner = match port.role {
            PortRole::Instance => format!("instance {}", state.port_owner_name(port)),
            _ => format!("port {}", port.display_name()),
        };
        w.scope.insert(naming::port_tap(port), owner);
        if portsec::guards(state, port) {
            let g = portsec::guard(port);
            w.guards.insert(g.tap, g.rules);
        }
    }
    w
}

fn on_networks<'a>(state: &'a State, networks: &'a BTreeSet<String>) -> Wanted {
    let ports = state.ports.iter().map(AsRef::as_ref);
    wanted(state, ports.filter(|p| networks.contains(&p.network_id)))
}

/// The filters of the guarded ports of `networks` in `state`: what a change compares before
/// it builds `on_networks`, which names every tap there (an external network's: one per
/// router, each formatted, three times per change with 1000 routers). Whether a port is
/// guarded is asked before where it is: none of a router's ports is.
fn guards_on(state: &State, networks: &BTreeSet<String>) -> Vec<portsec::Guard> {
    let ports = state.ports.iter().map(AsRef::as_ref);
    let guarded = ports.filter(|p| portsec::guards(state, p) && networks.contains(&p.network_id));
    portsec::guards_of(state, guarded)
}

/// One step, with the line `sync --dry-run` prints for it.
pub type Step = (Change, String);

/// The steps from `seen` (the table as read, None when missing) to `want`. `comment` is the
/// store's mark; `orphans`: every tap of the table is judged, and one no port explains goes
/// (a full sync).
pub fn diff(
    table: &str,
    comment: &str,
    want: &Wanted,
    seen: Option<&Seen>,
    orphans: bool,
) -> anyhow::Result<Vec<Step>> {
    let Some(seen) = seen else {
        let mut steps = vec![];
        if !want.guards.is_empty() {
            steps.push((
                Change::CreateTable {
                    comment: comment.to_string(),
                },
                format!("host: create table bridge {table} (port security)"),
            ));
        }
        for (tap, rules) in &want.guards {
            steps.extend(add(tap, &want.scope[tap], rules));
        }
        return Ok(steps);
    };
    if seen.comment.as_deref() != Some(comment) {
        bail!(
            "table bridge {table} carries no mark of this store ({:?}); qrouter leaves it alone \
             (see 'nft list table bridge {table}')",
            seen.comment.as_deref().unwrap_or("")
        );
    }
    let mut steps = vec![];
    if seen.base != kernel::base_rules() {
        steps.push((
            Change::RewriteBase,
            format!("host: table bridge {table}: restore its base chain (prerouting)"),
        ));
    }
    let mut judged: BTreeSet<&String> = want.scope.keys().collect();
    if orphans {
        judged.extend(seen.chains.keys());
        judged.extend(seen.elements.iter());
    }
    let (mut adds, mut removes) = (vec![], vec![]);
    for tap in judged {
        let port = want.scope.get(tap).map_or("port gone", String::as_str);
        let (chain, element) = (seen.chains.get(tap), seen.elements.contains(tap));
        match want.guards.get(tap) {
            Some(rules) => {
                let wanted: Vec<String> = rules.iter().map(kernel::render).collect();
                match chain {
                    None => adds.extend(add(tap, port, rules).into_iter().take(1)),
                    Some(have) if !same(have, &wanted) => adds.push((
                        Change::WriteChain {
                            tap: tap.clone(),
                            rules: rules.clone(),
                        },
                        format!(
                            "host: port security of {tap} ({port}): rewrite its chain: {}",
                            differences(&wanted, have)
                        ),
                    )),
                    Some(_) => {}
                }
                if !element {
                    adds.push((
                        Change::AddElement(tap.clone()),
                        format!(
                            "host: port security of {tap} ({port}): send its frames to its chain"
                        ),
                    ));
                }
            }
            None => {
                if element {
                    removes.push((
                        Change::DeleteElement(tap.clone()),
                        format!("host: port security of {tap} ({port}): remove it from map ports"),
                    ));
                }
                if chain.is_some() {
                    removes.push((
                        Change::DeleteChain(tap.clone()),
                        format!("host: port security of {tap} ({port}): delete its chain"),
                    ));
                }
            }
        }
    }
    let gone = |c: Change| removes.iter().any(|(s, _)| *s == c);
    let chains_left = seen
        .chains
        .keys()
        .any(|c| !gone(Change::DeleteChain(c.clone())));
    let elements_left = (seen.elements.iter()).any(|e| !gone(Change::DeleteElement(e.clone())));
    if want.guards.is_empty() && !chains_left && !elements_left {
        return Ok(vec![(
            Change::DeleteTable,
            format!("host: delete table bridge {table}: no port left to guard"),
        )]);
    }
    // A chain is made before the map jumps to it, and left by the map before it goes.
    steps.extend(adds);
    steps.extend(removes);
    Ok(steps)
}

/// A new guarded tap's steps: its chain, then its map element.
fn add(tap: &str, port: &str, rules: &[Rule]) -> Vec<Step> {
    vec![
        (
            Change::WriteChain {
                tap: tap.to_string(),
                rules: rules.to_vec(),
            },
            format!(
                "host: port security of {tap} ({port}): add its chain ({} rules)",
                rules.len()
            ),
        ),
        (
            Change::AddElement(tap.to_string()),
            format!("host: port security of {tap} ({port}): send its frames to its chain"),
        ),
    ]
}

fn same(have: &[String], want: &[String]) -> bool {
    have.len() == want.len()
        && have
            .iter()
            .zip(want)
            .all(|(h, w)| kernel::normal(h) == kernel::normal(w))
}

/// The rules missing from a chain and those it has extra, as `nft list` prints them.
fn differences(want: &[String], have: &[String]) -> String {
    let normal = |v: &[String]| v.iter().map(|r| kernel::normal(r)).collect::<Vec<_>>();
    let (w, h) = (normal(want), normal(have));
    let missing: Vec<String> = w
        .iter()
        .filter(|r| !h.contains(r))
        .map(|r| format!("missing `{r}`"))
        .collect();
    let extra: Vec<String> = h
        .iter()
        .filter(|r| !w.contains(r))
        .map(|r| format!("extra `{r}`"))
        .collect();
    match missing.is_empty() && extra.is_empty() {
        true => "its rules are out of order".to_string(),
        false => [missing, extra].concat().join(", "),
    }
}

/// Make the port security of every port a change can affect match `new`: the ports of the
/// networks it touched (or whose ports, instances or subnets changed). A change that leaves
/// their filters as they were reads nothing; `sync` reads the table and judges every tap in
/// it.
pub fn converge(
    old: &State,
    new: &State,
    touched: &Touched,
    log: &mut Changes,
) -> anyhow::Result<()> {
    let networks = dhcp::affected(old, new, touched, false);
    if !log.check_drift && guards_on(new, &networks) == guards_on(old, &networks) {
        return Ok(());
    }
    let mut want = on_networks(new, &networks);
    // Taps no port explains are judged only when every network is: a sync, not the one
    // object an agent converges alone after a failure.
    let orphans =
        log.check_drift && !log.partial && new.networks.iter().all(|n| networks.contains(&n.id));
    // A port deleted is judged too: its chain goes.
    for (tap, name) in on_networks(old, &networks).scope {
        want.scope.entry(tap).or_insert(name);
    }
    let Some((table, comment)) = naming::port_security_table(&log.owner) else {
        bail!(
            "the store's id {:?} cannot name a port security table",
            log.owner
        );
    };
    let mut seen = kernel::read(&table)?;
    if let Some(seen) = seen.as_mut() {
        // The filter of a port whose key was set aside as the store was read stays as it is.
        let held: BTreeSet<String> = log.held.iter().map(|id| naming::tap_of(id)).collect();
        seen.chains.retain(|tap, _| !held.contains(tap));
        seen.elements.retain(|tap| !held.contains(tap));
    }
    let steps = diff(&table, &comment, &want, seen.as_ref(), orphans)?;
    if steps.is_empty() {
        return Ok(());
    }
    let mut apply = true;
    for (_, what) in &steps {
        apply &= log.note(what.clone());
    }
    if apply {
        let changes: Vec<Change> = steps.into_iter().map(|(c, _)| c).collect();
        kernel::apply(&table, &changes)?;
    }
    Ok(())
}

/// Whether the kernel holds the port's filter as wanted: None when the port is not guarded.
pub fn in_place(state: &State, port: &Port, owner: &str) -> anyhow::Result<Option<bool>> {
    if !portsec::guards(state, port) {
        return Ok(None);
    }
    let Some((table, comment)) = naming::port_security_table(owner) else {
        return Ok(Some(false));
    };
    let want = wanted(state, std::iter::once(port));
    let seen = kernel::read(&table)?;
    let steps = diff(&table, &comment, &want, seen.as_ref(), false);
    Ok(Some(steps.is_ok_and(|s| s.is_empty())))
}

#[cfg(test)]
#[path = "portsec_tests.rs"]
mod tests;
