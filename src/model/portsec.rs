//! Port security as Neutron has it: frames leaving a port's tap may carry only the port's
//! MAC and fixed IPs (IPv6 too, and its link-local) and its allowed address pairs, no DHCP
//! server reply, no router advertisement, and no neighbour advertisement for an address not
//! its own. Pure: the
//! settings, their validation and the filter of each port as typed rules;
//! `kernel::portsec` renders them for the kernel (nf_tables, bridge family).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::{dhcp, ipv6, naming, validate, Port, PortRole, State};
use crate::bail_invalid;
pub use crate::kernel::portsec::Rule;

/// `--allowed-address ip-address=IP[,mac-address=MAC]`: another address (or prefix) the port
/// may send from, with its own MAC or another one (a VRRP address, a VM that routes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPair {
    pub ip: Ipv4Net,
    /// None: the port's own MAC, whatever it is now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// A port's security settings. A store written before they existed reads as Neutron's
/// default: on, no pairs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSecurity {
    #[serde(default = "super::meta::enabled")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_address_pairs: Vec<AddressPair>,
}

impl Default for PortSecurity {
    fn default() -> Self {
        PortSecurity {
            enabled: true,
            allowed_address_pairs: vec![],
        }
    }
}

impl PortSecurity {
    /// What most ports have, which the store does not write.
    pub fn is_default(&self) -> bool {
        *self == PortSecurity::default()
    }

    /// Settings that start disabled, for a port on a network created with
    /// `--disable-port-security`.
    pub fn enabled(enabled: bool) -> PortSecurity {
        PortSecurity {
            enabled,
            allowed_address_pairs: vec![],
        }
    }
}

/// `ip-address=IP[/LEN][,mac-address=MAC]`, for port `port`.
pub fn address_pair(port: &str, text: &str) -> anyhow::Result<AddressPair> {
    let what = format!("port {port}: --allowed-address");
    let pairs = validate::key_values(&what, text, &["ip-address", "mac-address"])?;
    let get = |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let Some(ip) = get("ip-address") else {
        bail_invalid!("{what}: '{text}' needs ip-address=IP");
    };
    let ip = match ip.contains('/') {
        true => validate::cidr(&what, ip)?,
        false => Ipv4Net::from(validate::ip(&what, ip)?),
    };
    let mac = get("mac-address")
        .map(|m| dhcp::unicast_mac(&what, m))
        .transpose()?;
    Ok(AddressPair { ip, mac })
}

/// Whether port security guards the port: Neutron exempts the ports of routers
/// (`network:router_interface`, `network:router_gateway`) and DHCP servers; an instance's
/// port is guarded while its instance is here, a workload's always (its tap name is known
/// before the workload plugs it).
pub fn guards(state: &State, port: &Port) -> bool {
    port.security.enabled
        && match port.role {
            PortRole::Workload => true,
            PortRole::Instance => state.instance_by_id(&port.device_id).is_some(),
            PortRole::RouterInterface | PortRole::RouterGateway | PortRole::Dhcp => false,
        }
}

/// The filter of one guarded port: its tap and the rules frames from it meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guard {
    pub tap: String,
    pub rules: Vec<Rule>,
}

