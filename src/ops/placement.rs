//! Placement with an etcd store: a router without `--host` goes to the live network host
//! running the fewest routers, an instance to the live compute host running the fewest
//! instances, a network's DHCP port (its dnsmasq) to the live network host serving the
//! fewest networks, as Neutron's DHCP agent scheduler does with one agent per network. With
//! no live host of the role, the object stays unplaced (nothing runs it) and a warning says
//! so; an agent that starts places what waits for its role (`place_unplaced`), and with
//! `--allow-automatic-failover` moves the routers and DHCP servers of a network host it
//! confirmed dead (Neutron's allow_automatic_l3agent_failover; `agent::liveness` says when
//! a host counts as dead: a lease that ended is not enough). A host named with
//! `--host` must be registered with the role. The embedded store places nothing:
//! everything runs on its one host.

use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use crate::bail_invalid;
use crate::model::host::HostInfo;
use crate::model::{PortRole, Router, State};
use crate::store::etcd::{keys, Etcd};
use crate::store::Txn;

mod copies;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Router,
    Instance,
    Dhcp,
    /// A port of a workload other software runs (`port create --host`).
    Workload,
}

/// In a change: check the hosts it names, and place what it made without one.
pub fn schedule(txn: &Txn, old: &State, new: &mut State) -> anyhow::Result<()> {
    let ha_due = |r: &&Rc<Router>| {
        r.ha.as_ref()
            .is_some_and(|h| h.copies.len() < h.wanted as usize)
    };
    if txn.converges_here() {
        if let Some(r) = new.routers.iter().find(|r| r.ha.is_some()) {
            bail_invalid!(
                "router {}: --ha needs several network hosts: an etcd store (--store \
                 etcd://...) with an agent on each; this store runs everything on this host",
                r.name
            );
        }
        return check_hosts(None, old, new);
    }
    if new.routers.iter().any(|r| ha_due(&r)) {
        // A router made HA by this change must get all its copies; one degraded before
        // takes what is free.
        let made_ha = |r: &Router| old.router_by_id(&r.id).is_none_or(|o| o.ha.is_none());
        for line in copies::place(txn.hosts(), new, &BTreeSet::new(), made_ha)? {
            log::info!("{line}");
        }
    }
    let new_router = |id: &str| old.router_by_id(id).is_none();
    let new_instance = |id: &str| old.instance_by_id(id).is_none();
    let unplaced_r = new
        .routers
        .iter()
        .any(|r| r.host.is_none() && r.ha.is_none() && new_router(&r.id));
    let unplaced_i = new
        .instances
        .iter()
        .any(|i| i.host.is_none() && new_instance(&i.id));
    let unplaced_d = new
        .ports
        .iter()
        .any(|p| p.role == PortRole::Dhcp && p.host.is_none());
    let named = named_hosts(old, new);
    if !unplaced_r && !unplaced_i && !unplaced_d && named.is_empty() {
        return Ok(());
    }
    let hosts = txn.hosts();
    check_hosts(Some(hosts), old, new)?;
    place(hosts, old, new);
    Ok(())
}

/// The routers, instances and workload ports whose host this change sets: (kind, name,
/// host). Runs on every change: linear in the objects (it was a lookup in `old` per object,
/// quadratic: 40% of a `batch` line with 700 routers present).
fn named_hosts<'a>(old: &State, new: &'a State) -> Vec<(Kind, &'a str, &'a str)> {
    // (kind, id, name, host) of every object of the new state that has a host.
    let mut placed: Vec<(Kind, &str, &str, &str)> = vec![];
    for r in &new.routers {
        if let Some(h) = &r.host {
            placed.push((Kind::Router, &r.id, &r.name, h));
        }
    }
    for i in &new.instances {
        if let Some(h) = &i.host {
            placed.push((Kind::Instance, &i.id, &i.name, h));
        }
    }
    for p in new.ports.iter().filter(|p| p.role == PortRole::Workload) {
        if let Some(h) = &p.host {
            placed.push((Kind::Workload, &p.id, &p.name, h));
        }
    }
    if placed.is_empty() {
        return vec![];
    }
    let mut was: HashMap<&str, &str> = HashMap::new();
    let routers = old.routers.iter().map(|r| (&r.id, &r.host));
    let instances = old.instances.iter().map(|i| (&i.id, &i.host));
    let ports = old.ports.iter().map(|p| (&p.id, &p.host));
    for (id, host) in routers.chain(instances).chain(ports) {
        if let Some(h) = host {
            was.insert(id, h);
        }
    }
    placed
        .into_iter()
        .filter(|(_, id, _, host)| was.get(id) != Some(host))
        .map(|(kind, _, name, host)| (kind, name, host))
        .collect()
}

