//! Placement with an etcd store: a router without `--host` goes to the live network host
//! running the fewest routers, an instance to the live compute host running the fewest
//! instances. With no live host of the role, the object stays unplaced (nothing runs it) and
//! a warning says so. The embedded store places nothing: everything runs on its one host.

use std::rc::Rc;

use crate::model::State;
use crate::output::diag;
use crate::store::etcd::HostInfo;
use crate::store::Txn;

pub fn schedule(txn: &mut Txn, old: &State, new: &mut State) -> anyhow::Result<()> {
    let Some(etcd) = txn.etcd() else {
        return Ok(());
    };
    let new_router = |id: &str| old.router_by_id(id).is_none();
    let new_instance = |id: &str| old.instance_by_id(id).is_none();
    let unplaced_r = new
        .routers
        .iter()
        .any(|r| r.host.is_none() && new_router(&r.id));
    let unplaced_i = new
        .instances
        .iter()
        .any(|i| i.host.is_none() && new_instance(&i.id));
    if !unplaced_r && !unplaced_i {
        return Ok(());
    }
    let hosts = etcd.hosts()?;
    place(&hosts, old, new);
    Ok(())
}

/// The placement itself, on the hosts as read.
pub fn place(hosts: &[HostInfo], old: &State, new: &mut State) {
    for i in 0..new.routers.len() {
        if new.routers[i].host.is_some() || old.router_by_id(&new.routers[i].id).is_some() {
            continue;
        }
        let count = |h: &HostInfo| {
            new.routers
                .iter()
                .filter(|r| r.host.as_deref() == Some(&h.name))
                .count()
        };
        let best = hosts
            .iter()
            .filter(|h| h.alive && h.role.routes())
            .min_by_key(|h| (count(h), h.name.clone()));
        match best {
            Some(h) => Rc::make_mut(&mut new.routers[i]).host = Some(h.name.clone()),
            None => diag::warn(format!(
                "router {}: no live network host; it runs nowhere until placed (router create --host)",
                new.routers[i].name
            )),
        }
    }
    for i in 0..new.instances.len() {
        if new.instances[i].host.is_some() || old.instance_by_id(&new.instances[i].id).is_some() {
            continue;
        }
        let count = |h: &HostInfo| {
            new.instances
                .iter()
                .filter(|r| r.host.as_deref() == Some(&h.name))
                .count()
        };
        let best = hosts
            .iter()
            .filter(|h| h.alive && h.role.computes())
            .min_by_key(|h| (count(h), h.name.clone()));
        match best {
            Some(h) => Rc::make_mut(&mut new.instances[i]).host = Some(h.name.clone()),
            None => diag::warn(format!(
                "instance {}: no live compute host; it runs nowhere until placed (instance create --host)",
                new.instances[i].name
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::Role;

    fn host(name: &str, role: Role, alive: bool) -> HostInfo {
        HostInfo {
            name: name.into(),
            role,
            local_ip: [10, 0, 0, 1].into(),
            started: 0,
            alive,
            last_seen: 0,
        }
    }

    #[test]
    fn a_new_router_goes_to_the_live_network_host_with_fewest_routers() {
        let old = State::default();
        let mut new = crate::ops::tests::seed_state();
        let mut second = (*new.routers[0]).clone();
        second.id = "r2".into();
        Rc::make_mut(&mut new.routers[0]).host = Some("net1".into());
        new.routers.push(Rc::new(second));
        Rc::make_mut(&mut new.instances[0]).host = None;
        let hosts = [
            host("net1", Role::Network, true),
            host("net2", Role::Network, true),
            host("net3", Role::Network, false),
            host("cmp1", Role::Compute, true),
        ];
        place(&hosts, &old, &mut new);
        assert_eq!(new.routers[1].host.as_deref(), Some("net2"));
        assert_eq!(new.instances[0].host.as_deref(), Some("cmp1"));
    }
}
