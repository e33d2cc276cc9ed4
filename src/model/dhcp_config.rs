//! dnsmasq's files and arguments for a network, as Neutron's `Dnsmasq` driver writes them:
//! static leases of the store's ports for DHCPv4 and stateful DHCPv6, options per subnet
//! (DNS servers, routes for IPv4; DNS servers and search domain for DHCPv6), names of every
//! address for DNS (A and AAAA). Pure: `kernel::dnsmasq` writes and runs them.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnet::IpNet;

use super::dhcp::{address_name, dhcp_port, dns_name, effective_mtu, DOMAIN, LEASE};
use super::{ipv6, Network, State, Subnet};

/// The files dnsmasq reads and the arguments it runs with.
#[derive(Debug, PartialEq, Eq)]
pub struct Config {
    /// `--dhcp-hostsfile`: MAC,name.domain,IP per fixed IP on a DHCP subnet (IPv4) or a
    /// stateful DHCPv6 one (`MAC,tag:dhcpv6,name.domain,[IP]`).
    pub host: String,
    /// `--addn-hosts`: the DNS names of every fixed IP on the network.
    pub addn_hosts: String,
    /// `--dhcp-optsfile`: router, DNS servers and host routes per subnet.
    pub opts: String,
    pub args: Vec<String>,
    /// Each (MAC, IPv4 address) the hosts file gives a lease to: a lease dnsmasq holds for
    /// any other pair is stale (its port went, or changed MAC or address) and is released.
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

/// Whether dnsmasq leases addresses on a v6 subnet (Neutron's `_iter_hosts`/range rule): with
/// address mode dhcpv6-stateful or -stateless, or neither mode; SLAAC subnets (and those with
/// only an ra mode) get no range. dnsmasq ignores ranges shorter than /64 (Neutron logs
/// "Ignoring subnet"): those get none either.
fn v6_range(s: &Subnet) -> bool {
    let by_mode = match (s.ipv6_ra_mode, s.ipv6_address_mode) {
        (None, None) => true,
        (_, Some(m)) => m != ipv6::Mode::Slaac,
        (Some(_), None) => false,
    };
    by_mode && s.cidr.prefix_len() >= 64
}

/// Whether the subnet's hosts take their address from a static lease: every DHCP subnet of
/// IPv4, the stateful (and mode-less) ones of IPv6.
fn leased(s: &Subnet) -> bool {
    !s.is_v6() || (v6_range(s) && !s.is_auto_address())
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
            let Some(subnet) = subnets.iter().find(|s| s.id == fixed.subnet_id) else {
                continue;
            };
            match fixed.ip {
                IpAddr::V4(ip) => {
                    host += &format!("{},{fqdn},{ip}\n", port.mac);
                    leases.push((port.mac.clone(), ip));
                }
                IpAddr::V6(ip) if leased(subnet) => {
                    host += &format!("{},tag:dhcpv6,{fqdn},[{ip}]\n", port.mac);
                }
                IpAddr::V6(_) => {}
            }
        }
    }
    for s in &subnets {
        opts += &options(
            s,
            dhcp.and_then(|p| p.fixed_ips.iter().find(|f| f.subnet_id == s.id))
                .map(|f| f.ip),
        );
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
        match s.cidr {
            IpNet::V4(cidr) => args.push(format!(
                "--dhcp-range=set:{},{},static,{},{LEASE}",
                tag(s),
                cidr.network(),
                cidr.netmask()
            )),
            // Stateless subnets get a range too: dnsmasq answers their information
            // requests (DNS) on it, and leases nothing without a host line.
            IpNet::V6(cidr) if v6_range(s) => args.push(format!(
                "--dhcp-range=set:{},{},static,{},{LEASE}",
                tag(s),
                cidr.network(),
                cidr.prefix_len()
            )),
            IpNet::V6(_) => {}
        }
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

/// The options file's lines of one DHCP subnet; `own` is the DHCP port's address on it, the
/// DNS server where none is given.
fn options(s: &Subnet, own: Option<IpAddr>) -> String {
    let t = tag(s);
    let mut opts = String::new();
    let dns: Vec<IpAddr> = match s.dhcp.dns_nameservers.as_slice() {
        [] => own.into_iter().collect(),
        given => given.to_vec(),
    };
    if s.is_v6() {
        // DHCPv6 options (`option6:`, or dnsmasq ignores them) for the subnets it serves;
        // no router: IPv6 hosts take routes from the router's advertisements.
        if !v6_range(s) {
            return opts;
        }
        if !dns.is_empty() {
            let dns: Vec<String> = dns.iter().map(|ip| format!("[{ip}]")).collect();
            opts += &format!("tag:{t},option6:dns-server,{}\n", dns.join(","));
        }
        opts += &format!("tag:{t},option6:domain-search,{DOMAIN}\n");
        return opts;
    }
    if !dns.is_empty() {
        let dns: Vec<String> = dns.iter().map(|ip| ip.to_string()).collect();
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
    opts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::dhcp::{host_route, SubnetDhcp};
    use crate::model::{fixtures, Port, PortRole};

    fn seed() -> State {
        let port = |id: &str, role, device: &str, mac: &str, ip: &str| Port {
            mac: mac.into(),
            ..fixtures::port(id, "n1", role, device, "s1", ip)
        };
        State {
            positions: Default::default(),
            networks: vec![Network {
                bridge: "brqn1".into(),
                mtu: Some(1450),
                ..fixtures::network("n1", "vlan101")
            }
            .into()],
            subnets: vec![Subnet {
                name: "vlan101".into(),
                dhcp: SubnetDhcp {
                    enabled: true,
                    ..Default::default()
                },
                ..fixtures::subnet("s1", "n1", "172.16.101.0/24")
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
            instances: vec![fixtures::instance("i3", "cirros-vm3", "p-vm3").into()],
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
}
