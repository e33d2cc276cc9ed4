//! A host's part of the desired state: what its agent converges. Pure: no store, no kernel.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::rc::Rc;

use crate::model::host::Role;
use crate::model::{Object, Port, PortRole, State};
use crate::reconcile::{dhcp, instance_plan, router_plan, Touched};

/// The part of `state` that `host` runs in `role`: its routers and instances, their ports, the
/// networks and subnets these are on, and the floating IPs its routers serve (with the ports
/// behind them, which the router's NAT names). A network host also runs the DHCP server of
/// each network whose DHCP port is placed on it: that network and every port on it (the
/// static leases and DNS names). `vxlan_mtu`: the MTU of a VXLAN network's devices on this
/// host, where the network sets none.
pub fn of(state: &State, host: &str, role: Role, vxlan_mtu: Option<u32>) -> State {
    let mine = |h: &Option<String>| h.as_deref() == Some(host);
    let routers: Vec<_> = match role.routes() {
        true => state
            .routers
            .iter()
            .filter(|r| r.runs_on(host))
            .map(|r| match r.ha.is_some() {
                // In a host's part an HA router's host is this one: the copy it runs.
                true => {
                    let mut copy = (**r).clone();
                    copy.host = Some(host.to_string());
                    Rc::new(copy)
                }
                false => r.clone(),
            })
            .collect(),
        false => vec![],
    };
    let instances: Vec<_> = match role.computes() {
        true => state
            .instances
            .iter()
            .filter(|i| mine(&i.host))
            .cloned()
            .collect(),
        false => vec![],
    };
    let devices: HashSet<&str> = routers
        .iter()
        .map(|r| r.id.as_str())
        .chain(instances.iter().map(|i| i.id.as_str()))
        .collect();
    let floating_ips: Vec<_> = state
        .floating_ips
        .iter()
        .filter(|f| f.router_id.as_deref().is_some_and(|r| devices.contains(r)))
        .cloned()
        .collect();
    let behind: HashSet<&str> = floating_ips
        .iter()
        .filter_map(|f| f.port_id.as_deref())
        .collect();
    let dhcp: HashSet<&str> = match role.routes() {
        true => state
            .ports
            .iter()
            .filter(|p| p.role == PortRole::Dhcp && mine(&p.host))
            .map(|p| p.network_id.as_str())
            .collect(),
        false => HashSet::new(),
    };
    // Workload ports bound here (`port create --host`): their agent plugs the taps.
    let bound = |p: &Port| p.role == PortRole::Workload && mine(&p.host);
    let ports: Vec<_> = state
        .ports
        .iter()
        .filter(|p| {
            devices.contains(p.device_id.as_str())
                || behind.contains(p.id.as_str())
                || dhcp.contains(p.network_id.as_str())
                || bound(p)
        })
        .map(|p| named_for_dns(state, p, &devices))
        .collect();
    let mut nets: HashSet<&str> = ports
        .iter()
        .filter(|p| devices.contains(p.device_id.as_str()) || bound(p))
        .map(|p| p.network_id.as_str())
        .collect();
    nets.extend(dhcp.iter().copied());
    // The HA network, where a copy of an HA router runs: its `ha-` device is on it.
    if let Some(ha) = state
        .ha_network()
        .filter(|_| routers.iter().any(|r| r.ha.is_some()))
    {
        nets.insert(ha.id.as_str());
    }
    let networks = state
        .networks
        .iter()
        .filter(|n| nets.contains(n.id.as_str()))
        .map(|n| match (n.mtu, vxlan_mtu, n.segment()) {
            (None, Some(mtu), Some(_)) => {
                let mut n = (**n).clone();
                n.mtu = Some(mtu);
                Rc::new(n)
            }
            _ => n.clone(),
        })
        .collect();
    let subnets = state
        .subnets
        .iter()
        .filter(|s| nets.contains(s.network_id.as_str()))
        .cloned()
        .collect();
    State {
        positions: Default::default(),
        networks,
        subnets,
        routers,
        ports,
        instances,
        floating_ips,
    }
}

