//! The desired state: the objects an operator creates, how they are named in the kernel,
//! and how they are looked up by name or id. Nothing here touches the host.

pub mod dhcp;
pub mod dhcp_config;
pub mod ha;
pub mod host;
pub mod ipam;
pub mod ipv6;
mod lookup;
mod meta;
pub mod naming;
mod ports;
pub mod portsec;
mod positions;
pub mod protocol;
pub mod ra;
pub mod rules;
pub mod rules_edit;
pub mod rules_nft;
pub mod rules_router;
pub mod trust;
pub mod validate;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::rc::Rc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::invalid;
pub use lookup::{check_new_name, find};
pub use meta::{now, Meta};
pub use ports::{FixedIpSpec, PortRequest};

meta::resource! {
pub struct Network {
    pub id: String,
    pub name: String,
    pub external: bool,
    /// The Linux bridge that carries this network on the host.
    pub bridge: String,
    /// False when `--bridge` named a bridge that already existed: qrouter never deletes it.
    pub owns_bridge: bool,
    pub provider_interface: Option<String>,
    pub mtu: Option<u32>,
    /// `--provider-network-type vxlan`: the network spans hosts as this VXLAN segment (VNI),
    /// a `vxlan-<VNI>` device on its bridge on every host that has something on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// Whether the ports made on it start with port security on (`--disable-port-security`:
    /// off), as Neutron's `port_security_enabled` of a network.
    #[serde(
        default = "crate::model::meta::enabled",
        skip_serializing_if = "crate::model::meta::is_enabled"
    )]
    pub port_security: bool,
    /// `--share`: shared between projects, as Neutron records it. qrouter has no projects,
    /// so it changes nothing else.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
    /// `--default`: the default external network (Neutron's, for auto-allocated
    /// topologies); at most one, and only an external network.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_default: bool,
    /// `--ipv6-gateway`: the link-local address of the upstream router on this external
    /// network, the IPv6 default route of routers whose gateway is here where no v6 subnet
    /// names a gateway (the L3 agent's `ipv6_gateway` in Neutron).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_gateway: Option<Ipv6Addr>,
    /// The HA network of the store's HA routers (`model::ha`): made and removed with them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ha: bool,
}
}

impl Network {
    /// The VXLAN segment, for a network that spans hosts.
    pub fn segment(&self) -> Option<u32> {
        self.vni
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub start: IpAddr,
    pub end: IpAddr,
}

meta::resource! {
pub struct Subnet {
    pub id: String,
    pub name: String,
    pub network_id: String,
    /// Its range; the family is the subnet's IP version (a v4 subnet's body is what it was
    /// before IPv6: the same text).
    pub cidr: IpNet,
    pub gateway: Option<IpAddr>,
    pub pools: Vec<Pool>,
    #[serde(default)]
    pub dhcp: dhcp::SubnetDhcp,
    /// IPv6: what the router advertises (prefix flags, managed/other flags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_ra_mode: Option<ipv6::Mode>,
    /// IPv6: how hosts get their addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address_mode: Option<ipv6::Mode>,
}
}

impl Subnet {
    /// 4 or 6, as Neutron's `ip_version`.
    pub fn ip_version(&self) -> u8 {
        match self.cidr {
            IpNet::V4(_) => 4,
            IpNet::V6(_) => 6,
        }
    }

    pub fn is_v6(&self) -> bool {
        self.ip_version() == 6
    }

