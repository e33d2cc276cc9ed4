//! The agent's loop: register the host under a lease, converge the host's part of the
//! desired state (a full sync first), report each object's status, then wait on a watch of
//! the desired state and converge what changed, again and again.
//!
//! The watch only wakes the loop: each pass reads the whole state at one revision and
//! converges the difference from what was last applied, so an event lost across a
//! reconnect, a compaction or a restart cannot leave the host behind (level-triggered, as
//! Kubernetes controllers are). The watch resumes from the revision after the last one it
//! delivered, so nothing is replayed either.
//!
//! Between passes it answers what is asked of it (`ask.rs`); before a pass it places what
//! waits for a host (`ops::placement`).

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::mpsc;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::ask::{self, Asked, Request};
use super::segments::{peers, segments, Peers};
use super::view::{self, Role};
use crate::etcd::{Client, Kv, Op};
use crate::kernel::{self, netns, vxlan, Kernel};
use crate::model::State;
use crate::ops::placement;
use crate::reconcile::{converge, remove_orphan_links, Changes, Touched};
use crate::store::etcd::{ALIVE, APPLIED, ASK, HOSTS, ROOT, STATE, STATUS};

pub struct Options {
    pub host: String,
    pub local_ip: Ipv4Addr,
    pub role: Role,
    /// Seconds without renewal after which the host counts as down.
    pub lease_ttl: i64,
    /// Move a dead network host's routers and DHCP servers to live ones.
    pub failover: bool,
}

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(super) fn log(msg: impl AsRef<str>) {
    eprintln!("qrouter agent: {}", msg.as_ref());
}