/// Keep in `now` (a state as read) what `before` (as read last) has of the objects `held`
/// names (set aside as the store was read: their keys failed their checks), as it was.
pub fn keep_held(now: &mut State, before: &State, held: &HashSet<String>) {
    fn keep<T: Object>(now: &mut Vec<Rc<T>>, was: &[Rc<T>], held: &HashSet<String>) {
        let here: HashSet<String> = now.iter().map(|o| o.id().to_string()).collect();
        let kept = (was.iter()).filter(|o| held.contains(o.id()) && !here.contains(o.id()));
        now.extend(kept.cloned());
    }
    if held.is_empty() {
        return;
    }
    keep(&mut now.networks, &before.networks, held);
    keep(&mut now.subnets, &before.subnets, held);
    keep(&mut now.routers, &before.routers, held);
    keep(&mut now.ports, &before.ports, held);
    keep(&mut now.instances, &before.instances, held);
    keep(&mut now.floating_ips, &before.floating_ips, held);
}

/// The ports of `view` (a host's part, from `of`) that are plugged on that host: its routers'
/// and instances' ports, its DHCP ports and the workload ports bound to it; not the ports it
/// only knows of (the other ports of a network whose DHCP server it runs, the ports behind
/// its floating IPs).
pub fn ports_here<'a>(view: &'a State, host: &'a str) -> impl Iterator<Item = &'a Rc<Port>> {
    let devices: HashSet<&str> = (view.routers.iter().map(|r| r.id.as_str()))
        .chain(view.instances.iter().map(|i| i.id.as_str()))
        .collect();
    view.ports.iter().filter(move |p| match p.role {
        PortRole::Dhcp | PortRole::Workload => p.host.as_deref() == Some(host),
        _ => devices.contains(p.device_id.as_str()),
    })
}

/// The port of an instance this host does not run enters the view as a named workload port:
/// dnsmasq here needs its name (the instance's, in DNS), and the instance itself is not this
/// host's to converge.
fn named_for_dns(state: &State, port: &Rc<Port>, devices: &HashSet<&str>) -> Rc<Port> {
    if port.role != PortRole::Instance || devices.contains(port.device_id.as_str()) {
        return port.clone();
    }
    let mut p = (**port).clone();
    p.role = PortRole::Workload;
    if let Some(i) = state.instance_by_id(&port.device_id) {
        p.name = i.name.clone();
    }
    Rc::new(p)
}

/// What differs between two views of one host: the objects whose kernel plan changed, and
/// the networks made, changed or gone, or whose DHCP server's files or arguments changed.
pub fn touched(old: &State, new: &State) -> Touched {
    let mut t = Touched::default();
    let ids = |a: &mut BTreeSet<String>, i: &mut dyn Iterator<Item = &String>| a.extend(i.cloned());
    let mut routers = BTreeSet::new();
    ids(&mut routers, &mut old.routers.iter().map(|r| &r.id));
    ids(&mut routers, &mut new.routers.iter().map(|r| &r.id));
    for id in routers {
        let plan = |s: &State| s.router_by_id(&id).map(|r| router_plan(s, r));
        if plan(old) != plan(new) {
            t.routers.insert(id);
        }
    }
    let mut instances = BTreeSet::new();
    ids(&mut instances, &mut old.instances.iter().map(|i| &i.id));
    ids(&mut instances, &mut new.instances.iter().map(|i| &i.id));
    for id in instances {
        let plan = |s: &State| s.instance_by_id(&id).map(|i| instance_plan(s, i));
        if plan(old) != plan(new) {
            t.instances.insert(id);
        }
    }
    let mut networks = BTreeSet::new();
    ids(&mut networks, &mut old.networks.iter().map(|n| &n.id));
    ids(&mut networks, &mut new.networks.iter().map(|n| &n.id));
    // A workload port that comes or changes has its tap plugged (or set up or down) with
    // its network, whose object and DHCP server may not change with it.
    let (was, is) = (workloads(old), workloads(new));
    for id in networks {
        let dhcp = |s: &State| s.network_by_id(&id).and_then(|n| dhcp::wanted(s, n));
        if old.network_by_id(&id) != new.network_by_id(&id)
            || dhcp(old) != dhcp(new)
            || was.get(&id) != is.get(&id)
        {
            t.networks.insert(id);
        }
    }
    t
}

/// The workload ports of each network, by network id.
fn workloads(s: &State) -> HashMap<&String, Vec<&Rc<Port>>> {
    let mut out: HashMap<&String, Vec<&Rc<Port>>> = HashMap::new();
    for p in s.ports.iter().filter(|p| p.role == PortRole::Workload) {
        out.entry(&p.network_id).or_default().push(p);
    }
    out
}

