//! Carry out the steps of one diff, in their order, on the kernel.

use std::collections::HashMap;

use anyhow::Context;

use super::diff::{Observed, Step};
use super::plan::{Kind, Plan};
use crate::kernel::{addr, arp, conntrack, iptables, link, netns, route, sysctl};
use crate::kernel::{Kernel, NewNamespace};
use crate::model::{naming, rules};

/// What `apply` needs besides the steps.
pub struct Inputs<'a> {
    pub plan: &'a Plan,
    pub seen: &'a Observed,
    /// The namespace being made on another thread, where the diff wants it created.
    pub making: Option<NewNamespace>,
    /// The host's bridges by name, with their index.
    pub bridges: &'a HashMap<String, u32>,
    /// The rules were assumed, not read: a refused batch is retried against what the
    /// kernel really holds.
    pub rules_assumed: bool,
    /// The store's id, for the mark on what is made.
    pub owner: &'a str,
}

/// Start making the (missing) namespace of `plan` on a thread of its own, with its sysctls
/// and its rules.
pub fn make_namespace(plan: &Plan) -> NewNamespace {
    let empty = rules::Saved::default();
    let batch: String = plan
        .rules
        .iter()
        .filter_map(|t| rules::restore_batch(t, &empty))
        .collect();
    NewNamespace::start(
        &plan.namespace,
        plan.sysctls(),
        Some(batch).filter(|b| !b.is_empty()),
    )
}

pub async fn apply(k: &mut Kernel, steps: &[Step], cx: Inputs<'_>) -> anyhow::Result<()> {
    let Inputs {
        plan,
        seen,
        making,
        bridges,
        rules_assumed,
        owner,
    } = cx;
    let mark = naming::mark(owner, &plan.id);
    let ns = plan.namespace.as_str();
    // A namespace made on its thread got its sysctls and its first rules there.
    let mut rules = None;
    let created = steps.contains(&Step::CreateNamespace);
    let mut rules_done = false;
    if created {
        let making = making.unwrap_or_else(|| make_namespace(plan));
        rules = making.finish(k)?.rules;
        rules_done = true;
    }
    let h = k.ns(ns)?;
    if created {
        // The namespace is qrouter's, for this store, when its `lo` says so.
        link::set_alias(&h, "lo", &mark).await?;
    }
    let batch: String = steps
        .iter()
        .filter_map(|s| match s {
            Step::UpdateRules { batch, .. } => Some(batch.as_str()),
            _ => None,
        })
        .collect();
    let batch = Some(batch).filter(|b| !b.is_empty() && !rules_done);
    // Where nothing is removed, the rules go in while the devices are made.
    let removes = steps
        .iter()
        .any(|s| matches!(s, Step::DeleteAddress { .. } | Step::DeleteRoute(_)));
    if let Some(batch) = batch.as_ref().filter(|_| !removes) {
        rules = Some(iptables::start_restore(Some(ns), batch)?);
    }

    let mut links = seen.links.clone();
    let mut made = Vec::new();
    for step in steps {
        match step {
            Step::SetSysctls(_) => {
                sysctl::ensure(ns, plan.sysctls(), false)?;
            }
            Step::DeleteOrphanTap(tap) => link::delete(k.host(), tap).await?,
            Step::CreateVeth { device } => {
                let dev = plan.device(device).context("planned device")?;
                let tap = seen.taps.get(&dev.tap).and_then(Option::as_ref);
                if let Some(foreign) = tap.filter(|t| !naming::marked_by(t.alias.as_deref(), owner))
                {
                    anyhow::bail!(
                        "{}: a device of that name exists and carries no mark of this store; \
                         qrouter leaves it alone (delete it, or see 'ip -d link show {}')",
                        foreign.name,
                        foreign.name
                    );
                }
                let bridge_index = *bridges
                    .get(&dev.bridge)
                    .with_context(|| format!("bridge {} is missing", dev.bridge))?;
                let veth = link::Veth {
                    tap: &dev.tap,
                    bridge_index,
                    peer: &dev.name,
                    peer_mac: &dev.mac,
                    mtu: dev.mtu,
                    mark: &mark,
                };
                link::add_veth(k.host(), &veth, &netns::open(ns)?).await?;
                made.push(device.as_str());
            }
            Step::Enslave { tap, bridge } => {
                let index = *bridges
                    .get(bridge)
                    .with_context(|| format!("bridge {bridge} is missing"))?;
                link::set_controller(k.host(), tap.index, index)
                    .await
                    .with_context(|| format!("tap {}: cannot enslave it to {bridge}", tap.name))?;
            }
            _ => {}
        }
    }
    if created || !made.is_empty() {
        links = link::list(&h).await?;
        // IPv4 routers: no IPv6 link-local address on their devices, set while they are
        // down, whose probes and solicitations would be flooded into every router on the
        // external bridge.
        if plan.kind == Kind::Router {
            for l in links.iter().filter(|l| made.contains(&l.name.as_str())) {
                link::no_link_local(&h, l).await?;
            }
        }
    }
    for step in steps {
        match step {
            Step::DeleteAddress { address, .. } => addr::delete(&h, address).await?,
            Step::DeleteRoute(r) => route::delete(&h, r).await?,
            _ => {}
        }
    }
    // The rules change while stale devices go: iptables after deleting rules, and the kernel
    // after unregistering a device, each wait out an RCU grace period (15-40 ms here).
    if let Some(batch) = batch.as_ref().filter(|_| rules.is_none()) {
        rules = Some(iptables::start_restore(Some(ns), batch)?);
    }
    for step in steps {
        if let Step::DeleteDevice(l) = step {
            link::delete(&h, l).await?;
        }
    }
    if let Some(running) = rules {
        if let Err(refused) = running.finish() {
            if !rules_assumed {
                return Err(refused);
            }
            // The kernel's rules were not what the store said: move from what they are.
            let saved = rules::parse_save_tables(&iptables::save(Some(ns), false)?);
            let empty = rules::Saved::default();
            let batch: String = plan
                .rules
                .iter()
                .filter_map(|t| rules::restore_batch(t, saved.get(t.name).unwrap_or(&empty)))
                .collect();
            iptables::restore(Some(ns), &batch)?;
        }
    }

    let index = |name: &str| {
        links
            .iter()
            .find(|l| l.name == name)
            .with_context(|| format!("{ns}: device {name} missing after creation"))
    };
    for step in steps {
        match step {
            Step::FlushConntrack(ip) => conntrack::flush(ns, *ip)?,
            Step::AddAddress { device, address } => {
                let l = index(device)?;
                addr::add(&h, l.index, *address).await?;
                // A device still down is announced by the kernel as it comes up. Like
                // Neutron, a lost announcement is not worth failing the change for.
                if l.up && plan.kind == Kind::Router {
                    let mac = plan.device(device).map_or(l.mac.as_str(), |d| &d.mac);
                    if let Err(e) = arp::announce(ns, l.index, mac, address.addr()) {
                        crate::output::diag::warn(format!("{e:#}"));
                    }
                }
            }
            Step::SetUp { device } => link::set_up(&h, index(device)?.index).await?,
            Step::SetDown { device } => link::set_down(&h, index(device)?.index).await?,
            Step::AddRoute(r) => {
                let oif = r.device.as_deref().map(index).transpose()?.map(|l| l.index);
                route::replace(&h, r.destination, &r.via, oif).await?;
            }
            _ => {}
        }
    }
    Ok(())
}
