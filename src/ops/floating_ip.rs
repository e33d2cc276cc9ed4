//! Floating IP operations: allocate, associate, disassociate, release.

use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;

use super::Outcome;
use crate::bail_invalid;
use crate::model::{
    naming, new_id, FloatingIp, Instance, Network, Object, PortRequest, PortRole, State,
};
use crate::reconcile::Touched;
use crate::store::{Around, Reads, Store};

/// What a floating IP is associated with.
#[derive(Debug, Clone)]
pub enum Target {
    Port(String),
    Instance(String),
}

/// `floating ip create`.
#[derive(Debug)]
pub struct Create {
    pub network: String,
    pub address: Option<Ipv4Addr>,
    /// `--subnet`: the external subnet to allocate from.
    pub subnet: Option<String>,
    pub target: Option<Target>,
    /// Description, tags.
    pub meta: crate::model::Meta,
}

/// What creating a floating IP reads (see `store::around`): the external network whole, and
/// for an instance, the instance with its network and the router that serves it. That router
/// is found by a first read of the rest; should it differ when the change runs, the change
/// is refused (`Ctx::change_only`). A port, or a key that is not an exact name or id, reads
/// the whole store.
pub fn reads_for_create(
    store: &mut Store,
    network: &str,
    target: Option<&Target>,
) -> anyhow::Result<Reads<'static>> {
    let Some(network) = store.id_of(Network::KIND, network)? else {
        return Ok(Reads::All);
    };
    let mut around = Around {
        networks: vec![network.clone()],
        ..Default::default()
    };
    let instance = match target {
        None => return Ok(Reads::Around(around)),
        Some(Target::Instance(key)) => match store.id_of(Instance::KIND, key)? {
            Some(id) => id,
            None => return Ok(Reads::All),
        },
        Some(Target::Port(_)) => return Ok(Reads::All),
    };
    around.instances.push(instance.clone());
    let first = store.load_only(&Reads::Around(around))?;
    let serving = first
        .instance_by_id(&instance)
        .and_then(|i| first.router_for_port(&network, &i.port_id))
        .map(str::to_string);
    Ok(Reads::Around(Around {
        routers: serving.into_iter().collect(),
        networks: vec![network],
        instances: vec![instance],
        ..Default::default()
    }))
}

/// What associating a floating IP with an instance reads: both, and the router that would
/// serve it, found by a first read of the rest (see `reads_for_create`).
pub fn reads_for_set(
    store: &mut Store,
    key: &str,
    target: &Target,
) -> anyhow::Result<Reads<'static>> {
    let (Some(fip), Target::Instance(instance)) = (store.floating_ip_id(key)?, target) else {
        return Ok(Reads::All);
    };
    let Some(instance) = store.id_of(Instance::KIND, instance)? else {
        return Ok(Reads::All);
    };
    let around = |routers: Vec<String>| Around {
        routers,
        floating_ips: vec![fip.clone()],
        instances: vec![instance.clone()],
        ..Default::default()
    };
    let first = store.load_only(&Reads::Around(around(vec![])))?;
    let read = first.floating_ips.iter().find(|f| f.id == fip);
    let serving = first
        .instance_by_id(&instance)
        .zip(read)
        .and_then(|(i, f)| first.router_for_port(&f.network_id, &i.port_id))
        .map(str::to_string);
    Ok(Reads::Around(around(serving.into_iter().collect())))
}

/// What unsetting or deleting floating IPs reads: each with its port's network, and the
/// routers that serve them, found by a first read of the rest (see `reads_for_create`). A key
/// that is not an exact address or id reads the whole store.
pub fn reads_for_change(store: &mut Store, keys: &[String]) -> anyhow::Result<Reads<'static>> {
    let mut ids = Vec::new();
    for key in keys {
        match store.floating_ip_id(key)? {
            Some(id) => ids.push(id),
            None => return Ok(Reads::All),
        }
    }
    let first = store.load_only(&Reads::Around(Around {
        floating_ips: ids.clone(),
        ..Default::default()
    }))?;
    let routers = first
        .floating_ips
        .iter()
        .filter(|f| ids.contains(&f.id))
        .filter_map(|f| first.floating_ip_router(f))
        .map(str::to_string)
        .collect();
    Ok(Reads::Around(Around {
        routers,
        floating_ips: ids,
        ..Default::default()
    }))
}

/// A floating IP by its address or id.
pub fn find<'a>(state: &'a State, key: &str) -> anyhow::Result<&'a FloatingIp> {
    match state
        .floating_ips
        .iter()
        .find(|f| f.address.to_string() == key)
    {
        Some(f) => Ok(f),
        None => crate::model::find(&state.floating_ips, key),
    }
}

/// The address a floating IP on `network` gets: `ip`, or the next free one (of `subnet`, if
/// given), allocated like a port's so that an address is never handed out twice. Floating
/// IPs are IPv4, as in Neutron: the address's subnet is one of the network's IPv4 subnets.
fn allocate(
    state: &State,
    network: &Network,
    subnet: Option<&str>,
    ip: Option<Ipv4Addr>,
) -> anyhow::Result<(String, Ipv4Addr)> {
    if !network.external {
        bail_invalid!("network {}: not an external network; floating IPs come from one created with --external", network.name);
    }
    let subnet = match (subnet, ip) {
        (Some(s), _) => Some(state.subnet(s)?),
        (None, Some(_)) => None,
        (None, None) => state.subnets_of(&network.id).find(|s| !s.is_v6()),
    };
    if let Some(s) = subnet.filter(|s| s.is_v6()) {
        bail_invalid!("subnet {}: floating IPs are IPv4 (as in Neutron); IPv6 addresses are routed to the instances as they are", s.name);
    }
    let port = state.new_port(PortRequest {
        network,
        role: PortRole::Instance,
        device_id: "",
        fixed: &[(subnet.map(|s| s.id.clone()), ip.map(IpAddr::V4))],
        mac: None,
        may_take_gateway: false,
    })?;
    match port.ipv4() {
        Some((subnet, ip)) => Ok((subnet.to_string(), ip)),
        None => bail_invalid!(
            "network {}: it has no IPv4 subnet for floating IPs",
            network.name
        ),
    }
}