/// The objects of `view` (a host's part) that use the host device or namespace `gone` (the
/// host end of a port's veth, a network's bridge or VXLAN device, a router's, an
/// instance's or a DHCP server's namespace): what to repair when it goes.
pub fn using(view: &State, gone: &str) -> Touched {
    let mut t = Touched::default();
    let namespace = |prefix: &str| gone.strip_prefix(prefix).map(str::to_string);
    t.routers.extend(namespace("qrouter-"));
    t.instances.extend(namespace("qinstance-"));
    t.networks
        .extend(namespace("qdhcp-").filter(|n| dhcp_networks(view).any(|d| d == n)));
    let mut networks: BTreeSet<&str> = BTreeSet::new();
    for n in &view.networks {
        let vxlan = n
            .segment()
            .is_some_and(|vni| format!("vxlan-{vni}") == gone);
        if n.bridge == gone || vxlan {
            networks.insert(&n.id);
        }
    }
    for p in &view.ports {
        let on_lost_bridge = networks.contains(p.network_id.as_str());
        if !on_lost_bridge && crate::model::naming::port_tap(p) != gone {
            continue;
        }
        match p.role {
            PortRole::RouterInterface | PortRole::RouterGateway => {
                t.routers.insert(p.device_id.clone());
            }
            PortRole::Instance => {
                t.instances.insert(p.device_id.clone());
            }
            PortRole::Dhcp | PortRole::Workload => {
                t.networks.insert(p.network_id.clone());
            }
        }
    }
    t.routers.retain(|id| view.router_by_id(id).is_some());
    t.instances.retain(|id| view.instance_by_id(id).is_some());
    t.networks.extend(networks.into_iter().map(str::to_string));
    t
}

