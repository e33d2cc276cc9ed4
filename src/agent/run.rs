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
//! A pass itself is in `pass.rs`. Between passes the agent answers what is asked of it
//! (`ask.rs`) and plugs workload taps as they appear (`taps.rs`); before a pass it places
//! what waits for a host (`ops::placement`).

use std::net::Ipv4Addr;
use std::sync::mpsc;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::ask::{self, Asked, Request};
use super::pass::{
    converge_part, failures, full_sync, report, Part, SegmentsDone, SegmentsInput, Statuses,
};
use super::segments::{peers, segments, Peers};
use super::view;
use crate::kernel::{self, vxlan, Kernel};
use crate::model::host::Role;
use crate::model::State;
use crate::ops::placement;
use crate::reconcile::{Changes, Touched};
use crate::store::etcd::client::{Client, Kv};
use crate::store::etcd::{ALIVE, ASK, HOSTS, ROOT, STATE};

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
    log::info!("{}", msg.as_ref());
}

pub async fn run(spec: &str, o: Options) -> anyhow::Result<i32> {
    crate::model::validate::name("host", &o.host)?;
    kernel::preflight()?;
    let endpoints = spec.strip_prefix("etcd://").ok_or_else(|| {
        crate::error::invalid("qrouter agent needs --store etcd://HOST:PORT[,...]")
    })?;
    let mut store = super::host::join(endpoints, &o)?;
    let mut kernel = Kernel::connect()?;
    let vxlan_mtu = vxlan::underlay_mtu(kernel.host(), o.local_ip)
        .await
        .map(|m| m - vxlan::OVERHEAD)
        .map_err(|e| log(format!("{e:#}; VXLAN devices keep the kernel's MTU")))
        .ok();
    let (wake, woken) = mpsc::channel();
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
