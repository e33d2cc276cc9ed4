//! What a trace reads of the store. A static trace walks a few networks and the routers
//! between them; with a thousand routers present, reading them all would be most of its time
//! (see bench/README.md). So it reads around its ends, then around what that reading shows,
//! until a round adds nothing, all in one read transaction:
//! - the network of each end (an instance, a floating IP, a subnet holding an address),
//!   expanded: its subnets, ports and floating IPs;
//! - each router with an interface on an expanded network, holding an address that is an
//!   end, or serving a floating IP of a port on an expanded network, whole: all its ports,
//!   whose networks are expanded in turn.
//!
//! A gateway port does not pull its router in: the external network holds every router's,
//! and the walk goes into a router only from a tenant network it is on, or through a
//! floating IP it serves. Where an end cannot be found exactly (a typo, an id prefix, a name
//! several objects share) the whole state is read, and the errors are the whole state's.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::rc::Rc;

use super::Session;
// The trace itself is computed from the state (explain/); the command line reaches it here.
pub use crate::explain::live::{render_text as render_live, Live};
pub use crate::explain::trace::{
    render_text, resolve, same_family, trace, Protocol, Request, Trace,
};
use crate::model::{FloatingIp, Instance, Network, Object, PortRole, State};
use crate::store::{Around, Store};

/// The state a trace between `src` and `dst` needs (as the command line names them).
pub fn load(
    session: &mut Session,
    src: &str,
    dst: &str,
    from_network: Option<&str>,
) -> anyhow::Result<Rc<State>> {
    if session.collecting() {
        return session.load();
    }
    load_from(&mut session.store, src, dst, from_network)
}

/// `trace --live`: the static path `traced` checked against this host's kernel (routes,
/// rules, a probe sent along it).
pub fn live(req: &Request, traced: &Trace) -> anyhow::Result<Live> {
    crate::kernel::preflight()?;
    crate::explain::live::check(req, traced)
}

fn load_from(
    store: &mut Store,
    src: &str,
    dst: &str,
    from_network: Option<&str>,
) -> anyhow::Result<Rc<State>> {
    if !store.reads_partly() {
        return store.load();
    }
    let Some(mut reach) = ends(store, &[src, dst], from_network)? else {
        return store.load();
    };
    let first = reach.around();
    store.load_growing(&first, &mut |state| {
        let next = reach.widened(state);
        let more = next.beyond(&reach);
        reach = next;
        (!more.is_empty()).then(|| more.around())
    })
}

/// What is read so far: networks expanded, routers whole, and the ends found by id.
#[derive(Clone, Default, PartialEq, Eq)]
struct Reach {
    networks: BTreeSet<String>,
    subnets: BTreeSet<String>,
    routers: BTreeSet<String>,
    instances: BTreeSet<String>,
    floating_ips: BTreeSet<String>,
    /// The ends given as addresses: a router holding one is where the walk starts or ends.
    addresses: BTreeSet<IpAddr>,
}

impl Reach {
    fn around(&self) -> Around {
        let ids = |set: &BTreeSet<String>| set.iter().cloned().collect();
        Around {
            routers: ids(&self.routers),
            subnets: ids(&self.subnets),
            networks: ids(&self.networks),
            instances: ids(&self.instances),
            floating_ips: ids(&self.floating_ips),
            ..Default::default()
        }
    }

    /// What this reach has that `before` had not.
    fn beyond(&self, before: &Reach) -> Reach {
        let new = |a: &BTreeSet<String>, b: &BTreeSet<String>| a.difference(b).cloned().collect();
        Reach {
            networks: new(&self.networks, &before.networks),
            subnets: new(&self.subnets, &before.subnets),
            routers: new(&self.routers, &before.routers),
            instances: new(&self.instances, &before.instances),
            floating_ips: new(&self.floating_ips, &before.floating_ips),
            addresses: BTreeSet::new(),
        }
    }

    fn is_empty(&self) -> bool {
        *self == Reach::default()
    }

