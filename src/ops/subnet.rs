//! Subnet operations: address ranges, gateways and allocation pools on a network.

use std::net::Ipv4Addr;
use std::rc::Rc;

use ipnet::Ipv4Net;

use super::Outcome;
use crate::bail_invalid;
use crate::model::{
    check_new_name, dhcp, ipam, new_id, validate, Network, Object, Pool, PortRole, State, Subnet,
};
use crate::reconcile::Touched;
use crate::store::{Around, Reads, Store};

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
    /// DHCP on or off; None: on for tenant networks, off for external ones.
    pub dhcp: Option<bool>,
    pub dns_nameservers: Vec<String>,
    /// `destination=CIDR,gateway=IP`, handed out by DHCP.
    pub host_routes: Vec<String>,
    /// Description, tags.
    pub meta: crate::model::Meta,
}

/// `subnet set` and `subnet unset`: each field that is given changes.
#[derive(Debug, Default)]
pub struct Set {
    pub subnet: String,
    pub name: Option<String>,
    /// `--gateway IP|none` (set), `--gateway` (unset: none).
    pub gateway: Option<Option<Ipv4Addr>>,
    /// `--no-allocation-pool`: clear the pools before adding.
    pub clear_pools: bool,
    pub add_pools: Vec<Pool>,
    /// `unset --allocation-pool`.
    pub remove_pools: Vec<Pool>,
    /// `--dhcp`/`--no-dhcp`: switch the network's dnsmasq on or off for the subnet.
    pub dhcp: Option<bool>,
    /// `--no-dns-nameservers`: clear them before adding.
    pub clear_dns: bool,
    pub add_dns: Vec<String>,
    /// `unset --dns-nameserver`.
    pub remove_dns: Vec<String>,
    /// `--no-host-route`: clear them before adding.
    pub clear_host_routes: bool,
    /// `destination=CIDR,gateway=IP`.
    pub add_host_routes: Vec<String>,
    /// `unset --host-route`.
    pub remove_host_routes: Vec<String>,
    pub meta: super::MetaEdit,
}

/// What creating a subnet reads: its network's subnets, the routers on it (a subnet on an
/// external network is an on-link route in each router with its gateway there) and any
/// subnet of the same name; a network named by id prefix is looked up in the whole store.
pub fn reads_for_create(
    store: &Store,
    network: &str,
    name: &str,
) -> anyhow::Result<Reads<'static>> {
    Ok(match store.id_of(Network::KIND, network)? {
        Some(network) => Reads::Around(Around {
            networks: vec![network.clone()],
            routers_on: vec![network],
            names: vec![(Subnet::KIND, name.to_string())],
            ..Default::default()
        }),
        None => Reads::All,
    })
}

pub fn create(state: &mut State, args: &Create) -> anyhow::Result<Outcome> {
    check_new_name(&state.subnets, &args.name, None)?;
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
    let (dns, routes) = (&args.dns_nameservers, &args.host_routes);
    let dhcp = dhcp::subnet_options(&args.name, &network, cidr, args.dhcp, dns, routes)?;
    let id = new_id();
    state.subnets.push(Rc::new(Subnet {
        id: id.clone(),
        name: args.name.clone(),
        network_id: network.id.clone(),
        cidr,
        gateway,
        pools,
        dhcp,
        meta: args.meta.clone(),
    }));
    // Only a DHCP subnet changes the kernel: its network's DHCP port and dnsmasq.
    let dhcp_before = dhcp::dhcp_port(state, &network.id).cloned();
    dhcp::fit_dhcp_port(state, &network.id)?;
    let mut touched = Touched::default();
    if dhcp::dhcp_port(state, &network.id) != dhcp_before.as_ref() {
        touched.networks.insert(network.id);
    }
    Ok(Outcome::new(touched, &id))
}

