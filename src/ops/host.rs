//! `host delete`: the operator removes a host from an etcd store. It is what makes the
//! other hosts forget it: its VXLAN flood and l2population entries go from their devices
//! (a host whose agent merely stopped keeps them, as its data plane still forwards). A host
//! whose agent holds its lease is refused (stop the agent first); so is one that objects
//! are placed on, unless `force`: they are then unplaced, and the live hosts' agents place
//! the routers and DHCP servers again (an instance waits for a compute host to be placed
//! on, by `instance set --host` or when one starts); an HA router's copy there is placed
//! again on another live network host at once, or goes and leaves the router degraded.

use std::collections::HashMap;
use std::rc::Rc;

use super::Session;
use crate::bail_invalid;
use crate::model::host::HostInfo;
use crate::model::protocol::{AgentReport, ObjectRef, Quarantined, Status};
use crate::model::{PortRole, State};
use crate::store::etcd::Etcd;

/// The state, the hosts, and what the reads set aside (the state's keys and the hosts').
pub fn hosts(
    session: &mut Session,
) -> anyhow::Result<(Rc<State>, Vec<HostInfo>, Vec<Quarantined>)> {
    let state = session.load()?;
    let etcd = etcd(session)?;
    let mut quarantined = etcd.quarantined.clone();
    let hosts = etcd.hosts()?;
    quarantined.extend(etcd.quarantined.iter().cloned());
    Ok((state, hosts, quarantined))
}

/// What `host`'s agent reported: each object's status, and its report of itself.
pub fn reports(
    session: &mut Session,
    host: &str,
) -> anyhow::Result<(HashMap<ObjectRef, Status>, AgentReport)> {
    let etcd = etcd(session)?;
    let statuses = etcd.statuses(host)?;
    Ok((statuses, etcd.agent_report(host)?.unwrap_or_default()))
}

/// The etcd store whose hosts a command reads.
fn etcd(session: &mut Session) -> anyhow::Result<&mut Etcd> {
    match session.store.etcd() {
        Some(etcd) => Ok(etcd),
        None => {
            bail_invalid!("hosts are an etcd store's (--store etcd://...); this store is one host")
        }
    }
}

/// Remove host `name`; with `force`, unplace what is placed there (an HA router's copy
/// there is placed again on another network host, or goes). What changed, one line each.
pub fn delete(session: &mut Session, name: &str, force: bool) -> anyhow::Result<Vec<String>> {
    let Some(etcd) = session.store.etcd() else {
        bail_invalid!(
            "host {name}: hosts are an etcd store's (--store etcd://...); this store is one host"
        );
    };
    let (mut txn, old) = etcd.begin()?;
    let Some(host) = txn.hosts().iter().find(|h| h.name == name).cloned() else {
        bail_invalid!("host {name}: no such host (no agent registered it)");
    };
    if host.alive {
        bail_invalid!(
            "host {name}: its agent is running (it holds its lease); stop it first, then delete the host"
        );
    }
    let mut new = (*old).clone();
    let unplaced = unplace(&mut new, name);
    let copies = (new.routers.iter())
        .filter(|r| r.copy_on(name).is_some())
        .map(|r| format!("the HA copy of router {}", r.name));
    let here: Vec<String> = unplaced.iter().cloned().chain(copies).collect();
    if !here.is_empty() && !force {
        bail_invalid!(
            "host {name}: {} placed there; move or delete them first, or give --force to \
             unplace them (the live network hosts take the routers and DHCP servers)",
            here.join(", ")
        );
    }
    let mut said: Vec<String> = (unplaced.iter())
        .map(|what| format!("{what}: unplaced from host {name}"))
        .collect();
    said.extend(super::placement::replace_copies(
        txn.hosts(),
        &mut new,
        name,
    )?);
    txn.save(&old, &new)?;
    txn.forget_host(name);
    txn.commit()?;
    Ok(said)
}

/// Take every object placed on `host` off it: (what, one each).
fn unplace(state: &mut State, host: &str) -> Vec<String> {
    let on = |h: &Option<String>| h.as_deref() == Some(host);
    let mut out = vec![];
    for r in state.routers.iter_mut().filter(|r| on(&r.host)) {
        out.push(format!("router {}", r.name));
        std::rc::Rc::make_mut(r).host = None;
    }
    for i in state.instances.iter_mut().filter(|i| on(&i.host)) {
        out.push(format!("instance {}", i.name));
        std::rc::Rc::make_mut(i).host = None;
    }
    let networks: Vec<(String, String)> = (state.networks.iter())
        .map(|n| (n.id.clone(), n.name.clone()))
        .collect();
    for p in state.ports.iter_mut().filter(|p| on(&p.host)) {
        let network = networks.iter().find(|(id, _)| *id == p.network_id);
        let network = network.map_or(p.network_id.as_str(), |(_, n)| n.as_str());
        out.push(match p.role {
            PortRole::Dhcp => format!("the DHCP server of network {network}"),
            _ => format!("port {}", p.display_name()),
        });
        std::rc::Rc::make_mut(p).host = None;
    }
    out
}
