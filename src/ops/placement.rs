//! Placement with an etcd store: a router without `--host` goes to the live network host
//! running the fewest routers, an instance to the live compute host running the fewest
//! instances, a network's DHCP port (its dnsmasq) to the live network host serving the
//! fewest networks, as Neutron's DHCP agent scheduler does with one agent per network. With
//! no live host of the role, the object stays unplaced (nothing runs it) and a warning says
//! so. The embedded store places nothing: everything runs on its one host.

use std::rc::Rc;

use crate::model::{PortRole, State};
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
    let unplaced_d = new
        .ports
        .iter()
        .any(|p| p.role == PortRole::Dhcp && p.host.is_none());
    if !unplaced_r && !unplaced_i && !unplaced_d {
        return Ok(());
    }
    let hosts = etcd.hosts()?;
    place(&hosts, old, new);
    Ok(())
}

/// The placement itself, on the hosts as read.
pub fn place(hosts: &[HostInfo], old: &State, new: &mut State) {
    place_dhcp(hosts, old, new);
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

/// Each DHCP port with no host (new, or made while no network host was alive) to the live
/// network host serving the fewest networks' DHCP.
fn place_dhcp(hosts: &[HostInfo], old: &State, new: &mut State) {
    for i in 0..new.ports.len() {
        let p = &new.ports[i];
        if p.role != PortRole::Dhcp || p.host.is_some() {
            continue;
        }
        let count = |h: &HostInfo| {
            new.ports
                .iter()
                .filter(|p| p.role == PortRole::Dhcp && p.host.as_deref() == Some(&h.name))
                .count()
        };
        let best = hosts
            .iter()
            .filter(|h| h.alive && h.role.routes())
            .min_by_key(|h| (count(h), h.name.clone()));
        match best {
            Some(h) => Rc::make_mut(&mut new.ports[i]).host = Some(h.name.clone()),
            // Said once, when the port is made; it is placed by a later change or when a
            // network host's agent starts.
            None if old.port_by_id(&p.id).is_none() => {
                let network = new
                    .network_by_id(&p.network_id)
                    .map_or(p.network_id.as_str(), |n| n.name.as_str());
                diag::warn(format!(
                    "network {network}: no live network host; its DHCP server runs nowhere until one starts"
                ))
            }
            None => {}
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

    #[test]
    fn dhcp_ports_go_to_live_network_hosts_in_turn() {
        let mut new = crate::ops::tests::seed_state();
        let dhcp = |s: &State| -> Vec<Option<String>> {
            s.ports
                .iter()
                .filter(|p| p.role == PortRole::Dhcp)
                .map(|p| p.host.clone())
                .collect()
        };
        // The seed's two tenant subnets serve DHCP.
        assert_eq!(dhcp(&new), [None, None]);
        let old = new.clone();
        place(&[host("cmp1", Role::Compute, true)], &old, &mut new);
        assert_eq!(dhcp(&new), [None, None], "no network host: unplaced");
        let hosts = [
            host("net1", Role::Network, true),
            host("net2", Role::All, true),
            host("net3", Role::Network, false),
        ];
        place(&hosts, &old, &mut new);
        assert_eq!(dhcp(&new), [Some("net1".into()), Some("net2".into())]);
    }
}
