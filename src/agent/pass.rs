//! One pass of the agent over its host's part: the VXLAN side when it is due, then a full
//! sync or the objects whose plan changed, each object's status, and the report of them
//! with the revision applied.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::options::Options;
use super::owner::Owner;
use super::segments::{segments, Peers};
use super::view;
use crate::kernel::Kernel;
use crate::model::protocol::{Kind, ObjectRef};
use crate::model::State;
use crate::reconcile::{converge, remove_orphan_links, Changes, Touched};

/// A host's part in one pass: as now, as last converged, and the VXLAN peers.
pub(super) struct Part<'a> {
    pub(super) mine: &'a State,
    pub(super) applied: &'a State,
    pub(super) peers: &'a Peers,
    pub(super) owner: &'a Owner,
    pub(super) mtu: Option<u32>,
    /// Whether the VXLAN side is converged in this pass (see `SegmentsDone`).
    pub(super) segments_due: bool,
}

/// What the VXLAN side of a host is made from: each VXLAN network of its part (id, VNI,
/// bridge, MTU) and the peers (where each floods to, and the MACs of the ports on other
/// hosts), so a port coming or going elsewhere converges it.
#[derive(PartialEq)]
pub(super) struct SegmentsInput(Vec<(String, u32, String, Option<u32>)>, Peers);

impl SegmentsInput {
    pub(super) fn of(mine: &State, peers: &Peers) -> SegmentsInput {
        let networks = (mine.networks.iter())
            .filter_map(|n| Some((n.id.clone(), n.segment()?, n.bridge.clone(), n.mtu)))
            .collect();
        SegmentsInput(networks, peers.clone())
    }
}

/// When the VXLAN side was last converged without error, and from what. It is converged
/// again when what it is made from changed, after an error, and at the pass every 30 s that
/// nothing wakes (drift), not on every pass: its `bridge fdb show` (since a netlink dump) alone was half of the 6 ms a pass took to add an
/// instance.
#[derive(Default)]
pub(super) struct SegmentsDone(Option<(std::time::Instant, SegmentsInput)>);

impl SegmentsDone {
    pub(super) fn is_current(&self, input: &SegmentsInput) -> bool {
        self.0.as_ref().is_some_and(|(at, done)| {
            // Less than the 30 s between passes nothing wakes: that pass does it.
            done == input && at.elapsed() < Duration::from_secs(20)
        })
    }

    pub(super) fn record(&mut self, ok: Option<bool>, input: SegmentsInput) {
        match ok {
            Some(true) => self.0 = Some((std::time::Instant::now(), input)),
            Some(false) => self.0 = None,
            None => {}
        }
    }
}

/// What a pass converges.
pub(super) enum Scope {
    /// Everything of the host, read back from the kernel, orphans included: at start, when
    /// `sync` asks, and every `--resync-interval`.
    Full,
    /// The objects whose plan changed, those that failed last time (`retry`), and those
    /// whose devices went behind qrouter's back (`repair`, read back from the kernel).
    Changed { retry: Touched, repair: Touched },
}

/// One pass: the VXLAN devices first (an instance's DHCP client, run as it is converged,
/// reaches its network's dnsmasq on another host through them), then what `scope` says.
/// Each object's status, for a full sync what it changed, and whether the VXLAN side was
/// converged without error (None: not in this pass).
pub(super) async fn converge_part(
    k: &mut Kernel,
    o: &Options,
    part: Part<'_>,
    scope: Scope,
) -> (Statuses, Option<Changes>, Option<bool>) {
    let vx = match part.segments_due {
        true => segments(k, part.mine, part.peers, (o, part.mtu), part.owner, false).await,
        false => (Ok(()), vec![]),
    };
    let segments_ok = part.segments_due.then_some(vx.0.is_ok());
    for line in &vx.1 {
        log::info!("{line}");
    }
    let (mut statuses, synced) = match scope {
        Scope::Full => {
            let (statuses, mut log_) = full_sync(k, part.mine, part.owner, false).await;
            log_.done.splice(0..0, vx.1);
            (statuses, Some(log_))
        }
        Scope::Changed { retry, repair } => {
            let mut touched = view::touched(part.applied, part.mine);
            touched.extend(retry);
            let mut statuses = pass(k, part.applied, part.mine, &touched, part.owner).await;
            if !repair.is_empty() {
                let mut log_ = part.owner.changes();
                log_.check_drift = true;
                let repaired = pass_with(k, part.mine, part.mine, &repair, &mut log_).await;
                log_.done.iter().for_each(|l| log::info!("repaired: {l}"));
                statuses.extend(repaired);
            }
            (statuses, None)
        }
    };
    if let Err(e) = vx.0 {
        // A network's VXLAN device failing takes down what is on that network.
        for s in statuses.values_mut().filter(|s| s.is_ok()) {
            *s = Err(format!("{e:#}"));
        }
    }
    (statuses, synced, segments_ok)
}

/// How each object converged in a pass went: converged, or why not.
pub(super) type Statuses = BTreeMap<ObjectRef, Result<(), String>>;

