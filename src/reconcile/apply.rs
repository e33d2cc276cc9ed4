//! Carry out the steps of one diff, in their order, on the kernel.

use std::collections::HashMap;
use std::net::IpAddr;

use anyhow::Context;

use super::diff::{Observed, Step};
use super::plan::{Device, Kind, Plan};
use crate::kernel::arp::Announcement;
use crate::kernel::link::Link;
use crate::kernel::{
    addr, arp, conntrack, dhclient, iptables, keepalived, link, netns, nft, radvd, route, sysctl,
    udhcpc,
};
use crate::kernel::{Kernel, NewNamespace, RulesBatch};
use crate::model::rules::Family;
use crate::model::rules_edit;
use crate::model::{naming, rules_nft};
use rtnetlink::Handle;

/// How long a tap whose peer's namespace is being destroyed may take to go: the kernel
/// tears namespaces down in the background, in batches; behind 200 to 800 others deleted
/// just before, a deleted router's taps lingered 150 to 350 ms here.
const TAP_REMOVAL: std::time::Duration = std::time::Duration::from_secs(10);

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
    /// Whether addresses that come up are announced (gratuitous ARP): for a change, not
    /// for a repair or a rebuild (`sync`, an agent's resync). A rebuilt router's devices
    /// come back with the MACs they had, on the same host, so no neighbour or switch holds
    /// a stale entry; and announcing 1000 routers' gateways kept the announcer busy 32 s
    /// after a `sync` (each broadcast reaches every router on the external bridge).
    pub announce: bool,
}

/// Start making the (missing) namespace of `plan` on a thread of its own, marked as the
/// store `owner`'s, with its sysctls and its rules.
pub fn make_namespace(plan: &Plan, owner: &str) -> anyhow::Result<NewNamespace> {
    let empty = rules_edit::Saved::default();
    let changes: Vec<rules_edit::Change> = plan
        .rules
        .iter()
        .filter_map(|t| rules_edit::change(t, &empty))
        .collect();
    Ok(NewNamespace::start(
        &plan.namespace,
        naming::mark(owner, &plan.id),
        plan.sysctls(),
        rules_batch(&changes)?,
    ))
}

/// The rules changes of one namespace as one batch, or None when there are none.
fn rules_batch(changes: &[rules_edit::Change]) -> anyhow::Result<Option<RulesBatch>> {
    if changes.is_empty() {
        return Ok(None);
    }
    if !iptables::uses_nf_tables() {
        let of = |family: Family| iptables::Restore {
            v6: family == Family::V6,
            text: changes
                .iter()
                .filter(|c| c.family == family)
                .map(rules_edit::Change::restore_text)
                .collect(),
        };
        let batches = [Family::V4, Family::V6].map(of);
        return Ok(Some(RulesBatch::Restore(
            batches.into_iter().filter(|b| !b.text.is_empty()).collect(),
        )));
    }
    let mut batch = nft::Batch::new(nft::IPV4);
    for change in changes {
        batch.family(rules_nft::nfproto(change.family));
        rules_nft::add_to(&mut batch, change)?;
    }
    Ok(Some(RulesBatch::Nft(batch)))
}

/// Write `batch` in namespace `ns`: an nf_tables batch at once, `iptables-restore` (and
/// `ip6tables-restore`) started (their results come with `Running::finish`).
fn write_rules(
    k: &mut Kernel,
    ns: &str,
    batch: RulesBatch,
) -> anyhow::Result<Vec<iptables::Running>> {
    match batch {
        RulesBatch::Nft(batch) => {
            batch
                .commit(k.nft(ns)?)
                .with_context(|| format!("{ns}: nf_tables refused the rules"))?;
            Ok(vec![])
        }
        RulesBatch::Restore(batches) => batches
            .iter()
            .map(|b| iptables::start_restore(Some(ns), b.v6, &b.text))
            .collect(),
    }
}

