//! The part of the store a change to some routers reads, through the indexes on `network_id`,
//! `device_id` and `port_id`: tens of rows where the whole store holds thousands.
//!
//! What is read, and why it is enough for the router commands:
//! - each router named, and all its ports;
//! - every network such a router has an interface on, and every network or subnet the
//!   command names, *expanded*: with all its subnets, ports and floating IPs, so addresses are
//!   allocated and conflicts found against everything on it;
//! - each instance named (a floating IP's), and each floating IP named, with its port and that
//!   port's network expanded: the routers on it are found with their gateways, so the one
//!   serving the address is;
//! - objects of a kind with a given name, which a new object's name is checked against;
//! - for every object read, the objects it refers to: a port's network, subnets and owner
//!   (an instance, or a router with its gateway port), a floating IP's port, whose network is
//!   expanded too, so the router serving it is found as it would be in the whole store.
//!
//! A gateway port refers to a router that is not read: nothing on the external network needs
//! the routers there beyond their ports' addresses.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use anyhow::Context;
use rusqlite::Connection;
use serde::de::DeserializeOwned;

use crate::model::{FloatingIp, Instance, Network, Object, Port, PortRole, Router, State, Subnet};

/// The routers a command changes and the subnets and networks it attaches them to, by id.
#[derive(Debug, Default)]
pub struct Around {
    pub routers: Vec<String>,
    pub subnets: Vec<String>,
    pub networks: Vec<String>,
    /// Instances a floating IP is for: each with its port, whose network is expanded.
    pub instances: Vec<String>,
    /// Floating IPs a command changes: each with its port, whose network is expanded.
    pub floating_ips: Vec<String>,
    /// (kind, name): the objects a new one's name must not repeat.
    pub names: Vec<(&'static str, String)>,
}

/// What is read so far, each object with its rowid: the state keeps creation order.
#[derive(Default)]
struct Found {
    networks: Vec<(i64, Rc<Network>)>,
    subnets: Vec<(i64, Rc<Subnet>)>,
    routers: Vec<(i64, Rc<Router>)>,
    ports: Vec<(i64, Rc<Port>)>,
    instances: Vec<(i64, Rc<Instance>)>,
    floating_ips: Vec<(i64, Rc<FloatingIp>)>,
}

trait Stored: Object + DeserializeOwned {
    fn rows(found: &mut Found) -> &mut Vec<(i64, Rc<Self>)>;
}

macro_rules! stored {
    ($ty:ty, $field:ident) => {
        impl Stored for $ty {
            fn rows(found: &mut Found) -> &mut Vec<(i64, Rc<Self>)> {
                &mut found.$field
            }
        }
    };
}
stored!(Network, networks);
stored!(Subnet, subnets);
stored!(Router, routers);
stored!(Port, ports);
stored!(Instance, instances);
stored!(FloatingIp, floating_ips);

/// How rows are looked up; each query matches an index of the schema.
#[derive(Clone, Copy)]
enum By {
    Id,
    Name,
    Network,
    Device,
    Port,
}

impl By {
    fn sql(self) -> &'static str {
        match self {
            By::Id => "SELECT rowid, id, body FROM objects WHERE kind = ?1 AND id = ?2",
            By::Name => "SELECT rowid, id, body FROM objects WHERE kind = ?1 AND json_extract(body, '$.name') = ?2",
            By::Network => "SELECT rowid, id, body FROM objects WHERE kind = ?1 AND json_extract(body, '$.network_id') = ?2",
            By::Device => "SELECT rowid, id, body FROM objects WHERE kind = ?1 AND json_extract(body, '$.device_id') = ?2",
            By::Port => "SELECT rowid, id, body FROM objects WHERE kind = ?1 AND json_extract(body, '$.port_id') = ?2",
        }
    }
}

struct Loader<'c> {
    conn: &'c Connection,
    seen: HashSet<(&'static str, String)>,
    expanded: HashSet<String>,
    /// Every port read, by id: a floating IP's port may have been read before the floating IP.
    ports: HashMap<String, Rc<Port>>,
    found: Found,
}