pub async fn run(spec: &str, o: Options) -> anyhow::Result<i32> {
    crate::model::validate::name("host", &o.host)?;
    kernel::preflight()?;
    let endpoints = spec.strip_prefix("etcd://").ok_or_else(|| {
        crate::error::invalid("qrouter agent needs --store etcd://HOST:PORT[,...]")
    })?;
    let mut store = super::host::join(endpoints, &o)?;
    let vxlan_mtu = vxlan::underlay_mtu(o.local_ip)
        .map(|m| m - vxlan::OVERHEAD)
        .map_err(|e| log(format!("{e:#}; VXLAN devices keep the kernel's MTU")))
        .ok();
    let (wake, woken) = mpsc::channel();
    let mut kernel = Kernel::connect()?;
    let taps = wake.clone();
    super::taps::watch(move |name| taps.send(Wake::Tap(name)).is_ok())?;
    let mut applied = State::default();
    let mut failed = Touched::default();
    let mut first = true;
    let mut segments_done = SegmentsDone::default();
    let mut watching = false;
    // `sync` requests: answered after the next pass, a full sync.
    let mut syncs: Vec<Asked> = vec![];
    loop {
        let (state, revision, hosts) = match store.load_with_hosts() {
            Ok(r) => r,
            Err(e) => {
                log(format!("{e:#}; retrying"));
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if store.id().is_empty() {
            // Until the first change makes the store's id, there is nothing to converge and
            // no mark to tell this store's objects by.
            if !watching {
                start_watch(endpoints, &o.host, revision + 1, wake.clone())?;
                watching = true;
            }
            let _ = woken.recv_timeout(Duration::from_secs(30));
            continue;
        }
        if placement::anything_due(&state, &hosts, o.failover) {
            // Placed in a change of its own; the state just read is then stale: read again
            // rather than converge it (an instance's DHCP client would look for a server
            // that is placed but not there yet).
            match placement::place_unplaced(&mut store, o.failover) {
                Ok(placed) if !placed.is_empty() => {
                    placed.iter().for_each(log);
                    continue;
                }
                Ok(_) => {}
                Err(e) => log(format!("placement: {e:#}")),
            }
        }
        let owner = store.id().to_string();
        let mine = view::of(&state, &o.host, o.role, vxlan_mtu);
        let started = std::time::Instant::now();
        let peers = peers(&state, &hosts, &o, &mine, vxlan_mtu);
        let full = first || !syncs.is_empty();
        let segments_input = SegmentsInput::of(&mine, &peers);
        let part = Part {
            mine: &mine,
            applied: &applied,
            peers: &peers,
            owner: &owner,
            mtu: vxlan_mtu,
            segments_due: full || !segments_done.is_current(&segments_input),
        };
        let retry = std::mem::take(&mut failed);
        let (statuses, synced, segments_ok) =
            converge_part(&mut kernel, &o, part, full, retry).await;
        segments_done.record(segments_ok, segments_input);
        failed = failures(&statuses);
        report(&mut store.client, &o.host, revision, &statuses);
        if first || !statuses.is_empty() {
            log(format!(
                "revision {revision}: {} routers, {} instances converged in {} ms",
                mine.routers.len(),
                mine.instances.len(),
                started.elapsed().as_millis()
            ));
        }
        if let Some(log_) = synced {
            let body =
                json!({"done": log_.done, "foreign": log_.foreign, "error": failed_any(&statuses)});
            syncs
                .drain(..)
                .for_each(|a| ask::answer(&mut store.client, &a, &body));
        }
        applied = mine;
        first = false;
        if !watching {
            start_watch(endpoints, &o.host, revision + 1, wake.clone())?;
            watching = true;
        }
        let mut asked = Answering {
            kernel: &mut kernel,
            client: &mut store.client,
            view: &applied,
            peers: &peers,
            o: &o,
            mtu: vxlan_mtu,
            owner: &owner,
        };
        // What failed is tried again soon, the rest checked every 30 s.
        let none_failed =
            failed.routers.is_empty() && failed.instances.is_empty() && failed.networks.is_empty();
        let at_most = match none_failed {
            true => Duration::from_secs(30),
            false => RETRY,
        };
        wait_for_change(&woken, &mut asked, &mut syncs, at_most).await;
    }
}

/// A host's part in one pass: as now, as last converged, and the VXLAN peers.
struct Part<'a> {
    mine: &'a State,
    applied: &'a State,
    peers: &'a Peers,
    owner: &'a str,
    mtu: Option<u32>,
    /// Whether the VXLAN side is converged in this pass (see `SegmentsDone`).
    segments_due: bool,
}

/// What the VXLAN side of a host is made from: each VXLAN network of its part (id, VNI,
/// bridge, MTU) and the peers (where each floods to, and the MACs of the ports on other
/// hosts), so a port coming or going elsewhere converges it.
#[derive(PartialEq)]
struct SegmentsInput(Vec<(String, u32, String, Option<u32>)>, Peers);

impl SegmentsInput {
    fn of(mine: &State, peers: &Peers) -> SegmentsInput {
        let networks = (mine.networks.iter())
            .filter_map(|n| Some((n.id.clone(), n.segment()?, n.bridge.clone(), n.mtu)))
            .collect();
        SegmentsInput(networks, peers.clone())
    }
}

/// When the VXLAN side was last converged without error, and from what. It is converged
/// again when what it is made from changed, after an error, and at the pass every 30 s that
/// nothing wakes (drift), not on every pass: its `bridge fdb show` alone was half of the 6 ms a pass took to add an
/// instance.
#[derive(Default)]
struct SegmentsDone(Option<(std::time::Instant, SegmentsInput)>);

impl SegmentsDone {
    fn is_current(&self, input: &SegmentsInput) -> bool {
        self.0.as_ref().is_some_and(|(at, done)| {
            // Less than the 30 s between passes nothing wakes: that pass does it.
            done == input && at.elapsed() < Duration::from_secs(20)
        })
    }

    fn record(&mut self, ok: Option<bool>, input: SegmentsInput) {
        match ok {
            Some(true) => self.0 = Some((std::time::Instant::now(), input)),
            Some(false) => self.0 = None,
            None => {}
        }
    }
}

/// One pass: the VXLAN devices first (an instance's DHCP client, run as it is converged,
/// reaches its network's dnsmasq on another host through them), then a full sync (`full`)
/// or the objects whose plan changed, with those that failed last time (`retry`). Each
/// object's status, for a full sync what it changed, and whether the VXLAN side was
/// converged without error (None: not in this pass).
async fn converge_part(
    k: &mut Kernel,
    o: &Options,
    part: Part<'_>,
    full: bool,
    retry: Touched,
) -> (Statuses, Option<Changes>, Option<bool>) {
    let vx = match part.segments_due {
        true => segments(k, part.mine, part.peers, (o, part.mtu), part.owner, false).await,
        false => (Ok(()), vec![]),
    };
    let segments_ok = part.segments_due.then_some(vx.0.is_ok());
    for line in &vx.1 {
        log(line);
    }
    let (mut statuses, synced) = match full {
        true => {
            let (statuses, mut log_) = full_sync(k, part.mine, part.owner, false).await;
            log_.done.splice(0..0, vx.1);
            (statuses, Some(log_))
        }
        false => {
            let mut touched = view::touched(part.applied, part.mine);
            touched.extend(retry);
            (
                pass(k, part.applied, part.mine, &touched, part.owner).await,
                None,
            )
        }
    };
    if let Err(e) = vx.0 {
        // A network's VXLAN device failing takes down what is on that network.
        for s in statuses.values_mut() {
            if s == "ACTIVE" {
                *s = format!("ERROR: {e:#}");
            }
        }
    }
    (statuses, synced, segments_ok)
}

/// What answers a request between passes.
struct Answering<'a> {
    kernel: &'a mut Kernel,
    client: &'a mut Client,
    /// The host's part as last converged, and its VXLAN peers then.
    view: &'a State,
    peers: &'a Peers,
    o: &'a Options,
    mtu: Option<u32>,
    owner: &'a str,
}