/// A host named with `--host` must be registered, with a role that runs the object; a host
/// that is down is taken (the change waits for it, and fails naming it). With the embedded
/// store (`hosts` None) there are no hosts to name.
fn check_hosts(hosts: Option<&[HostInfo]>, old: &State, new: &State) -> anyhow::Result<()> {
    for (kind, name, host) in named_hosts(old, new) {
        let what = match kind {
            Kind::Router => "router",
            Kind::Workload => "port",
            _ => "instance",
        };
        let Some(hosts) = hosts else {
            bail_invalid!(
                "{what} {name}: --host {host}: hosts are an etcd store's (--store etcd://...); \
                 this store runs everything on this host"
            );
        };
        let Some(h) = hosts.iter().find(|h| h.name == host) else {
            bail_invalid!("{what} {name}: --host {host}: no such host (no agent registered it)");
        };
        match kind {
            Kind::Router if !h.role.routes() => bail_invalid!(
                "{what} {name}: --host {host}: a compute host runs no routers (its agent's --role)"
            ),
            Kind::Instance if !h.role.computes() => bail_invalid!(
                "{what} {name}: --host {host}: a network host runs no instances (its agent's --role)"
            ),
            _ => {}
        }
    }
    Ok(())
}

/// The placement in a change, on the hosts as read: what it made without a host, and any
/// DHCP port still without one.
pub fn place(hosts: &[HostInfo], old: &State, new: &mut State) {
    let (_, nowhere) = place_due(hosts, new, |kind, id, host| {
        host.is_none()
            && match kind {
                Kind::Router => old.router_by_id(id).is_none(),
                Kind::Instance => old.instance_by_id(id).is_none(),
                Kind::Dhcp => true,
                Kind::Workload => false,
            }
    });
    for (kind, id) in nowhere {
        match kind {
            Kind::Router => {
                let name = new
                    .router_by_id(&id)
                    .map_or(id.as_str(), |r| r.name.as_str());
                log::warn!(
                    "router {name}: no live network host; it runs nowhere until one starts (or router set --host)"
                )
            }
            Kind::Instance => {
                let name = new
                    .instance_by_id(&id)
                    .map_or(id.as_str(), |i| i.name.as_str());
                log::warn!(
                    "instance {name}: no live compute host; it runs nowhere until one starts"
                )
            }
            // Said once, when the port is made.
            Kind::Dhcp if old.port_by_id(&id).is_none() => {
                let network = new
                    .port_by_id(&id)
                    .and_then(|p| new.network_by_id(&p.network_id))
                    .map_or(id.as_str(), |n| n.name.as_str());
                log::warn!(
                    "network {network}: no live network host; its DHCP server runs nowhere until one starts"
                )
            }
            Kind::Dhcp | Kind::Workload => {}
        }
    }
}

