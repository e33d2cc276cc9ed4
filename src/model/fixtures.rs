//! Objects for unit tests, holding what most tests take for granted, so that a test states
//! only what it is about: `Network { external: true, ..fixtures::network("n1", "ext") }`.

use std::net::Ipv4Addr;

use super::host::{HostInfo, Role};
use super::{ipam, naming, FixedIp, Instance, Network, Port, PortRole, Router, Subnet};

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
