//! A router's IPv6 router advertisements, as Neutron's L3 agent has radvd send them
//! (`neutron/agent/linux/ra.py`): one `interface` block per router interface that carries
//! IPv6 subnets; the managed and other-config flags, and each prefix's autonomous flag,
//! follow the subnets' ra modes; the network's MTU, and the DNS servers of its SLAAC
//! subnets (RDNSS), are advertised. Pure: the configuration is text built from the store;
//! `kernel::radvd` writes it and runs radvd.

use std::fmt::Write;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

use super::ipv6::{self, Mode};
use super::{dhcp, naming, Port, PortRole, Router, State, Subnet};

/// Neutron's L3 agent defaults (`min_rtr_adv_interval`, `max_rtr_adv_interval`): seconds
/// between unsolicited advertisements. Hosts solicit one as their link comes up, and get
/// it at once.
const MIN_INTERVAL: u32 = 30;
const MAX_INTERVAL: u32 = 100;
/// The IPv6 minimum MTU: a smaller one is not advertised (Neutron's IPV6_MIN_MTU).
const IPV6_MIN_MTU: u32 = 1280;
/// The most DNS servers one RDNSS option carries here (Neutron's MAX_RDNSS_ENTRIES).
const MAX_RDNSS: usize = 3;

/// radvd's configuration for `router`; None where no interface of it carries IPv6 (no
/// radvd runs), or the router is disabled (its devices are down: nothing to advertise).
pub fn config(state: &State, router: &Router) -> Option<String> {
    if !router.meta.admin_state_up {
        return None;
    }
    let mut text = String::new();
    for port in state
        .router_ports(router)
        .filter(|p| p.role == PortRole::RouterInterface)
    {
        let subnets = v6_subnets(state, port);
        if subnets.is_empty() {
            continue;
        }
        let mtu = state
            .network_by_id(&port.network_id)
            .map_or(dhcp::ETHERNET_MTU, dhcp::effective_mtu);
        interface(&mut text, &naming::port_device(port), mtu, &subnets);
    }
    (!text.is_empty()).then_some(text)
}

/// The IPv6 subnets `port` has addresses on.
fn v6_subnets<'a>(state: &'a State, port: &Port) -> Vec<&'a Subnet> {
    port.fixed_ips
        .iter()
        .filter_map(|f| state.subnet_by_id(&f.subnet_id))
        .filter(|s| s.is_v6())
        .collect()
}

/// One interface block, in the order and with the settings of Neutron's template (without
/// its route to the metadata address: qrouter has no metadata proxy).
fn interface(text: &mut String, device: &str, mtu: u32, subnets: &[&Subnet]) {
    let has = |mode: Mode| subnets.iter().any(|s| s.ipv6_ra_mode == Some(mode));
    let _ = writeln!(text, "interface {device}\n{{\n   AdvSendAdvert on;");
    let _ = writeln!(text, "   MinRtrAdvInterval {MIN_INTERVAL};");
    let _ = writeln!(text, "   MaxRtrAdvInterval {MAX_INTERVAL};");
    if mtu >= IPV6_MIN_MTU {
        let _ = writeln!(text, "   AdvLinkMTU {mtu};");
    }
    if has(Mode::Dhcpv6Stateless) {
        text.push_str("   AdvOtherConfigFlag on;\n");
    }
    if has(Mode::Dhcpv6Stateful) {
        text.push_str("   AdvManagedFlag on;\n");
    }
    // DNS servers by RDNSS for SLAAC subnets only: DHCPv6 hands them to the others.
    let dns: Vec<String> = subnets
        .iter()
        .filter(|s| s.ipv6_ra_mode == Some(Mode::Slaac))
        .flat_map(|s| &s.dhcp.dns_nameservers)
        .take(MAX_RDNSS)
        .map(|ip| ip.to_string())
        .collect();
    if !dns.is_empty() {
        let _ = writeln!(text, "   RDNSS {} {{}};", dns.join(" "));
    }
    // Prefixes hosts form addresses in (SLAAC, stateless), then those only on link
    // (stateful: addresses from DHCPv6). A subnet with no ra mode advertises none: its
    // hosts still learn the router (its lifetime) from the block.
    for autonomous in [true, false] {
        for s in subnets.iter().filter(|s| {
            s.ipv6_ra_mode
                .is_some_and(|m| (m == Mode::Dhcpv6Stateful) != autonomous)
        }) {
            let flag = if autonomous { "on" } else { "off" };
            let _ = writeln!(
                text,
                "   prefix {}\n   {{\n        AdvOnLink on;\n        AdvAutonomous {flag};\n   }};",
                s.cidr
            );
        }
    }
    text.push_str("};\n");
}

