//! DHCP and DNS per network, as Neutron's DHCP agent runs them: one dnsmasq per network in
//! a `qdhcp-<network id>` namespace, static leases only, built from the store's ports. Pure:
//! the files and arguments are data here; `kernel::dnsmasq` writes and runs them.

use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;
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
    /// DNS servers handed out; none: the network's DHCP port, which answers for its names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_nameservers: Vec<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_routes: Vec<HostRoute>,
}

/// `destination=CIDR,gateway=IP`, the next hop on the subnet.
pub fn host_route(subnet: &str, cidr: Ipv4Net, text: &str) -> anyhow::Result<HostRoute> {
    let what = format!("subnet {subnet}: --host-route");
    let pairs = validate::key_values(&what, text, &["destination", "gateway"])?;
    let get = |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let (Some(dest), Some(gw)) = (get("destination"), get("gateway")) else {
        bail_invalid!("{what}: '{text}' needs both destination=CIDR and gateway=IP");
    };
    let route = HostRoute {
        destination: validate::cidr(&what, dest)?,
        nexthop: validate::ip(&what, gw)?,
    };
    if !cidr.contains(&route.nexthop) {
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
    cidr: Ipv4Net,
    dhcp: Option<bool>,
    dns: &[String],
    routes: &[String],
) -> anyhow::Result<SubnetDhcp> {
    let what = format!("subnet {subnet}: --dns-nameserver");
    let dns_nameservers = dns
        .iter()
        .map(|ip| validate::ip(&what, ip))
        .collect::<anyhow::Result<Vec<_>>>()?;
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
    for subnet in &enabled {
        if port.fixed_ips.iter().any(|f| f.subnet_id == subnet.id) {
            continue;
        }
        let ip = state
            .new_port(super::PortRequest {
                network: &network,
                role: PortRole::Dhcp,
                device_id: network_id,
                subnet: Some(&subnet.id),
                ip: None,
                may_take_gateway: false,
            })
            .map_err(|e| e.context(format!("subnet {}: its DHCP port", subnet.name)))?
            .fixed_ips
            .remove(0);
        port.fixed_ips.push(ip);
    }
    if port == before {
        return Ok(());
    }
    state.ports.retain(|p| p.id != port.id);
    if !port.fixed_ips.is_empty() {
        state.ports.push(std::rc::Rc::new(port));
    }
    Ok(())
}

/// Neutron's name for an address: host-172-16-101-3.
pub fn address_name(ip: Ipv4Addr) -> String {
    format!("host-{}", ip.to_string().replace('.', "-"))
}

/// The DNS name of a port: its instance's or its own name where that is a valid host name
/// label, else Neutron's `host-<address>`.
pub fn dns_name(state: &State, port: &Port, ip: Ipv4Addr) -> String {
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

fn is_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.bytes().all(|b| b.is_ascii_digit())
}

/// The files dnsmasq reads and the arguments it runs with.
#[derive(Debug, PartialEq, Eq)]
pub struct Config {
    /// `--dhcp-hostsfile`: MAC,name.domain,IP per fixed IP on a DHCP subnet.
    pub host: String,
    /// `--addn-hosts`: the DNS names of every fixed IP on the network.
    pub addn_hosts: String,
    /// `--dhcp-optsfile`: router, DNS servers and host routes per subnet.
    pub opts: String,
    pub args: Vec<String>,
    /// Each (MAC, address) the hosts file gives a lease to: a lease dnsmasq holds for any
    /// other pair is stale (its port went, or changed MAC or address) and is released.
    pub leases: Vec<(String, Ipv4Addr)>,
}

impl Config {
    pub fn files(&self) -> [(&'static str, &str); 3] {
        [
            ("host", &self.host),
            ("addn_hosts", &self.addn_hosts),
            ("opts", &self.opts),
        ]
    }
}

fn tag(s: &Subnet) -> String {
    format!("subnet-{}", s.id)
}

/// dnsmasq's configuration for `network`, whose DHCP device is `device` and whose files live
/// in `dir`; its pid file is `pid_file`.
pub fn config(
    state: &State,
    network: &Network,
    device: &str,
    dir: &Path,
    pid_file: &Path,
) -> Config {
    let subnets: Vec<&Subnet> = state
        .subnets_of(&network.id)
        .filter(|s| s.dhcp.enabled)
        .collect();
    let dhcp = dhcp_port(state, &network.id);
    let (mut host, mut addn_hosts, mut opts) = (String::new(), String::new(), String::new());
    let mut leases = vec![];
    for port in state.ports.iter().filter(|p| p.network_id == network.id) {
        for fixed in &port.fixed_ips {
            let name = dns_name(state, port, fixed.ip);
            let fqdn = format!("{name}.{DOMAIN}");
            addn_hosts += &format!("{}\t{fqdn} {name}\n", fixed.ip);
            let plain = address_name(fixed.ip);
            if plain != name {
                addn_hosts += &format!("{}\t{plain}.{DOMAIN} {plain}\n", fixed.ip);
            }
            if subnets.iter().any(|s| s.id == fixed.subnet_id) {
                host += &format!("{},{fqdn},{}\n", port.mac, fixed.ip);
                leases.push((port.mac.clone(), fixed.ip));
            }
        }
    }
    for s in &subnets {
        let t = tag(s);
        let own = dhcp.and_then(|p| p.fixed_ips.iter().find(|f| f.subnet_id == s.id));
        let dns: Vec<String> = match s.dhcp.dns_nameservers.as_slice() {
            [] => own.map(|f| f.ip.to_string()).into_iter().collect(),
            given => given.iter().map(|ip| ip.to_string()).collect(),
        };
        if !dns.is_empty() {
            opts += &format!("tag:{t},option:dns-server,{}\n", dns.join(","));
        }
        // Clients that take classless routes ignore the router option (RFC 3442): the
        // default route goes with them, as Neutron does.
        let mut routes: Vec<String> = s
            .dhcp
            .host_routes
            .iter()
            .map(|r| format!("{},{}", r.destination, r.nexthop))
            .collect();
        match s.gateway {
            Some(gw) => {
                if !routes.is_empty() {
                    routes.push(format!("0.0.0.0/0,{gw}"));
                }
                opts += &format!("tag:{t},option:router,{gw}\n");
            }
            None => opts += &format!("tag:{t},option:router\n"),
        }
        if !routes.is_empty() {
            opts += &format!(
                "tag:{t},option:classless-static-route,{}\n",
                routes.join(",")
            );
        }
    }
    let dir = dir.display();
    let mut args: Vec<String> = vec![
        "--no-hosts".into(),
        "--no-resolv".into(),
        format!("--pid-file={}", pid_file.display()),
        format!("--dhcp-hostsfile={dir}/host"),
        format!("--addn-hosts={dir}/addn_hosts"),
        format!("--dhcp-optsfile={dir}/opts"),
        // Leases are kept in a file, as Neutron keeps them: what it holds is read back, and
        // a stale one (a port deleted, or its MAC changed) is released, or the address
        // would go to no other MAC until it expired.
        format!("--dhcp-leasefile={dir}/leases"),
        "--bind-interfaces".into(),
        format!("--interface={device}"),
        "--except-interface=lo".into(),
    ];
    for s in &subnets {
        args.push(format!(
            "--dhcp-range=set:{},{},static,{},{LEASE}",
            tag(s),
            s.cidr.network(),
            s.cidr.netmask()
        ));
    }
    args.push(format!(
        "--dhcp-option-force=option:mtu,{}",
        effective_mtu(network)
    ));
    args.push(format!("--domain={DOMAIN}"));
    // Authoritative for the network's names, as a DNS server of the domain: an unknown
    // name, bare or in the domain, is NXDOMAIN, and a known name's missing type (AAAA of
    // an IPv4 instance) an empty NOERROR, where dnsmasq without upstream servers would
    // answer REFUSED. Other domains stay REFUSED: there is nowhere to send them.
    args.push(format!("--local=/{DOMAIN}/"));
    args.push("--domain-needed".into());
    args.push("--conf-file=/dev/null".into());
    Config {
        host,
        addn_hosts,
        opts,
        args,
        leases,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ipam, FixedIp, Instance};

    fn seed() -> State {
        let cidr: Ipv4Net = "172.16.101.0/24".parse().unwrap();
        let gateway = Some(ipam::default_gateway(cidr));
        let port = |id: &str, role, device: &str, mac: &str, ip: &str| Port {
            security: Default::default(),
            id: id.into(),
            name: String::new(),
            network_id: "n1".into(),
            role,
            device_id: device.into(),
            mac: mac.into(),
            host: None,
            fixed_ips: vec![FixedIp {
                subnet_id: "s1".into(),
                ip: ip.parse().unwrap(),
            }],
            meta: Default::default(),
        };
        State {
            networks: vec![Network {
                port_security: true,
                vni: None,
                shared: false,
                is_default: false,
                meta: Default::default(),
                id: "n1".into(),
                name: "vlan101".into(),
                external: false,
                bridge: "brqn1".into(),
                owns_bridge: true,
                provider_interface: None,
                mtu: Some(1450),
            }
            .into()],
            subnets: vec![Subnet {
                meta: Default::default(),
                id: "s1".into(),
                name: "vlan101".into(),
                network_id: "n1".into(),
                cidr,
                gateway,
                pools: ipam::default_pools(cidr, gateway),
                dhcp: SubnetDhcp {
                    enabled: true,
                    ..Default::default()
                },
            }
            .into()],
            ports: vec![
                port(
                    "p-dhcp",
                    PortRole::Dhcp,
                    "n1",
                    "fa:16:3e:00:00:02",
                    "172.16.101.2",
                )
                .into(),
                port(
                    "p-vm3",
                    PortRole::Instance,
                    "i3",
                    "fa:16:3e:00:00:03",
                    "172.16.101.3",
                )
                .into(),
            ],
            instances: vec![Instance {
                host: None,
                id: "i3".into(),
                name: "cirros-vm3".into(),
                port_id: "p-vm3".into(),
                dhcp: false,
            }
            .into()],
            ..Default::default()
        }
    }

    #[test]
    fn config_is_neutrons() {
        let state = seed();
        let c = config(
            &state,
            &state.networks[0],
            "ns-p-dhcp",
            Path::new("/run/d"),
            Path::new("/s/n1.pid"),
        );
        assert!(c
            .host
            .contains("fa:16:3e:00:00:03,cirros-vm3.openstacklocal,172.16.101.3\n"));
        assert!(c
            .host
            .contains("fa:16:3e:00:00:02,host-172-16-101-2.openstacklocal,172.16.101.2\n"));
        assert!(c
            .addn_hosts
            .contains("172.16.101.3\tcirros-vm3.openstacklocal cirros-vm3\n"));
        assert!(c
            .addn_hosts
            .contains("172.16.101.3\thost-172-16-101-3.openstacklocal host-172-16-101-3\n"));
        assert_eq!(
            c.opts,
            "tag:subnet-s1,option:dns-server,172.16.101.2\ntag:subnet-s1,option:router,172.16.101.1\n"
        );
        assert!(c.args.contains(
            &"--dhcp-range=set:subnet-s1,172.16.101.0,static,255.255.255.0,86400s".to_string()
        ));
        assert!(c
            .args
            .contains(&"--dhcp-option-force=option:mtu,1450".to_string()));
        assert!(c.args.contains(&"--pid-file=/s/n1.pid".to_string()));
        for arg in [
            "--dhcp-leasefile=/run/d/leases",
            "--local=/openstacklocal/",
            "--domain-needed",
        ] {
            assert!(c.args.contains(&arg.to_string()), "{arg}");
        }
        assert!(c
            .leases
            .contains(&("fa:16:3e:00:00:03".into(), "172.16.101.3".parse().unwrap())));
        // A network without --mtu: its bridge's, still sent.
        let mut plain = (*state.networks[0]).clone();
        plain.mtu = None;
        let c = config(&state, &plain, "ns", Path::new("/d"), Path::new("/p"));
        assert!(c
            .args
            .contains(&"--dhcp-option-force=option:mtu,1500".to_string()));
    }

    #[test]
    fn host_routes_carry_the_default_route() {
        let mut state = seed();
        let s = std::rc::Rc::make_mut(&mut state.subnets[0]);
        s.dhcp.host_routes = vec![host_route(
            "s",
            s.cidr,
            "destination=10.9.0.0/16,gateway=172.16.101.254",
        )
        .unwrap()];
        s.dhcp.dns_nameservers = vec!["9.9.9.9".parse().unwrap()];
        let cidr = s.cidr;
        let c = config(
            &state,
            &state.networks[0],
            "ns-x",
            Path::new("/d"),
            Path::new("/p"),
        );
        assert!(c.opts.contains("tag:subnet-s1,option:dns-server,9.9.9.9\n"));
        assert!(c.opts.contains(
            "tag:subnet-s1,option:classless-static-route,10.9.0.0/16,172.16.101.254,0.0.0.0/0,172.16.101.1\n"
        ));
        let off = host_route("s", cidr, "destination=10.9.0.0/16,gateway=10.0.0.1");
        assert_eq!(crate::error::exit_code(&off.unwrap_err()), 2);
    }

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
        assert!(is_label("cirros-vm3"));
        assert!(!is_label("vm_3"));
        assert!(!is_label("123"));
    }
}
