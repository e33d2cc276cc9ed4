//! What the kernel should hold, built from the store as data: one `Plan` per router or
//! instance namespace. Pure functions; no kernel access.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use crate::model::rules_router;
use crate::model::{
    ha, ipam, ipv6, naming, ra, rules, Instance, Network, Port, PortRole, Router, State,
};

/// Sysctls Neutron sets in every router namespace.
pub const ROUTER_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.conf.all.arp_ignore", "1"),
    ("net.ipv4.conf.all.arp_announce", "2"),
    ("net.ipv4.conf.all.promote_secondaries", "1"),
    ("net.netfilter.nf_conntrack_tcp_be_liberal", "1"),
];

/// What a namespace stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A `qrouter-` namespace: forwards, NATs, holds floating IPs.
    Router,
    /// A `qinstance-` namespace: a test host with one interface.
    Instance,
    /// A `qdhcp-` namespace: the network's dnsmasq on its `ns-` device (see `super::dhcp`).
    Dhcp,
}

/// One veth end inside a namespace, as the store wants it.
#[derive(Debug, PartialEq)]
pub struct Device {
    pub name: String,
    pub tap: String,
    /// The network it is on, and that network's bridge, where its tap goes.
    pub network_id: String,
    pub bridge: String,
    pub mac: String,
    /// Its addresses; a router's device that carries IPv6 has its link-local among them
    /// (qrouter adds it: router devices form none of their own, see `apply`).
    pub addresses: Vec<IpNet>,
    pub mtu: Option<u32>,
    /// Whether the device is to be up: a disabled router's (`--disable`) are down, so it
    /// forwards nothing.
    pub up: bool,
    /// Whether the host end is to be up. A port that is disabled, or on a disabled network,
    /// has its tap set down, as Neutron's linuxbridge agent does: the namespace end keeps
    /// its addresses and routes but loses its carrier, so nothing passes, and enabling
    /// brings it back as it was.
    pub tap_up: bool,
    /// Why the tap is to be down (`port p1 is disabled`, `network n1 is disabled`).
    pub why_down: Option<String>,
}

/// A route of the main table that qrouter manages (protocol static).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub destination: IpNet,
    /// Next hops, sorted; more than one make a multipath (ECMP) route, as Neutron builds
    /// for extra routes that share a destination.
    pub via: Vec<IpAddr>,
    /// No next hop: the destination is on the link of this device (scope link). With one:
    /// the device the next hop is reached through (an IPv6 link-local next hop needs it).
    pub device: Option<String>,
}

impl Route {
    /// The default route of the family of `via`.
    pub fn default_via(via: IpAddr) -> Route {
        let any = match via {
            IpAddr::V4(_) => IpNet::from(IpAddr::from([0u8; 4])),
            IpAddr::V6(_) => IpNet::from(IpAddr::from([0u8; 16])),
        };
        Route {
            destination: IpNet::new(any.addr(), 0).expect("0 is a valid length"),
            via: vec![via],
            device: None,
        }
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.destination.prefix_len() == 0 {
            f.write_str("default")?;
        } else {
            write!(f, "{}", self.destination)?;
        }
        if !self.via.is_empty() {
            let via: Vec<String> = self.via.iter().map(|v| v.to_string()).collect();
            write!(f, " via {}", via.join(", "))?;
        }
        match (&self.device, self.via.is_empty()) {
            (Some(dev), true) => write!(f, " dev {dev} scope link")?,
            (Some(dev), false) => write!(f, " dev {dev}")?,
            (None, _) => {}
        }
        Ok(())
    }
}