/// Wait for a change (`at_most`), answering what is asked meanwhile; then take every
/// wake-up that queued. A `sync` is kept in `syncs` for the next pass, which starts at once.
async fn wait_for_change(
    woken: &mpsc::Receiver<Wake>,
    a: &mut Answering<'_>,
    syncs: &mut Vec<Asked>,
    at_most: Duration,
) {
    let mut wait = Some(at_most);
    while let Some(w) = wait {
        let got = match w.is_zero() {
            true => woken.try_recv().ok(),
            false => woken.recv_timeout(w).ok(),
        };
        wait = match got {
            None => None,
            Some(Wake::Changed) => Some(Duration::ZERO),
            Some(Wake::Tap(name)) => {
                plug_workload(a, &name).await;
                Some(w)
            }
            Some(Wake::Asked(kv)) => {
                let Some(req) = ask::parse(&kv) else { continue };
                match req.request {
                    Request::Sync { dry_run: false } => syncs.push(req),
                    _ => answer_now(a, &req).await,
                }
                Some(match syncs.is_empty() {
                    true => w,
                    false => Duration::ZERO,
                })
            }
        };
    }
}

/// What wakes the loop: the desired state or the hosts changed, a request for this host, or
/// a tap that appeared on no bridge.
enum Wake {
    Changed,
    Asked(Kv),
    Tap(String),
}

/// Answer what needs no pass: `router show`, `sync --dry-run`, an instance's lease.
async fn answer_now(a: &mut Answering<'_>, req: &Asked) {
    let body = match &req.request {
        Request::RouterShow { router } => ask::router_show(a.kernel, a.view, a.owner, router).await,
        Request::Sync { .. } => {
            let vx = (a.o, a.mtu);
            let (_, mut done) = segments(a.kernel, a.view, a.peers, vx, a.owner, true).await;
            let (_, log_) = full_sync(a.kernel, a.view, a.owner, true).await;
            done.extend(log_.done);
            json!({"done": done, "foreign": log_.foreign})
        }
        Request::InstanceLease { instance } => ask::instance_lease(instance),
    };
    ask::answer(a.client, req, &body);
}

/// A tap that appeared on no bridge: if it is a workload's bound to this host (`port create
/// --host`), plug it into its network's bridge now rather than at the next full sync.
async fn plug_workload(a: &mut Answering<'_>, tap: &str) {
    let bound_here = |p: &&std::rc::Rc<crate::model::Port>| {
        p.role == crate::model::PortRole::Workload
            && p.host.as_deref() == Some(a.o.host.as_str())
            && crate::model::naming::port_tap(p) == tap
    };
    let Some(port) = a.view.ports.iter().find(bound_here) else {
        return;
    };
    let Some(network) = a.view.network_by_id(&port.network_id) else {
        return;
    };
    let mut log_ = Changes::new(a.owner);
    if let Err(e) =
        crate::reconcile::host::plug_workloads(a.kernel, a.view, network, &mut log_).await
    {
        log(format!("{tap}: {e:#}"));
    }
    log_.done.iter().for_each(log);
}