/// Place each object `due(kind, id, its host)` names on the live host of its role running
/// the fewest of its kind (ties: by name). Returns what went where, as lines, and the
/// objects no host could take.
fn place_due(
    hosts: &[HostInfo],
    new: &mut State,
    due: impl Fn(Kind, &str, Option<&str>) -> bool,
) -> (Vec<String>, Vec<(Kind, String)>) {
    let (mut placed, mut nowhere) = (vec![], vec![]);
    let best = |fits: fn(&HostInfo) -> bool, load: &dyn Fn(&str) -> usize| {
        hosts
            .iter()
            .filter(|h| h.alive && fits(h))
            .min_by_key(|h| (load(&h.name), h.name.clone()))
            .map(|h| h.name.clone())
    };
    for i in 0..new.routers.len() {
        let r = &new.routers[i];
        if r.ha.is_some() || !due(Kind::Router, &r.id, r.host.as_deref()) {
            continue;
        }
        let load = |h: &str| {
            new.routers
                .iter()
                .filter(|r| r.host.as_deref() == Some(h))
                .count()
        };
        match best(|h| h.role.routes(), &load) {
            Some(h) => {
                placed.push(format!("router {} placed on {h}", r.name));
                Rc::make_mut(&mut new.routers[i]).host = Some(h);
            }
            None => nowhere.push((Kind::Router, r.id.clone())),
        }
    }
    for i in 0..new.instances.len() {
        let vm = &new.instances[i];
        if !due(Kind::Instance, &vm.id, vm.host.as_deref()) {
            continue;
        }
        let load = |h: &str| {
            new.instances
                .iter()
                .filter(|i| i.host.as_deref() == Some(h))
                .count()
        };
        match best(|h| h.role.computes(), &load) {
            Some(h) => {
                placed.push(format!("instance {} placed on {h}", vm.name));
                Rc::make_mut(&mut new.instances[i]).host = Some(h);
            }
            None => nowhere.push((Kind::Instance, vm.id.clone())),
        }
    }
    for i in 0..new.ports.len() {
        let p = &new.ports[i];
        if p.role != PortRole::Dhcp || !due(Kind::Dhcp, &p.id, p.host.as_deref()) {
            continue;
        }
        let load = |h: &str| {
            let dhcp = new.ports.iter().filter(|p| p.role == PortRole::Dhcp);
            dhcp.filter(|p| p.host.as_deref() == Some(h)).count()
        };
        match best(|h| h.role.routes(), &load) {
            Some(h) => {
                let network = new
                    .network_by_id(&p.network_id)
                    .map_or(p.network_id.clone(), |n| n.name.clone());
                placed.push(format!("network {network}: DHCP server placed on {h}"));
                Rc::make_mut(&mut new.ports[i]).host = Some(h);
            }
            None => nowhere.push((Kind::Dhcp, p.id.clone())),
        }
    }
    (placed, nowhere)
}

/// Whether `state` has something a live host could take: an object with no host, or a
/// router or DHCP server on a network host confirmed `dead`.
pub fn anything_due(state: &State, hosts: &[HostInfo], dead: &BTreeSet<String>) -> bool {
    let live = |fits: fn(&HostInfo) -> bool| hosts.iter().any(|h| h.alive && fits(h));
    let (routes, computes) = (live(|h| h.role.routes()), live(|h| h.role.computes()));
    let dead = dead_network_hosts(hosts, dead);
    let due = |h: &Option<String>| routes && h.as_deref().is_none_or(|h| dead.contains(h));
    state.routers.iter().any(|r| r.ha.is_none() && due(&r.host))
        || (state.routers.iter()).any(|r| copies::due(r, hosts, &dead))
        || (computes && state.instances.iter().any(|i| i.host.is_none()))
        || state
            .ports
            .iter()
            .any(|p| p.role == PortRole::Dhcp && due(&p.host))
}

/// The registered network hosts among `dead` whose lease is still gone.
fn dead_network_hosts<'a>(hosts: &'a [HostInfo], dead: &BTreeSet<String>) -> BTreeSet<&'a str> {
    let gone = hosts
        .iter()
        .filter(|h| !h.alive && h.role.routes() && dead.contains(&h.name));
    gone.map(|h| h.name.as_str()).collect()
}

