//! A host's registration and liveness: `/qrouter/hosts/<host>` as its agent registered it,
//! and `/qrouter/alive/<host>` under a lease the agent renews, ended on SIGTERM/SIGINT.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};

use super::run::{log, now, Options};
use crate::model::host::HostInfo;
use crate::store::etcd::client::Client;
use crate::store::etcd::{Etcd, ALIVE, HOSTS, SEEN};

/// Open the store (waiting for etcd), register the host, and start its lease; SIGTERM and
/// SIGINT end the lease, so the host shows as down at once rather than after the TTL.
pub fn join(endpoints: &str, o: &Options) -> anyhow::Result<Etcd> {
    let mut store = Etcd::open(endpoints, true)?;
    // Opening asks etcd nothing: wait here until it answers (an agent may start before it).
    while let Err(e) = store.exists() {
        log(format!("{e:#}; retrying"));
        std::thread::sleep(Duration::from_secs(1));
    }
    let info = HostInfo {
        name: o.host.clone(),
        role: o.role,
        local_ip: o.local_ip,
        started: now(),
        alive: true,
        last_seen: now(),
    };
    register(&mut store.client, &info)?;
    // SIGTERM/SIGINT wait for a thread of their own (blocked here, before any thread starts,
    // so every thread inherits the mask): it ends the lease, so the host shows as down at
    // once rather than after the lease's TTL, and exits.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None)?;
    let lease = start_lease(endpoints, &info, o.lease_ttl)?;
    let stop_endpoints = endpoints.to_string();
    std::thread::spawn(move || {
        let signal = signals.wait();
        if let Ok(mut c) = Client::new(&stop_endpoints) {
            c.timeout = Duration::from_secs(2);
            let _ = c.revoke(lease.load(Ordering::Relaxed));
        }
        log(format!("{signal:?}: lease ended, stopping"));
        std::process::exit(0);
    });
    Ok(store)
}

fn register(client: &mut Client, info: &HostInfo) -> anyhow::Result<()> {
    let body = serde_json::to_vec(info)?;
    client.put(&format!("{HOSTS}{}", info.name), &body, 0)?;
    Ok(())
}

/// The host's liveness: `/qrouter/alive/<host>` under a lease the agent renews at a third of
/// its TTL, on a thread of its own; a lease that expired meanwhile (etcd away too long) is
/// replaced by a new one.
fn start_lease(endpoints: &str, info: &HostInfo, ttl: i64) -> anyhow::Result<Arc<AtomicI64>> {
    let mut client = Client::new(endpoints)?;
    client.timeout = Duration::from_secs(2);
    let name = info.name.clone();
    let alive = format!("{ALIVE}{name}");
    let seen = format!("{SEEN}{name}");
    let grant = move |c: &mut Client| -> anyhow::Result<i64> {
        let lease = c.grant(ttl)?;
        c.put(&alive, std::process::id().to_string().as_bytes(), lease)?;
        Ok(lease)
    };
    let current = Arc::new(AtomicI64::new(grant(&mut client)?));
    let shared = current.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis((ttl as u64 * 1000 / 3).max(200)));
        let lease = shared.load(Ordering::Relaxed);
        let renewed = match client.keepalive(lease) {
            Ok(0) => grant(&mut client).map(|l| shared.store(l, Ordering::Relaxed)),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        match renewed {
            Ok(()) => {
                let _ = client.put(&seen, now().to_string().as_bytes(), 0);
            }
            Err(e) => log(format!("lease: {e:#}")),
        }
    });
    Ok(current)
}
