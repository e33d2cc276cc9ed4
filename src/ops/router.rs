//! Router operations: create, set and unset the gateway, extra routes, delete; its interfaces
//! on internal subnets are `router/interface.rs`.

use std::net::IpAddr;
use std::rc::Rc;

use super::{MetaEdit, Outcome};
use crate::bail_invalid;
use crate::model::rules::Inbound;
use crate::model::{
    check_new_name, naming, new_id, validate, ExtraRoute, Meta, Network, Object, PortRequest,
    PortRole, Router, State, Subnet,
};
use crate::reconcile::Touched;
use crate::store::{Around, Reads, Store};

mod ha;
mod interface;
pub use interface::{
    add_interface, add_port, check_add_interface, check_remove_interface, remove_interface,
    remove_port,
};

/// The external gateway asked for: a network, and optionally the subnet and address.
#[derive(Debug, Default)]
pub struct Gateway {
    pub network: String,
    pub subnet: Option<String>,
    pub ip: Option<IpAddr>,
}

/// `router create`.
#[derive(Debug)]
pub struct Create {
    pub name: String,
    pub gateway: Option<Gateway>,
    pub snat: bool,
    /// Description, tags, admin state.
    pub meta: Meta,
    /// The network host to run it on (etcd store); else scheduled.
    pub host: Option<String>,
    /// `--ha`: how many copies (`--ha-hosts`, default 2), on as many network hosts.
    pub ha: Option<u8>,
}

/// `router set`: each field that is given changes.
#[derive(Debug, Default)]
pub struct Set {
    pub router: String,
    pub gateway: Option<Gateway>,
    pub snat: Option<bool>,
    pub name: Option<String>,
    pub meta: MetaEdit,
    /// `--no-route`: the extra routes are cleared before `add_routes` are added.
    pub clear_routes: bool,
    /// `--route`: extra routes to add.
    pub add_routes: Vec<ExtraRoute>,
    /// `--host`: move it to this network host (etcd store).
    pub host: Option<String>,
    /// `--no-allow-inbound`: the IPv6 openings are cleared before `add_inbound` are added.
    pub clear_inbound: bool,
    /// `--allow-inbound`: IPv6 openings in the inbound protection to add.
    pub add_inbound: Vec<Inbound>,
    /// `--ha` (with `--ha-hosts`, else 2 copies) or `--no-ha`: only on a disabled router.
    pub ha: Option<Option<u8>>,
}

/// `router unset`: each field that is given is removed.
#[derive(Debug, Default)]
pub struct Unset {
    pub router: String,
    pub external_gateway: bool,
    /// Extra routes to remove; one the router does not have is no error.
    pub routes: Vec<ExtraRoute>,
    /// IPv6 openings to close; one the router does not have is no error.
    pub inbound: Vec<Inbound>,
    pub meta: MetaEdit,
}

/// What a command on `routers`, attaching `subnets` or `networks`, reads: their surroundings
/// (see `store::Around`) where every key names exactly one object, else the whole store,
/// against which an id prefix resolves or a typo gets its suggestion.
pub fn reads(
    store: &Store,
    routers: &[&str],
    subnets: &[&str],
    networks: &[&str],
) -> anyhow::Result<Reads<'static>> {
    let ids = |kind: &str, keys: &[&str]| -> anyhow::Result<Option<Vec<String>>> {
        let found: Vec<Option<String>> = keys
            .iter()
            .map(|key| store.id_of(kind, key))
            .collect::<anyhow::Result<_>>()?;
        Ok(found.into_iter().collect())
    };
    let (Some(routers), Some(subnets), Some(networks)) = (
        ids(Router::KIND, routers)?,
        ids(Subnet::KIND, subnets)?,
        ids(Network::KIND, networks)?,
    ) else {
        return Ok(Reads::All);
    };
    Ok(Reads::Around(Around {
        routers,
        subnets,
        networks,
        ..Default::default()
    }))
}