/// Everything one namespace should hold.
#[derive(Debug, PartialEq)]
pub struct Plan {
    pub kind: Kind,
    /// The router's or instance's id.
    pub id: String,
    pub namespace: String,
    pub devices: Vec<Device>,
    pub routes: Vec<Route>,
    pub rules: Vec<rules::Table>,
    /// An instance that takes its address by DHCP (`instance create --dhcp`): what its
    /// lease should give. qrouter sets none of it; a DHCP client run in the namespace does.
    pub lease: Option<Lease>,
    /// The addresses the kernel forms by itself from router advertisements (SLAAC), by
    /// device: neither set nor removed, but what the namespace holds once the router
    /// advertised (what `trace` walks).
    pub autoconf: Vec<(String, IpNet)>,
    /// An instance's routes the kernel learns from router advertisements (`ra::learnt`):
    /// the default via each advertising router's link-local, each advertised prefix on
    /// link. Neither set nor removed, like `autoconf` (what `trace` walks).
    pub ra_routes: Vec<Route>,
    /// Sysctls besides those of its kind, in order: IPv6 forwarding in a router that
    /// routes IPv6, a device's own (`net.ipv6.conf.<device>.…`), set once it exists and
    /// before it comes up.
    pub sysctls: Vec<(String, String)>,
    /// A router's radvd configuration (`model::ra`), where it advertises IPv6 prefixes.
    pub radvd: Option<String>,
    /// A copy of an HA router: its keepalived, which holds the router's addresses and
    /// routes (on the master only); the devices then hold none of them in the plan.
    pub vrrp: Option<ha::Vrrp>,
}

/// What the network's dnsmasq hands an instance that asks by DHCP: its device's addresses
/// (IPv4 by DHCP, IPv6 by DHCPv6, a /128 as a DHCPv6 client sets it) and the routes (the
/// default via the subnet's gateway, and the subnet's host routes; IPv6 hosts take theirs
/// from router advertisements).
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    pub device: String,
    pub addresses: Vec<IpNet>,
    pub routes: Vec<Route>,
    /// A DHCPv6-stateless subnet without a DHCPv6 address: the address comes by SLAAC, the
    /// rest (DNS server, search domain) by a DHCPv6 information request, as a guest asks
    /// for it when the router advertises the other-config flag.
    pub options6: bool,
}

impl Plan {
    /// A plan of `kind` for namespace `namespace`, with nothing in it yet.
    pub fn empty(kind: Kind, id: &str, namespace: String) -> Plan {
        Plan {
            kind,
            id: id.to_string(),
            namespace,
            devices: vec![],
            routes: vec![],
            rules: vec![],
            lease: None,
            autoconf: vec![],
            ra_routes: vec![],
            sysctls: vec![],
            radvd: None,
            vrrp: None,
        }
    }

    /// The plan with the lease applied: what the namespace holds once its DHCP client got
    /// it, and its SLAAC addresses formed (what `trace` walks).
    pub fn leased(mut self) -> Plan {
        if let Some(lease) = self.lease.take() {
            if let Some(dev) = self.devices.iter_mut().find(|d| d.name == lease.device) {
                dev.addresses.extend(lease.addresses);
            }
            self.routes.extend(lease.routes);
        }
        for (name, address) in std::mem::take(&mut self.autoconf) {
            if let Some(dev) = self.devices.iter_mut().find(|d| d.name == name) {
                dev.addresses.push(address);
            }
        }
        self
    }

    /// Every sysctl the namespace should have: its kind's, then its own.
    pub fn sysctls(&self) -> Vec<(String, String)> {
        let kind: &[(&str, &str)] = match self.kind {
            Kind::Router => ROUTER_SYSCTLS,
            Kind::Instance | Kind::Dhcp => &[],
        };
        kind.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain(self.sysctls.iter().cloned())
            .collect()
    }

    /// Whether any sysctl is a device's, to set once the device is made.
    pub fn has_device_sysctls(&self) -> bool {
        self.sysctls.iter().any(|(k, _)| {
            self.devices
                .iter()
                .any(|d| k.contains(&format!(".{}.", d.name)))
        })
    }
}

/// `net.ipv6.conf.<device>.<key>`.
pub fn ipv6_conf(device: &str, key: &str, value: &str) -> (String, String) {
    (format!("net.ipv6.conf.{device}.{key}"), value.to_string())
}