/// The first error among `statuses`, as the sync's.
fn failed_any(statuses: &Statuses) -> Option<String> {
    let mut errors: Vec<(&String, &String)> = statuses
        .iter()
        .filter(|(_, s)| s.starts_with("ERROR"))
        .collect();
    errors.sort();
    errors.first().map(|(k, s)| format!("{k}: {s}"))
}

/// How soon what failed is tried again, if nothing wakes the agent before.
const RETRY: Duration = Duration::from_secs(5);

/// Status of each object converged: "ACTIVE" or "ERROR: why", keyed `<kind>/<id>`.
type Statuses = HashMap<String, String>;

/// The objects whose status is an error.
fn failures(statuses: &Statuses) -> Touched {
    let mut t = Touched::default();
    let failed = statuses.iter().filter(|(_, s)| s.starts_with("ERROR"));
    for k in failed.map(|(k, _)| k) {
        match k.split_once('/') {
            Some(("router", id)) => t.routers.insert(id.to_string()),
            Some(("instance", id)) => t.instances.insert(id.to_string()),
            Some(("network", id)) => t.networks.insert(id.to_string()),
            _ => false,
        };
    }
    t
}

fn key(kind: &str, id: &str) -> String {
    format!("{kind}/{id}")
}

/// At start and when `sync` asks: everything of this host, read back from the kernel, and
/// the orphans this store made that nothing here explains any more (a router moved away
/// while the agent was down). With `dry_run`, only what differs, in the log.
async fn full_sync(
    k: &mut Kernel,
    mine: &State,
    owner: &str,
    dry_run: bool,
) -> (Statuses, Changes) {
    let mut touched = Touched {
        networks: mine.networks.iter().map(|n| n.id.clone()).collect(),
        routers: mine.routers.iter().map(|r| r.id.clone()).collect(),
        instances: mine.instances.iter().map(|i| i.id.clone()).collect(),
    };
    if let Ok(dir) = std::fs::read_dir(netns::NETNS_DIR) {
        for name in dir.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
            if let Some(id) = name.strip_prefix("qrouter-") {
                touched.routers.insert(id.to_string());
            } else if let Some(id) = name.strip_prefix("qinstance-") {
                touched.instances.insert(id.to_string());
            } else if let Some(id) = name.strip_prefix("qdhcp-") {
                touched.networks.insert(id.to_string());
            }
        }
    }
    let mut log_ = Changes::new(owner);
    (log_.check_drift, log_.dry_run) = (true, dry_run);
    let statuses = pass_with(k, mine, mine, &touched, &mut log_).await;
    if let Err(e) = remove_orphan_links(k, mine, &mut log_).await {
        log(format!("orphans: {e:#}"));
    }
    if !dry_run {
        log_.done.iter().for_each(log);
    }
    (statuses, log_)
}

