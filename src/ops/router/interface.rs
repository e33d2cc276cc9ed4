//! A router's interfaces on internal subnets: adding and removing one by subnet or by port,
//! and the checks that say beforehand whether that would succeed (prompts and completion
//! offer only what they accept). Kept apart from `router.rs`, the router itself (create,
//! set, gateway, extra routes, delete): attaching subnets is a concern of its own, with its
//! own refusals.

use std::net::IpAddr;
use std::rc::Rc;

use super::{check_overlap, touched};
use crate::bail_invalid;
use crate::model::{new_id, PortRole, Router, State, Subnet};
use crate::ops::Outcome;

/// Whether `router add interface ROUTER SUBNET` would succeed, without changing anything:
/// the reason it would not, or the gateway address the interface takes. Without a router,
/// what holds for every router: an internal subnet with a gateway no one holds yet. The
/// operation runs it first; prompts and completion offer only the subnets it accepts.
pub fn check_add_interface(
    state: &State,
    router: Option<&Router>,
    subnet: &Subnet,
) -> anyhow::Result<IpAddr> {
    let network = state
        .network_by_id(&subnet.network_id)
        .expect("subnet's network exists");
    if network.external {
        let router = router.map_or("ROUTER", |r| r.name.as_str());
        bail_invalid!(
            "subnet {}: it is on external network {}; use 'qrouter router set {router} --external-gateway {}'",
            subnet.name,
            network.name,
            network.name
        );
    }
    let Some(gateway) = subnet.gateway else {
        bail_invalid!("subnet {}: it has no gateway IP for the router interface (created with --gateway none)", subnet.name);
    };
    // Neutron's rule: a subnet whose hosts follow another router's advertisements
    // (address mode without ra mode) is not a router interface's.
    if subnet.ipv6_address_mode.is_some() && subnet.ipv6_ra_mode.is_none() {
        bail_invalid!(
            "subnet {}: IPv6 subnet configured to receive RAs from an external router cannot be added to a router (it has --ipv6-address-mode {} and no --ipv6-ra-mode)",
            subnet.name,
            subnet.ipv6_address_mode.map_or("", |m| m.as_str())
        );
    }
    let on_subnet = |p: &crate::model::Port| p.fixed_ips.iter().any(|f| f.subnet_id == subnet.id);
    if let Some(router) = router {
        if state.router_ports(router).any(on_subnet) {
            bail_invalid!(
                "router {}: it already has an interface on subnet {}",
                router.name,
                subnet.name
            );
        }
    }
    if let Some(holder) = state.ports.iter().find(|p| {
        p.fixed_ips
            .iter()
            .any(|f| f.subnet_id == subnet.id && f.ip == gateway)
    }) {
        bail_invalid!(
            "subnet {}: its gateway {gateway} is already used by {} {}",
            subnet.name,
            holder.role.owner_kind(),
            state.port_owner_name(holder)
        );
    }
    if let Some(router) = router {
        check_overlap(state, router, subnet)?;
    }
    Ok(gateway)
}

pub fn add_interface(
    state: &mut State,
    router_key: &str,
    subnet_key: &str,
) -> anyhow::Result<Outcome> {
    let router = state.router(router_key)?.clone();
    let subnet = state.subnet(subnet_key)?.clone();
    let gateway = check_add_interface(state, Some(&router), &subnet)?;
    let network = state
        .network_by_id(&subnet.network_id)
        .expect("subnet's network exists")
        .clone();
    let fixed = crate::model::FixedIp {
        subnet_id: subnet.id.clone(),
        ip: gateway,
    };
    // As Neutron: the router's interface that holds IPv6 on the network carries every v6
    // subnet of it (one qr- for all, one radvd interface block); IPv4 subnets get a port
    // each.
    if subnet.is_v6() {
        let v6_port = state
            .router_ports(&router)
            .find(|p| {
                p.role == PortRole::RouterInterface
                    && p.network_id == network.id
                    && p.fixed_ips.iter().any(|f| f.ip.is_ipv6())
            })
            .map(|p| p.id.clone());
        if let Some(id) = v6_port {
            let port = state.ports.iter_mut().find(|p| p.id == id);
            Rc::make_mut(port.expect("port exists"))
                .fixed_ips
                .push(fixed);
            state.router_mut(&router.id).meta.touch();
            return Ok(Outcome::new(touched(&router.id, state), &router.id));
        }
    }
    let port = crate::model::Port {
        security: Default::default(),
        id: new_id(),
        name: String::new(),
        network_id: network.id.clone(),
        role: PortRole::RouterInterface,
        device_id: router.id.clone(),
        mac: crate::model::new_mac(),
        host: None,
        fixed_ips: vec![fixed],
        meta: crate::model::Meta::new(),
    };
    state.ports.push(Rc::new(port));
    state.router_mut(&router.id).meta.touch();
    Ok(Outcome::new(touched(&router.id, state), &router.id))
}