    /// Whether hosts form their own addresses by SLAAC (Neutron's
    /// `is_auto_address_subnet`): every port but a router interface then holds the EUI-64
    /// address of its MAC.
    pub fn is_auto_address(&self) -> bool {
        self.ipv6_address_mode
            .or(self.ipv6_ra_mode)
            .is_some_and(ipv6::Mode::is_auto)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraRoute {
    pub destination: IpNet,
    pub nexthop: IpAddr,
}

meta::resource! {
pub struct Router {
    pub id: String,
    pub name: String,
    /// The `qg-` port on an external network, if a gateway is set.
    pub gateway_port_id: Option<String>,
    pub snat: bool,
    pub routes: Vec<ExtraRoute>,
    /// New IPv6 connections from outside it lets in (`--allow-inbound`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound: Vec<rules::Inbound>,
    /// The network host that runs it, with an etcd store (Neutron's binding host);
    /// None on one host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `--ha`: a copy on several network hosts, keepalived choosing the master (`ha.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<ha::Ha>,
}
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortRole {
    /// `network:router_interface`: a `qr-` device holding the subnet's gateway IP.
    RouterInterface,
    /// `network:router_gateway`: the `qg-` device on the external network.
    RouterGateway,
    /// `compute:none`: the `eth0` of a test instance.
    Instance,
    /// `network:dhcp`: the `ns-` device of the network's dnsmasq, in `qdhcp-<network id>`.
    Dhcp,
    /// A port reserved for a VM or container that other software runs: it plugs the tap
    /// (`tap` + port id[:11]) into the network's bridge itself.
    Workload,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedIp {
    pub subnet_id: String,
    pub ip: IpAddr,
}

meta::resource! {
/// A port; its `meta` has the admin state: a disabled port's device is down.
pub struct Port {
    pub id: String,
    /// An operator-given name (ports made by `port create`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub network_id: String,
    pub role: PortRole,
    /// The router or instance that owns the port.
    pub device_id: String,
    pub mac: String,
    pub fixed_ips: Vec<FixedIp>,
    /// With an etcd store, the host a DHCP port's dnsmasq runs on (Neutron's
    /// binding:host_id); a router's or instance's ports go where their device is placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// What may leave its tap (`model::portsec`).
    #[serde(default, skip_serializing_if = "portsec::PortSecurity::is_default")]
    pub security: portsec::PortSecurity,
}
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub port_id: String,
    /// Its address comes from the network's DHCP server (a client runs in it), not from qrouter.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dhcp: bool,
    /// The compute host that runs it, with an etcd store; None on one host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

meta::resource! {
pub struct FloatingIp {
    pub id: String,
    pub network_id: String,
    pub subnet_id: String,
    pub address: Ipv4Addr,
    pub port_id: Option<String>,
    /// The router that serves it while it is associated (Neutron's floatingips.router_id):
    /// recorded by `settle_floating_ips` after every change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_id: Option<String>,
}
}

/// Every object qrouter manages. Commands load it, change it, and hand it to converge.
/// Objects are shared: the copy a change starts from, and its comparison with the original,
/// cost a pointer per object, and only the objects changed are copied (`Rc::make_mut`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    pub networks: Vec<Rc<Network>>,
    pub subnets: Vec<Rc<Subnet>>,
    pub routers: Vec<Rc<Router>>,
    pub ports: Vec<Rc<Port>>,
    pub instances: Vec<Rc<Instance>>,
    pub floating_ips: Vec<Rc<FloatingIp>>,
    /// Where each object is, for the `*_by_id` lookups.
    pub positions: Lookups,
}

/// The positions of each kind of object that is looked up by id (see `positions.rs`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lookups {
    networks: positions::Positions,
    subnets: positions::Positions,
    routers: positions::Positions,
    ports: positions::Positions,
    instances: positions::Positions,
}

/// Objects that have an id and an optional operator-given name.
pub trait Object {
    const KIND: &'static str;
    fn id(&self) -> &str;
    fn name(&self) -> &str {
        ""
    }
}

macro_rules! object {
    ($ty:ty, $kind:literal, named) => {
        impl Object for $ty {
            const KIND: &'static str = $kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn name(&self) -> &str {
                &self.name
            }
        }
    };
    ($ty:ty, $kind:literal) => {
        impl Object for $ty {
            const KIND: &'static str = $kind;
            fn id(&self) -> &str {
                &self.id
            }
        }
    };
}
object!(Network, "network", named);
object!(Subnet, "subnet", named);
object!(Router, "router", named);
object!(Instance, "instance", named);
impl Object for Port {
    const KIND: &'static str = "port";
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
}
object!(FloatingIp, "floating ip");

/// A fresh object id, a UUID like Neutron's.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A MAC in Neutron's `fa:16:3e` range, so operators recognise router ports in `ip link`.
pub fn new_mac() -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    format!("fa:16:3e:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

impl Port {
    /// Why the port is down by its admin state, on `network` (its own): its own
    /// `--disable`, or its network's. None while both are enabled.
    pub fn down_because(&self, network: Option<&Network>) -> Option<String> {
        if !self.meta.admin_state_up {
            return Some(format!("port {} is disabled", self.display_name()));
        }
        network
            .filter(|n| !n.meta.admin_state_up)
            .map(|n| format!("network {} is disabled", n.name))
    }

    /// Its first IPv4 address, with its subnet's id: what a floating IP translates to.
    pub fn ipv4(&self) -> Option<(&str, Ipv4Addr)> {
        self.fixed_ips.iter().find_map(|f| match f.ip {
            IpAddr::V4(ip) => Some((f.subnet_id.as_str(), ip)),
            IpAddr::V6(_) => None,
        })
    }

    /// The name lists show: a workload port's own, else its device in the kernel.
    pub fn display_name(&self) -> String {
        match self.role {
            PortRole::Workload => self.name.clone(),
            _ => naming::port_device(self),
        }
    }
}

impl PortRole {
    /// Neutron's device_owner value.
    pub fn device_owner(self) -> &'static str {
        match self {
            PortRole::RouterInterface => "network:router_interface",
            PortRole::RouterGateway => "network:router_gateway",
            PortRole::Instance => "compute:none",
            PortRole::Dhcp => "network:dhcp",
            PortRole::Workload => "",
        }
    }

    /// The kind of object that owns a port of this role, as messages name it.
    pub fn owner_kind(self) -> &'static str {
        match self {
            PortRole::Instance => "instance",
            PortRole::Dhcp => "the DHCP server of network",
            PortRole::Workload => "port",
            _ => "router",
        }
    }
}

impl State {
    /// The name of the instance or router that owns `port`; its id where it was not read.
    pub fn port_owner_name(&self, port: &Port) -> String {
        let name = match port.role {
            PortRole::Instance => self.instance_by_id(&port.device_id).map(|i| i.name.clone()),
            PortRole::Dhcp => self.network_by_id(&port.network_id).map(|n| n.name.clone()),
            PortRole::Workload => Some(port.name.clone()).filter(|n| !n.is_empty()),
            _ => self.router_by_id(&port.device_id).map(|r| r.name.clone()),
        };
        name.unwrap_or_else(|| port.device_id.clone())
    }