/// The networks whose DHCP server this view runs.
pub fn dhcp_networks(view: &State) -> impl Iterator<Item = &String> {
    view.ports
        .iter()
        .filter(|p| p.role == PortRole::Dhcp)
        .map(|p| &p.network_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Instance, Router};

    fn seed() -> State {
        let mut s = crate::ops::tests::seed_state();
        let r = Rc::make_mut(&mut s.routers[0]);
        r.host = Some("network1".into());
        let vm = Rc::make_mut(&mut s.instances[0]);
        vm.host = Some("compute1".into());
        s
    }

    fn names(s: &State) -> (Vec<&str>, Vec<&str>) {
        (
            s.routers
                .iter()
                .map(|r: &Rc<Router>| r.name.as_str())
                .collect(),
            s.instances
                .iter()
                .map(|i: &Rc<Instance>| i.name.as_str())
                .collect(),
        )
    }

    #[test]
    fn each_host_sees_its_own_part() {
        let s = seed();
        let net = of(&s, "network1", Role::Network, None);
        assert_eq!(names(&net), (vec!["router_100_101"], vec![]));
        // The router's three networks; its ports only.
        assert_eq!(net.networks.len(), 3);
        assert!(net.ports.iter().all(|p| p.device_id == net.routers[0].id));
        let compute = of(&s, "compute1", Role::Compute, None);
        assert_eq!(names(&compute).1, vec!["cirros-vm3"]);
        assert_eq!(compute.networks.len(), 1);
        // A compute host runs no router placed on it, a network host no instance.
        assert!(of(&s, "network1", Role::Compute, None).routers.is_empty());
        assert!(of(&s, "compute1", Role::Network, None).instances.is_empty());
        assert!(of(&s, "elsewhere", Role::All, None).networks.is_empty());
    }

    #[test]
    fn each_copy_of_an_ha_router_is_its_hosts_with_the_ha_network() {
        let mut s = seed();
        let copy = |host: &str| crate::model::ha::Copy {
            host: host.into(),
            address: "169.254.192.1".parse().unwrap(),
            mac: "fa:16:3e:00:00:09".into(),
        };
        let r = Rc::make_mut(&mut s.routers[0]);
        r.host = None;
        r.ha = Some(crate::model::ha::Ha {
            vrid: 1,
            wanted: 2,
            copies: vec![copy("network1"), copy("network2")],
        });
        let mut network = (*s.networks[0]).clone();
        (network.id, network.ha) = ("ha-net".into(), true);
        s.networks.push(Rc::new(network));
        let network = s.ha_network().unwrap().id.clone();
        for host in ["network1", "network2"] {
            let part = of(&s, host, Role::Network, None);
            assert_eq!(part.routers[0].host.as_deref(), Some(host), "the copy here");
            assert!(
                part.network_by_id(&network).is_some(),
                "the HA network on {host}"
            );
        }
        assert!(of(&s, "network3", Role::Network, None).routers.is_empty());
    }

    #[test]
    fn what_used_a_device_or_namespace_that_went_is_repaired() {
        let s = seed();
        let net = of(&s, "network1", Role::Network, None);
        let router = net.routers[0].id.clone();
        let gateway = net.port_by_id(net.routers[0].gateway_port_id.as_ref().unwrap());
        let tap = crate::model::naming::port_tap(gateway.unwrap());
        assert_eq!(using(&net, &tap).routers, [router.clone()].into());
        let ns = format!("qrouter-{router}");
        assert_eq!(using(&net, &ns).routers, [router.clone()].into());
        // A network's bridge: the network, and the router on it.
        let bridge = net.networks[0].bridge.clone();
        let t = using(&net, &bridge);
        assert!(t.networks.contains(&net.networks[0].id) && t.routers.contains(&router));
        // What is not this host's: nothing.
        assert!(using(&net, "qrouter-elsewhere").is_empty());
        assert!(using(&net, "tap0").is_empty());
    }

    #[test]
    fn what_was_set_aside_is_kept_as_it_was() {
        let before = seed();
        let mut now = before.clone();
        let router = now.routers.remove(0);
        let held = [router.id.clone()].into();
        keep_held(&mut now, &before, &held);
        assert_eq!(now.routers, [router]);
        // Only what is held comes back: a router deleted stays deleted.
        let mut now = before.clone();
        now.routers.clear();
        keep_held(&mut now, &before, &HashSet::new());
        assert!(now.routers.is_empty());
    }

    #[test]
    fn only_what_changed_is_touched() {
        let s = seed();
        let a = of(&s, "compute1", Role::Compute, None);
        assert!(touched(&a, &a).routers.is_empty() && touched(&a, &a).instances.is_empty());
        let mut moved = s.clone();
        Rc::make_mut(&mut moved.instances[0]).host = Some("compute2".into());
        let b = of(&moved, "compute1", Role::Compute, None);
        let t = touched(&a, &b);
        assert_eq!(t.instances.len(), 1);
        assert_eq!(t.networks.len(), 1, "its network leaves the host too");
        // The router's view does not change when the instance moves.
        let (r1, r2) = (
            of(&s, "network1", Role::Network, None),
            of(&moved, "network1", Role::Network, None),
        );
        assert!(touched(&r1, &r2).routers.is_empty());
    }

    #[test]
    fn a_network_host_runs_the_dhcp_servers_placed_on_it_with_every_port_named() {
        let mut s = seed();
        let vlan101 = s.network("vlan101").unwrap().id.clone();
        for p in s.ports.iter_mut().filter(|p| p.role == PortRole::Dhcp) {
            Rc::make_mut(p).host = Some("network2".into());
        }
        let net2 = of(&s, "network2", Role::Network, Some(1450));
        // Both tenant networks' DHCP servers, nothing else of the seed.
        assert!(net2.routers.is_empty() && net2.instances.is_empty());
        assert_eq!(dhcp_networks(&net2).count(), 2);
        assert!(net2.network_by_id(&vlan101).is_some());
        // cirros-vm3 runs on compute1: here its port only, named for DNS.
        let vm3 = net2
            .ports
            .iter()
            .find(|p| p.network_id == vlan101 && p.role == PortRole::Workload)
            .expect("cirros-vm3's port");
        assert_eq!(vm3.name, "cirros-vm3");
        // A compute host never runs one; the router's host no longer does.
        assert_eq!(
            dhcp_networks(&of(&s, "compute1", Role::All, None)).count(),
            0
        );
        assert_eq!(
            dhcp_networks(&of(&s, "network1", Role::All, None)).count(),
            0
        );
        // A new instance on vlan101 changes its leases: the network is touched there.
        let mut more = s.clone();
        let mut port = (*more.ports[more.ports.len() - 1]).clone();
        port.id = "p-new".into();
        port.network_id = vlan101.clone();
        port.fixed_ips[0].ip = "172.16.101.9".parse().unwrap();
        more.ports.push(Rc::new(port));
        let t = touched(&net2, &of(&more, "network2", Role::Network, Some(1450)));
        assert_eq!(t.networks.into_iter().collect::<Vec<_>>(), [vlan101]);
    }
}
