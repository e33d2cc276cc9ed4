//! What keepalived made of each HA router copy on this host: master while the copy holds
//! the primary VIP on its `ha-` device (what Neutron's keepalived-state-change watches: the
//! notify script's file can lag, and two quick transitions may finish out of order), else
//! backup, or fault as the notify script last said, or while keepalived is not running.
//! Each look also puts a VRRP process keepalived respawned back on SCHED_RR.

use std::collections::BTreeMap;

use crate::kernel::{addr, keepalived, link, netns, Kernel};
use crate::model::ha::{self, HaState};
use crate::model::{naming, State};

/// The HA state of each enabled HA router copy of `view` (a host's part), and the routers
/// whose keepalived or conntrackd is not running (drift: a pass starts it again).
pub async fn states(k: &mut Kernel, view: &State) -> (BTreeMap<String, HaState>, Vec<String>) {
    let mut states = BTreeMap::new();
    let mut dead = vec![];
    for r in view.routers.iter() {
        let Some(copy) = r.ha.as_ref().filter(|_| r.meta.admin_state_up) else {
            continue;
        };
        let ns = naming::router_namespace(&r.id);
        let seen = keepalived::observe(&r.id);
        if !netns::exists(&ns) || seen.pid.is_none() || seen.conntrackd.is_none() {
            states.insert(r.id.clone(), HaState::Fault);
            dead.push(r.id.clone());
            continue;
        }
        // A VRRP process keepalived respawned starts on CFS.
        keepalived::realtime(&r.id);
        let master = match holds_vip(k, &ns, &r.id, copy.vrid).await {
            Ok(held) => held,
            Err(e) => {
                log::debug!("router {}: {e:#}", r.name);
                false
            }
        };
        let state = match (master, keepalived::notified(&r.id)) {
            (true, _) => HaState::Master,
            (false, Some(HaState::Fault)) => HaState::Fault,
            (false, _) => HaState::Backup,
        };
        states.insert(r.id.clone(), state);
    }
    (states, dead)
}

/// Whether the copy in `ns` holds the primary VIP on its `ha-` device.
async fn holds_vip(k: &mut Kernel, ns: &str, id: &str, vrid: u8) -> anyhow::Result<bool> {
    let h = k.ns(ns)?;
    let device = ha::device(id);
    let Some(l) = link::list(&h).await?.into_iter().find(|l| l.name == device) else {
        return Ok(false);
    };
    let vip = ha::primary_vip(vrid);
    Ok(addr::list(&h)
        .await?
        .iter()
        .any(|a| a.link_index == l.index && a.net == ipnet::IpNet::V4(vip)))
}