/// The filter of `port`: its fixed IPs with its MAC, its allowed address pairs.
pub fn guard(port: &Port) -> Guard {
    let mut pairs: Vec<(String, Ipv4Net)> = port
        .fixed_ips
        .iter()
        .filter_map(|f| match f.ip {
            IpAddr::V4(ip) => Some((port.mac.clone(), Ipv4Net::from(ip))),
            IpAddr::V6(_) => None,
        })
        .chain(port.security.allowed_address_pairs.iter().map(|p| {
            let mac = p.mac.clone().unwrap_or_else(|| port.mac.clone());
            (mac, p.ip)
        }))
        .collect();
    pairs.sort();
    pairs.dedup();
    // nf_tables refuses overlapping intervals in one set: a pair inside a wider one of
    // the same MAC adds nothing.
    let wider = |(mac, net): &(String, Ipv4Net), all: &[(String, Ipv4Net)]| {
        all.iter()
            .any(|(m, n)| m == mac && n != net && n.contains(net))
    };
    let pairs: Vec<(String, Ipv4Net)> = pairs
        .iter()
        .filter(|p| !wider(p, &pairs))
        .cloned()
        .collect();
    let mut macs: Vec<String> = pairs.iter().map(|(m, _)| m.clone()).collect();
    macs.push(port.mac.clone());
    macs.sort();
    macs.dedup();
    let mut arp = pairs.clone();
    let probe = Ipv4Net::from(Ipv4Addr::UNSPECIFIED);
    if !wider(&(port.mac.clone(), probe), &arp) && !arp.contains(&(port.mac.clone(), probe)) {
        arp.push((port.mac.clone(), probe));
    }
    let mut rules = vec![
        Rule::DropOtherMacs(macs),
        Rule::AcceptArp(arp),
        Rule::DropArp,
        Rule::DropDhcpServer,
    ];
    if !pairs.is_empty() {
        rules.push(Rule::AcceptIpv4(pairs));
    }
    rules.extend([Rule::AcceptDhcpDiscover, Rule::DropIpv4]);
    // IPv6 as Neutron's firewall has it: no router advertisement and no DHCPv6 server
    // reply; from the port's MAC with its IPv6 addresses and its link-local (the EUI-64 of
    // its MAC, which every port has), neighbour advertisements only for those, and what a
    // host sends before it has an address.
    let mut own6: Vec<(String, Ipv6Addr)> = port
        .fixed_ips
        .iter()
        .filter_map(|f| match f.ip {
            IpAddr::V6(ip) => Some((port.mac.clone(), ip)),
            IpAddr::V4(_) => None,
        })
        .chain(ipv6::link_local(&port.mac).map(|l| (port.mac.clone(), l.addr())))
        .collect();
    own6.sort();
    own6.dedup();
    rules.extend([Rule::DropRouterAdvert, Rule::DropDhcpv6Server]);
    if !own6.is_empty() {
        rules.extend([
            Rule::AcceptNeighbourAdvert(own6.clone()),
            Rule::DropNeighbourAdvert,
            Rule::AcceptIpv6(own6),
        ]);
    }
    rules.extend([Rule::AcceptIpv6Unspecified, Rule::DropIpv6]);
    Guard {
        tap: naming::port_tap(port),
        rules,
    }
}