/// Place every object with no host, and every router, HA router copy and DHCP port on a
/// network host confirmed `dead`; give the HA routers short of copies those a live host can
/// run. What went where, one line each.
fn place_waiting(
    hosts: &[HostInfo],
    new: &mut State,
    dead: &BTreeSet<String>,
) -> anyhow::Result<Vec<String>> {
    let dead = dead_network_hosts(hosts, dead);
    let (mut placed, _) = place_due(hosts, new, |kind, _, host| match (kind, host) {
        (_, None) => true,
        (Kind::Router | Kind::Dhcp, Some(h)) => dead.contains(h),
        (Kind::Instance | Kind::Workload, Some(_)) => false,
    });
    placed.extend(copies::place(hosts, new, &dead, |_| false)?);
    Ok(placed)
}

/// `host delete --force` of `host`: each HA router's copy there is placed again on a free
/// live network host, or goes (the router degraded). What changed, one line each.
pub fn replace_copies(
    hosts: &[HostInfo],
    new: &mut State,
    host: &str,
) -> anyhow::Result<Vec<String>> {
    copies::place(hosts, new, &BTreeSet::from([host]), |_| false)
}

/// Run by an agent: place every object that waits for a host, and move the routers and DHCP
/// servers of each network host it confirmed `dead` to the live ones; all in one
/// transaction, guarded by the revisions read and by each dead host's liveness key still
/// being absent (a host that came back meanwhile keeps its routers). What moved, one line
/// each.
pub fn place_unplaced(etcd: &mut Etcd, dead: &BTreeSet<String>) -> anyhow::Result<Vec<String>> {
    let (mut txn, old) = etcd.begin()?;
    let hosts = txn.hosts().to_vec();
    let mut new = (*old).clone();
    let placed = place_waiting(&hosts, &mut new, dead)?;
    if placed.is_empty() {
        return Ok(placed);
    }
    for h in dead_network_hosts(&hosts, dead) {
        txn.guard_absent(&keys::alive(h));
    }
    txn.save(&old, &new)?;
    txn.commit()?;
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::host::Role;

    use crate::model::fixtures::host;

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
    fn waiting_objects_are_placed_and_a_dead_hosts_routers_move_only_with_failover() {
        let mut state = crate::ops::tests::seed_state();
        Rc::make_mut(&mut state.routers[0]).host = Some("net1".into());
        Rc::make_mut(&mut state.instances[0]).host = Some("cmp1".into());
        let mut hosts = vec![
            host("net1", Role::Network, false),
            host("net2", Role::Network, true),
            host("cmp1", Role::Compute, false),
        ];
        // The DHCP ports wait for a host; the router's host is down, not confirmed dead.
        let (alive, dead) = (BTreeSet::new(), BTreeSet::from(["net1".to_string()]));
        assert!(anything_due(&state, &hosts, &alive));
        let mut new = state.clone();
        let placed = place_waiting(&hosts, &mut new, &alive).unwrap();
        assert_eq!(placed.len(), 2, "{placed:?}");
        assert_eq!(new.routers[0].host.as_deref(), Some("net1"), "only down");
        assert!(!anything_due(&new, &hosts, &alive));
        // Confirmed dead: the router leaves net1; an instance never moves.
        assert!(anything_due(&new, &hosts, &dead));
        let placed = place_waiting(&hosts, &mut new, &dead).unwrap();
        assert_eq!(placed, ["router router_100_101 placed on net2"]);
        assert_eq!(new.instances[0].host.as_deref(), Some("cmp1"));
        // A host confirmed dead whose lease is back keeps its routers.
        let mut back = hosts.clone();
        back[0].alive = true;
        let mut kept = state.clone();
        assert!(place_waiting(&back, &mut kept, &dead)
            .unwrap()
            .iter()
            .all(|p| !p.contains("router")));
        // Nothing is due where no live host could take it.
        hosts[1].alive = false;
        let mut waiting = state.clone();
        Rc::make_mut(&mut waiting.routers[0]).host = None;
        assert!(!anything_due(&waiting, &hosts, &dead));
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
