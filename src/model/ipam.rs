//! Address management for subnets: gateways, allocation pools and handing out addresses,
//! for both families (addresses are numbers: IPv4's 32 bits and IPv6's 128 in a u128).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::{Pool, Subnet};

/// An address as a number, its family kept beside it by the caller.
pub fn number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(ip) => u32::from(ip).into(),
        IpAddr::V6(ip) => ip.into(),
    }
}

/// The address numbered `n` in the family of `like`.
fn address(like: IpNet, n: u128) -> IpAddr {
    match like {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// The usable host range of a subnet. IPv4: network and broadcast addresses excluded (a
/// /31 or /32 has no such addresses to exclude). IPv6 has no broadcast: the subnet-router
/// anycast address (the prefix itself) is excluded, as Neutron's `generate_pools` does,
/// except on a /127 or /128.
fn host_range(cidr: IpNet) -> (u128, u128) {
    let (first, last) = (number(cidr.network()), number(cidr.broadcast()));
    match cidr {
        IpNet::V4(c) if c.prefix_len() < 31 => (first + 1, last - 1),
        IpNet::V6(c) if c.prefix_len() < 127 => (first + 1, last),
        _ => (first, last),
    }
}

/// Neutron's default gateway: the first host address.
pub fn default_gateway(cidr: IpNet) -> IpAddr {
    address(cidr, host_range(cidr).0)
}

/// Neutron's default pool: every host address except the gateway.
pub fn default_pools(cidr: IpNet, gateway: Option<IpAddr>) -> Vec<Pool> {
    let (first, last) = host_range(cidr);
    let pool = |start: u128, end: u128| Pool {
        start: address(cidr, start),
        end: address(cidr, end),
    };
    let Some(gw) = gateway
        .filter(|g| g.is_ipv4() == cidr.network().is_ipv4())
        .map(number)
        .filter(|g| (first..=last).contains(g))
    else {
        return vec![pool(first, last)];
    };
    let mut pools = Vec::new();
    if gw > first {
        pools.push(pool(first, gw - 1));
    }
    if gw < last {
        pools.push(pool(gw + 1, last));
    }
    pools
}

pub fn in_pools(pools: &[Pool], ip: IpAddr) -> bool {
    pools
        .iter()
        .any(|p| p.start.is_ipv4() == ip.is_ipv4() && p.start <= ip && ip <= p.end)
}

/// The first pool address not in `used`, in pool order: 10.10.10.2 for the seed's gateway port.
pub fn first_free(subnet: &Subnet, used: &[IpAddr]) -> Option<IpAddr> {
    let used: std::collections::HashSet<u128> = used.iter().map(|ip| number(*ip)).collect();
    subnet
        .pools
        .iter()
        .flat_map(|p| number(p.start)..=number(p.end))
        .find(|ip| !used.contains(ip))
        .map(|n| address(subnet.cidr, n))
}

/// The address with the subnet's prefix length, as it is set on a device: 172.16.101.1/24.
pub fn with_prefix(subnet: &Subnet, ip: IpAddr) -> IpNet {
    IpNet::new(ip, subnet.cidr.prefix_len()).expect("prefix length comes from a valid subnet")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(cidr: &str, gateway: Option<&str>) -> Subnet {
        let net: IpNet = cidr.parse().unwrap();
        let gateway = gateway.map(|g| g.parse().unwrap());
        Subnet {
            gateway,
            pools: default_pools(net, gateway),
            ..crate::model::fixtures::subnet("s", "n", cidr)
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_pool_skips_the_gateway() {
        let s = subnet("10.10.10.0/24", Some("10.10.10.1"));
        assert_eq!(
            s.pools,
            vec![Pool {
                start: ip("10.10.10.2"),
                end: ip("10.10.10.254")
            }]
        );
        let mid = subnet("192.168.0.0/29", Some("192.168.0.3"));
        assert_eq!(
            mid.pools,
            vec![
                Pool {
                    start: ip("192.168.0.1"),
                    end: ip("192.168.0.2")
                },
                Pool {
                    start: ip("192.168.0.4"),
                    end: ip("192.168.0.6")
                }
            ]
        );
        let none = subnet("172.16.0.0/30", None);
        assert_eq!(
            none.pools,
            vec![Pool {
                start: ip("172.16.0.1"),
                end: ip("172.16.0.2")
            }]
        );
    }

    #[test]
    fn gateway_port_gets_10_10_10_2() {
        let s = subnet("10.10.10.0/24", Some("10.10.10.1"));
        assert_eq!(default_gateway(s.cidr), ip("10.10.10.1"));
        assert_eq!(first_free(&s, &[ip("10.10.10.1")]), Some(ip("10.10.10.2")));
        assert_eq!(
            first_free(&s, &[ip("10.10.10.2"), ip("10.10.10.4")]),
            Some(ip("10.10.10.3"))
        );
    }

    #[test]
    fn never_hands_out_an_address_twice() {
        let s = subnet("10.0.0.0/29", Some("10.0.0.1"));
        let mut used = vec![];
        while let Some(next) = first_free(&s, &used) {
            assert!(!used.contains(&next));
            assert!(in_pools(&s.pools, next));
            used.push(next);
        }
        assert_eq!(used.len(), 5, "10.0.0.2 to 10.0.0.6");
    }

    #[test]
    fn ipv6_pools_skip_the_subnet_router_anycast_and_the_gateway() {
        let s = subnet("2001:db8:101::/64", Some("2001:db8:101::1"));
        assert_eq!(default_gateway(s.cidr), ip("2001:db8:101::1"));
        assert_eq!(
            s.pools,
            vec![Pool {
                start: ip("2001:db8:101::2"),
                end: ip("2001:db8:101::ffff:ffff:ffff:ffff")
            }]
        );
        let used = [ip("2001:db8:101::1"), ip("2001:db8:101::2")];
        assert_eq!(first_free(&s, &used), Some(ip("2001:db8:101::3")));
        assert!(in_pools(&s.pools, ip("2001:db8:101::5")));
        assert!(!in_pools(&s.pools, ip("10.0.0.5")));
        assert_eq!(
            with_prefix(&s, ip("2001:db8:101::1")).to_string(),
            "2001:db8:101::1/64"
        );
    }

    #[test]
    fn prefix_follows_the_subnet() {
        let s = subnet("172.16.101.0/24", Some("172.16.101.1"));
        assert_eq!(
            with_prefix(&s, ip("172.16.101.1")).to_string(),
            "172.16.101.1/24"
        );
    }
}
