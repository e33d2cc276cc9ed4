//! The agent's loop: register the host under a lease, converge the host's part of the
//! desired state (a full sync first), report each object's status, then wait on a watch of
//! the desired state and converge what changed, again and again; a full resync of the host
//! every `--resync-interval`, and at once a repair of what used a device that went.
//!
//! Each pass reads the whole state at one revision and converges the difference from what
//! was last applied, so an event lost across a reconnect, a compaction or a restart cannot
//! leave the host behind (level-triggered, as Kubernetes controllers are). What etcd says
//! is asked off the runtime (`control.rs`); while etcd does not answer, the host's data
//! plane stays exactly as it is. A pass itself is in `pass.rs`; between passes the agent
//! answers what is asked of it (`ask.rs`), plugs workload taps as they appear, and
//! announces a router again once another host released its copy; before a pass it places
//! what waits for a host, and moves what a host confirmed dead ran (`liveness.rs`).

use std::collections::{BTreeSet, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::control::{Control, Reach};
use super::liveness::{Deaths, LeaseHealth};
use super::options::Options;
use super::owner::Owner;
use super::pass::{converge_part, failures, first_error, full_sync, Part, Scope};
use super::pass::{SegmentsDone, SegmentsInput};
use super::report::Reporter;
use super::segments::{peers, segments, Peers};
use super::wake::{Receiver, Sender, Wake};
use super::{ask, view};
use crate::kernel::events::{watch_links, watch_namespaces, LinkEvent};
use crate::kernel::{self, vxlan, Kernel};
use crate::model::protocol::{Ask, Kind, Quarantined, Reply, Request, SyncReport};
use crate::model::State;
use crate::ops::placement;
use crate::reconcile::Touched;
use crate::store::etcd::{keys, Etcd};

pub async fn run(spec: &str, o: Options) -> anyhow::Result<i32> {
    crate::model::validate::name("host", &o.host)?;
    // The agent's threads (the blocking pool's etcd calls, the watch, the lease, the
    // kernel's events) would each take a malloc arena of their own: with one for all, an
    // agent of 100 routers peaks at 24.6 MB, against 32.2 MB (bench/multihost.sh, N=300).
    // Before any thread starts. SAFETY: mallopt only sets a tunable of the allocator.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let signals = super::host::block_stop_signals()?;
    kernel::preflight()?;
    let endpoints = spec.strip_prefix("etcd://").ok_or_else(|| {
        crate::error::invalid("qrouter agent needs --store etcd://HOST:PORT[,...]")
    })?;
    let kernel = Kernel::connect()?;
    super::host::check_local_ip(&kernel, &o).await?;
    let mut store = Etcd::open(endpoints, true)?;
    // What it sets aside is in its own report, said once, not at every read.
    store.warn_quarantined = false;
    let control = Control::new(store, Reach::new(endpoints));
    let lease = super::host::join(&control, endpoints, &o, signals).await?;
    let mtu = vxlan::underlay_mtu(kernel.host(), o.local_ip)
        .await
        .map(|m| m - vxlan::OVERHEAD)
        .map_err(|e| log::warn!("{e:#}; VXLAN devices keep the kernel's MTU"))
        .ok();
    let (wake, mut woken) = tokio::sync::mpsc::unbounded_channel();
    let links = wake.clone();
    watch_links(move |event| {
        let w = match event {
            LinkEvent::TapUnplugged(name) => Wake::Tap(name),
            LinkEvent::Gone(name) => Wake::Gone(name),
        };
        links.send(w).is_ok()
    })?;
    let namespaces = wake.clone();
    watch_namespaces(move |name| namespaces.send(Wake::Gone(name)).is_ok())?;
    let mut reporter = Reporter::default();
    let host = o.host.clone();
    let previous = (control.retry("start", move |s| s.statuses(&host))).await;
    reporter.inherit(previous.into_keys());
    let mut agent = Agent {
        endpoints: endpoints.to_string(),
        o,
        control,
        kernel,
        mtu,
        lease,
        wake,
        reporter,
        deaths: Deaths::default(),
        applied: State::default(),
        known: State::default(),
        peers: Peers::default(),
        owner: Owner::default(),
        failed: Touched::default(),
        repair: Touched::default(),
        segments_done: SegmentsDone::default(),
        resynced: None,
        watching: false,
        syncs: vec![],
        quarantined: vec![],
    };
    agent.run(&mut woken).await
}

/// The agent between passes: what it last converged and what it waits to do.
struct Agent {
    endpoints: String,
    o: Options,
    control: Control,
    kernel: Kernel,
    /// The MTU of a VXLAN network's devices here (the underlay's less the overhead).
    mtu: Option<u32>,
    lease: LeaseHealth,
    wake: Sender,
    reporter: Reporter,
    deaths: Deaths,
    /// The host's part as last converged, its VXLAN peers then, and whose it is.
    applied: State,
    peers: Peers,
    owner: Owner,
    /// The whole state as last read, with what was set aside then kept as before.
    known: State,
    /// What failed in the last pass: tried again soon.
    failed: Touched,
    /// What used a device that went: read back and repaired with the next pass.
    repair: Touched,
    segments_done: SegmentsDone,
    /// When the last full sync of the host was.
    resynced: Option<Instant>,
    watching: bool,
    /// `sync` requests: answered after the next pass, a full sync.
    syncs: Vec<Ask>,
    /// What the last read set aside.
    quarantined: Vec<Quarantined>,
}

impl Agent {
    async fn run(&mut self, woken: &mut Receiver) -> anyhow::Result<i32> {
        loop {
            let snapshot = self.control.retry("read", |s| s.snapshot()).await;
            let loaded = snapshot.parse();
            if loaded.id.is_empty() {
                // Until the first change makes the store's id, there is nothing to converge
                // and no mark to tell this store's objects by.
                self.watch_from(loaded.revision)?;
                self.wait(woken, self.o.resync_interval).await;
                continue;
            }
            self.note_quarantined(loaded.quarantined);
            let now = Instant::now();
            self.deaths.observe(&loaded.hosts, now);
            let dead = match self.o.failover_grace {
                Some(grace) => {
                    let unbroken = self.lease.unbroken_since();
                    (self.deaths).confirmed(&loaded.hosts, &self.o.host, unbroken, grace, now)
                }
                None => BTreeSet::new(),
            };
            if placement::anything_due(&loaded.state, &loaded.hosts, &dead) {
                // Placed in a change of its own; the state just read is then stale: read
                // again rather than converge it (an instance's DHCP client would look for a
                // server that is placed but not there yet).
                let moving = dead.clone();
                let placed = (self.control)
                    .call("placement", move |s| placement::place_unplaced(s, &moving))
                    .await;
                match placed {
                    Ok(placed) if !placed.is_empty() => {
                        for line in placed {
                            log::info!("{line}");
                        }
                        for h in &dead {
                            log::warn!(
                                "host {h}: its lease has been gone {} s while etcd was healthy: \
                                 what it ran moved",
                                self.o.failover_grace.unwrap_or_default().as_secs()
                            );
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => log::warn!("placement: {e:#}"),
                }
            }
            // What was set aside as the state was read stays as it was last read whole: a key
            // anyone may have written changes nothing on the host, neither by what it says
            // nor by the objects it takes with it (nor the VXLAN entries of other hosts).
            let held: HashSet<String> = (self.quarantined.iter())
                .filter_map(|q| keys::object_id(&q.key).map(str::to_string))
                .collect();
            let mut state = Rc::unwrap_or_clone(loaded.state);
            view::keep_held(&mut state, &self.known, &held);
            let owner = Owner {
                id: loaded.id,
                held,
            };
            self.converge(&state, &loaded.hosts, loaded.revision, owner)
                .await;
            self.known = state;
            self.watch_from(loaded.revision)?;
            let at_most = self.next_look(&loaded.hosts);
            self.wait(woken, at_most).await;
        }
    }

    /// One pass over the state read at `revision`, its statuses reported.
    async fn converge(
        &mut self,
        state: &State,
        hosts: &[crate::model::host::HostInfo],
        revision: i64,
        owner: Owner,
    ) {
        let o = &self.o;
        let mine = view::of(state, &o.host, o.role, self.mtu);
        let started = Instant::now();
        let peers = peers(state, hosts, o, &mine, self.mtu);
        let resync_due = self
            .resynced
            .is_none_or(|at| at.elapsed() >= o.resync_interval);
        let full = resync_due || !self.syncs.is_empty() || owner.id != self.owner.id;
        let segments_input = SegmentsInput::of(&mine, &peers);
        let part = Part {
            mine: &mine,
            applied: &self.applied,
            peers: &peers,
            owner: &owner,
            mtu: self.mtu,
            segments_due: full || !self.segments_done.is_current(&segments_input),
        };
        let scope = match full {
            true => Scope::Full,
            false => Scope::Changed {
                retry: std::mem::take(&mut self.failed),
                repair: std::mem::take(&mut self.repair),
            },
        };
        let (statuses, synced, segments_ok) = converge_part(&mut self.kernel, o, part, scope).await;
        self.segments_done.record(segments_ok, segments_input);
        self.failed = failures(&statuses);
        let first = self.resynced.is_none();
        if full {
            self.resynced = Some(Instant::now());
        }
        // Whether anything was done: a periodic resync that finds everything as it was is
        // quiet.
        let changed = match &synced {
            Some(log_) => !log_.done.is_empty(),
            None => !statuses.is_empty(),
        };
        if let Some(log_) = synced {
            let report = SyncReport {
                done: log_.done,
                foreign: log_.foreign,
                error: first_error(&statuses),
                quarantined: self.quarantined.clone(),
            };
            for asked in std::mem::take(&mut self.syncs) {
                ask::answer(&self.control, &asked, &Reply::Sync(report.clone())).await;
            }
        }
        (self.reporter)
            .report(
                &self.control,
                &o.host,
                revision,
                statuses,
                &mine,
                &self.quarantined,
            )
            .await;
        let took = started.elapsed().as_millis();
        let (routers, instances) = (mine.routers.len(), mine.instances.len());
        if first || changed {
            log::info!("revision {revision}: {routers} routers, {instances} instances converged in {took} ms");
        } else if full {
            log::debug!(
                "full resync: {routers} routers, {instances} instances checked in {took} ms"
            );
        }
        self.applied = mine;
        self.peers = peers;
        self.owner = owner;
    }

    /// Start the watch of etcd, once, from the revision after `revision`.
    fn watch_from(&mut self, revision: i64) -> anyhow::Result<()> {
        if !self.watching {
            let (wake, reach) = (self.wake.clone(), self.control.reach.clone());
            super::watch::start(&self.endpoints, &self.o.host, revision + 1, wake, reach)?;
            self.watching = true;
        }
        Ok(())
    }

    /// Say once what the store holds that this agent cannot trust, and again when it changes.
    fn note_quarantined(&mut self, now: Vec<Quarantined>) {
        for q in now.iter().filter(|q| !self.quarantined.contains(q)) {
            log::warn!("store: {q}; set aside, everything else goes on");
        }
        self.quarantined = now;
    }

    /// How long until the loop must look again by itself: the next full resync, sooner when
    /// something failed, or when a host that is gone would be confirmed dead.
    fn next_look(&self, hosts: &[crate::model::host::HostInfo]) -> Duration {
        let resync = (self.resynced).map_or(Duration::ZERO, |at| {
            self.o.resync_interval.saturating_sub(at.elapsed())
        });
        let mut at_most = match self.failed.is_empty() {
            true => resync,
            false => resync.min(RETRY),
        };
        if let Some(grace) = self.o.failover_grace {
            let unbroken = self.lease.unbroken_since();
            let now = Instant::now();
            let due = (self.deaths).next_due(hosts, &self.o.host, unbroken, grace, now);
            if let Some(due) = due {
                at_most = at_most.min(due + Duration::from_millis(100));
            }
        }
        at_most
    }

    /// Wait for a change (`at_most`), answering what is asked meanwhile; then take every
    /// wake-up that queued. A `sync`, or a device gone, makes the next pass start at once.
    async fn wait(&mut self, woken: &mut Receiver, at_most: Duration) {
        let deadline = tokio::time::Instant::now() + at_most;
        let mut draining = false;
        let ha_here = self.applied.routers.iter().any(|r| r.ha.is_some());
        let mut next_ha = tokio::time::Instant::now();
        loop {
            let until = match ha_here {
                true => deadline.min(next_ha),
                false => deadline,
            };
            let got = match draining {
                true => woken.try_recv().ok(),
                false => match tokio::time::timeout_at(until, woken.recv()).await {
                    Ok(w) => w,
                    Err(_) if until < deadline => {
                        draining = self.look_at_ha().await;
                        next_ha = tokio::time::Instant::now() + HA_LOOK;
                        continue;
                    }
                    Err(_) => None,
                },
            };
            let Some(w) = got else { return };
            match w {
                Wake::Changed => draining = true,
                Wake::Tap(name) => self.plug_workload(&name).await,
                Wake::Asked(ask) => match ask.request {
                    Request::Sync { dry_run: false } => {
                        self.syncs.push(ask);
                        draining = true;
                    }
                    _ => self.answer_now(&ask).await,
                },
                Wake::Released(object) => self.announce(&object).await,
                Wake::Gone(device) => {
                    let using = view::using(&self.applied, &device);
                    if !using.is_empty() {
                        log::info!("host: {device} went; repairing what used it");
                        self.repair.extend(using);
                        // Its VXLAN device or bridge: the VXLAN side is checked again too.
                        self.segments_done = SegmentsDone::default();
                        draining = true;
                    }
                }
            }
        }
    }

    /// Report what keepalived made of each HA router copy here; a copy whose keepalived
    /// is not running is repaired by the next pass (true: start it now).
    async fn look_at_ha(&mut self) -> bool {
        let (states, dead) = crate::reconcile::ha::states(&mut self.kernel, &self.applied).await;
        (self.reporter)
            .report_ha(&self.control, &self.o.host, states)
            .await;
        if dead.is_empty() {
            return false;
        }
        log::info!(
            "{} HA router copies without keepalived: repairing",
            dead.len()
        );
        self.repair.routers.extend(dead);
        true
    }

    /// Answer what needs no pass: `router show`, `sync --dry-run`, an instance's lease.
    async fn answer_now(&mut self, asked: &Ask) {
        let reply = match &asked.request {
            Request::RouterShow { router } => {
                ask::router_show(&mut self.kernel, &self.applied, &self.owner.id, router).await
            }
            Request::Sync { .. } => {
                let vx = (&self.o, self.mtu);
                let (k, view, owner) = (&mut self.kernel, &self.applied, &self.owner);
                let (_, mut done) = segments(k, view, &self.peers, vx, owner, true).await;
                let (_, log_) = full_sync(k, view, owner, true).await;
                done.extend(log_.done);
                Reply::Sync(SyncReport {
                    done,
                    foreign: log_.foreign,
                    error: None,
                    quarantined: self.quarantined.clone(),
                })
            }
            Request::InstanceLease { instance } => ask::instance_lease(instance),
        };
        ask::answer(&self.control, asked, &reply).await;
    }

    /// A tap that appeared on no bridge: if it is a workload's bound to this host (`port
    /// create --host`), plug it into its network's bridge now rather than at the next sync.
    async fn plug_workload(&mut self, tap: &str) {
        let host = self.o.host.as_str();
        let bound_here = |p: &&std::rc::Rc<crate::model::Port>| {
            p.role == crate::model::PortRole::Workload
                && p.host.as_deref() == Some(host)
                && crate::model::naming::port_tap(p) == tap
        };
        let Some(port) = self.applied.ports.iter().find(bound_here) else {
            return;
        };
        let Some(network) = self.applied.network_by_id(&port.network_id) else {
            return;
        };
        let mut log_ = self.owner.changes();
        let plugged = crate::reconcile::host::plug_workloads(
            &mut self.kernel,
            &self.applied,
            network,
            &mut log_,
        )
        .await;
        if let Err(e) = plugged {
            log::warn!("{tap}: {e:#}");
        }
        log_.done.iter().for_each(|l| log::info!("{l}"));
    }

    /// Another host released its copy of `object` (a router moved from there, and its agent,
    /// back, tore it down): if it runs here, announce it again, so the switches and bridges
    /// that learnt its MACs at the other copy come here.
    async fn announce(&mut self, object: &crate::model::protocol::ObjectRef) {
        if object.kind != Kind::Router {
            return;
        }
        let Some(router) = self.applied.router_by_id(&object.id) else {
            return;
        };
        match crate::reconcile::announce(&mut self.kernel, &self.applied, router).await {
            Ok(0) => {}
            Ok(n) => log::info!(
                "router {}: its other copy is gone; {n} addresses announced again",
                router.name
            ),
            Err(e) => log::warn!("router {}: {e:#}", router.name),
        }
    }
}

/// How soon what failed is tried again, if nothing wakes the agent before.
const RETRY: Duration = Duration::from_secs(5);
/// How often the HA state of the router copies here is read (keepalived changes it by
/// itself): one netlink dump of links and addresses per copy.
const HA_LOOK: Duration = Duration::from_secs(1);