/// What hosts on a network learn from its routers' advertisements: a default route via
/// each advertising router's link-local address, and each advertised prefix on link.
#[derive(Debug, Default, PartialEq)]
pub struct Learnt {
    pub routers: Vec<Ipv6Addr>,
    pub on_link: Vec<IpNet>,
}

/// What the routers on network `network_id` advertise there (as `config` has radvd do it):
/// every enabled router whose interface on the network carries IPv6, and the prefixes of
/// its subnets that have an ra mode.
pub fn learnt(state: &State, network_id: &str) -> Learnt {
    let mut learnt = Learnt::default();
    for port in state
        .ports
        .iter()
        .filter(|p| p.network_id == network_id && p.role == PortRole::RouterInterface)
    {
        let enabled = state
            .router_by_id(&port.device_id)
            .is_some_and(|r| r.meta.admin_state_up);
        let subnets = v6_subnets(state, port);
        let Some(lla) = ipv6::link_local(&port.mac).filter(|_| enabled && !subnets.is_empty())
        else {
            continue;
        };
        learnt.routers.push(lla.addr());
        for s in subnets.iter().filter(|s| s.ipv6_ra_mode.is_some()) {
            if !learnt.on_link.contains(&s.cidr) {
                learnt.on_link.push(s.cidr);
            }
        }
    }
    learnt
}

