//! Read what the kernel holds for one plan's namespace: the `Observed` that `diff` compares.

use std::collections::{BTreeMap, HashMap};

use super::diff::Observed;
use super::plan::{Kind, Plan};
use crate::kernel::{
    addr, dhclient, iptables, keepalived, link, netns, nft, radvd, route, sysctl, Kernel,
};
use crate::model::rules::Family;
use crate::model::rules_edit;
use crate::model::rules_nft;

/// How much to read.
#[derive(Clone, Copy, Default)]
pub struct Reading<'a> {
    /// The plan of the state a command leaves, whose kernel objects it trusts to be in
    /// place: the sysctls and the bridge of each of its devices are not read back, nor,
    /// with iptables-legacy, its rules (in nf_tables they are read: two dumps cost less
    /// than a process, and give each rule's handle). None reads everything (`sync`,
    /// `router show`).
    pub before: Option<&'a Plan>,
    /// Rule counters too (`router show`).
    pub counters: bool,
}

/// Read the namespace of `plan` and the host ends of its devices. `bridges` caches the
/// host's bridges by name across plans.
pub async fn observe(
    k: &mut Kernel,
    plan: &Plan,
    reading: Reading<'_>,
    bridges: &mut HashMap<String, u32>,
) -> anyhow::Result<Observed> {
    let ns = plan.namespace.as_str();
    let mut seen = Observed {
        exists: netns::exists(ns),
        ..Default::default()
    };
    let trusted = reading.before;
    if seen.exists {
        // Rules in nf_tables are read over netlink, with their handles; iptables-legacy's
        // only by iptables-save, a process, the slowest read: it runs while netlink is read.
        let nft = iptables::uses_nf_tables() && !plan.rules.is_empty();
        let families = families(plan, trusted, nft);
        let save = match trusted {
            None if !nft && !plan.rules.is_empty() => families
                .iter()
                .map(|f| {
                    Ok((
                        *f,
                        iptables::start_save(Some(ns), v6(*f), reading.counters)?,
                    ))
                })
                .collect::<anyhow::Result<Vec<_>>>()
                .map(Some)?,
            _ => None,
        };
        let h = k.ns(ns)?;
        seen.links = link::list(&h).await?;
        seen.addresses = addr::list(&h).await?;
        seen.routes = route::list(&h).await?;
        // Sysctls are read where nothing is trusted, or where the plan wants others than
        // the one left (a router's first IPv6 subnet turns forwarding on).
        if trusted.is_none_or(|before| before.sysctls != plan.sysctls) {
            seen.sysctls = sysctl::ensure(ns, plan.sysctls(), true)?;
        }
        seen.rules = match (save, trusted) {
            _ if nft => from_nf_tables(k, ns, reading.counters, &families)?,
            (Some(saves), _) => {
                let mut tables = BTreeMap::new();
                for (family, save) in saves {
                    tables.extend(parsed(family, &save.finish()?));
                }
                tables
            }
            (None, Some(before)) => before
                .rules
                .iter()
                .map(|t| (t.key(), t.as_saved()))
                .collect(),
            (None, None) => BTreeMap::new(),
        };
    }
    read_host_ends(k, plan, trusted, bridges, &mut seen).await?;
    seen.radvd = read_radvd(plan, trusted);
    seen.keepalived = keepalived_of(plan);
    if plan.lease.as_ref().is_some_and(|l| l.options6) {
        seen.dhcpv6_options = dhclient::informed(&plan.id);
    }
    Ok(seen)
}

/// A router copy's keepalived, where one is wanted or left files here.
fn keepalived_of(plan: &Plan) -> Option<keepalived::Seen> {
    let wanted = plan.vrrp.is_some() || keepalived::present(&plan.id);
    (plan.kind == super::plan::Kind::Router && wanted).then(|| keepalived::observe(&plan.id))
}

/// What the host holds for the plan of a namespace that does not exist (yet): the taps that
/// would hold its devices' names, left by a namespace the kernel is still tearing down; a
/// router's radvd, which a namespace deleted behind qrouter's back may still hold.
pub async fn observe_missing(
    k: &mut Kernel,
    plan: &Plan,
    bridges: &mut HashMap<String, u32>,
) -> anyhow::Result<Observed> {
    let mut seen = Observed::default();
    read_host_ends(k, plan, None, bridges, &mut seen).await?;
    seen.radvd = read_radvd(plan, None);
    seen.keepalived = keepalived_of(plan);
    Ok(seen)
}