pub fn load(conn: &Connection, around: &Around) -> anyhow::Result<State> {
    let mut l = Loader {
        conn,
        seen: HashSet::new(),
        expanded: HashSet::new(),
        ports: HashMap::new(),
        found: Found::default(),
    };
    // All the routers' own ports first: a router reached from another one's network would
    // otherwise count as read without its interfaces.
    let mut own = Vec::new();
    for id in &around.routers {
        l.get::<Router>(By::Id, id)?;
        own.extend(l.get::<Port>(By::Device, id)?);
    }
    for port in &own {
        l.follow_port(port)?;
        if port.role == PortRole::RouterInterface {
            l.network(&port.network_id, true)?;
        }
    }
    for id in &around.subnets {
        // The subnet may be read already, as a port's.
        l.subnet(id)?;
        let subnets = &l.found.subnets;
        if let Some((_, subnet)) = subnets.iter().find(|(_, s)| s.id == *id) {
            let network = subnet.network_id.clone();
            l.network(&network, true)?;
        }
    }
    for id in &around.networks {
        l.network(id, true)?;
    }
    for id in &around.floating_ips {
        for fip in l.get::<FloatingIp>(By::Id, id)? {
            l.follow_floating_ip(&fip)?;
        }
    }
    for id in &around.instances {
        for instance in l.get::<Instance>(By::Id, id)? {
            if let Some(port) = l.port(&instance.port_id)? {
                l.network(&port.network_id, true)?;
            }
        }
    }
    for (kind, name) in &around.names {
        match *kind {
            Network::KIND => drop(l.get::<Network>(By::Name, name)?),
            Subnet::KIND => {
                for subnet in l.get::<Subnet>(By::Name, name)? {
                    l.follow_subnet(&subnet)?;
                }
            }
            Router::KIND => {
                for router in l.get::<Router>(By::Name, name)? {
                    l.follow_router(&router)?;
                }
            }
            _ => unreachable!("only networks, subnets and routers are created by name here"),
        }
    }
    Ok(l.into_state())
}