/// The prefixes a router's upstream must route to it (no NAT66: tenant addresses are
/// routed as they are), with the next hop: the router's IPv6 address on the external
/// network, or its link-local where it has none there.
pub fn upstream_routes(state: &State, router: &Router) -> Vec<(IpNet, IpAddr)> {
    let Some(gw) = router
        .gateway_port_id
        .as_deref()
        .and_then(|id| state.port_by_id(id))
    else {
        return vec![];
    };
    let global = gw.fixed_ips.iter().map(|f| f.ip).find(IpAddr::is_ipv6);
    let Some(next_hop) = global.or_else(|| Some(IpAddr::V6(ipv6::link_local(&gw.mac)?.addr())))
    else {
        return vec![];
    };
    state
        .router_ports(router)
        .filter(|p| p.role == PortRole::RouterInterface)
        .flat_map(|p| &p.fixed_ips)
        .filter_map(|f| state.subnet_by_id(&f.subnet_id))
        .filter(|s| s.is_v6())
        .map(|s| (s.cidr, next_hop))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{fixtures, FixedIp, Network, Port};

    fn subnet(id: &str, cidr: &str, mode: Option<Mode>, dns: &[&str]) -> Subnet {
        Subnet {
            gateway: None,
            pools: vec![],
            dhcp: dhcp::SubnetDhcp {
                enabled: true,
                dns_nameservers: dns.iter().map(|d| d.parse().unwrap()).collect(),
                host_routes: vec![],
            },
            ipv6_ra_mode: mode,
            ipv6_address_mode: mode,
            ..fixtures::subnet(id, "n1", cidr)
        }
    }

    fn state(subnets: Vec<Subnet>) -> State {
        let id = "5e1b2c3d-4f00-0000-0000-000000000000";
        let port = Port {
            mac: "fa:16:3e:00:01:01".into(),
            fixed_ips: subnets
                .iter()
                .map(|s| FixedIp {
                    subnet_id: s.id.clone(),
                    ip: s.cidr.network(),
                })
                .collect(),
            ..fixtures::port(id, "n1", PortRole::RouterInterface, "r1", "", "")
        };
        let network = Network {
            bridge: "brqn1".into(),
            mtu: Some(1450),
            ..fixtures::network("n1", "vlan101")
        };
        let router = fixtures::router("r1", "r1");
        State {
            positions: Default::default(),
            networks: vec![network.into()],
            subnets: subnets.into_iter().map(Into::into).collect(),
            routers: vec![router.into()],
            ports: vec![port.into()],
            ..Default::default()
        }
    }

    #[test]
    fn slaac_is_neutrons_template() {
        let s = state(vec![subnet(
            "s1",
            "2001:db8:101::/64",
            Some(Mode::Slaac),
            &["2001:db8::53"],
        )]);
        assert_eq!(
            config(&s, &s.routers[0]).unwrap(),
            "interface qr-5e1b2c3d-4f\n{\n   AdvSendAdvert on;\n   MinRtrAdvInterval 30;\n   MaxRtrAdvInterval 100;\n   AdvLinkMTU 1450;\n   RDNSS 2001:db8::53 {};\n   prefix 2001:db8:101::/64\n   {\n        AdvOnLink on;\n        AdvAutonomous on;\n   };\n};\n"
        );
    }

    #[test]
    fn flags_and_prefixes_follow_the_modes() {
        let s = state(vec![
            subnet(
                "s1",
                "2001:db8:101::/64",
                Some(Mode::Dhcpv6Stateful),
                &["2001:db8::53"],
            ),
            subnet("s2", "2001:db8:102::/64", Some(Mode::Dhcpv6Stateless), &[]),
            subnet("s3", "2001:db8:103::/64", None, &[]),
        ]);
        let text = config(&s, &s.routers[0]).unwrap();
        assert!(text.contains("AdvManagedFlag on;") && text.contains("AdvOtherConfigFlag on;"));
        // No RDNSS: DHCPv6 hands out the stateful subnet's DNS server.
        assert!(!text.contains("RDNSS"), "{text}");
        let stateless = text.find("prefix 2001:db8:102::/64").unwrap();
        let stateful = text.find("prefix 2001:db8:101::/64").unwrap();
        assert!(stateless < stateful, "autonomous prefixes first: {text}");
        assert!(text[stateful..].starts_with(
            "prefix 2001:db8:101::/64\n   {\n        AdvOnLink on;\n        AdvAutonomous off;"
        ));
        assert!(!text.contains("2001:db8:103::"), "{text}");
    }

    #[test]
    fn hosts_learn_the_routers_link_local_and_the_prefixes_on_link() {
        let mut s = state(vec![
            subnet("s1", "2001:db8:101::/64", Some(Mode::Slaac), &[]),
            subnet("s2", "2001:db8:103::/64", None, &[]),
        ]);
        assert_eq!(
            learnt(&s, "n1"),
            Learnt {
                routers: vec!["fe80::f816:3eff:fe00:101".parse().unwrap()],
                on_link: vec!["2001:db8:101::/64".parse().unwrap()],
            }
        );
        assert_eq!(learnt(&s, "n2"), Learnt::default());
        std::rc::Rc::make_mut(&mut s.routers[0]).meta.admin_state_up = false;
        assert_eq!(learnt(&s, "n1"), Learnt::default());
    }

    #[test]
    fn ipv4_only_and_disabled_routers_advertise_nothing() {
        let mut s = state(vec![subnet("s1", "10.0.0.0/24", None, &[])]);
        assert_eq!(config(&s, &s.routers[0]), None);
        s = state(vec![subnet(
            "s1",
            "2001:db8:101::/64",
            Some(Mode::Slaac),
            &[],
        )]);
        std::rc::Rc::make_mut(&mut s.routers[0]).meta.admin_state_up = false;
        assert_eq!(config(&s, &s.routers[0]), None);
    }
}
