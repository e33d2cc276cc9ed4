//! With an etcd store, a change is applied by the agents of the hosts its objects are placed
//! on: the command waits until each such host's agent has converged a state at least as new
//! as the change (`/qrouter/applied/<host>`), then reports any object the agent could not
//! apply. A host that must run what the change made or changed, and is down or does not
//! apply it in time, is an error that names it (exit 1: the change is not live); the
//! desired state stays written, and the agent applies it when it comes back. A host down
//! that only has something to remove (a router moved away from it) is a warning: the
//! change is live where it runs. The hosts involved: those of the routers and instances
//! changed, and the host of the DHCP server of each network whose DHCP server's files or
//! arguments the change alters (leases, names, subnets).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::model::protocol::{Kind, ObjectRef};
use crate::model::{self, State};
use crate::reconcile::{dhcp, Touched};
use crate::store::{Store, Txn};

/// The hosts a change involves, each with the objects of it placed there (kind, id, name),
/// and the hosts whose agent held its lease when the change was read.
#[derive(Default)]
pub struct Involved {
    hosts: BTreeMap<String, BTreeSet<(Kind, String, String)>>,
    alive: BTreeSet<String>,
}

pub fn involved(txn: &Txn, old: &State, new: &State, touched: &Touched) -> Involved {
    let mut out = Involved::default();
    if txn.converges_here() {
        return out;
    }
    out.alive = (txn.hosts().iter())
        .filter(|h| h.alive)
        .map(|h| h.name.clone())
        .collect();
    // A host an object left (deleted, or moved away) only removes it: its entry holds nothing.
    for id in &touched.routers {
        for s in [old, new] {
            // An HA router's every copy.
            for h in s.router_by_id(id).map(|r| r.hosts()).unwrap_or_default() {
                let here = new.router_by_id(id).filter(|n| n.runs_on(h));
                let entry = out.hosts.entry(h.to_string()).or_default();
                if let Some(r) = here {
                    entry.insert((Kind::Router, id.clone(), r.name.clone()));
                }
            }
        }
    }
    // The DHCP server of each network whose files or arguments changed (not of every
    // network a router that moved is on: its DHCP server does not change with it).
    let files = |s: &State, id: &str| s.network_by_id(id).and_then(|n| dhcp::wanted(s, n));
    let changed = dhcp::affected(old, new, touched, false).into_iter();
    for id in changed.filter(|id| files(old, id) != files(new, id)) {
        for s in [old, new] {
            let Some(h) = model::dhcp::dhcp_port(s, &id).and_then(|p| p.host.clone()) else {
                continue;
            };
            let entry = out.hosts.entry(h).or_default();
            let served = model::dhcp::dhcp_port(new, &id).is_some();
            if let (true, Some(n)) = (served, new.network_by_id(&id)) {
                entry.insert((Kind::Network, id.clone(), n.name.clone()));
            }
        }
    }
    for id in &touched.instances {
        for s in [old, new] {
            if let Some(i) = s.instance_by_id(id) {
                if let Some(h) = &i.host {
                    let here = new
                        .instance_by_id(id)
                        .filter(|n| n.host.as_ref() == Some(h));
                    let entry = out.hosts.entry(h.clone()).or_default();
                    if let Some(i) = here {
                        entry.insert((Kind::Instance, id.clone(), i.name.clone()));
                    }
                }
            }
        }
    }
    out
}

pub fn wait(
    store: &mut Store,
    involved: &Involved,
    timeout: Option<Duration>,
) -> anyhow::Result<()> {
    let (Some(timeout), Some(etcd)) = (timeout, store.etcd()) else {
        return Ok(());
    };
    let revision = etcd.last_commit;
    if involved.hosts.is_empty() || revision == 0 {
        return Ok(());
    }
    let mut waiting = vec![];
    for (host, objects) in &involved.hosts {
        let down = !involved.alive.contains(host);
        if down && objects.is_empty() {
            // Only removals there (a router moved off a dead host): they wait for its agent,
            // whose sync at start removes what its part no longer has. The change is live
            // where it runs.
            log::warn!(
                "host {host} is down: what this change removed from it goes when its agent is back"
            );
        } else if down {
            anyhow::bail!(
                "host {host} is down (its agent's lease expired): the change is stored and \
                 will be applied when its agent is back"
            );
        } else {
            waiting.push(host.as_str());
        }
    }
    if let Some(host) = etcd.wait_applied(&waiting, revision, timeout)?.first() {
        anyhow::bail!(
            "host {host} did not apply the change within {} s: it is stored, and pending \
             there ('qrouter host show {host}')",
            timeout.as_secs()
        );
    }
    // What the agents reported of the objects, as they applied the change.
    for host in waiting {
        for (kind, id, name) in &involved.hosts[host] {
            let object = ObjectRef::new(*kind, id.clone());
            let (_, Some(s)) = etcd.reported(host, &object)? else {
                continue;
            };
            if s.is_error() {
                anyhow::bail!(
                    "{kind} {name} on host {host}: {}; the change is stored",
                    s.reason
                );
            }
        }
    }
    Ok(())
}