/// Whether `floating ip create NETWORK` (no address asked for) would succeed: the reason it
/// would not. Prompts and completion offer only the networks it accepts.
pub fn check_network(state: &State, network: &Network) -> anyhow::Result<()> {
    allocate(state, network, None, None).map(drop)
}

pub fn create(state: &mut State, req: &Create) -> anyhow::Result<Outcome> {
    let network = state.network(&req.network)?.clone();
    let (subnet_id, address) = allocate(state, &network, req.subnet.as_deref(), req.address)?;
    let id = new_id();
    state.floating_ips.push(Rc::new(FloatingIp {
        id: id.clone(),
        network_id: network.id,
        subnet_id,
        address,
        port_id: None,
        router_id: None,
        meta: req.meta.clone(),
    }));
    match &req.target {
        Some(target) => associate(state, &id, target),
        None => Ok(Outcome::new(Touched::default(), &id)),
    }
}

/// `floating ip set` and `unset` of the description and tags.
pub fn edit(state: &mut State, key: &str, edit: &super::MetaEdit) -> anyhow::Result<Outcome> {
    let fip = find(state, key)?.clone();
    edit.apply(&mut state.floating_ip_mut(&fip.id).meta);
    Ok(Outcome::new(Touched::default(), &fip.id))
}

/// `--fixed-ip-address` beside `--port`/`--instance`: the port must hold that address
/// (qrouter's ports hold one; the floating IP maps to it).
pub fn check_fixed_ip(state: &State, target: &Target, ip: Ipv4Addr) -> anyhow::Result<()> {
    let port = match target {
        Target::Port(p) => state.port(p)?,
        Target::Instance(i) => {
            let instance = state.instance(i)?;
            state
                .port_by_id(&instance.port_id)
                .expect("instance port exists")
        }
    };
    if !port.fixed_ips.iter().any(|f| f.ip == IpAddr::V4(ip)) {
        bail_invalid!(
            "--fixed-ip-address {ip}: port {} of {} {} does not hold it",
            port.id,
            port.role.owner_kind(),
            state.port_owner_name(port)
        );
    }
    Ok(())
}

/// `floating ip set`: associate a floating IP with a port or an instance's port.
pub fn associate(state: &mut State, key: &str, target: &Target) -> anyhow::Result<Outcome> {
    let fip = find(state, key)?.clone();
    let port = match target {
        Target::Port(p) => state.port(p)?.clone(),
        Target::Instance(i) => {
            let instance = state.instance(i)?;
            state
                .port_by_id(&instance.port_id)
                .expect("instance port exists")
                .clone()
        }
    };
    let owner = state.port_owner_name(&port);
    if fip.port_id.as_deref() == Some(port.id.as_str()) {
        return Ok(Outcome::new(Touched::default(), &fip.id));
    }
    if let Some(current) = &fip.port_id {
        let holder = state
            .port_by_id(current)
            .map(|p| state.port_owner_name(p))
            .unwrap_or_default();
        bail_invalid!(
            "floating ip {}: already associated with {holder}; unset it first",
            fip.address
        );
    }
    if !matches!(port.role, PortRole::Instance | PortRole::Workload) {
        bail_invalid!(
            "port {}: a router port cannot hold a floating IP",
            naming::port_device(&port)
        );
    }
    if let Some(other) = state
        .floating_ips
        .iter()
        .find(|f| f.port_id.as_deref() == Some(port.id.as_str()))
    {
        bail_invalid!(
            "instance {owner}: it already has floating IP {}",
            other.address
        );
    }
    let Some((subnet, _)) = port.ipv4() else {
        bail_invalid!(
            "instance {owner}: it has no IPv4 address for a floating IP (floating IPs are IPv4)"
        );
    };
    let Some(router) = state
        .router_for_floating_ip(&fip.network_id, subnet)
        .map(str::to_string)
    else {
        let net = state
            .network_by_id(&fip.network_id)
            .map(|n| n.name.clone())
            .unwrap_or_default();
        bail_invalid!(
            "instance {owner}: its subnet is not attached to a router with a gateway on {net}; \
             add it with 'qrouter router add interface ROUTER SUBNET'"
        );
    };
    state.floating_ip_mut(&fip.id).port_id = Some(port.id);
    let touched = Touched {
        routers: [router].into(),
        ..Default::default()
    };
    Ok(Outcome::new(touched, &fip.id))
}

/// `floating ip unset --port`.
pub fn disassociate(state: &mut State, key: &str) -> anyhow::Result<Outcome> {
    let fip = find(state, key)?.clone();
    let Some(router) = state.floating_ip_router(&fip).map(str::to_string) else {
        return Ok(Outcome::new(Touched::default(), &fip.id));
    };
    state.floating_ip_mut(&fip.id).port_id = None;
    let touched = Touched {
        routers: [router].into(),
        ..Default::default()
    };
    Ok(Outcome::new(touched, &fip.id))
}

/// `floating ip delete`: release each, disassociating it first.
pub fn delete(state: &mut State, keys: &[String]) -> anyhow::Result<Outcome> {
    let mut touched = Touched::default();
    for key in keys {
        touched.extend(disassociate(state, key)?.touched);
        let fip = find(state, key)?.clone();
        state.floating_ips.retain(|f| f.id != fip.id);
    }
    Ok(Outcome { touched, id: None })
}