/// The objects whose status is an error.
pub(super) fn failures(statuses: &Statuses) -> Touched {
    let mut t = Touched::default();
    for o in statuses.iter().filter(|(_, s)| s.is_err()).map(|(o, _)| o) {
        let ids = match o.kind {
            Kind::Router => &mut t.routers,
            Kind::Instance => &mut t.instances,
            Kind::Network => &mut t.networks,
        };
        ids.insert(o.id.clone());
    }
    t
}

/// The first error among `statuses`, as a sync's.
pub(super) fn first_error(statuses: &Statuses) -> Option<String> {
    let mut errors = statuses
        .iter()
        .filter_map(|(o, s)| Some((o, s.as_ref().err()?)));
    errors
        .next()
        .map(|(o, e)| format!("{} {}: {e}", o.kind, o.id))
}

fn key(kind: Kind, id: &str) -> ObjectRef {
    ObjectRef::new(kind, id)
}

/// At start and when `sync` asks: everything of this host, read back from the kernel, and
/// the orphans this store made that nothing here explains any more (a router moved away
/// while the agent was down). With `dry_run`, only what differs, in the log.
pub(super) async fn full_sync(
    k: &mut Kernel,
    mine: &State,
    owner: &Owner,
    dry_run: bool,
) -> (Statuses, Changes) {
    let mut touched = Touched::all_here(mine);
    // A namespace of an object set aside is no orphan.
    touched.routers.retain(|id| !owner.held.contains(id));
    touched.instances.retain(|id| !owner.held.contains(id));
    touched.networks.retain(|id| !owner.held.contains(id));
    let mut log_ = owner.changes();
    (log_.check_drift, log_.dry_run) = (true, dry_run);
    let statuses = pass_with(k, mine, mine, &touched, &mut log_).await;
    if let Err(e) = remove_orphan_links(k, mine, &mut log_).await {
        log::warn!("orphans: {e:#}");
    }
    if !dry_run {
        log_.done.iter().for_each(|l| log::info!("{l}"));
    }
    (statuses, log_)
}

async fn pass(
    k: &mut Kernel,
    old: &State,
    new: &State,
    touched: &Touched,
    owner: &Owner,
) -> Statuses {
    let mut log_ = owner.changes();
    let statuses = pass_with(k, old, new, touched, &mut log_).await;
    log_.done.iter().for_each(|l| log::info!("{l}"));
    statuses
}

/// Converge `touched` all at once; if that fails, one object at a time, so one object's
/// failure is its own status and does not hold the others back.
async fn pass_with(
    k: &mut Kernel,
    old: &State,
    new: &State,
    touched: &Touched,
    log_: &mut Changes,
) -> Statuses {
    let mut statuses = Statuses::new();
    let dhcp: BTreeSet<&String> = view::dhcp_networks(new)
        .filter(|id| touched.networks.contains(*id))
        .collect();
    let all_ok = |s: &mut Statuses| {
        for id in &dhcp {
            s.insert(key(Kind::Network, id), Ok(()));
        }
        for id in &touched.routers {
            if new.router_by_id(id).is_some() {
                s.insert(key(Kind::Router, id), Ok(()));
            }
        }
        for id in &touched.instances {
            if new.instance_by_id(id).is_some() {
                s.insert(key(Kind::Instance, id), Ok(()));
            }
        }
    };
    // The object converging everything at once failed at because its DHCP client got no
    // lease, with that error: not converged again below, where the client would wait its
    // 5 s twice (past the 10 s a command waits), but at the next pass. Any other failure
    // (a device the kernel is still tearing down) is tried again at once.
    let failed = match converge(k, old, new, touched, log_).await {
        Ok(()) => {
            all_ok(&mut statuses);
            return statuses;
        }
        Err(e) => {
            log::warn!("{e:#}; converging one object at a time");
            let failed = log_.failed.take();
            let no_lease = e.downcast_ref::<crate::kernel::udhcpc::NoLease>().is_some();
            failed
                .filter(|_| no_lease)
                .map(|(kind, id)| (kind, id, format!("{e:#}")))
        }
    };
    let one = |kind: Kind, id: &String| {
        let mut t = Touched::default();
        match kind {
            Kind::Router => t.routers.insert(id.clone()),
            _ => t.instances.insert(id.clone()),
        };
        t
    };
    let networks = Touched {
        networks: touched.networks.clone(),
        ..Default::default()
    };
    // The networks' bridges and DHCP servers: one failing is each DHCP network's error.
    let status = match converge(k, old, new, &networks, log_).await {
        Ok(()) => Ok(()),
        Err(e) => {
            log::warn!("{e:#}");
            Err(format!("{e:#}"))
        }
    };
    for id in &dhcp {
        statuses.insert(key(Kind::Network, id), status.clone());
    }
    for (kind, ids) in [
        (Kind::Router, &touched.routers),
        (Kind::Instance, &touched.instances),
    ] {
        for id in ids {
            let present = match kind {
                Kind::Router => new.router_by_id(id).is_some(),
                _ => new.instance_by_id(id).is_some(),
            };
            let status = match &failed {
                Some((at_kind, at_id, error)) if *at_kind == kind.as_str() && at_id == id => {
                    Err(error.clone())
                }
                _ => converge(k, old, new, &one(kind, id), log_)
                    .await
                    .map_err(|e| format!("{e:#}")),
            };
            if present {
                statuses.insert(key(kind, id), status);
            }
        }
    }
    statuses
}