pub fn router_plan(state: &State, router: &Router) -> Plan {
    let namespace = naming::router_namespace(&router.id);
    let mut plan = Plan::empty(Kind::Router, &router.id, namespace);
    let mut nat = rules_router::RouterNat {
        snat: router.snat,
        inbound: router.inbound.clone(),
        ..Default::default()
    };
    let floating = state.router_floating_ips(router);
    // The router routes IPv6 where any of its ports holds an IPv6 address.
    let v6 = state
        .router_ports(router)
        .any(|p| p.fixed_ips.iter().any(|f| f.ip.is_ipv6()));
    let mut v6_default = false;
    for port in state.router_ports(router) {
        let Some(network) = state.network_by_id(&port.network_id) else {
            continue;
        };
        let mut device = device(port, network);
        for fixed in &port.fixed_ips {
            let Some(subnet) = state.subnet_by_id(&fixed.subnet_id) else {
                continue;
            };
            device.addresses.push(ipam::with_prefix(subnet, fixed.ip));
            match (port.role, fixed.ip) {
                (PortRole::RouterGateway, ip) => {
                    if let Some(gw) = subnet.gateway {
                        plan.routes.push(Route::default_via(gw));
                        v6_default |= gw.is_ipv6();
                    }
                    // A name no interface can have gets no rules: its device cannot be
                    // made either, and that fails the change, naming it.
                    if let (Ok(qg), IpAddr::V4(ip)) = (rules::IfName::new(&device.name), ip) {
                        nat.gateway.get_or_insert((qg, ip));
                    }
                }
                (_, IpAddr::V4(_)) => nat.internal.extend(ipv4(subnet.cidr)),
                (_, IpAddr::V6(_)) => {}
            }
        }
        if port.role == PortRole::RouterGateway {
            for (fip, fixed) in &floating {
                device.addresses.push(IpNet::from(IpAddr::V4(fip.address)));
                nat.floating.push((fip.address, *fixed));
            }
            // The external network's other subnets are on the same link (Neutron's
            // set_onlink_routes): reached directly, not through the upstream gateway
            // (IPv6 ones only where the router routes IPv6).
            for other in state.subnets_of(&network.id) {
                if !port.fixed_ips.iter().any(|f| f.subnet_id == other.id) && (v6 || !other.is_v6())
                {
                    plan.routes.push(Route {
                        destination: other.cidr,
                        via: vec![],
                        device: Some(device.name.clone()),
                    });
                }
            }
            if v6 {
                v6_default |= ipv6_uplink(&mut plan, network, &device.name, v6_default);
                // No NAT66: the tenant addresses are routed as they are, guarded on qg-.
                nat.ipv6_uplink = rules::IfName::new(&device.name).ok();
            }
        }
        // A port that carries IPv6 needs its link-local address: router advertisements go
        // out from it, instances route through it, and the neighbour solicitations for a
        // forwarded packet's next hop leave from it (the gateway's too).
        let carries_v6 = port.fixed_ips.iter().any(|f| f.ip.is_ipv6())
            || (v6 && port.role == PortRole::RouterGateway);
        if let Some(lla) = ipv6::link_local(&port.mac).filter(|_| carries_v6) {
            device.addresses.push(IpNet::V6(lla));
        }
        plan.devices.push(device);
    }
    if v6 {
        plan.sysctls
            .insert(0, ("net.ipv6.conf.all.forwarding".into(), "1".into()));
    }
    // Extra routes to one destination form one multipath route.
    for extra in &router.routes {
        match plan
            .routes
            .iter_mut()
            .find(|r| r.destination == extra.destination && r.device.is_none())
        {
            Some(route) if !route.via.contains(&extra.nexthop) => {
                route.via.push(extra.nexthop);
                route.via.sort();
            }
            Some(_) => {}
            None => plan.routes.push(Route {
                destination: extra.destination,
                via: vec![extra.nexthop],
                device: None,
            }),
        }
    }
    // A disabled router keeps its devices and addresses, down: the kernel then holds no
    // route through them, and forwards nothing.
    if !router.meta.admin_state_up {
        for device in &mut plan.devices {
            device.up = false;
        }
        plan.routes.clear();
    }
    // `trace --live` puts a chain in raw (ip6tables' for an IPv6 probe) for a moment; none
    // is wanted, so converging (`sync`) removes one a killed trace left behind.
    plan.rules = rules_router::build(&nat);
    plan.rules.push(rules::Table::empty("raw"));
    plan.rules
        .push(rules::Table::empty_of(rules::Family::V6, "raw"));
    plan.radvd = ra::config(state, router);
    ha_copy(state, router, &mut plan);
    plan
}