    /// The names of a port's subnets, comma-separated.
    pub fn port_subnet_names(&self, port: &Port) -> String {
        let names: Vec<&str> = port
            .fixed_ips
            .iter()
            .filter_map(|f| self.subnet_by_id(&f.subnet_id))
            .map(|s| s.name.as_str())
            .collect();
        names.join(", ")
    }

    pub fn network(&self, key: &str) -> anyhow::Result<&Network> {
        find(&self.networks, key)
    }
    pub fn subnet(&self, key: &str) -> anyhow::Result<&Subnet> {
        find(&self.subnets, key)
    }
    pub fn router(&self, key: &str) -> anyhow::Result<&Router> {
        find(&self.routers, key)
    }
    pub fn instance(&self, key: &str) -> anyhow::Result<&Instance> {
        find(&self.instances, key)
    }
    pub fn port(&self, key: &str) -> anyhow::Result<&Port> {
        find(&self.ports, key)
    }

    /// Why a port is down by its admin state (Neutron's): its own `--disable`, or its
    /// network's. None while both are enabled.
    pub fn port_down_because(&self, port: &Port) -> Option<String> {
        port.down_because(self.network_by_id(&port.network_id))
    }

    pub fn network_by_id(&self, id: &str) -> Option<&Network> {
        self.positions.networks.find(&self.networks, id)
    }
    pub fn subnet_by_id(&self, id: &str) -> Option<&Subnet> {
        self.positions.subnets.find(&self.subnets, id)
    }
    pub fn router_by_id(&self, id: &str) -> Option<&Router> {
        self.positions.routers.find(&self.routers, id)
    }
    pub fn port_by_id(&self, id: &str) -> Option<&Port> {
        self.positions.ports.find(&self.ports, id)
    }
    pub fn instance_by_id(&self, id: &str) -> Option<&Instance> {
        self.positions.instances.find(&self.instances, id)
    }

    /// The router with this id, to edit; callers have looked it up already.
    pub fn router_mut(&mut self, id: &str) -> &mut Router {
        let router = self.routers.iter_mut().find(|r| r.id == id);
        Rc::make_mut(router.expect("router exists"))
    }
    /// The floating IP with this id, to edit; callers have looked it up already.
    pub fn floating_ip_mut(&mut self, id: &str) -> &mut FloatingIp {
        let fip = self.floating_ips.iter_mut().find(|f| f.id == id);
        Rc::make_mut(fip.expect("floating IP exists"))
    }

    pub fn subnets_of<'a>(&'a self, network_id: &'a str) -> impl Iterator<Item = &'a Subnet> + 'a {
        self.subnets
            .iter()
            .filter(move |s| s.network_id == network_id)
            .map(Rc::as_ref)
    }