/// `subnet set` and `subnet unset`. A gateway or pool change is refused while a port holds
/// the old gateway (a router interface) or an address the new pools leave out.
pub fn set(state: &mut State, req: &Set) -> anyhow::Result<Outcome> {
    let subnet = state.subnet(&req.subnet)?.clone();
    let mut new = subnet.clone();
    if let Some(name) = &req.name {
        check_new_name(&state.subnets, name, Some(&subnet))?;
        new.name = name.clone();
    }
    let holders: Vec<&crate::model::Port> = state
        .ports
        .iter()
        .filter(|p| p.fixed_ips.iter().any(|f| f.subnet_id == subnet.id))
        .map(|p| p.as_ref())
        .collect();
    if let Some(gateway) = req.gateway {
        if gateway != subnet.gateway {
            if let (Some(old), Some(port)) = (
                subnet.gateway,
                holders.iter().find(|p| {
                    p.role == crate::model::PortRole::RouterInterface
                        && p.fixed_ips.iter().any(|f| Some(f.ip) == subnet.gateway)
                }),
            ) {
                bail_invalid!(
                    "subnet {}: its gateway {old} is the interface of router {}; remove it first",
                    subnet.name,
                    state.port_owner_name(port)
                );
            }
            if let Some(ip) = gateway {
                if holders
                    .iter()
                    .any(|p| p.fixed_ips.iter().any(|f| f.ip == ip))
                {
                    bail_invalid!("subnet {}: {ip} is already in use", subnet.name);
                }
            }
        }
        new.gateway = gateway;
    }
    if req.clear_pools {
        new.pools.clear();
    }
    new.pools.retain(|p| !req.remove_pools.contains(p));
    for pool in &req.add_pools {
        if !new.pools.contains(pool) {
            new.pools.push(pool.clone());
        }
    }
    if new.pools != subnet.pools || new.gateway != subnet.gateway {
        validate::subnet(&new.name, new.cidr, new.gateway, &new.pools)?;
    }
    if new.pools != subnet.pools {
        // The DHCP server keeps its address, as Neutron's does.
        for p in holders.iter().filter(|p| p.role != PortRole::Dhcp) {
            for f in p.fixed_ips.iter().filter(|f| f.subnet_id == subnet.id) {
                if Some(f.ip) != new.gateway && !ipam::in_pools(&new.pools, f.ip) {
                    bail_invalid!(
                        "subnet {}: {} of {} {} would be outside its allocation pools",
                        subnet.name,
                        f.ip,
                        p.role.owner_kind(),
                        state.port_owner_name(p)
                    );
                }
            }
        }
    }
    edit_dhcp(state, &subnet, &mut new, req)?;
    req.meta.apply(&mut new.meta);
    // Routers and instances on the subnet take their default route from the gateway.
    let touched = Touched {
        networks: [subnet.network_id.clone()].into(),
        routers: holders
            .iter()
            .filter(|p| matches!(p.role, PortRole::RouterInterface | PortRole::RouterGateway))
            .map(|p| p.device_id.clone())
            .collect(),
        instances: state
            .instances
            .iter()
            .filter(|i| holders.iter().any(|p| p.id == i.port_id))
            .map(|i| i.id.clone())
            .collect(),
    };
    let dhcp_switched = new.dhcp.enabled != subnet.dhcp.enabled;
    let s = state.subnets.iter_mut().find(|s| s.id == subnet.id);
    *Rc::make_mut(s.expect("subnet exists")) = new;
    if dhcp_switched {
        // The DHCP port takes an address on the subnet, or gives it back; the network's
        // dnsmasq is reconfigured, or stopped with its last DHCP subnet.
        dhcp::fit_dhcp_port(state, &subnet.network_id)?;
    }
    Ok(Outcome::new(touched, &subnet.id))
}

/// `--dhcp`/`--no-dhcp`, `--dns-nameserver`, `--host-route` and their clearing and removal.
/// DHCP goes off only while no instance takes its address from it.
fn edit_dhcp(state: &State, old: &Subnet, new: &mut Subnet, req: &Set) -> anyhow::Result<()> {
    let name = &old.name;
    if let Some(on) = req.dhcp {
        if !on && old.dhcp.enabled {
            let leased = state.instances.iter().find(|i| {
                i.dhcp
                    && state
                        .port_by_id(&i.port_id)
                        .is_some_and(|p| p.fixed_ips.iter().any(|f| f.subnet_id == old.id))
            });
            if let Some(i) = leased {
                bail_invalid!(
                    "subnet {name}: instance {} takes its address from its DHCP server; delete it first",
                    i.name
                );
            }
        }
        new.dhcp.enabled = on;
    }
    let what = format!("subnet {name}: --dns-nameserver");
    let ips = |list: &[String]| -> anyhow::Result<Vec<Ipv4Addr>> {
        list.iter().map(|ip| validate::ip(&what, ip)).collect()
    };
    let (add, remove) = (ips(&req.add_dns)?, ips(&req.remove_dns)?);
    let dns = &mut new.dhcp.dns_nameservers;
    if req.clear_dns {
        dns.clear();
    }
    dns.retain(|ip| !remove.contains(ip));
    for ip in add {
        if !dns.contains(&ip) {
            dns.push(ip);
        }
    }
    let routes = |list: &[String]| -> anyhow::Result<Vec<dhcp::HostRoute>> {
        list.iter()
            .map(|r| dhcp::host_route(name, new.cidr, r))
            .collect()
    };
    let (add, remove) = (
        routes(&req.add_host_routes)?,
        routes(&req.remove_host_routes)?,
    );
    let host_routes = &mut new.dhcp.host_routes;
    if req.clear_host_routes {
        host_routes.clear();
    }
    host_routes.retain(|r| !remove.contains(r));
    for r in add {
        if !host_routes.contains(&r) {
            host_routes.push(r);
        }
    }
    Ok(())
}

/// `subnet delete`.
pub fn delete(state: &mut State, keys: &[String]) -> anyhow::Result<Outcome> {
    let mut touched = Touched::default();
    for key in keys {
        let subnet = state.subnet(key)?.clone();
        if let Some(port) = state.ports.iter().find(|p| {
            p.role != PortRole::Dhcp && p.fixed_ips.iter().any(|f| f.subnet_id == subnet.id)
        }) {
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
        let dhcp_before = dhcp::dhcp_port(state, &subnet.network_id).cloned();
        dhcp::fit_dhcp_port(state, &subnet.network_id)?;
        if dhcp::dhcp_port(state, &subnet.network_id) != dhcp_before.as_ref() {
            touched.networks.insert(subnet.network_id);
        }
    }
    Ok(Outcome { touched, id: None })
}