impl Loader<'_> {
    /// The objects of kind T that `by` finds for `key` and that were not read yet.
    fn get<T: Stored>(&mut self, by: By, key: &str) -> anyhow::Result<Vec<Rc<T>>> {
        // Thousands of ports on an external network refer to the same few objects.
        if matches!(by, By::Id) && self.seen.contains(&(T::KIND, key.to_string())) {
            return Ok(vec![]);
        }
        let mut stmt = self.conn.prepare_cached(by.sql())?;
        let mut rows = stmt.query([T::KIND, key])?;
        let mut new = Vec::new();
        while let Some(row) = rows.next()? {
            let id: String = row.get(1)?;
            if !self.seen.insert((T::KIND, id.clone())) {
                continue;
            }
            let body = row.get_ref(2)?.as_str()?;
            let item: Rc<T> = Rc::new(
                serde_json::from_str(body)
                    .with_context(|| format!("store: {} {id} is corrupt", T::KIND))?,
            );
            T::rows(&mut self.found).push((row.get(0)?, item.clone()));
            new.push(item);
        }
        Ok(new)
    }

    fn network(&mut self, id: &str, expand: bool) -> anyhow::Result<()> {
        self.get::<Network>(By::Id, id)?;
        if !expand || !self.expanded.insert(id.to_string()) {
            return Ok(());
        }
        for subnet in self.get::<Subnet>(By::Network, id)? {
            self.follow_subnet(&subnet)?;
        }
        for port in self.get::<Port>(By::Network, id)? {
            self.follow_port(&port)?;
        }
        for fip in self.get::<FloatingIp>(By::Network, id)? {
            self.follow_floating_ip(&fip)?;
        }
        Ok(())
    }

    fn subnet(&mut self, id: &str) -> anyhow::Result<()> {
        for subnet in self.get::<Subnet>(By::Id, id)? {
            self.follow_subnet(&subnet)?;
        }
        Ok(())
    }

    fn follow_subnet(&mut self, subnet: &Subnet) -> anyhow::Result<()> {
        self.network(&subnet.network_id, false)
    }

    fn port(&mut self, id: &str) -> anyhow::Result<Option<Rc<Port>>> {
        for port in self.get::<Port>(By::Id, id)? {
            self.follow_port(&port)?;
        }
        Ok(self.ports.get(id).cloned())
    }

    fn follow_port(&mut self, port: &Rc<Port>) -> anyhow::Result<()> {
        self.ports.insert(port.id.clone(), port.clone());
        self.network(&port.network_id, false)?;
        for fixed in &port.fixed_ips {
            self.subnet(&fixed.subnet_id)?;
        }
        match port.role {
            PortRole::RouterInterface => {
                for router in self.get::<Router>(By::Id, &port.device_id)? {
                    self.follow_router(&router)?;
                }
            }
            PortRole::Instance => {
                for instance in self.get::<Instance>(By::Id, &port.device_id)? {
                    self.port(&instance.port_id)?;
                }
                for fip in self.get::<FloatingIp>(By::Port, &port.id)? {
                    self.follow_floating_ip(&fip)?;
                }
            }
            PortRole::Workload => {
                for fip in self.get::<FloatingIp>(By::Port, &port.id)? {
                    self.follow_floating_ip(&fip)?;
                }
            }
            PortRole::RouterGateway | PortRole::Dhcp => {}
        }
        Ok(())
    }

    /// A router that is not one the command changes: its gateway port, which the floating
    /// IPs it serves depend on.
    fn follow_router(&mut self, router: &Router) -> anyhow::Result<()> {
        if let Some(id) = &router.gateway_port_id {
            self.port(id)?;
        }
        Ok(())
    }

    fn follow_floating_ip(&mut self, fip: &FloatingIp) -> anyhow::Result<()> {
        self.network(&fip.network_id, false)?;
        self.subnet(&fip.subnet_id)?;
        if let Some(id) = &fip.port_id {
            if let Some(port) = self.port(id)? {
                self.network(&port.network_id, true)?;
            }
        }
        Ok(())
    }

    fn into_state(self) -> State {
        fn ordered<T>(mut rows: Vec<(i64, Rc<T>)>) -> Vec<Rc<T>> {
            rows.sort_unstable_by_key(|(rowid, _)| *rowid);
            rows.into_iter().map(|(_, item)| item).collect()
        }
        let f = self.found;
        State {
            networks: ordered(f.networks),
            subnets: ordered(f.subnets),
            routers: ordered(f.routers),
            ports: ordered(f.ports),
            instances: ordered(f.instances),
            floating_ips: ordered(f.floating_ips),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FixedIp;
    use crate::reconcile::router_plan;
    use crate::store::{Reads, Sqlite};

    /// ext_net with the routers' gateways, an upstream instance and floating IPs; r1 on a and
    /// b, with an instance on a that has a floating IP; r2 on c; r3 with no gateway, on d.
    fn world() -> State {
        let net = |id: &str, external| Network {
            id: id.into(),
            name: id.into(),
            external,
            bridge: format!("br-{id}"),
            owns_bridge: true,
            provider_interface: None,
            mtu: None,
            meta: Default::default(),
            vni: None,
        };
        let subnet = |id: &str, net: &str, cidr: &str| Subnet {
            id: id.into(),
            name: id.into(),
            network_id: net.into(),
            cidr: cidr.parse().unwrap(),
            gateway: None,
            pools: vec![],
            dhcp: Default::default(),
            meta: Default::default(),
        };
        let port = |id: &str, role, device: &str, subnet: &str, ip: &str| Port {
            id: id.into(),
            name: String::new(),
            network_id: format!("n{}", &subnet[1..]),
            role,
            device_id: device.into(),
            mac: "fa:16:3e:00:00:01".into(),
            host: None,
            fixed_ips: vec![FixedIp {
                subnet_id: subnet.into(),
                ip: ip.parse().unwrap(),
            }],
        };
        let router = |id: &str, gateway: Option<&str>| Router {
            id: id.into(),
            name: id.into(),
            gateway_port_id: gateway.map(Into::into),
            snat: true,
            routes: vec![],
            meta: Default::default(),
            host: None,
        };
        let fip = |id: &str, address: &str, port: Option<&str>| FloatingIp {
            id: id.into(),
            network_id: "next".into(),
            subnet_id: "sext".into(),
            address: address.parse().unwrap(),
            port_id: port.map(Into::into),
            router_id: None,
            meta: Default::default(),
        };
        use PortRole::*;
        State {
            networks: ["next", "na", "nb", "nc", "nd"]
                .map(|n| net(n, n == "next").into())
                .into(),
            subnets: vec![
                subnet("sext", "next", "10.10.0.0/16").into(),
                subnet("sa", "na", "172.16.1.0/24").into(),
                subnet("sb", "nb", "172.16.2.0/24").into(),
                subnet("sc", "nc", "172.16.3.0/24").into(),
                subnet("sd", "nd", "172.16.4.0/24").into(),
            ],
            routers: vec![
                router("r1", Some("p1g")).into(),
                router("r2", Some("p2g")).into(),
                router("r3", None).into(),
            ],
            ports: vec![
                port("pup", Instance, "up", "sext", "10.10.10.1").into(),
                port("p1g", RouterGateway, "r1", "sext", "10.10.10.2").into(),
                port("p1a", RouterInterface, "r1", "sa", "172.16.1.1").into(),
                port("p1b", RouterInterface, "r1", "sb", "172.16.2.1").into(),
                port("p2g", RouterGateway, "r2", "sext", "10.10.10.3").into(),
                port("p2c", RouterInterface, "r2", "sc", "172.16.3.1").into(),
                port("p3d", RouterInterface, "r3", "sd", "172.16.4.1").into(),
                port("pi1", Instance, "i1", "sa", "172.16.1.10").into(),
            ],
            instances: vec![
                crate::model::Instance {
                    id: "up".into(),
                    name: "up".into(),
                    port_id: "pup".into(),
                    dhcp: false,
                    host: None,
                }
                .into(),
                crate::model::Instance {
                    id: "i1".into(),
                    name: "i1".into(),
                    port_id: "pi1".into(),
                    dhcp: false,
                    host: None,
                }
                .into(),
            ],
            floating_ips: vec![
                fip("f1", "10.10.20.1", Some("pi1")).into(),
                fip("f2", "10.10.20.2", None).into(),
            ],
        }
    }

    fn ids<T: Object>(items: &[Rc<T>]) -> Vec<&str> {
        items.iter().map(|o| o.id()).collect()
    }

    /// `world()` in a new store in its own directory (`name`).
    fn stored_world(name: &str) -> (std::path::PathBuf, Sqlite, State) {
        let dir = std::env::temp_dir().join(format!("qrouter-{name}-{}", std::process::id()));
        let mut store = Sqlite::open(&dir).unwrap();
        let whole = world();
        let (txn, old) = store.begin().unwrap();
        txn.save(&old, &whole).unwrap();
        txn.commit(&Rc::new(whole.clone())).unwrap();
        (dir, store, whole)
    }

    fn read_state(store: &mut Sqlite, around: Around) -> State {
        (*store.load_only(&Reads::Around(around)).unwrap()).clone()
    }

    /// Router `id`'s plan, as text to compare.
    fn plan(state: &State, id: &str) -> String {
        format!("{:?}", router_plan(state, state.router_by_id(id).unwrap()))
    }

    #[test]
    fn a_router_is_read_with_what_its_commands_need_and_nothing_else() {
        let (dir, mut store, whole) = stored_world("around");
        let read = |store: &mut Sqlite, routers: &[&str], subnets: &[&str], networks: &[&str]| {
            let ids = |keys: &[&str]| keys.iter().map(|s| s.to_string()).collect();
            let around = Around {
                routers: ids(routers),
                subnets: ids(subnets),
                networks: ids(networks),
                ..Default::default()
            };
            read_state(store, around)
        };

        // Each router's plan, floating IPs included, is the one the whole store gives.
        for r in &whole.routers {
            let part = read(&mut store, &[&r.id], &[], &[]);
            assert_eq!(plan(&part, &r.id), plan(&whole, &r.id), "router {}", r.id);
            part.clone().settle_floating_ips().unwrap();
        }

        let r1 = read(&mut store, &["r1"], &[], &[]);
        assert_eq!(ids(&r1.routers), ["r1"]);
        assert_eq!(ids(&r1.networks), ["next", "na", "nb"]);
        assert_eq!(ids(&r1.ports), ["p1g", "p1a", "p1b", "pi1"]);
        assert_eq!(ids(&r1.instances), ["i1"]);
        assert_eq!(ids(&r1.floating_ips), ["f1"]);

        // Joining ext_net reads every address on it, and what serves its floating IPs.
        let r3 = read(&mut store, &["r3"], &[], &["next"]);
        assert_eq!(ids(&r3.routers), ["r1", "r3"]);
        assert_eq!(ids(&r3.ports), ["pup", "p1g", "p1a", "p2g", "p3d", "pi1"]);
        assert_eq!(ids(&r3.floating_ips), ["f1", "f2"]);
        assert_eq!(
            r3.used_addresses(r3.subnet("sext").unwrap()),
            whole.used_addresses(whole.subnet("sext").unwrap())
        );
        r3.clone().settle_floating_ips().unwrap();

        // Joining a subnet reads the ports on it and their owners.
        let r3c = read(&mut store, &["r3"], &["sc"], &[]);
        assert_eq!(ids(&r3c.routers), ["r2", "r3"]);
        assert_eq!(ids(&r3c.ports), ["p2g", "p2c", "p3d"]);

        // A subnet named is expanded even when a port of the router read it first.
        let r1ext = read(&mut store, &["r1"], &["sext"], &[]);
        assert_eq!(ids(&r1ext.ports)[..3], ["pup", "p1g", "p1a"]);
        assert!(ids(&r1ext.ports).contains(&"p2g"));

        // A name to check reads the objects of that name, and what they refer to.
        let around = Around {
            names: vec![(Router::KIND, "r2".into()), (Subnet::KIND, "sa".into())],
            ..Default::default()
        };
        let named = store.load_only(&Reads::Around(around)).unwrap();
        assert_eq!(ids(&named.routers), ["r2"]);
        assert_eq!(ids(&named.subnets), ["sext", "sa"]);
        assert_eq!(ids(&named.ports), ["p2g"]);
        assert_eq!(ids(&named.networks), ["next", "na"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_instance_is_read_with_the_router_that_serves_it() {
        let (dir, mut store, whole) = stored_world("around-instance");
        // First read: the instance, its network and ext_net; the serving router is found.
        let first = read_state(
            &mut store,
            Around {
                networks: vec!["next".into()],
                instances: vec!["i1".into()],
                ..Default::default()
            },
        );
        assert_eq!(first.router_for_floating_ip("next", "sa"), Some("r1"));
        assert_eq!(
            first.router_for_floating_ip("next", "sa"),
            whole.router_for_floating_ip("next", "sa")
        );
        // Then with that router whole: its plan, the addresses on ext_net and the floating IPs
        // already on the instance's port are those of the whole store.
        let part = read_state(
            &mut store,
            Around {
                routers: vec!["r1".into()],
                networks: vec!["next".into()],
                instances: vec!["i1".into()],
                ..Default::default()
            },
        );
        assert_eq!(plan(&part, "r1"), plan(&whole, "r1"));
        assert_eq!(
            part.used_addresses(part.subnet("sext").unwrap()),
            whole.used_addresses(whole.subnet("sext").unwrap())
        );
        let on_port = |s: &State| -> Vec<String> {
            s.floating_ips
                .iter()
                .filter(|f| f.port_id.as_deref() == Some("pi1"))
                .map(|f| f.id.clone())
                .collect()
        };
        assert_eq!(on_port(&part), on_port(&whole));
        part.clone().settle_floating_ips().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_floating_ip_is_read_with_the_router_that_serves_it() {
        let (dir, mut store, whole) = stored_world("around-fip");
        // First read: f1 and its port's network; the router serving it is found.
        let first = read_state(
            &mut store,
            Around {
                floating_ips: vec!["f1".into()],
                ..Default::default()
            },
        );
        assert_eq!(first.router_for_floating_ip("next", "sa"), Some("r1"));
        // Then with that router whole: with or without f1, its plan is the whole store's.
        let part = read_state(
            &mut store,
            Around {
                routers: vec!["r1".into()],
                floating_ips: vec!["f1".into()],
                ..Default::default()
            },
        );
        assert_eq!(plan(&part, "r1"), plan(&whole, "r1"));
        let without_f1 = |s: &State| {
            let mut s = s.clone();
            s.floating_ips.retain(|f| f.id != "f1");
            s
        };
        assert_eq!(
            plan(&without_f1(&part), "r1"),
            plan(&without_f1(&whole), "r1")
        );
        part.clone().settle_floating_ips().unwrap();
        // An unassociated one with the instance it is to go to: the same router is found.
        let set = read_state(
            &mut store,
            Around {
                floating_ips: vec!["f2".into()],
                instances: vec!["i1".into()],
                ..Default::default()
            },
        );
        assert_eq!(set.router_for_floating_ip("next", "sa"), Some("r1"));
        assert_eq!(ids(&set.floating_ips), ["f1", "f2"]);
        // An address is an exact key too.
        assert_eq!(
            store.floating_ip_id("10.10.20.1").unwrap().as_deref(),
            Some("f1")
        );
        assert_eq!(store.floating_ip_id("f2").unwrap().as_deref(), Some("f2"));
        assert_eq!(store.floating_ip_id("10.10.20").unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