fn touched(router_id: &str, state: &State) -> Touched {
    let router = state.router_by_id(router_id);
    Touched {
        networks: router
            .map(|r| {
                state
                    .router_ports(r)
                    .map(|p| p.network_id.clone())
                    .collect()
            })
            .unwrap_or_default(),
        routers: [router_id.to_string()].into(),
        ..Default::default()
    }
}

/// What creating a router reads: without a gateway, only a router of the same name can
/// conflict with a new one.
pub fn reads_for_create(req: &Create) -> Reads<'static> {
    // An HA router's VRID, addresses and network are unique among all of the store's.
    match (&req.gateway, req.ha) {
        (None, None) => Reads::Around(Around {
            names: vec![(Router::KIND, req.name.clone())],
            ..Default::default()
        }),
        _ => Reads::All,
    }
}

pub fn create(state: &mut State, req: &Create) -> anyhow::Result<Outcome> {
    let name = req.name.as_str();
    check_new_name(&state.routers, name, None)?;
    let id = new_id();
    state.routers.push(Rc::new(Router {
        id: id.clone(),
        name: name.to_string(),
        gateway_port_id: None,
        snat: req.snat,
        routes: vec![],
        inbound: vec![],
        meta: req.meta.clone(),
        host: req.host.clone(),
        ha: None,
    }));
    if let Some(gateway) = &req.gateway {
        set_gateway(state, &id, gateway)?;
    }
    let mut t = touched(&id, state);
    if let Some(copies) = req.ha {
        if req.host.is_some() {
            bail_invalid!(
                "router {name}: --host and --ha: an HA router runs on --ha-hosts network hosts \
                 that qrouter chooses"
            );
        }
        t.extend(ha::make_ha(state, &id, Some(copies))?);
    }
    Ok(Outcome::new(t, &id))
}

pub fn set(state: &mut State, req: &Set) -> anyhow::Result<Outcome> {
    let router = state.router(&req.router)?.clone();
    let mut before = touched(&router.id, state);
    if let Some(gateway) = &req.gateway {
        set_gateway(state, &router.id, gateway)?;
    }
    let r = state.router_mut(&router.id);
    if let Some(snat) = req.snat {
        r.snat = snat;
    }
    if let Some(new_name) = req.name.as_deref() {
        check_new_name(&state.routers, new_name, Some(&router))?;
        state.router_mut(&router.id).name = new_name.to_string();
    }
    if req.clear_routes || !req.add_routes.is_empty() {
        if req.clear_routes {
            state.router_mut(&router.id).routes.clear();
        }
        edit_routes(state, &router.id, &req.add_routes, true)?;
    }
    if let Some(host) = &req.host {
        if router.ha.is_some() && req.ha != Some(None) {
            bail_invalid!(
                "router {}: --host: an HA router runs on several hosts; --no-ha first",
                router.name
            );
        }
        state.router_mut(&router.id).host = Some(host.clone());
    }
    let r = state.router_mut(&router.id);
    if req.clear_inbound {
        r.inbound.clear();
    }
    for opening in &req.add_inbound {
        if !r.inbound.contains(opening) {
            r.inbound.push(opening.clone());
        }
    }
    if let Some(ha) = req.ha {
        before.extend(ha::set_ha(state, &router, ha, req.host.is_some())?);
    }
    req.meta.apply(&mut state.router_mut(&router.id).meta);
    before.networks.extend(touched(&router.id, state).networks);
    Ok(Outcome::new(before, &router.id))
}

/// `router unset`.
pub fn unset_fields(state: &mut State, req: &Unset) -> anyhow::Result<Outcome> {
    let id = state.router(&req.router)?.id.clone();
    let mut t = touched(&id, state);
    if !req.routes.is_empty() {
        edit_routes(state, &id, &req.routes, false)?;
    }
    if !req.inbound.is_empty() {
        state
            .router_mut(&id)
            .inbound
            .retain(|o| !req.inbound.contains(o));
    }
    if req.external_gateway {
        t.extend(unset_gateway(state, &id));
    }
    req.meta.apply(&mut state.router_mut(&id).meta);
    Ok(Outcome::new(t, &id))
}