/// Carry out `steps` in four phases: the namespace; what is made (veths, enslaved taps);
/// what goes (addresses, routes, stale devices) while the rules change; what is added.
pub async fn apply(k: &mut Kernel, steps: &[Step], mut cx: Inputs<'_>) -> anyhow::Result<()> {
    let created = steps.contains(&Step::CreateNamespace);
    let mark = naming::mark(cx.owner, &cx.plan.id);
    let ns = cx.plan.namespace.as_str();
    // A namespace made on its thread got its sysctls and its first rules there.
    let mut rules = vec![];
    if created {
        let making = match cx.making.take() {
            Some(making) => making,
            None => make_namespace(cx.plan, cx.owner)?,
        };
        rules = making.finish(k)?.rules;
    }
    // A keepalived that goes takes its addresses with it: before anything else changes.
    if steps.contains(&Step::StopKeepalived) {
        keepalived::stop(&cx.plan.id)?;
    }
    let h = k.ns(ns)?;
    let changes: Vec<rules_edit::Change> = steps
        .iter()
        .filter_map(|s| match s {
            Step::UpdateRules(change) => Some(change.clone()),
            _ => None,
        })
        .collect();
    let mut batch = match created {
        true => None,
        false => rules_batch(&changes)?,
    };
    // Where nothing is removed, the rules go in while the devices are made (an
    // iptables-restore runs beside them; an nf_tables batch takes well under a millisecond).
    let removes = steps
        .iter()
        .any(|s| matches!(s, Step::DeleteAddress { .. } | Step::DeleteRoute(_)));
    if !removes {
        if let Some(b) = batch.take() {
            rules = write_rules(k, ns, b)?;
        }
    }
    let made = make(k, steps, &cx, &mark).await?;
    let links = match created || !made.is_empty() {
        true => link::list(&h).await?,
        false => cx.seen.links.clone(),
    };
    // Routers: no IPv6 link-local address formed by the kernel on their devices, set while
    // they are down: on an IPv4 router their probes and solicitations would be flooded into
    // every router on the external bridge. A device that carries IPv6 gets its link-local
    // from the plan, added as any other address.
    if cx.plan.kind == Kind::Router {
        for l in links.iter().filter(|l| made.contains(&l.name.as_str())) {
            link::no_link_local(&h, l).await?;
        }
    }
    // A new device's own sysctls (`accept_ra` of a gateway), before it comes up.
    if !made.is_empty() && cx.plan.has_device_sysctls() {
        sysctl::ensure(ns, cx.plan.sysctls(), false)?;
    }
    if steps.contains(&Step::StopRadvd) {
        radvd::stop(&cx.plan.id)?;
    }
    for step in steps {
        match step {
            Step::DeleteAddress { address, .. } => addr::delete(&h, address).await?,
            Step::DeleteRoute(r) => route::delete(&h, r).await?,
            _ => {}
        }
    }
    // The rules change while stale devices go: iptables after deleting rules waits out an RCU
    // grace period (15-40 ms here); the devices' own grace period is the announcer's.
    if let Some(b) = batch.take() {
        rules = write_rules(k, ns, b)?;
    }
    let stale: Vec<link::Link> = (steps.iter())
        .filter_map(|s| match s {
            Step::DeleteDevice(l) => Some(l.clone()),
            _ => None,
        })
        .collect();
    link::delete_soon(&h, Some(ns), &stale).await?;
    let mut refused = None;
    for running in rules {
        // Each is waited for, whatever the others did.
        if let Err(e) = running.finish() {
            refused.get_or_insert(e);
        }
    }
    if let Some(refused) = refused {
        if !cx.rules_assumed {
            return Err(refused);
        }
        restore_from_kernel(cx.plan)?;
    }
    add(&h, steps, cx.plan, &links, cx.announce).await?;
    vrrp(steps, cx.plan)
}

