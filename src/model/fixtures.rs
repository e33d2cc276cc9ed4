//! Objects for unit tests, holding what most tests take for granted, so that a test states
//! only what it is about: `Network { external: true, ..fixtures::network("n1", "ext") }`.

use std::net::Ipv4Addr;
use std::rc::Rc;

use super::host::{HostInfo, Role};
use super::{ipam, naming, FixedIp, Instance, Network, Port, PortRole, Router, State, Subnet};

/// A tenant network on its own bridge (`brq…`), port security on.
pub fn network(id: &str, name: &str) -> Network {
    Network {
        ha: false,
        id: id.into(),
        name: name.into(),
        external: false,
        bridge: naming::network_bridge(id),
        owns_bridge: true,
        provider_interface: None,
        mtu: None,
        vni: None,
        port_security: true,
        shared: false,
        is_default: false,
        ipv6_gateway: None,
        meta: Default::default(),
    }
}

/// A network, external on `br-ex` (an operator's bridge) where `external`.
pub fn network_of(id: &str, name: &str, external: bool) -> Network {
    match external {
        true => Network {
            external,
            bridge: "br-ex".into(),
            owns_bridge: false,
            ..network(id, name)
        },
        false => network(id, name),
    }
}

/// A subnet named as its id, with the gateway and pools `subnet create` gives it.
pub fn subnet(id: &str, network_id: &str, cidr: &str) -> Subnet {
    let cidr = cidr.parse().expect("a CIDR");
    let gateway = Some(ipam::default_gateway(cidr));
    Subnet {
        id: id.into(),
        name: id.into(),
        network_id: network_id.into(),
        cidr,
        gateway,
        pools: ipam::default_pools(cidr, gateway),
        dhcp: Default::default(),
        ipv6_ra_mode: None,
        ipv6_address_mode: None,
        meta: Default::default(),
    }
}

/// A port of `device_id` in `role`, holding `ip` on `subnet_id` (none if `ip` is empty).
pub fn port(
    id: &str,
    network_id: &str,
    role: PortRole,
    device_id: &str,
    subnet_id: &str,
    ip: &str,
) -> Port {
    let fixed_ips = match ip.is_empty() {
        true => vec![],
        false => vec![FixedIp {
            subnet_id: subnet_id.into(),
            ip: ip.parse().expect("an address"),
        }],
    };
    Port {
        id: id.into(),
        name: String::new(),
        network_id: network_id.into(),
        role,
        device_id: device_id.into(),
        mac: "fa:16:3e:00:00:01".into(),
        fixed_ips,
        host: None,
        security: Default::default(),
        meta: Default::default(),
    }
}

/// A router with SNAT and nothing else: no gateway, interfaces or routes.
pub fn router(id: &str, name: &str) -> Router {
    Router {
        ha: None,
        id: id.into(),
        name: name.into(),
        gateway_port_id: None,
        snat: true,
        routes: vec![],
        inbound: vec![],
        host: None,
        meta: Default::default(),
    }
}

/// An instance on port `port_id`, addressed statically.
pub fn instance(id: &str, name: &str, port_id: &str) -> Instance {
    Instance {
        id: id.into(),
        name: name.into(),
        port_id: port_id.into(),
        dhcp: false,
        host: None,
    }
}

/// A host as its agent registered it, at 10.0.0.1 on the underlay.
pub fn host(name: &str, role: Role, alive: bool) -> HostInfo {
    HostInfo {
        name: name.into(),
        role,
        local_ip: Ipv4Addr::new(10, 0, 0, 1),
        started: 0,
        alive,
        last_seen: 0,
    }
}

/// The seed after step 1, as data: router_100_101 on vlan100 and vlan101 with its gateway
/// on ext_net (10.10.10.2, port b8b32a88-0305), cirros-vm3 at 172.16.101.3.
pub fn seed() -> State {
    let mut s = State {
        positions: Default::default(),
        networks: vec![
            network_of("n100-0000-0000", "vlan100", false).into(),
            network_of("n101-0000-0000", "vlan101", false).into(),
            network_of("next-0000-0000", "ext_net", true).into(),
        ],
        subnets: vec![
            subnet("s100", "n100-0000-0000", "172.16.100.0/24").into(),
            subnet("s101", "n101-0000-0000", "172.16.101.0/24").into(),
            subnet("sext", "next-0000-0000", "10.10.10.0/24").into(),
        ],
        routers: vec![Router {
            gateway_port_id: Some("b8b32a88-0305".into()),
            ..router("r1", "router_100_101")
        }
        .into()],
        ..Default::default()
    };
    let router_port = |id: &str, net: &str, role, subnet: &str, ip: &str| {
        Rc::new(port(id, net, role, "r1", subnet, ip))
    };
    s.ports = vec![
        router_port(
            "b8b32a88-0305",
            "next-0000-0000",
            PortRole::RouterGateway,
            "sext",
            "10.10.10.2",
        ),
        router_port(
            "d568ba1a-74aa",
            "n100-0000-0000",
            PortRole::RouterInterface,
            "s100",
            "172.16.100.1",
        ),
        router_port(
            "e17162c5-00aa",
            "n101-0000-0000",
            PortRole::RouterInterface,
            "s101",
            "172.16.101.1",
        ),
    ];
    add_instance(
        &mut s,
        "cirros-vm3",
        "n101-0000-0000",
        "s101",
        "172.16.101.3",
    );
    s
}

/// Instance `name` (id `i-NAME`) on its port `p-NAME-0000` at `ip`.
pub fn add_instance(s: &mut State, name: &str, network_id: &str, subnet_id: &str, ip: &str) {
    let (id, port_id) = (format!("i-{name}"), format!("p-{name}-0000"));
    s.ports
        .push(port(&port_id, network_id, PortRole::Instance, &id, subnet_id, ip).into());
    s.instances.push(instance(&id, name, &port_id).into());
}
