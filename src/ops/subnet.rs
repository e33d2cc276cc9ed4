//! Subnet operations: address ranges, gateways and allocation pools on a network.

use std::net::IpAddr;
use std::rc::Rc;

use ipnet::IpNet;

use super::Outcome;
use crate::bail_invalid;
use crate::model::{
    check_new_name, dhcp, ipam, ipv6, new_id, validate, Network, Object, Pool, PortRole, State,
    Subnet,
};
use crate::reconcile::Touched;
use crate::store::{Around, Reads, Store};

/// A subnet's gateway, as `--gateway` gives it.
#[derive(Debug, Clone, Copy)]
pub enum Gateway {
    /// The first host address.
    Auto,
    None,
    Ip(IpAddr),
}

/// `subnet create`.
#[derive(Debug)]
pub struct Create {
    pub name: String,
    pub network: String,
    pub cidr: IpNet,
    /// `--ip-version`: None takes the range's.
    pub ip_version: Option<u8>,
    pub gateway: Gateway,
    /// Empty: every host address but the gateway.
    pub pools: Vec<Pool>,
    /// DHCP on or off; None: on for tenant networks, off for external ones.
    pub dhcp: Option<bool>,
    pub dns_nameservers: Vec<String>,
    /// `destination=CIDR,gateway=IP`, handed out by DHCP.
    pub host_routes: Vec<String>,
    pub ipv6_ra_mode: Option<ipv6::Mode>,
    pub ipv6_address_mode: Option<ipv6::Mode>,
    /// Description, tags.
    pub meta: crate::model::Meta,
}

/// `subnet set` and `subnet unset`: each field that is given changes.
#[derive(Debug, Default)]
pub struct Set {
    pub subnet: String,
    pub name: Option<String>,
    /// `--gateway IP|none` (set), `--gateway` (unset: none).
    pub gateway: Option<Option<IpAddr>>,
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
    crate::model::ha::refuse_ha_network(&network, "a subnet on it")?;
    let cidr = args.cidr;
    let what = format!("subnet {}", args.name);
    if let Some(version) = args.ip_version {
        validate::same_version(&what, "cidr", cidr.network(), version).map_err(|_| {
            crate::error::invalid(format!(
                "{what}: cidr '{cidr}' does not match the ip_version '{version}'"
            ))
        })?;
    }
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
    let (ra_mode, address_mode) = (args.ipv6_ra_mode, args.ipv6_address_mode);
    // Neutron requires DHCP for a subnet with a mode: where it is not given, a mode
    // switches it on, on an external network too.
    let modes = ra_mode.is_some() || address_mode.is_some();
    let dhcp_on = args.dhcp.unwrap_or(!network.external || modes);
    ipv6::check_modes(&args.name, cidr, ra_mode, address_mode, dhcp_on)?;
    if dhcp_on {
        validate::dhcp_prefix(&args.name, cidr)?;
    }
    if cidr.network().is_ipv6() && modes {
        check_mtu(&network, &what)?;
    }
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
    let dhcp = dhcp::subnet_options(&args.name, &network, cidr, Some(dhcp_on), dns, routes)?;
    let id = new_id();
    let subnet = Subnet {
        id: id.clone(),
        name: args.name.clone(),
        network_id: network.id.clone(),
        cidr,
        gateway,
        pools,
        dhcp,
        ipv6_ra_mode: ra_mode,
        ipv6_address_mode: address_mode,
        meta: args.meta.clone(),
    };
    let auto = subnet.is_auto_address();
    state.subnets.push(Rc::new(subnet));
    // Only a DHCP subnet changes the kernel: its network's DHCP port and dnsmasq; and an
    // auto-address one, whose EUI-64 address every port of the network (but router
    // interfaces) takes at once, as Neutron gives them.
    let dhcp_before = dhcp::dhcp_port(state, &network.id).cloned();
    let mut touched = Touched::default();
    if auto {
        touched.extend(add_auto_addresses(state, &network, &id)?);
    }
    dhcp::fit_dhcp_port(state, &network.id)?;
    if dhcp::dhcp_port(state, &network.id) != dhcp_before.as_ref() {
        touched.networks.insert(network.id);
    }
    Ok(Outcome::new(touched, &id))
}

/// Neutron's rule: an IPv6 subnet on a network needs an MTU of at least 1280.
fn check_mtu(network: &Network, what: &str) -> anyhow::Result<()> {
    if dhcp::effective_mtu(network) < 1280 {
        bail_invalid!(
            "{what}: MTU of network {} is not valid, subnet requires a minimum of 1280",
            network.name
        );
    }
    Ok(())
}

/// Every port of `network` but router interfaces (and the DHCP port, fitted apart) takes its
/// EUI-64 address on the new auto-address subnet `subnet_id`; the routers and instances
/// whose ports changed are touched.
fn add_auto_addresses(
    state: &mut State,
    network: &Network,
    subnet_id: &str,
) -> anyhow::Result<Touched> {
    let mut touched = Touched::default();
    let ports: Vec<crate::model::Port> = state
        .ports
        .iter()
        .filter(|p| p.network_id == network.id && p.role != PortRole::Dhcp)
        .map(|p| (**p).clone())
        .collect();
    for mut port in ports {
        let auto = state.auto_addresses(network, port.role, &port.mac);
        let Some(new) = auto.into_iter().find(|f| f.subnet_id == subnet_id) else {
            continue;
        };
        if let Some(holder) = state.ports.iter().find(|p| p.fixed_ips.contains(&new)) {
            bail_invalid!(
                "subnet {}: the EUI-64 address {} of port {} is held by {} {} already (two ports with one MAC)",
                state.subnet_by_id(subnet_id).map_or(subnet_id, |s| s.name.as_str()),
                new.ip,
                port.display_name(),
                holder.role.owner_kind(),
                state.port_owner_name(holder)
            );
        }
        port.fixed_ips.push(new);
        super::port::owners(&port, &mut touched);
        let slot = state.ports.iter_mut().find(|p| p.id == port.id);
        *slot.expect("port exists") = Rc::new(port);
    }
    Ok(touched)
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
        if !on && (old.ipv6_ra_mode.is_some() || old.ipv6_address_mode.is_some()) {
            bail_invalid!("subnet {name}: Cannot disable enable_dhcp with ipv6 attributes set");
        }
        if on {
            validate::dhcp_prefix(name, old.cidr)?;
        }
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
    let ips = |list: &[String]| dhcp::dns_servers(name, old.cidr, list);
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
        // An auto-address subnet's addresses are implicit, and go with it (Neutron), except
        // a router interface's.
        let implicit = |p: &crate::model::Port| {
            p.role == PortRole::Dhcp
                || (subnet.is_auto_address() && p.role != PortRole::RouterInterface)
        };
        if let Some(port) = state
            .ports
            .iter()
            .find(|p| !implicit(p) && p.fixed_ips.iter().any(|f| f.subnet_id == subnet.id))
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
        for port in state.ports.iter_mut().filter(|p| {
            p.role != PortRole::Dhcp && p.fixed_ips.iter().any(|f| f.subnet_id == subnet.id)
        }) {
            super::port::owners(port, &mut touched);
            Rc::make_mut(port)
                .fixed_ips
                .retain(|f| f.subnet_id != subnet.id);
        }
        if let Some(port) = state
            .ports
            .iter()
            .find(|p| p.role != PortRole::Dhcp && p.fixed_ips.is_empty())
        {
            bail_invalid!(
                "subnet {}: it holds the only address of {} {}; delete that first",
                subnet.name,
                port.role.owner_kind(),
                state.port_owner_name(port)
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
