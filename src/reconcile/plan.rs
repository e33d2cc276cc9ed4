//! What the kernel should hold, built from the store as data: one `Plan` per router or
//! instance namespace. Pure functions; no kernel access.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::model::{ipam, naming, rules, Instance, Network, Port, PortRole, Router, State};

/// Sysctls Neutron sets in every router namespace.
pub const ROUTER_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.conf.all.arp_ignore", "1"),
    ("net.ipv4.conf.all.arp_announce", "2"),
    ("net.ipv4.conf.all.promote_secondaries", "1"),
    ("net.netfilter.nf_conntrack_tcp_be_liberal", "1"),
    // Announce a device's addresses (gratuitous ARP) when it comes up, without a process.
    ("net.ipv4.conf.all.arp_notify", "1"),
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
    pub bridge: String,
    pub mac: String,
    pub addresses: Vec<Ipv4Net>,
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
    pub destination: Ipv4Net,
    /// Next hops, sorted; more than one make a multipath (ECMP) route, as Neutron builds
    /// for extra routes that share a destination.
    pub via: Vec<Ipv4Addr>,
    /// No next hop: the destination is on the link of this device (scope link).
    pub device: Option<String>,
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
        if let Some(dev) = &self.device {
            write!(f, " dev {dev} scope link")?;
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
}

/// What the network's dnsmasq hands an instance that asks by DHCP: its device's address and
/// the routes (the default via the subnet's gateway, and the subnet's host routes).
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    pub device: String,
    pub address: Ipv4Net,
    pub routes: Vec<Route>,
}

impl Plan {
    /// The plan with the lease applied: what the namespace holds once its DHCP client got
    /// it (what `trace` walks).
    pub fn leased(mut self) -> Plan {
        if let Some(lease) = self.lease.take() {
            if let Some(dev) = self.devices.iter_mut().find(|d| d.name == lease.device) {
                dev.addresses.push(lease.address);
            }
            self.routes.extend(lease.routes);
        }
        self
    }

    pub fn sysctls(&self) -> &'static [(&'static str, &'static str)] {
        match self.kind {
            Kind::Router => ROUTER_SYSCTLS,
            Kind::Instance | Kind::Dhcp => &[],
        }
    }
}

pub fn router_plan(state: &State, router: &Router) -> Plan {
    let mut devices = Vec::new();
    let mut routes = Vec::new();
    let mut nat = rules::RouterNat {
        snat: router.snat,
        ..Default::default()
    };
    let floating = state.router_floating_ips(router);
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
            match port.role {
                PortRole::RouterGateway => {
                    if let Some(gw) = subnet.gateway {
                        routes.push(Route {
                            destination: Ipv4Net::default(),
                            via: vec![gw],
                            device: None,
                        });
                    }
                    // A name no interface can have gets no rules: its device cannot be
                    // made either, and that fails the change, naming it.
                    if let Ok(qg) = rules::IfName::new(&device.name) {
                        nat.gateway.get_or_insert((qg, fixed.ip));
                    }
                }
                _ => nat.internal.push(subnet.cidr),
            }
        }
        if port.role == PortRole::RouterGateway {
            for (fip, fixed) in &floating {
                device.addresses.push(Ipv4Net::from(fip.address));
                nat.floating.push((fip.address, *fixed));
            }
            // The external network's other subnets are on the same link (Neutron's
            // set_onlink_routes): reached directly, not through the upstream gateway.
            for other in state.subnets_of(&network.id) {
                if !port.fixed_ips.iter().any(|f| f.subnet_id == other.id) {
                    routes.push(Route {
                        destination: other.cidr,
                        via: vec![],
                        device: Some(device.name.clone()),
                    });
                }
            }
        }
        devices.push(device);
    }
    // Extra routes to one destination form one multipath route.
    for extra in &router.routes {
        match routes
            .iter_mut()
            .find(|r| r.destination == extra.destination && r.device.is_none())
        {
            Some(route) if !route.via.contains(&extra.nexthop) => {
                route.via.push(extra.nexthop);
                route.via.sort();
            }
            Some(_) => {}
            None => routes.push(Route {
                destination: extra.destination,
                via: vec![extra.nexthop],
                device: None,
            }),
        }
    }
    // A disabled router keeps its devices and addresses, down: the kernel then holds no
    // route through them, and forwards nothing.
    if !router.meta.admin_state_up {
        for device in &mut devices {
            device.up = false;
        }
        routes.clear();
    }
    Plan {
        kind: Kind::Router,
        id: router.id.clone(),
        namespace: naming::router_namespace(&router.id),
        devices,
        routes,
        rules: {
            // `trace --live` puts a chain in raw for a moment; none is wanted, so
            // converging (`sync`) removes one a killed trace left behind.
            let mut tables = rules::build(&nat);
            tables.push(rules::Table::empty("raw"));
            tables
        },
        lease: None,
    }
}