/// `router add port`: a port no router or instance holds becomes one of the router's
/// interfaces, with its own address (not necessarily its subnet's gateway).
pub fn add_port(state: &mut State, router_key: &str, port_key: &str) -> anyhow::Result<Outcome> {
    let router = state.router(router_key)?.clone();
    let port = state.port(port_key)?.clone();
    if !port.device_id.is_empty() {
        bail_invalid!(
            "port {}: already in use by {} {}",
            port.id,
            port.role.owner_kind(),
            state.port_owner_name(&port)
        );
    }
    let network = state
        .network_by_id(&port.network_id)
        .expect("port's network exists")
        .clone();
    if network.external {
        bail_invalid!(
            "port {}: it is on external network {}; use 'qrouter router set {} --external-gateway {}'",
            port.id,
            network.name,
            router.name,
            network.name
        );
    }
    for fixed in &port.fixed_ips {
        let subnet = state.subnet_by_id(&fixed.subnet_id).expect("subnet exists");
        let on_subnet =
            |p: &crate::model::Port| p.fixed_ips.iter().any(|f| f.subnet_id == subnet.id);
        if state.router_ports(&router).any(on_subnet) {
            bail_invalid!(
                "router {}: it already has an interface on subnet {}",
                router.name,
                subnet.name
            );
        }
        check_overlap(state, &router, subnet)?;
    }
    let p = state.ports.iter_mut().find(|p| p.id == port.id);
    let p = Rc::make_mut(p.expect("port exists"));
    p.role = PortRole::RouterInterface;
    p.device_id = router.id.clone();
    state.router_mut(&router.id).meta.touch();
    Ok(Outcome::new(touched(&router.id, state), &router.id))
}

/// `router remove port`: the router interface that is this port is removed, with the port.
pub fn remove_port(state: &mut State, router_key: &str, port_key: &str) -> anyhow::Result<Outcome> {
    let router = state.router(router_key)?.clone();
    let port = state.port(port_key)?.clone();
    if port.role != PortRole::RouterInterface || port.device_id != router.id {
        bail_invalid!(
            "router {}: port {} is not one of its interfaces",
            router.name,
            port.id
        );
    }
    // Every subnet it holds is checked as its removal would be (a route's next hop).
    for f in &port.fixed_ips {
        if let Some(subnet) = state.subnet_by_id(&f.subnet_id) {
            check_remove_interface(state, &router, subnet)?;
        }
    }
    let t = touched(&router.id, state);
    state.ports.retain(|p| p.id != port.id);
    state.router_mut(&router.id).meta.touch();
    Ok(Outcome::new(t, &router.id))
}

/// Whether `router remove interface ROUTER SUBNET` would succeed: the reason it would not, or
/// the interface's port. Prompts and completion offer only the subnets it accepts.
pub fn check_remove_interface(
    state: &State,
    router: &Router,
    subnet: &Subnet,
) -> anyhow::Result<crate::model::Port> {
    let Some(port) = state
        .router_ports(router)
        .find(|p| {
            p.role == PortRole::RouterInterface
                && p.fixed_ips.iter().any(|f| f.subnet_id == subnet.id)
        })
        .cloned()
    else {
        bail_invalid!(
            "router {}: it has no interface on subnet {}",
            router.name,
            subnet.name
        );
    };
    if let Some(r) = router
        .routes
        .iter()
        .find(|r| subnet.cidr.contains(&r.nexthop))
    {
        bail_invalid!(
            "router {}: interface on subnet {} is the next hop of route {} via {}; remove the route first",
            router.name,
            subnet.name,
            r.destination,
            r.nexthop
        );
    }
    Ok(port)
}

pub fn remove_interface(
    state: &mut State,
    router_key: &str,
    subnet_key: &str,
) -> anyhow::Result<Outcome> {
    let router = state.router(router_key)?.clone();
    let subnet = state.subnet(subnet_key)?.clone();
    let port = check_remove_interface(state, &router, &subnet)?;
    let t = touched(&router.id, state);
    // A port that holds other subnets (IPv6's, one qr- for all) keeps them.
    if port.fixed_ips.iter().any(|f| f.subnet_id != subnet.id) {
        let p = state.ports.iter_mut().find(|p| p.id == port.id);
        Rc::make_mut(p.expect("port exists"))
            .fixed_ips
            .retain(|f| f.subnet_id != subnet.id);
    } else {
        state.ports.retain(|p| p.id != port.id);
    }
    state.router_mut(&router.id).meta.touch();
    Ok(Outcome::new(t, &router.id))
}