    /// What the state read with this reach shows the walk may also need.
    fn widened(&self, state: &State) -> Reach {
        let mut next = self.clone();
        let mut expanded: BTreeSet<&str> = self.networks.iter().map(String::as_str).collect();
        for s in state
            .subnets
            .iter()
            .filter(|s| self.subnets.contains(&s.id))
        {
            expanded.insert(&s.network_id);
        }
        for i in state
            .instances
            .iter()
            .filter(|i| self.instances.contains(&i.id))
        {
            if let Some(p) = state.port_by_id(&i.port_id) {
                expanded.insert(&p.network_id);
            }
        }
        for f in &state.floating_ips {
            let port = f.port_id.as_deref().and_then(|p| state.port_by_id(p));
            let end = self.floating_ips.contains(&f.id);
            if let Some(p) = port.filter(|p| end || expanded.contains(p.network_id.as_str())) {
                next.networks.insert(p.network_id.clone());
                next.routers.extend(f.router_id.clone());
            }
        }
        for p in &state.ports {
            let on = expanded.contains(p.network_id.as_str());
            let holds_end = p.fixed_ips.iter().any(|f| self.addresses.contains(&f.ip));
            let router_port = matches!(p.role, PortRole::RouterInterface | PortRole::RouterGateway);
            if router_port && ((on && p.role == PortRole::RouterInterface) || holds_end) {
                next.routers.insert(p.device_id.clone());
            }
            // A whole router's ports, its gateway's among them, carry its id.
            if self.routers.contains(&p.device_id) {
                next.networks.insert(p.network_id.clone());
            }
        }
        next.networks.extend(expanded.into_iter().map(String::from));
        next
    }
}