fn ipv4(net: IpNet) -> Option<ipnet::Ipv4Net> {
    match net {
        IpNet::V4(net) => Some(net),
        IpNet::V6(_) => None,
    }
}

/// An HA router's copy (in a host's part, `router.host` names the host whose copy it is):
/// its `ha-` device on the HA network, and its addresses and routes handed to keepalived,
/// which adds them on the master only. The rules are the same on every copy (inert on a
/// backup, which holds no address). A disabled HA router runs no keepalived. No radvd yet:
/// it would advertise from every copy, the backups' too.
fn ha_copy(state: &State, router: &Router, plan: &mut Plan) {
    let (Some(ha), Some(host)) = (&router.ha, &router.host) else {
        return;
    };
    let (Some(copy), Some(network)) = (router.copy_on(host), state.ha_network()) else {
        return;
    };
    let mut peers: Vec<Ipv4Addr> = (ha.copies.iter())
        .filter(|c| c.host != copy.host)
        .map(|c| c.address)
        .collect();
    if peers.is_empty() {
        peers.push(ha::NO_PEER);
    }
    let mut vrrp = ha::Vrrp {
        vrid: ha.vrid,
        interface: ha::device(&router.id),
        address: copy.address,
        peers,
        track: None,
        addresses: vec![],
        routes: vec![],
    };
    for d in &mut plan.devices {
        if d.name.starts_with("qg-") {
            vrrp.track = Some(d.name.clone());
        }
        let name = d.name.clone();
        vrrp.addresses
            .extend(d.addresses.drain(..).map(|a| (a, name.clone())));
    }
    vrrp.routes = (plan.routes.drain(..))
        .flat_map(|r| {
            let one = |via: Option<IpAddr>| ha::VirtualRoute {
                destination: r.destination,
                via,
                device: r.device.clone(),
            };
            match r.via.is_empty() {
                true => vec![one(None)],
                false => r.via.iter().map(|v| one(Some(*v))).collect(),
            }
        })
        .collect();
    let address = ipnet::Ipv4Net::new(copy.address, ha::cidr().prefix_len()).expect("a prefix");
    plan.devices.push(Device {
        name: ha::device(&router.id),
        tap: ha::tap(&router.id),
        network_id: network.id.clone(),
        bridge: network.bridge.clone(),
        mac: copy.mac.clone(),
        addresses: vec![IpNet::V4(address)],
        mtu: network.mtu,
        up: true,
        tap_up: true,
        why_down: None,
    });
    plan.radvd = None;
    if router.meta.admin_state_up {
        plan.vrrp = Some(vrrp);
    }
}

/// The IPv6 side of a router's gateway device `qg` on `network`, as Neutron's
/// `_configure_ipv6_params_on_gw` sets it: without a default route through an IPv6 subnet's
/// gateway (`has_default`), one through the network's `--ipv6-gateway` (a link-local
/// address, reached through `qg`); without either, the default route learnt from the
/// upstream's router advertisements (`accept_ra=2`, which a router, forwarding, needs to
/// take them). Returns whether it planned a default route.
fn ipv6_uplink(plan: &mut Plan, network: &Network, qg: &str, has_default: bool) -> bool {
    let through_lla = network.ipv6_gateway.filter(|_| !has_default);
    if let Some(lla) = through_lla {
        let mut route = Route::default_via(IpAddr::V6(lla));
        route.device = Some(qg.to_string());
        plan.routes.push(route);
    }
    let planned = has_default || through_lla.is_some();
    let accept_ra = if planned { "0" } else { "2" };
    plan.sysctls.push(ipv6_conf(qg, "accept_ra", accept_ra));
    through_lla.is_some()
}

