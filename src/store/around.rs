//! The part of the store a change to some routers reads, through the indexes on `network_id`,
//! `device_id` and `port_id`: tens of rows where the whole store holds thousands.
//!
//! What is read, and why it is enough for the router commands:
//! - each router named, and all its ports, and all the subnets of its gateway's network
//!   (on-link routes);
//! - every network such a router has an interface on, and every network or subnet the
//!   command names, *expanded*: with all its subnets, ports and floating IPs, so addresses are
//!   allocated and conflicts found against everything on it;
//! - each instance named (a floating IP's), and each floating IP named, with its port and that
//!   port's network expanded: the routers on it are found with their gateways, so the one
//!   serving the address is;
//! - objects of a kind with a given name or id, which a new object's name is checked
//!   against;
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
    /// Networks, expanded, whose routers (a port on it) are read whole too: a new subnet on
    /// an external network is a route in every router with its gateway there.
    pub routers_on: Vec<String>,
}

impl Around {
    /// Whether router `id` was read whole (with all its ports) into `state`, or is not in it.
    pub fn reads_whole(&self, state: &State, id: &str) -> bool {
        self.routers.iter().any(|r| r == id)
            || state.router_by_id(id).is_none()
            || state.ports.iter().any(|p| {
                p.device_id == id && is_router_port(p) && self.routers_on.contains(&p.network_id)
            })
    }
}

fn is_router_port(port: &Port) -> bool {
    matches!(
        port.role,
        PortRole::RouterGateway | PortRole::RouterInterface
    )
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
    let mut l = Loader::new(conn);
    l.read(around)?;
    Ok(l.state())
}

/// `load` of `first`, then of what `more` asks after seeing each state read so far, until it
/// asks nothing: one read transaction, and nothing read twice.
pub fn load_growing(
    conn: &Connection,
    first: &Around,
    more: &mut dyn FnMut(&State) -> Option<Around>,
) -> anyhow::Result<State> {
    let mut l = Loader::new(conn);
    l.read(first)?;
    loop {
        let state = l.state();
        match more(&state) {
            Some(around) => l.read(&around)?,
            None => return Ok(state),
        }
    }
}

impl<'c> Loader<'c> {
    fn new(conn: &'c Connection) -> Self {
        Loader {
            conn,
            seen: HashSet::new(),
            expanded: HashSet::new(),
            ports: HashMap::new(),
            found: Found::default(),
        }
    }
}

impl Loader<'_> {
    fn read(&mut self, around: &Around) -> anyhow::Result<()> {
        let l = self;
        // All the routers' own ports first: a router reached from another one's network would
        // otherwise count as read without its interfaces.
        let mut routers = around.routers.clone();
        for id in &around.routers_on {
            l.network(id, true)?;
            let on = l.found.ports.iter().map(|(_, p)| p);
            let on = on.filter(|p| p.network_id == *id && is_router_port(p));
            routers.extend(on.map(|p| p.device_id.clone()));
        }
        let mut own = Vec::new();
        for id in &routers {
            l.get::<Router>(By::Id, id)?;
            own.extend(l.get::<Port>(By::Device, id)?);
        }
        for port in &own {
            l.follow_port(port)?;
            match port.role {
                PortRole::RouterInterface => l.network(&port.network_id, true)?,
                // The external network's other subnets are on-link routes of the router.
                PortRole::RouterGateway => {
                    for subnet in l.get::<Subnet>(By::Network, &port.network_id)? {
                        l.follow_subnet(&subnet)?;
                    }
                }
                _ => {}
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
        // A new name is checked against the names and the ids of its kind: a name that is
        // another object's id would be ambiguous.
        for (kind, name) in &around.names {
            for by in [By::Name, By::Id] {
                match *kind {
                    Network::KIND => drop(l.get::<Network>(by, name)?),
                    Subnet::KIND => {
                        for subnet in l.get::<Subnet>(by, name)? {
                            l.follow_subnet(&subnet)?;
                        }
                    }
                    Router::KIND => {
                        for router in l.get::<Router>(by, name)? {
                            l.follow_router(&router)?;
                        }
                    }
                    _ => {
                        unreachable!("only networks, subnets and routers are created by name here")
                    }
                }
            }
        }
        Ok(())
    }
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

    /// What is read so far, in creation order.
    fn state(&self) -> State {
        fn ordered<T>(rows: &[(i64, Rc<T>)]) -> Vec<Rc<T>> {
            let mut rows = rows.to_vec();
            rows.sort_unstable_by_key(|(rowid, _)| *rowid);
            rows.into_iter().map(|(_, item)| item).collect()
        }
        let f = &self.found;
        State {
            positions: Default::default(),
            networks: ordered(&f.networks),
            subnets: ordered(&f.subnets),
            routers: ordered(&f.routers),
            ports: ordered(&f.ports),
            instances: ordered(&f.instances),
            floating_ips: ordered(&f.floating_ips),
        }
    }
}

#[cfg(test)]
#[path = "around_tests.rs"]
mod tests;