async fn pass(
    k: &mut Kernel,
    old: &State,
    new: &State,
    touched: &Touched,
    owner: &str,
) -> Statuses {
    let mut log_ = Changes::new(owner);
    let statuses = pass_with(k, old, new, touched, &mut log_).await;
    log_.done.iter().for_each(log);
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
            s.insert(key("network", id), "ACTIVE".into());
        }
        for id in &touched.routers {
            if new.router_by_id(id).is_some() {
                s.insert(key("router", id), "ACTIVE".into());
            }
        }
        for id in &touched.instances {
            if new.instance_by_id(id).is_some() {
                s.insert(key("instance", id), "ACTIVE".into());
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
            log(format!("{e:#}; converging one object at a time"));
            let failed = log_.failed.take();
            let no_lease = e.downcast_ref::<crate::kernel::udhcpc::NoLease>().is_some();
            failed
                .filter(|_| no_lease)
                .map(|(kind, id)| (kind, id, format!("ERROR: {e:#}")))
        }
    };
    let one = |kind: &str, id: &String| {
        let mut t = Touched::default();
        match kind {
            "router" => t.routers.insert(id.clone()),
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
        Ok(()) => "ACTIVE".to_string(),
        Err(e) => {
            log(format!("{e:#}"));
            format!("ERROR: {e:#}")
        }
    };
    for id in &dhcp {
        statuses.insert(key("network", id), status.clone());
    }
    for (kind, ids) in [
        ("router", &touched.routers),
        ("instance", &touched.instances),
    ] {
        for id in ids {
            let present = match kind {
                "router" => new.router_by_id(id).is_some(),
                _ => new.instance_by_id(id).is_some(),
            };
            let status = match &failed {
                Some((at_kind, at_id, error)) if *at_kind == kind && at_id == id => error.clone(),
                _ => match converge(k, old, new, &one(kind, id), log_).await {
                    Ok(()) => "ACTIVE".to_string(),
                    Err(e) => format!("ERROR: {e:#}"),
                },
            };
            if present {
                statuses.insert(key(kind, id), status);
            }
        }
    }
    statuses
}

/// Write the status of each object converged in this pass, with the revision it was
/// converged at, and last (in the same transaction, for a pass of up to 100 objects) the
/// revision applied: the CLI takes it as "everything up to `revision` is applied here".
fn report(client: &mut Client, host: &str, revision: i64, statuses: &Statuses) {
    let mut ops: Vec<Op> = statuses
        .iter()
        .map(|(k, status)| {
            let (state, reason) = status.split_once(": ").unwrap_or((status.as_str(), ""));
            let body =
                json!({"status": state, "reason": reason, "revision": revision, "at": now()});
            Op::Put {
                key: format!("{STATUS}{host}/{k}"),
                value: body.to_string().into_bytes(),
                lease: 0,
            }
        })
        .collect();
    ops.push(Op::Put {
        key: format!("{APPLIED}{host}"),
        value: revision.to_string().into_bytes(),
        lease: 0,
    });
    for chunk in ops.chunks(100) {
        if let Err(e) = client.txn(&[], chunk) {
            log(format!("status: {e:#}"));
            return;
        }
    }
}

/// Watch the desired state and the hosts from `from`; wake the loop on each change, and
/// hand it each request for `host`. On a broken connection, resume from the revision after
/// the last one seen.
fn start_watch(
    endpoints: &str,
    host: &str,
    from: i64,
    wake: mpsc::Sender<Wake>,
) -> anyhow::Result<()> {
    let client = Client::new(endpoints)?;
    let asks = format!("{ASK}{host}/");
    std::thread::spawn(move || {
        let mut next = from;
        loop {
            let mut watch = match client.watch(ROOT, next) {
                Ok(w) => w,
                Err(e) => {
                    log(format!("watch: {e:#}; retrying"));
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            loop {
                match watch.recv() {
                    Ok(batch) => {
                        if batch.compacted > 0 {
                            // Events gone: resume at the current revision; the loop re-reads.
                            next = batch.compacted;
                            let _ = wake.send(Wake::Changed);
                            break;
                        }
                        for (deleted, kv) in &batch.events {
                            if !deleted && kv.key.starts_with(&asks) {
                                let _ = wake.send(Wake::Asked(kv.clone()));
                            }
                        }
                        if let Some((_, kv)) = batch.events.last() {
                            next = next.max(kv.mod_revision + 1);
                        }
                        let relevant = batch.events.iter().any(|(_, kv)| {
                            kv.key.starts_with(STATE)
                                || kv.key.starts_with(HOSTS)
                                || kv.key.starts_with(ALIVE)
                        });
                        if relevant && wake.send(Wake::Changed).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        log(format!("watch: {e:#}; resuming from revision {next}"));
                        // Whatever happened meanwhile is read again by the loop.
                        let _ = wake.send(Wake::Changed);
                        std::thread::sleep(Duration::from_millis(500));
                        break;
                    }
                }
            }
        }
    });
    Ok(())
}