    /// The router's ports: gateway first, then interfaces in the order they were added.
    pub fn router_ports<'a>(&'a self, router: &'a Router) -> impl Iterator<Item = &'a Port> + 'a {
        let gateway = router
            .gateway_port_id
            .as_deref()
            .and_then(|id| self.port_by_id(id));
        gateway.into_iter().chain(
            self.ports
                .iter()
                .filter(move |p| p.role == PortRole::RouterInterface && p.device_id == router.id)
                .map(Rc::as_ref),
        )
    }

    /// Floating IPs that are associated with a port served by this router.
    pub fn router_floating_ips<'a>(
        &'a self,
        router: &'a Router,
    ) -> Vec<(&'a FloatingIp, Ipv4Addr)> {
        self.floating_ips
            .iter()
            .filter(|f| self.floating_ip_router(f) == Some(router.id.as_str()))
            .filter_map(|f| {
                let port = self.port_by_id(f.port_id.as_deref()?)?;
                Some((f.as_ref(), port.ipv4()?.1))
            })
            .collect()
    }

    /// The router that has an interface on `subnet_id` and a gateway on `external_net`.
    pub fn router_for_floating_ip(&self, external_net: &str, subnet_id: &str) -> Option<&str> {
        self.routers
            .iter()
            .find(|r| {
                let gw_net = r
                    .gateway_port_id
                    .as_deref()
                    .and_then(|id| self.port_by_id(id))
                    .map(|p| p.network_id.as_str());
                gw_net == Some(external_net)
                    && self.router_ports(r).any(|p| {
                        p.role == PortRole::RouterInterface
                            && p.fixed_ips.iter().any(|f| f.subnet_id == subnet_id)
                    })
            })
            .map(|r| r.id.as_str())
    }

    /// The router that serves a floating IP on `network` for the port with id `port`.
    pub fn router_for_port(&self, network: &str, port: &str) -> Option<&str> {
        let port = self.port_by_id(port)?;
        self.router_for_floating_ip(network, port.ipv4()?.0)
    }

    /// The router that serves an associated floating IP, as recorded (worked out for one
    /// recorded before stores kept it).
    pub fn floating_ip_router<'a>(&'a self, fip: &'a FloatingIp) -> Option<&'a str> {
        let port = fip.port_id.as_deref()?;
        fip.router_id
            .as_deref()
            .or_else(|| self.router_for_port(&fip.network_id, port))
    }

    /// Every address already taken on a subnet: ports' fixed IPs, floating IPs, the gateway.
    pub fn used_addresses(&self, subnet: &Subnet) -> Vec<IpAddr> {
        let ports = self
            .ports
            .iter()
            .flat_map(|p| &p.fixed_ips)
            .filter(|f| f.subnet_id == subnet.id)
            .map(|f| f.ip);
        let floating = self
            .floating_ips
            .iter()
            .filter(|f| f.subnet_id == subnet.id)
            .map(|f| IpAddr::V4(f.address));
        ports.chain(floating).chain(subnet.gateway).collect()
    }
}

impl State {
    /// Every associated floating IP needs a router that serves its instance's subnet and has
    /// a gateway on the floating IP's network: changes that would strand one are refused.
    /// The router serving each is recorded in it, so nothing else works it out again.
    pub fn settle_floating_ips(&mut self) -> anyhow::Result<()> {
        let mut serving = Vec::new();
        for fip in &self.floating_ips {
            let Some(port_id) = &fip.port_id else {
                serving.push(None);
                continue;
            };
            let Some(port) = self.port_by_id(port_id) else {
                return Err(invalid(format!(
                    "floating ip {}: its port is gone; unset it first",
                    fip.address
                )));
            };
            // Floating IPs are IPv4 (as in Neutron): they translate to the port's IPv4
            // address, through a router on that address's subnet.
            let served = port.fixed_ips.iter().any(|f| {
                f.ip.is_ipv4()
                    && self
                        .router_for_floating_ip(&fip.network_id, &f.subnet_id)
                        .is_some()
            });
            if !served {
                return Err(invalid(format!(
                    "floating ip {}: it is associated through this router; unset it first ('qrouter floating ip unset {} --port')",
                    fip.address, fip.address
                )));
            }
            serving.push(
                self.router_for_port(&fip.network_id, port_id)
                    .map(str::to_string),
            );
        }
        for (fip, router) in self.floating_ips.iter_mut().zip(serving) {
            if fip.router_id != router {
                Rc::make_mut(fip).router_id = router;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