/// Last, once every device it names is there and up (keepalived refuses a configuration
/// naming a missing interface): an HA copy's conntrackd (re)started, then its keepalived
/// started or reloaded.
fn vrrp(steps: &[Step], plan: &Plan) -> anyhow::Result<()> {
    let Some(v) = &plan.vrrp else { return Ok(()) };
    let config = || v.render(&keepalived::notify_command(&plan.id));
    for step in steps {
        match step {
            Step::StartConntrackd => {
                let dir = keepalived::dir(&plan.id);
                let config = v.render_conntrackd(&dir.to_string_lossy());
                keepalived::start_conntrackd(&plan.id, &plan.namespace, &config)?;
            }
            Step::StartKeepalived => {
                keepalived::write_config(&plan.id, &config())?;
                keepalived::start(&plan.id, &plan.namespace)?;
            }
            Step::ReloadKeepalived(pid) => {
                keepalived::write_config(&plan.id, &config())?;
                keepalived::reload(*pid)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The first phase: sysctls, orphan taps out of the way, veths, taps back on their bridge.
/// Returns the devices made.
async fn make<'s>(
    k: &mut Kernel,
    steps: &'s [Step],
    cx: &Inputs<'_>,
    mark: &str,
) -> anyhow::Result<Vec<&'s str>> {
    let (plan, ns) = (cx.plan, cx.plan.namespace.as_str());
    let bridge = |name: &str| {
        cx.bridges
            .get(name)
            .copied()
            .with_context(|| format!("bridge {name} is missing"))
    };
    let mut made = Vec::new();
    for step in steps {
        match step {
            Step::SetSysctls(_) => {
                sysctl::ensure(ns, plan.sysctls(), false)?;
            }
            Step::DeleteOrphanTap(tap) => link::delete(k.host(), tap).await?,
            Step::AwaitTapRemoval(tap) => link::await_removal(tap, TAP_REMOVAL).await?,
            Step::CreateVeth { device } => {
                let dev = plan.device(device).context("planned device")?;
                let tap = cx.seen.taps.get(&dev.tap).and_then(Option::as_ref);
                let ours = |t: &&Link| naming::marked_by(t.alias.as_deref(), cx.owner);
                let going = |t: &&Link| cx.seen.peer_gone.contains(&t.name);
                if let Some(foreign) = tap.filter(|t| !ours(t) && !going(t)) {
                    anyhow::bail!(
                        "{}: a device of that name exists and carries no mark of this store; \
                         qrouter leaves it alone (delete it, or see 'ip -d link show {}')",
                        foreign.name,
                        foreign.name
                    );
                }
                let veth = link::Veth {
                    tap: &dev.tap,
                    bridge_index: bridge(&dev.bridge)?,
                    peer: &dev.name,
                    peer_mac: &dev.mac,
                    mtu: dev.mtu,
                    mark,
                };
                link::add_veth(k.host(), &veth, &netns::open(ns)?).await?;
                made.push(device.as_str());
            }
            Step::SetTap { tap, up } => {
                let found = link::get(k.host(), tap).await?;
                let found = found.with_context(|| format!("tap {tap} is missing"))?;
                match up {
                    true => link::set_up(k.host(), found.index).await?,
                    false => link::set_down(k.host(), found.index).await?,
                }
            }
            Step::Enslave { tap, bridge: name } => {
                link::set_controller(k.host(), tap.index, bridge(name)?)
                    .await
                    .with_context(|| format!("tap {}: cannot enslave it to {name}", tap.name))?;
            }
            _ => {}
        }
    }
    Ok(made)
}

/// The kernel's rules were not what the store said (iptables-legacy, where a command
/// trusts the state it leaves): move them from what they are.
fn restore_from_kernel(plan: &Plan) -> anyhow::Result<()> {
    let ns = Some(plan.namespace.as_str());
    let empty = rules_edit::Saved::default();
    for family in [Family::V4, Family::V6] {
        let v6 = family == Family::V6;
        let tables = plan.rules.iter().filter(|t| t.family == family);
        if tables.clone().all(|t| t.chains.is_empty()) && v6 {
            // IPv6 rules the plan does not want and the store says are not there.
            continue;
        }
        let saved = rules_edit::parse_save_tables(&iptables::save(ns, v6, false)?);
        let batch: String = tables
            .filter_map(|t| rules_edit::restore_batch(t, saved.get(t.name).unwrap_or(&empty)))
            .collect();
        iptables::restore(ns, v6, &batch)?;
    }
    Ok(())
}

/// The last phase, once the rules are in place: connections of released addresses
/// forgotten, addresses added (and announced), devices up, routes.
async fn add(
    h: &Handle,
    steps: &[Step],
    plan: &Plan,
    links: &[Link],
    announce_new: bool,
) -> anyhow::Result<()> {
    let ns = plan.namespace.as_str();
    let link = |name: &str| {
        links
            .iter()
            .find(|l| l.name == name)
            .with_context(|| format!("{ns}: device {name} missing after creation"))
    };
    // A router's addresses are announced (gratuitous ARP) as they come up: neighbours that
    // cached another MAC for one (a floating IP that moved, a router moved from another
    // host) update at once, and the bridges on the way learn where its MAC is now.
    let mut announce = vec![];
    let announcing = plan.kind == Kind::Router && announce_new;
    for step in steps {
        match step {
            Step::FlushConntrack(ip) => conntrack::flush(ns, *ip)?,
            Step::AddAddress { device, address } => {
                let l = link(device)?;
                addr::add(h, l.index, *address).await?;
                // A device still down is announced as it comes up (SetUp). Like Neutron's
                // legacy router, IPv6 addresses are not announced.
                if let (true, true, IpAddr::V4(ip)) = (l.up, announcing, address.addr()) {
                    let mac = plan.device(device).map_or(l.mac.as_str(), |d| &d.mac);
                    announce.push(Announcement {
                        index: l.index,
                        mac: mac.to_string(),
                        ip,
                    });
                }
            }
            Step::SetUp { device } => {
                let l = link(device)?;
                link::set_up(h, l.index).await?;
                let d = plan.device(device).filter(|_| announcing);
                announce.extend(d.into_iter().flat_map(|d| announcements(l.index, d)));
            }
            Step::SetDown { device } => link::set_down(h, link(device)?.index).await?,
            Step::AddRoute(r) => {
                let oif = r.device.as_deref().map(link).transpose()?.map(|l| l.index);
                route::replace(h, r.destination, &r.via, oif).await?;
            }
            Step::WriteRadvdConfig => {
                let text = plan
                    .radvd
                    .as_deref()
                    .context("planned radvd configuration")?;
                radvd::write_config(&plan.id, text)?;
            }
            Step::StartRadvd { stale } => radvd::start(&plan.id, ns, *stale)?,
            Step::ReloadRadvd { pid } => radvd::reload(*pid)?,
            Step::RunDhcpClient { device, v6: false } => {
                udhcpc::obtain(ns, device, &plan.id)?;
            }
            Step::RunDhcpClient { device, v6: true } => {
                dhclient::obtain(ns, device, &plan.id, dhclient::Ask::Address)?;
            }
            Step::RequestDhcpv6Options { device } => {
                dhclient::obtain(ns, device, &plan.id, dhclient::Ask::Options)?;
            }
            _ => {}
        }
    }
    // Like Neutron, a lost announcement is not worth failing the change for.
    if let Err(e) = arp::announce_all(ns, &announce) {
        log::warn!("{e:#}");
    }
    Ok(())
}

/// The gratuitous ARP of a router device's addresses (its IPv4 ones: like Neutron's legacy
/// router, qrouter announces no IPv6 address), as link `index`.
pub(super) fn announcements(index: u32, device: &Device) -> Vec<Announcement> {
    device
        .addresses
        .iter()
        .filter_map(|a| match a.addr() {
            IpAddr::V4(ip) => Some(Announcement {
                index,
                mac: device.mac.clone(),
                ip,
            }),
            IpAddr::V6(_) => None,
        })
        .collect()
}
