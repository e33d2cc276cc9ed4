//! DHCP and DNS per network, as Neutron's DHCP agent runs them: one dnsmasq per network in
//! a `qdhcp-<network id>` namespace, static leases only, built from the store's ports. Pure:
//! the files and arguments are data here; `kernel::dnsmasq` writes and runs them.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use super::{validate, Network, Port, PortRole, State, Subnet};
use crate::bail_invalid;

/// The DNS domain dnsmasq serves and hands out (Neutron's default).
pub const DOMAIN: &str = "openstacklocal";

/// Neutron's lease time.
pub const LEASE: &str = "86400s";

/// The MTU of a network that sets none: its bridge's, which qrouter makes with the
/// kernel's default for Ethernet. (A VXLAN network's is set by its agent's view of the
/// store, from the underlay's MTU.)
pub const ETHERNET_MTU: u32 = 1500;

/// The MTU the network's devices have, which every lease carries (as Neutron sends its
/// networks' MTU whether or not the operator set one).
pub fn effective_mtu(network: &Network) -> u32 {
    network.mtu.unwrap_or(ETHERNET_MTU)
}

/// A route handed to clients (DHCP option 121, classless static routes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRoute {
    pub destination: Ipv4Net,
    pub nexthop: Ipv4Addr,
}

/// A subnet's DHCP settings. A store written before DHCP existed reads as DHCP off: an
/// upgrade starts no daemon by itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetDhcp {
    #[serde(default)]
    pub enabled: bool,
    /// DNS servers handed out (by DHCP, and for SLAAC subnets in the router's
    /// advertisements); none: the network's DHCP port, which answers for its names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_nameservers: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_routes: Vec<HostRoute>,
}

/// `destination=CIDR,gateway=IP`, the next hop on the subnet. IPv4 only: DHCPv6 hands out
/// no routes (IPv6 hosts learn them from router advertisements).
pub fn host_route(subnet: &str, cidr: IpNet, text: &str) -> anyhow::Result<HostRoute> {
    let what = format!("subnet {subnet}: --host-route");
    if cidr.network().is_ipv6() {
        bail_invalid!("{what}: an IPv6 subnet takes no host routes; DHCPv6 hands out none (hosts learn routes from the router's advertisements)");
    }
    let pairs = validate::key_values(&what, text, &["destination", "gateway"])?;
    let get = |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let (Some(dest), Some(gw)) = (get("destination"), get("gateway")) else {
        bail_invalid!("{what}: '{text}' needs both destination=CIDR and gateway=IP");
    };
    let route = HostRoute {
        destination: validate::cidr(&what, dest)?,
        nexthop: validate::ip(&what, gw)?,
    };
    if !cidr.contains(&IpAddr::V4(route.nexthop)) {
        bail_invalid!(
            "{what}: gateway {} is not on the subnet ({cidr}): a client could not reach it",
            route.nexthop
        );
    }
    Ok(route)
}

/// A subnet's DHCP settings from `--dhcp`/`--no-dhcp` (None: the default, on for tenant
/// networks, off for external ones), `--dns-nameserver` and `--host-route`.
pub fn subnet_options(
    subnet: &str,
    network: &Network,
    cidr: IpNet,
    dhcp: Option<bool>,
    dns: &[String],
    routes: &[String],
) -> anyhow::Result<SubnetDhcp> {
    let dns_nameservers = dns_servers(subnet, cidr, dns)?;
    let host_routes = routes
        .iter()
        .map(|r| host_route(subnet, cidr, r))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(SubnetDhcp {
        enabled: dhcp.unwrap_or(!network.external),
        dns_nameservers,
        host_routes,
    })
}

/// `--dns-nameserver`s of a subnet: addresses of its IP version.
pub fn dns_servers(subnet: &str, cidr: IpNet, given: &[String]) -> anyhow::Result<Vec<IpAddr>> {
    let what = format!("subnet {subnet}");
    let version = if cidr.network().is_ipv4() { 4 } else { 6 };
    given
        .iter()
        .map(|text| {
            let ip = validate::addr(&format!("{what}: --dns-nameserver"), text)?;
            validate::same_version(&what, "dns_nameserver", ip, version)?;
            Ok(ip)
        })
        .collect()
}

/// A MAC an operator gives a port: six bytes, unicast (a VM's NIC cannot have a group
/// address), not all zeros. Normalised to lower case.
pub fn unicast_mac(what: &str, text: &str) -> anyhow::Result<String> {
    let bytes: Vec<Option<u8>> = text
        .split(':')
        .map(|b| {
            (b.len() == 2)
                .then(|| u8::from_str_radix(b, 16).ok())
                .flatten()
        })
        .collect();
    if bytes.len() != 6 || bytes.iter().any(Option::is_none) {
        bail_invalid!("{what}: '{text}' is not a MAC address (like fa:16:3e:12:34:56)");
    }
    let bytes: Vec<u8> = bytes.into_iter().flatten().collect();
    if bytes[0] & 1 == 1 {
        bail_invalid!("{what}: {text} is a multicast address; a port needs a unicast MAC");
    }
    if bytes.iter().all(|b| *b == 0) {
        bail_invalid!("{what}: {text} is the zero address; a port needs a unicast MAC");
    }
    Ok(text.to_ascii_lowercase())
}