/// The ends as the store finds them exactly, without loading the state; None where one is
/// not found so (then the whole state is read).
fn ends(store: &Store, keys: &[&str], from_network: Option<&str>) -> anyhow::Result<Option<Reach>> {
    let mut reach = Reach::default();
    if let Some(key) = from_network {
        let Some(id) = store.id_of(Network::KIND, key)? else {
            return Ok(None);
        };
        reach.networks.insert(id);
    }
    for key in keys {
        if let Ok(ip) = key.parse::<IpAddr>() {
            // An address in no subnet stands for the outside, which may come from any
            // external network: those are found in the whole state.
            let Some(subnets) = store.subnets_holding(ip)?.filter(|s| !s.is_empty()) else {
                return Ok(None);
            };
            reach.subnets.extend(subnets);
            reach.addresses.insert(ip);
            reach.floating_ips.extend(store.floating_ip_id(key)?);
        } else if let Some(id) = store.id_of(Instance::KIND, key)? {
            reach.instances.insert(id);
        } else if let Some(id) = store.id_of(FloatingIp::KIND, key)? {
            reach.floating_ips.insert(id);
        } else {
            // A port, or a key that names nothing exactly.
            return Ok(None);
        }
    }
    Ok(Some(reach))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::trace::{self, Protocol, Request};
    use crate::model::ExtraRoute;
    use crate::ops::tests::seed_state;
    use crate::ops::{floating_ip, instance, network, router, subnet};
    use crate::store::Sqlite;

    fn ok(r: anyhow::Result<super::super::Outcome>) {
        r.unwrap();
    }

    /// A tenant network with one subnet, an instance on it, and a router on it.
    fn tenant(s: &mut State, n: u8, router_name: &str, gateway: bool) {
        let net = format!("vlan1{n:02}");
        let req = network::Create {
            name: net.clone(),
            ..Default::default()
        };
        ok(network::create(s, &req, &Default::default()));
        let sub = subnet::Create {
            ip_version: None,
            ipv6_ra_mode: None,
            ipv6_address_mode: None,
            meta: Default::default(),
            name: net.clone(),
            network: net.clone(),
            cidr: format!("172.16.1{n:02}.0/24").parse().unwrap(),
            gateway: subnet::Gateway::Auto,
            pools: vec![],
            dhcp: None,
            dns_nameservers: vec![],
            host_routes: vec![],
        };
        ok(subnet::create(s, &sub));
        let create = router::Create {
            ha: None,
            meta: Default::default(),
            name: router_name.into(),
            gateway: None,
            snat: true,
            host: None,
        };
        ok(router::create(s, &create));
        ok(router::add_interface(s, router_name, &net));
        if gateway {
            let set = router::Set {
                router: router_name.into(),
                gateway: Some(router::Gateway {
                    network: "ext_net".into(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            ok(router::set(s, &set));
        }
        vm(s, &format!("vm{n}"), &net);
        s.settle_floating_ips().unwrap();
    }

    fn vm(s: &mut State, name: &str, net: &str) {
        let req = instance::Create {
            name: name.into(),
            network: net.into(),
            // The upstream gateway, as in the seed.
            fixed_ips: (name == "upstream")
                .then(|| "10.10.10.1".parse().unwrap())
                .into_iter()
                .collect(),
            dhcp: false,
            host: None,
        };
        ok(instance::create(s, &req));
    }

    fn fip(s: &mut State, address: &str, instance: &str) {
        let req = floating_ip::Create {
            meta: Default::default(),
            network: "ext_net".into(),
            subnet: None,
            address: Some(address.parse().unwrap()),
            target: Some(floating_ip::Target::Instance(instance.into())),
        };
        ok(floating_ip::create(s, &req));
        s.settle_floating_ips().unwrap();
    }

    /// The seed with an upstream host, vm100, floating IPs, a second router with a gateway,
    /// a third without one, an extra route, and twenty routers the traces do not cross.
    fn world() -> State {
        let mut s = seed_state();
        vm(&mut s, "upstream", "ext_net");
        vm(&mut s, "vm100", "vlan100");
        fip(&mut s, "10.10.10.3", "cirros-vm3");
        tenant(&mut s, 2, "router2", true);
        fip(&mut s, "10.10.10.50", "vm2");
        tenant(&mut s, 3, "router3", false);
        let route = ExtraRoute {
            destination: "192.168.50.0/24".parse().unwrap(),
            nexthop: s
                .port_by_id(&s.instance("vm100").unwrap().port_id)
                .unwrap()
                .fixed_ips[0]
                .ip,
        };
        ok(router::edit_routes(
            &mut s,
            "router_100_101",
            &[route],
            true,
        ));
        for n in 10..30 {
            tenant(&mut s, n, &format!("far{n}"), true);
        }
        s
    }

    /// The trace's text, or its error.
    fn traced(state: &State, src: &str, dst: &str) -> String {
        let req = || -> anyhow::Result<trace::Trace> {
            let req = Request {
                src: trace::resolve(state, "SRC", src, None)?,
                dst: trace::resolve(state, "DST", dst, None)?,
                from_network: None,
                protocol: Protocol::Icmp,
                port: None,
            };
            trace::trace(state, &req)
        };
        match req() {
            Ok(t) => trace::render_text(&t),
            Err(e) => format!("error: {e:#}"),
        }
    }

    #[test]
    fn a_trace_reads_little_and_walks_as_on_the_whole_state() {
        let whole = world();
        let dir = std::env::temp_dir().join(format!("qrouter-trace-reads-{}", std::process::id()));
        let mut sqlite = Sqlite::open(&dir).unwrap();
        let (txn, old) = sqlite.begin().unwrap();
        txn.save(&old, &whole).unwrap();
        txn.commit(&Rc::new(whole.clone())).unwrap();
        let mut store = Store::from(sqlite);
        let ends = [
            "cirros-vm3",
            "vm100",
            "vm2",
            "vm3",
            "upstream",
            "10.10.10.1",
            "10.10.10.2",
            "10.10.10.3",
            "10.10.10.50",
            "10.10.10.200",
            "172.16.100.1",
            "172.16.101.77",
            "172.16.103.1",
            "192.168.50.9",
            "8.8.8.8",
            "nothing",
        ];
        for src in ends {
            for dst in ends.iter().filter(|d| **d != src) {
                let read = load_from(&mut store, src, dst, None).unwrap();
                assert_eq!(
                    traced(&read, src, dst),
                    traced(&whole, src, dst),
                    "{src} -> {dst}"
                );
                // A key that names nothing, and an address in no subnet, read everything.
                let whole_read = ["nothing", "8.8.8.8", "192.168.50.9"];
                if !whole_read.contains(&src) && !whole_read.contains(dst) {
                    assert!(
                        read.routers.len() < 6,
                        "{src} -> {dst}: read {} routers",
                        read.routers.len()
                    );
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
