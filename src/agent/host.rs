//! A host's registration and liveness: `/qrouter/hosts/<host>` as its agent registered it,
//! and `/qrouter/alive/<host>` under a lease the agent renews, ended on SIGTERM/SIGINT.
//! Start is checked: the underlay address must be one of the host's own, and a host name
//! or an underlay address that a live agent holds is refused with the holder's details.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};

use super::control::Control;
use super::liveness::LeaseHealth;
use super::options::Options;
use crate::bail_invalid;
use crate::kernel::{identity, Kernel};
use crate::model::host::HostInfo;
use crate::model::protocol::{unix_now, Holder};
use crate::store::etcd::client::Client;
use crate::store::etcd::{keys, HostLease};

/// `--local-ip` must be an address of one of this host's interfaces: the source of its
/// VXLAN tunnels, which the other hosts send to. Exit 2 naming it otherwise.
pub async fn check_local_ip(k: &Kernel, o: &Options) -> anyhow::Result<()> {
    let ip = o.local_ip;
    if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
        bail_invalid!(
            "--local-ip {ip}: not an underlay address (other hosts cannot send to it); give \
             this host's address on the network between the hosts"
        );
    }
    if !identity::holds_address(k.host(), ip).await? {
        bail_invalid!(
            "--local-ip {ip}: no interface of this host has that address; give this host's \
             address on the network between the hosts ('ip -4 addr' lists them)"
        );
    }
    Ok(())
}

/// SIGTERM and SIGINT, blocked in this thread before any other starts (each inherits the
/// mask): `join` waits for them on a thread of its own, which ends the lease first.
pub fn block_stop_signals() -> anyhow::Result<SigSet> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None)?;
    Ok(signals)
}

/// Wait for etcd, check that no live agent holds this host's name or underlay address,
/// register the host, and start its lease; `signals` (SIGTERM, SIGINT) end the lease, so
/// the host shows as down at once rather than after the TTL.
pub async fn join(
    control: &Control,
    endpoints: &str,
    o: &Options,
    signals: SigSet,
) -> anyhow::Result<LeaseHealth> {
    let holder = Holder {
        pid: std::process::id(),
        identity: identity::here(),
        hostname: identity::hostname(),
        local_ip: o.local_ip,
        started: unix_now(),
    };
    // Opening asks etcd nothing: wait here until it answers (an agent may start before it).
    let (hosts, holders) = control.retry("start", |s| s.holders()).await;
    for HostLease {
        host: name,
        holder: held,
    } in holders
    {
        let Some(info) = hosts.iter().find(|h| h.name == name) else {
            continue;
        };
        let by = match &held {
            Some(h) => h.to_string(),
            None => "an agent of an older qrouter".to_string(),
        };
        if name == o.host {
            // This host's own agent, killed before its lease ended: this one takes its key
            // over (no moment without it); its lease ends by itself, holding nothing.
            let predecessor = held.as_ref().is_some_and(|h| {
                h.identity == holder.identity && !identity::same_program_runs(h.pid)
            });
            if !predecessor {
                bail_invalid!(
                    "--host {name}: a live agent holds it ({by}); stop that one first, or name \
                     this host otherwise"
                );
            }
            log::info!("host {name}: taking over from a previous agent here ({by})");
        } else if info.local_ip == o.local_ip {
            bail_invalid!(
                "--local-ip {}: host {name}'s live agent has that underlay address ({by}); \
                 two hosts cannot share one",
                o.local_ip
            );
        }
    }
    let info = HostInfo {
        name: o.host.clone(),
        role: o.role,
        local_ip: o.local_ip,
        started: unix_now(),
        alive: true,
        last_seen: unix_now(),
    };
    let registration = serde_json::to_vec(&info)?;
    let name = o.host.clone();
    control
        .call("start", move |s| {
            s.client.put(&keys::host(&name), &registration, 0).map(drop)
        })
        .await?;
    // SIGTERM/SIGINT wait for a thread of their own: it ends the lease, so the host shows
    // as down at once rather than after the lease's TTL, and exits.
    let health = LeaseHealth::default();
    let lease = start_lease(endpoints, o, holder, health.clone(), control)?;
    let stop_endpoints = endpoints.to_string();
    std::thread::spawn(move || {
        let signal = signals.wait();
        if let Ok(mut c) = Client::new(&stop_endpoints) {
            c.timeout = Duration::from_secs(2);
            let _ = c.revoke(lease.load(Ordering::Relaxed));
        }
        log::info!("{signal:?}: lease ended, stopping");
        std::process::exit(0);
    });
    Ok(health)
}

/// The host's liveness: `/qrouter/alive/<host>` (its holder) under a lease the agent renews
/// at a third of its TTL, on a thread of its own; a lease that expired meanwhile (etcd away
/// too long, or stalled) is replaced by a new one. `health` says since when it has been
/// renewed without a break.
fn start_lease(
    endpoints: &str,
    o: &Options,
    holder: Holder,
    health: LeaseHealth,
    control: &Control,
) -> anyhow::Result<Arc<AtomicI64>> {
    let mut client = Client::new(endpoints)?;
    client.timeout = Duration::from_secs(2);
    let ttl = o.lease_ttl;
    let (alive, seen) = (keys::alive(&o.host), keys::seen(&o.host));
    let body = serde_json::to_vec(&holder)?;
    let grant = move |c: &mut Client| -> anyhow::Result<i64> {
        let lease = c.grant(ttl)?;
        c.put(&alive, &body, lease)?;
        Ok(lease)
    };
    let current = Arc::new(AtomicI64::new(grant(&mut client)?));
    health.renewed();
    let shared = current.clone();
    let reach = control.reach.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis((ttl as u64 * 1000 / 3).max(200)));
        let lease = shared.load(Ordering::Relaxed);
        let renewed = match client.keepalive(lease) {
            Ok(0) => {
                // It ended meanwhile: the host showed as down for a while.
                health.broken();
                grant(&mut client).map(|l| shared.store(l, Ordering::Relaxed))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        match renewed {
            Ok(()) => {
                reach.answered();
                health.renewed();
                let _ = client.put(&seen, unix_now().to_string().as_bytes(), 0);
            }
            Err(e) => {
                health.broken();
                reach.failed("lease", &e);
            }
        }
    });
    Ok(current)
}