/// The filters of the guarded ports among `ports`, by tap.
pub fn guards_of<'a>(state: &'a State, ports: impl Iterator<Item = &'a Port>) -> Vec<Guard> {
    let mut all: Vec<Guard> = ports.filter(|p| guards(state, p)).map(guard).collect();
    all.sort_by(|a, b| a.tap.cmp(&b.tap));
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;

    fn port(pairs: &[&str]) -> Port {
        let id = "d8437b91-0c51-416a-81f7-92838395c5f5";
        Port {
            name: "web1".into(),
            mac: "fa:16:3e:00:00:03".into(),
            security: PortSecurity {
                enabled: true,
                allowed_address_pairs: pairs
                    .iter()
                    .map(|p| address_pair("web1", p).unwrap())
                    .collect(),
            },
            ..fixtures::port(id, "n1", PortRole::Workload, "", "s1", "172.16.101.3")
        }
    }

    #[test]
    fn a_port_may_send_from_its_mac_and_addresses_only() {
        let g = guard(&port(&[]));
        assert_eq!(g.tap, "tapd8437b91-0c");
        let own = (
            "fa:16:3e:00:00:03".to_string(),
            "172.16.101.3/32".parse().unwrap(),
        );
        let probe = (
            "fa:16:3e:00:00:03".to_string(),
            "0.0.0.0/32".parse().unwrap(),
        );
        let lla = (
            "fa:16:3e:00:00:03".to_string(),
            "fe80::f816:3eff:fe00:3".parse().unwrap(),
        );
        assert_eq!(
            g.rules,
            [
                Rule::DropOtherMacs(vec!["fa:16:3e:00:00:03".into()]),
                Rule::AcceptArp(vec![own.clone(), probe]),
                Rule::DropArp,
                Rule::DropDhcpServer,
                Rule::AcceptIpv4(vec![own]),
                Rule::AcceptDhcpDiscover,
                Rule::DropIpv4,
                Rule::DropRouterAdvert,
                Rule::DropDhcpv6Server,
                Rule::AcceptNeighbourAdvert(vec![lla.clone()]),
                Rule::DropNeighbourAdvert,
                Rule::AcceptIpv6(vec![lla]),
                Rule::AcceptIpv6Unspecified,
                Rule::DropIpv6,
            ]
        );
    }

    #[test]
    fn a_port_may_send_ipv6_from_its_addresses_and_link_local_and_advertise_only_those() {
        let mut p = port(&[]);
        p.fixed_ips.push(crate::model::FixedIp {
            subnet_id: "s6".into(),
            ip: "2001:db8:101::3".parse().unwrap(),
        });
        let g = guard(&p);
        let mac = "fa:16:3e:00:00:03".to_string();
        let own = vec![
            (mac.clone(), "2001:db8:101::3".parse().unwrap()),
            (mac.clone(), "fe80::f816:3eff:fe00:3".parse().unwrap()),
        ];
        assert_eq!(
            g.rules[7..],
            [
                Rule::DropRouterAdvert,
                Rule::DropDhcpv6Server,
                Rule::AcceptNeighbourAdvert(own.clone()),
                Rule::DropNeighbourAdvert,
                Rule::AcceptIpv6(own),
                Rule::AcceptIpv6Unspecified,
                Rule::DropIpv6,
            ]
        );
        assert_eq!(
            crate::kernel::portsec::render(&g.rules[9]),
            "icmpv6 type nd-neighbor-advert ether saddr . @th,64,128 { fa:16:3e:00:00:03 . 0x20010db8010100000000000000000003, fa:16:3e:00:00:03 . 0xfe80000000000000f8163efffe000003 } accept"
        );
    }

    #[test]
    fn pairs_add_addresses_and_macs_and_wider_ones_absorb_narrower() {
        let g = guard(&port(&[
            "ip-address=172.16.101.0/24",
            "ip-address=10.0.0.5,mac-address=FA:16:3E:00:00:99",
        ]));
        let Rule::AcceptIpv4(pairs) = &g.rules[4] else {
            panic!("{g:?}")
        };
        let shown: Vec<String> = pairs.iter().map(|(m, n)| format!("{m} {n}")).collect();
        assert_eq!(
            shown,
            [
                "fa:16:3e:00:00:03 172.16.101.0/24",
                "fa:16:3e:00:00:99 10.0.0.5/32"
            ]
        );
        assert_eq!(
            g.rules[0],
            Rule::DropOtherMacs(vec!["fa:16:3e:00:00:03".into(), "fa:16:3e:00:00:99".into()])
        );
    }

    #[test]
    fn bad_pairs_are_refused() {
        for bad in [
            "mac-address=fa:16:3e:00:00:01",
            "ip-address=10.0.0.0/8x",
            "ip-address=10.0.0.1/8",
            "ip-address=10.0.0.1,mac-address=01:00:5e:00:00:01",
            "ip-address=10.0.0.1,color=red",
        ] {
            let e = address_pair("p", bad).unwrap_err();
            assert_eq!(crate::error::exit_code(&e), 2, "{bad}");
        }
    }

    #[test]
    fn routers_and_dhcp_ports_are_exempt() {
        let state = State::default();
        let mut p = port(&[]);
        assert!(guards(&state, &p));
        p.security.enabled = false;
        assert!(!guards(&state, &p));
        for role in [
            PortRole::RouterInterface,
            PortRole::RouterGateway,
            PortRole::Dhcp,
        ] {
            let mut p = port(&[]);
            p.role = role;
            assert!(!guards(&state, &p), "{role:?}");
        }
    }
}