pub fn instance_plan(state: &State, instance: &Instance) -> Plan {
    let mut plan = Plan {
        kind: Kind::Instance,
        id: instance.id.clone(),
        namespace: naming::instance_namespace(&instance.id),
        devices: vec![],
        routes: vec![],
        rules: vec![],
        lease: None,
    };
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
        let default = subnet.gateway.filter(|gw| *gw != fixed.ip).map(|gw| Route {
            destination: Ipv4Net::default(),
            via: vec![gw],
            device: None,
        });
        if instance.dhcp {
            // The MAC only: the address and routes come from the network's dnsmasq (its
            // static lease for this port), as they do for a VM.
            if plan.lease.is_none() {
                let mut routes: Vec<Route> = subnet
                    .dhcp
                    .host_routes
                    .iter()
                    .map(|r| Route {
                        destination: r.destination,
                        via: vec![r.nexthop],
                        device: None,
                    })
                    .collect();
                routes.extend(default);
                plan.lease = Some(Lease {
                    device: device.name.clone(),
                    address,
                    routes,
                });
            }
            continue;
        }
        device.addresses.push(address);
        plan.routes.extend(default);
    }
    plan.devices.push(device);
    plan
}

pub(super) fn device(port: &Port, network: &Network) -> Device {
    let why_down = port.down_because(Some(network));
    Device {
        name: naming::port_device(port),
        tap: naming::port_tap(port),
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
mod tests {
    use super::*;
    use crate::model::{ipam, FixedIp, Network, Port, PortRole, Router, State, Subnet};

    fn seed() -> State {
        let net = |id: &str, name: &str, external: bool| Network {
            port_security: true,
            id: id.into(),
            name: name.into(),
            external,
            bridge: if external {
                "br-ex".into()
            } else {
                naming::network_bridge(id)
            },
            owns_bridge: true,
            provider_interface: None,
            mtu: None,
            meta: Default::default(),
            vni: None,
            shared: false,
            is_default: false,
        };
        let subnet = |id: &str, net: &str, cidr: &str| {
            let cidr: Ipv4Net = cidr.parse().unwrap();
            let gateway = Some(ipam::default_gateway(cidr));
            Subnet {
                id: id.into(),
                name: id.into(),
                network_id: net.into(),
                cidr,
                gateway,
                pools: ipam::default_pools(cidr, gateway),
                dhcp: Default::default(),
                meta: Default::default(),
            }
        };
        let port = |id: &str, net: &str, role, subnet: &str, ip: &str| Port {
            security: Default::default(),
            id: id.into(),
            name: String::new(),
            network_id: net.into(),
            role,
            device_id: "r1".into(),
            mac: "fa:16:3e:00:00:01".into(),
            host: None,
            fixed_ips: vec![FixedIp {
                subnet_id: subnet.into(),
                ip: ip.parse().unwrap(),
            }],
            meta: Default::default(),
        };
        State {
            networks: vec![
                net("n-ext", "ext_net", true).into(),
                net("n101-0000-0000", "vlan101", false).into(),
            ],
            subnets: vec![
                subnet("s-ext", "n-ext", "10.10.10.0/24").into(),
                subnet("s101", "n101-0000-0000", "172.16.101.0/24").into(),
            ],
            routers: vec![Router {
                id: "r1".into(),
                name: "router_100_101".into(),
                gateway_port_id: Some("b8b32a88-0305".into()),
                snat: true,
                routes: vec![],
                meta: Default::default(),
                host: None,
            }
            .into()],
            ports: vec![
                port(
                    "b8b32a88-0305",
                    "n-ext",
                    PortRole::RouterGateway,
                    "s-ext",
                    "10.10.10.2",
                )
                .into(),
                port(
                    "e17162c5-00aa",
                    "n101-0000-0000",
                    PortRole::RouterInterface,
                    "s101",
                    "172.16.101.1",
                )
                .into(),
            ],
            instances: vec![],
            floating_ips: vec![],
        }
    }

    #[test]
    fn seed_router_plan() {
        let state = seed();
        let plan = router_plan(&state, &state.routers[0]);
        assert_eq!(plan.namespace, "qrouter-r1");
        let names: Vec<_> = plan
            .devices
            .iter()
            .map(|d| (d.name.as_str(), d.tap.as_str(), d.bridge.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("qg-b8b32a88-03", "tapb8b32a88-03", "br-ex"),
                ("qr-e17162c5-00", "tape17162c5-00", "brqn101-0000-0")
            ]
        );
        assert_eq!(
            plan.devices[0].addresses,
            ["10.10.10.2/24".parse::<Ipv4Net>().unwrap()]
        );
        assert_eq!(
            plan.devices[1].addresses,
            ["172.16.101.1/24".parse::<Ipv4Net>().unwrap()]
        );
        assert_eq!(plan.routes.len(), 1);
        assert_eq!(plan.routes[0].to_string(), "default via 10.10.10.1");
        let snat = &plan.rules[0]
            .chains
            .iter()
            .find(|(c, _)| c == "qrouter-snat")
            .unwrap()
            .1;
        assert_eq!(
            snat.last().unwrap().to_string(),
            "-o qg-b8b32a88-03 -j SNAT --to-source 10.10.10.2 --random-fully"
        );
    }

    #[test]
    fn extra_routes_to_one_destination_make_one_multipath_route() {
        let mut state = seed();
        let r = std::rc::Rc::make_mut(&mut state.routers[0]);
        for via in ["10.10.10.6", "10.10.10.5"] {
            r.routes.push(crate::model::ExtraRoute {
                destination: "8.8.8.0/24".parse().unwrap(),
                nexthop: via.parse().unwrap(),
            });
        }
        let plan = router_plan(&state, &state.routers[0]);
        let routes: Vec<String> = plan.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            routes,
            [
                "default via 10.10.10.1",
                "8.8.8.0/24 via 10.10.10.5, 10.10.10.6"
            ]
        );
    }

    #[test]
    fn other_subnets_of_the_external_network_are_on_link() {
        let mut state = seed();
        let cidr: Ipv4Net = "9.4.5.0/24".parse().unwrap();
        state.subnets.push(
            Subnet {
                id: "s-ext2".into(),
                name: "x".into(),
                network_id: "n-ext".into(),
                cidr,
                gateway: None,
                pools: ipam::default_pools(cidr, None),
                dhcp: Default::default(),
                meta: Default::default(),
            }
            .into(),
        );
        let plan = router_plan(&state, &state.routers[0]);
        let routes: Vec<String> = plan.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            routes,
            [
                "default via 10.10.10.1",
                "9.4.5.0/24 dev qg-b8b32a88-03 scope link"
            ]
        );
    }

    #[test]
    fn router_without_gateway_has_no_default_route_and_no_nat() {
        let mut state = seed();
        std::rc::Rc::make_mut(&mut state.routers[0]).gateway_port_id = None;
        let plan = router_plan(&state, &state.routers[0]);
        assert_eq!(plan.devices.len(), 1);
        assert!(plan.routes.is_empty());
        assert!(plan
            .rules
            .iter()
            .flat_map(|t| &t.chains)
            .all(|(_, r)| r.is_empty()));
    }

    #[test]
    fn a_disabled_network_or_port_has_its_taps_down_and_nothing_else_changed() {
        let mut state = seed();
        let enabled = router_plan(&state, &state.routers[0]);
        assert!(enabled.devices.iter().all(|d| d.tap_up && d.up));
        std::rc::Rc::make_mut(&mut state.networks[1])
            .meta
            .admin_state_up = false;
        let plan = router_plan(&state, &state.routers[0]);
        let taps: Vec<_> = plan
            .devices
            .iter()
            .map(|d| (d.tap_up, d.why_down.as_deref()))
            .collect();
        assert_eq!(
            taps,
            [(true, None), (false, Some("network vlan101 is disabled"))]
        );
        // The namespace ends, their addresses, routes and rules stay as they were.
        let same = |a: &Plan, b: &Plan| {
            a.devices
                .iter()
                .zip(&b.devices)
                .all(|(x, y)| x.up == y.up && x.addresses == y.addresses)
                && a.routes == b.routes
                && a.rules == b.rules
        };
        assert!(same(&plan, &enabled));
        let mut state = seed();
        std::rc::Rc::make_mut(&mut state.ports[0])
            .meta
            .admin_state_up = false;
        let plan = router_plan(&state, &state.routers[0]);
        assert!(!plan.devices[0].tap_up && plan.devices[1].tap_up);
    }
}
