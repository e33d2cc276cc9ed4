//! Subnet operations: address ranges, gateways and allocation pools on a network.

use std::net::Ipv4Addr;
use std::rc::Rc;

use ipnet::Ipv4Net;

use super::Outcome;
use crate::bail_invalid;
use crate::model::{ipam, new_id, validate, Pool, State, Subnet};
use crate::reconcile::Touched;

/// A subnet's gateway, as `--gateway` gives it.
#[derive(Debug, Clone, Copy)]
pub enum Gateway {
    /// The first host address.
    Auto,
    None,
    Ip(Ipv4Addr),
}

/// `subnet create`.
#[derive(Debug)]
pub struct Create {
    pub name: String,
    pub network: String,
    pub cidr: Ipv4Net,
    pub gateway: Gateway,
    /// Empty: every host address but the gateway.
    pub pools: Vec<Pool>,
}

/// `subnet create`.
pub fn create(state: &mut State, args: &Create) -> anyhow::Result<Outcome> {
    validate::name("subnet", &args.name)?;
    if state.subnets.iter().any(|s| s.name == args.name) {
        bail_invalid!("subnet {}: a subnet with that name exists", args.name);
    }
    let network = state.network(&args.network)?.clone();
    let cidr = args.cidr;
    let gateway = match args.gateway {
        Gateway::Auto => Some(ipam::default_gateway(cidr)),
        Gateway::None => None,
        Gateway::Ip(ip) => Some(ip),
    };
    let pools = match args.pools.is_empty() {
        true => ipam::default_pools(cidr, gateway),
        false => args.pools.clone(),
    };
    validate::subnet(&args.name, cidr, gateway, &pools)?;
    if let Some(other) = state
        .subnets_of(&network.id)
        .find(|s| s.cidr.contains(&cidr) || cidr.contains(&s.cidr))
    {
        bail_invalid!(
            "subnet {}: {cidr} overlaps subnet {} ({}) on network {}",
            args.name,
            other.name,
            other.cidr,
            network.name
        );
    }
    let id = new_id();
    state.subnets.push(Rc::new(Subnet {
        id: id.clone(),
        name: args.name.clone(),
        network_id: network.id,
        cidr,
        gateway,
        pools,
        meta: Default::default(),
    }));
    Ok(Outcome::new(Touched::default(), &id))
}

/// `subnet delete`.
pub fn delete(state: &mut State, keys: &[String]) -> anyhow::Result<Outcome> {
    for key in keys {
        let subnet = state.subnet(key)?.clone();
        if let Some(port) = state
            .ports
            .iter()
            .find(|p| p.fixed_ips.iter().any(|f| f.subnet_id == subnet.id))
        {
            bail_invalid!(
                "subnet {}: in use by {} {}; remove it first",
                subnet.name,
                port.role.owner_kind(),
                state.port_owner_name(port)
            );
        }
        if state.floating_ips.iter().any(|f| f.subnet_id == subnet.id) {
            bail_invalid!(
                "subnet {}: floating IPs are allocated from it; delete them first",
                subnet.name
            );
        }
        state.subnets.retain(|s| s.id != subnet.id);
    }
    Ok(Outcome::default())
}