/// The network's DHCP port (`network:dhcp`), if it has one.
pub fn dhcp_port<'a>(state: &'a State, network_id: &str) -> Option<&'a Port> {
    state
        .ports
        .iter()
        .map(AsRef::as_ref)
        .find(|p| p.role == PortRole::Dhcp && p.network_id == network_id)
}

/// Whether any subnet of the network serves DHCP.
pub fn wanted(state: &State, network_id: &str) -> bool {
    state.subnets_of(network_id).any(|s| s.dhcp.enabled)
}

/// Make the network's DHCP port match its DHCP subnets, as Neutron's agent does: one
/// fixed IP per DHCP subnet (the first free pool address, taken when DHCP is switched on),
/// none for the others; the port goes with its last such subnet.
pub fn fit_dhcp_port(state: &mut State, network_id: &str) -> anyhow::Result<()> {
    let enabled: Vec<Subnet> = state
        .subnets_of(network_id)
        .filter(|s| s.dhcp.enabled)
        .cloned()
        .collect();
    let Some(network) = state.network_by_id(network_id).cloned() else {
        state
            .ports
            .retain(|p| !(p.role == PortRole::Dhcp && p.network_id == network_id));
        return Ok(());
    };
    let mut port = match dhcp_port(state, network_id) {
        Some(p) => p.clone(),
        None if enabled.is_empty() => return Ok(()),
        None => Port {
            security: Default::default(),
            id: super::new_id(),
            name: String::new(),
            network_id: network_id.to_string(),
            role: PortRole::Dhcp,
            device_id: network_id.to_string(),
            mac: super::new_mac(),
            host: None,
            fixed_ips: vec![],
            meta: super::Meta::new(),
        },
    };
    let before = port.clone();
    port.fixed_ips
        .retain(|f| enabled.iter().any(|s| s.id == f.subnet_id));
    // Out of the state while it is fitted: an address is asked for with its MAC, which
    // brings the EUI-64 addresses it holds already on the other auto-address subnets.
    let at = state.ports.iter().position(|p| p.id == port.id);
    state.ports.retain(|p| p.id != port.id);
    for subnet in &enabled {
        if port.fixed_ips.iter().any(|f| f.subnet_id == subnet.id) {
            continue;
        }
        let mut asked = state
            .new_port(super::PortRequest {
                network: &network,
                role: PortRole::Dhcp,
                device_id: network_id,
                fixed: &[(Some(subnet.id.clone()), None)],
                mac: Some(&port.mac),
                may_take_gateway: false,
            })
            .map_err(|e| e.context(format!("subnet {}: its DHCP port", subnet.name)))?
            .fixed_ips;
        asked.retain(|f| f.subnet_id == subnet.id);
        port.fixed_ips.extend(asked);
    }
    // Back in its place (a port that changed goes last, as before).
    match at {
        Some(at) if port == before => state.ports.insert(at, std::rc::Rc::new(port)),
        _ if port.fixed_ips.is_empty() => {}
        _ => state.ports.push(std::rc::Rc::new(port)),
    }
    Ok(())
}

/// Neutron's name for an address: host-172-16-101-3, host-2001-db8-102--5.
pub fn address_name(ip: IpAddr) -> String {
    format!("host-{}", ip.to_string().replace(['.', ':'], "-"))
}

/// The DNS name of a port: its instance's or its own name where that is a valid host name
/// label, else Neutron's `host-<address>`.
pub fn dns_name(state: &State, port: &Port, ip: IpAddr) -> String {
    let name = match port.role {
        PortRole::Instance => state
            .instance_by_id(&port.device_id)
            .map(|i| i.name.as_str()),
        PortRole::Workload => Some(port.name.as_str()),
        _ => None,
    };
    match name.filter(|n| is_label(n)) {
        Some(n) => n.to_ascii_lowercase(),
        None => address_name(ip),
    }
}

pub(super) fn is_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_must_be_unicast() {
        assert_eq!(
            unicast_mac("m", "FA:16:3E:00:00:09").unwrap(),
            "fa:16:3e:00:00:09"
        );
        for bad in [
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "fa:16:3e:00:00",
            "zz:16:3e:00:00:01",
        ] {
            assert_eq!(
                crate::error::exit_code(&unicast_mac("m", bad).unwrap_err()),
                2,
                "{bad}"
            );
        }
    }

    #[test]
    fn names_fall_back_to_the_address() {
        assert_eq!(
            address_name("172.16.101.3".parse().unwrap()),
            "host-172-16-101-3"
        );
        assert_eq!(
            address_name("2001:db8:102::5".parse().unwrap()),
            "host-2001-db8-102--5"
        );
        assert!(is_label("cirros-vm3"));
        assert!(!is_label("vm_3"));
        assert!(!is_label("123"));
    }
}