/// A router's radvd and its configuration, where it has one or may: not read for a router
/// that had none and wants none (an IPv4 router), unless nothing is trusted (`sync`).
fn read_radvd(plan: &Plan, trusted: Option<&Plan>) -> Option<(radvd::State, Option<String>)> {
    let had = trusted.is_none_or(|before| before.radvd.is_some());
    if plan.kind != Kind::Router || (plan.radvd.is_none() && !had) {
        return None;
    }
    Some((
        radvd::state(&plan.id, &plan.namespace),
        radvd::read_config(&plan.id),
    ))
}

/// The host ends of the plan's devices, as far as they need reading, and their bridges.
async fn read_host_ends(
    k: &mut Kernel,
    plan: &Plan,
    trusted: Option<&Plan>,
    bridges: &mut HashMap<String, u32>,
    seen: &mut Observed,
) -> anyhow::Result<()> {
    for dev in &plan.devices {
        let present = seen.links.iter().any(|l| l.name == dev.name);
        let known = trusted
            .and_then(|b| b.device(&dev.name))
            .is_some_and(|b| b.tap_up == dev.tap_up);
        // A missing device's tap may be an orphan holding its name; a tap to be set up or
        // down is read for its state.
        if present && known {
            continue;
        }
        let tap = link::get(k.host(), &dev.tap).await?;
        if let Some(tap) = tap.as_ref().filter(|_| !present) {
            if link::peer_namespace_gone(k.host(), tap).await? {
                seen.peer_gone.insert(tap.name.clone());
            }
        }
        seen.taps.insert(dev.tap.clone(), tap);
        if !bridges.contains_key(&dev.bridge) {
            if let Some(bridge) = link::get(k.host(), &dev.bridge).await? {
                bridges.insert(bridge.name, bridge.index);
            }
        }
    }
    seen.bridges = plan
        .devices
        .iter()
        .filter_map(|d| Some((d.bridge.clone(), *bridges.get(&d.bridge)?)))
        .collect();
    Ok(())
}

/// Every table of the namespace, from nf_tables. `router show` prints the rules: where one
/// cannot be read as a rule of qrouter's, the tables are shown as `iptables-save` prints them.
fn from_nf_tables(
    k: &mut Kernel,
    ns: &str,
    counters: bool,
    families: &[Family],
) -> anyhow::Result<BTreeMap<String, rules_edit::Saved>> {
    let sock = k.nft(ns)?;
    let mut tables = BTreeMap::new();
    for family in families {
        let proto = rules_nft::nfproto(*family);
        let read = || -> std::io::Result<_> {
            Ok((
                nft::chains(sock, proto, None)?,
                nft::rules(sock, proto, None, None)?,
            ))
        };
        let (chains, found) =
            read().map_err(|e| anyhow::anyhow!("{ns}: cannot read nf_tables: {e}"))?;
        let mut saved = rules_nft::saved(*family, &chains, &found);
        if counters && saved.values().any(rules_nft::unreadable) {
            saved = parsed(*family, &iptables::save(Some(ns), v6(*family), true)?);
        }
        tables.extend(saved);
    }
    Ok(tables)
}

/// The tables of `family` in `iptables-save` (`ip6tables-save`) output, keyed as
/// `Table::key` keys them.
fn parsed(family: Family, save: &str) -> BTreeMap<String, rules_edit::Saved> {
    rules_edit::parse_save_tables(save)
        .into_iter()
        .map(|(table, saved)| (family.key(&table), saved))
        .collect()
}

fn v6(family: Family) -> bool {
    family == Family::V6
}

/// The families whose rules are read: IPv4's; IPv6's where the plan has any, or had them
/// (they go), or where nothing is trusted and reading them costs no process (nf_tables).
/// IPv4 routers read nothing more than they did.
fn families(plan: &Plan, trusted: Option<&Plan>, nft: bool) -> Vec<Family> {
    let has_v6 = |p: &Plan| {
        p.rules
            .iter()
            .any(|t| t.family == Family::V6 && !t.chains.is_empty())
    };
    let untrusted = nft && trusted.is_none_or(has_v6);
    match has_v6(plan) || untrusted {
        true => vec![Family::V4, Family::V6],
        false => vec![Family::V4],
    }
}