pub fn instance_plan(state: &State, instance: &Instance) -> Plan {
    let namespace = naming::instance_namespace(&instance.id);
    let mut plan = Plan::empty(Kind::Instance, &instance.id, namespace);
    let Some(port) = state.port_by_id(&instance.port_id) else {
        return plan;
    };
    let Some(network) = state.network_by_id(&port.network_id) else {
        return plan;
    };
    let mut device = device(port, network);
    for fixed in &port.fixed_ips {
        let Some(subnet) = state.subnet_by_id(&fixed.subnet_id) else {
            continue;
        };
        let address = ipam::with_prefix(subnet, fixed.ip);
        if subnet.is_v6() {
            // IPv6 as a guest has it: the default route from the router's advertisements,
            // the address by SLAAC on an auto-address subnet, by DHCPv6 with --dhcp, or set.
            if subnet.is_auto_address() {
                plan.autoconf.push((device.name.clone(), address));
                let stateless = subnet.ipv6_address_mode == Some(ipv6::Mode::Dhcpv6Stateless);
                if instance.dhcp && stateless && subnet.dhcp.enabled {
                    lease_of(&mut plan, &device).options6 = true;
                }
            } else if instance.dhcp {
                lease_of(&mut plan, &device)
                    .addresses
                    .push(IpNet::from(fixed.ip));
            } else {
                device.addresses.push(address);
            }
            continue;
        }
        let default = subnet
            .gateway
            .filter(|gw| *gw != fixed.ip)
            .map(Route::default_via);
        if instance.dhcp {
            // The MAC only: the address and routes come from the network's dnsmasq (its
            // static lease for this port), as they do for a VM.
            let lease = lease_of(&mut plan, &device);
            if !lease.addresses.iter().any(|a| a.addr().is_ipv4()) {
                lease
                    .routes
                    .extend(subnet.dhcp.host_routes.iter().map(|r| Route {
                        destination: IpNet::V4(r.destination),
                        via: vec![IpAddr::V4(r.nexthop)],
                        device: None,
                    }));
                lease.routes.extend(default);
                lease.addresses.insert(0, address);
            }
            continue;
        }
        device.addresses.push(address);
        plan.routes.extend(default);
    }
    // A guest's IPv6 as Neutron requires it: addresses from the MAC (EUI-64), no privacy
    // addresses, whatever the host's defaults are; routes from the advertisements.
    if port.fixed_ips.iter().any(|f| f.ip.is_ipv6()) {
        let learnt = ra::learnt(state, &network.id);
        let on = |destination: IpNet, via: Vec<IpAddr>| Route {
            destination,
            via,
            device: Some(device.name.clone()),
        };
        plan.ra_routes = (learnt.on_link.into_iter().map(|p| on(p, vec![])))
            .chain((!learnt.routers.is_empty()).then(|| {
                let via = learnt.routers.into_iter().map(IpAddr::V6).collect();
                on(IpNet::V6(Default::default()), via)
            }))
            .collect();
        for (key, value) in [("addr_gen_mode", "0"), ("use_tempaddr", "0")] {
            plan.sysctls.push(ipv6_conf(&device.name, key, value));
        }
    }
    plan.devices.push(device);
    plan
}

/// The lease an instance's `device` asks for, begun empty.
fn lease_of<'a>(plan: &'a mut Plan, device: &Device) -> &'a mut Lease {
    plan.lease.get_or_insert_with(|| Lease {
        device: device.name.clone(),
        addresses: vec![],
        routes: vec![],
        options6: false,
    })
}

pub(super) fn device(port: &Port, network: &Network) -> Device {
    let why_down = port.down_because(Some(network));
    Device {
        name: naming::port_device(port),
        tap: naming::port_tap(port),
        network_id: network.id.clone(),
        bridge: network.bridge.clone(),
        mac: port.mac.clone(),
        addresses: vec![],
        mtu: network.mtu,
        up: true,
        tap_up: why_down.is_none(),
        why_down,
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