/// Put the router's gateway port on an external network; replaces a gateway it already has.
fn set_gateway(state: &mut State, router_id: &str, gateway: &Gateway) -> anyhow::Result<()> {
    let router = state
        .router_by_id(router_id)
        .expect("router exists")
        .clone();
    let network = state.network(&gateway.network)?.clone();
    if !network.external {
        bail_invalid!("network {}: not an external network; a router gateway needs one created with --external", network.name);
    }
    let (subnet, ip) = (&gateway.subnet, gateway.ip);
    let current = router
        .gateway_port_id
        .as_deref()
        .and_then(|id| state.port_by_id(id))
        .cloned();
    if let Some(port) = &current {
        let same_ip = ip.is_none_or(|ip| port.fixed_ips.iter().any(|f| f.ip == ip));
        let same_subnet = subnet.as_ref().is_none_or(|s| {
            state
                .subnet(s)
                .is_ok_and(|s| port.fixed_ips.iter().any(|f| f.subnet_id == s.id))
        });
        if port.network_id == network.id && same_ip && same_subnet {
            return Ok(());
        }
        unset_gateway(state, router_id);
    }
    // Without --fixed-ip, Neutron's choice: an address of the first IPv4 subnet, one of the
    // first stateful IPv6 subnet, and the EUI-64 of the port's MAC on the auto-address ones.
    let asked: Vec<crate::model::FixedIpSpec> = match (subnet, ip) {
        (None, None) => vec![],
        _ => vec![(subnet.clone(), ip)],
    };
    let port = state
        .new_port(PortRequest {
            network: &network,
            role: PortRole::RouterGateway,
            device_id: router_id,
            fixed: &asked,
            mac: None,
            may_take_gateway: false,
        })
        .map_err(|e| e.context(format!("router {}: external gateway", router.name)))?;
    for fixed in &port.fixed_ips {
        let gw_subnet = state
            .subnet_by_id(&fixed.subnet_id)
            .expect("port subnet exists");
        check_overlap(state, &router, gw_subnet)?;
    }
    state.router_mut(router_id).gateway_port_id = Some(port.id.clone());
    state.ports.push(Rc::new(port));
    Ok(())
}

/// `router unset --external-gateway`.
pub fn unset(state: &mut State, router_key: &str) -> anyhow::Result<Outcome> {
    let id = state.router(router_key)?.id.clone();
    Ok(Outcome::new(unset_gateway(state, &id), &id))
}

fn unset_gateway(state: &mut State, router_id: &str) -> Touched {
    let mut t = touched(router_id, state);
    let router = state.router_mut(router_id);
    if let Some(port_id) = router.gateway_port_id.take() {
        state.ports.retain(|p| p.id != port_id);
    }
    t.networks.extend(touched(router_id, state).networks);
    t
}

/// A subnet joining a router must not overlap any subnet the router is already on.
fn check_overlap(
    state: &State,
    router: &Router,
    subnet: &crate::model::Subnet,
) -> anyhow::Result<()> {
    for port in state.router_ports(router) {
        for other in port
            .fixed_ips
            .iter()
            .filter_map(|f| state.subnet_by_id(&f.subnet_id))
        {
            if other.id != subnet.id
                && (other.cidr.contains(&subnet.cidr) || subnet.cidr.contains(&other.cidr))
            {
                bail_invalid!(
                    "subnet {}: {} overlaps subnet {} ({}) on router {}",
                    subnet.name,
                    subnet.cidr,
                    other.name,
                    other.cidr,
                    router.name
                );
            }
        }
    }
    Ok(())
}

/// `router add route` (`add`) or `router remove route`.
pub fn edit_routes(
    state: &mut State,
    router_key: &str,
    edits: &[ExtraRoute],
    add: bool,
) -> anyhow::Result<Outcome> {
    let router = state.router(router_key)?.clone();
    let mut routes = router.routes.clone();
    for route in edits.iter().cloned() {
        if add {
            if route.destination.network().is_ipv4() != route.nexthop.is_ipv4() {
                bail_invalid!(
                    "router {}: --route destination {} and gateway {} are of different IP versions",
                    router.name,
                    route.destination,
                    route.nexthop
                );
            }
            check_destination(state, &router, route.destination)?;
            check_nexthop(state, &router, route.nexthop)?;
            if !routes.contains(&route) {
                routes.push(route);
            }
        } else {
            // As Neutron: removing a route the router does not have changes nothing.
            routes.retain(|r| r != &route);
        }
    }
    let r = state.router_mut(&router.id);
    if r.routes != routes {
        r.routes = routes;
        r.meta.touch();
    }
    Ok(Outcome::new(touched(&router.id, state), &router.id))
}

/// An extra route's destination is one the kernel takes besides the routes the router has
/// already: not the default route (the external gateway's), not a subnet the router is
/// connected to (the kernel's own route), nothing a router cannot forward to.
fn check_destination(
    state: &State,
    router: &Router,
    destination: ipnet::IpNet,
) -> anyhow::Result<()> {
    if destination.prefix_len() == 0 {
        bail_invalid!(
            "router {}: --route destination {destination} is the default route; it follows the external gateway ('qrouter router set {} --external-gateway NET')",
            router.name,
            router.name
        );
    }
    if let Some(what) = validate::unroutable_destination(destination) {
        bail_invalid!(
            "router {}: --route destination {destination} is in the {what} range, which a router cannot forward to",
            router.name
        );
    }
    if let Some(subnet) = state
        .router_ports(router)
        .flat_map(|p| &p.fixed_ips)
        .filter_map(|f| state.subnet_by_id(&f.subnet_id))
        .find(|s| s.cidr == destination)
    {
        bail_invalid!(
            "router {}: --route destination {destination} is subnet {}, which the router is connected to",
            router.name,
            subnet.name
        );
    }
    Ok(())
}

/// A next hop must be a neighbour on one of the router's subnets, and not the router itself
/// (so a link-local one is refused, as Neutron refuses it: "not connected with router").
fn check_nexthop(state: &State, router: &Router, nexthop: IpAddr) -> anyhow::Result<()> {
    let fixed: Vec<_> = state
        .router_ports(router)
        .flat_map(|p| &p.fixed_ips)
        .collect();
    if fixed.iter().any(|f| f.ip == nexthop) {
        bail_invalid!(
            "router {}: next hop {nexthop} is the router's own address",
            router.name
        );
    }
    if !fixed
        .iter()
        .filter_map(|f| state.subnet_by_id(&f.subnet_id))
        .any(|s| s.cidr.contains(&nexthop))
    {
        bail_invalid!(
            "router {}: next hop {nexthop} is not on any subnet the router is connected to",
            router.name
        );
    }
    Ok(())
}

/// `router delete`; with `force`, also the router's interfaces and gateway.
pub fn delete(state: &mut State, keys: &[String], force: bool) -> anyhow::Result<Outcome> {
    let mut t = Touched::default();
    for key in keys {
        let router = state.router(key)?.clone();
        let interfaces: Vec<String> = state
            .router_ports(&router)
            .filter(|p| p.role == PortRole::RouterInterface)
            .map(|p| {
                format!(
                    "{} ({})",
                    naming::port_device(p),
                    state.port_subnet_names(p)
                )
            })
            .collect();
        if !interfaces.is_empty() && !force {
            bail_invalid!(
                "router {}: it still has interfaces {}; remove them first or use --force",
                router.name,
                interfaces.join(", ")
            );
        }
        let done = touched(&router.id, state);
        t.networks.extend(done.networks);
        t.routers.extend(done.routers);
        state
            .ports
            .retain(|p| p.role == PortRole::Instance || p.device_id != router.id);
        state.routers.retain(|r| r.id != router.id);
        t.networks.extend(ha::drop_unused_network(state));
    }
    Ok(Outcome {
        touched: t,
        id: None,
    })
}
