//! Address management for subnets: gateways, allocation pools and handing out addresses.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{Pool, Subnet};

/// The usable host range of a subnet: network and broadcast addresses excluded
/// (a /31 or /32 has no such addresses to exclude).
fn host_range(cidr: Ipv4Net) -> (u32, u32) {
    let (first, last) = (u32::from(cidr.network()), u32::from(cidr.broadcast()));
    if cidr.prefix_len() >= 31 {
        (first, last)
    } else {
        (first + 1, last - 1)
    }
}

/// Neutron's default gateway: the first host address.
pub fn default_gateway(cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(host_range(cidr).0)
}

/// Neutron's default pool: every host address except the gateway.
pub fn default_pools(cidr: Ipv4Net, gateway: Option<Ipv4Addr>) -> Vec<Pool> {
    let (first, last) = host_range(cidr);
    let Some(gw) = gateway
        .map(u32::from)
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

fn pool(start: u32, end: u32) -> Pool {
    Pool {
        start: start.into(),
        end: end.into(),
    }
}

pub fn in_pools(pools: &[Pool], ip: Ipv4Addr) -> bool {
    pools.iter().any(|p| p.start <= ip && ip <= p.end)
}

/// The first pool address not in `used`, in pool order: 10.10.10.2 for the seed's gateway port.
pub fn first_free(subnet: &Subnet, used: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    let used: std::collections::HashSet<u32> = used.iter().map(|ip| u32::from(*ip)).collect();
    subnet
        .pools
        .iter()
        .flat_map(|p| u32::from(p.start)..=u32::from(p.end))
        .find(|ip| !used.contains(ip))
        .map(Ipv4Addr::from)
}

/// The address with the subnet's prefix length, as it is set on a device: 172.16.101.1/24.
pub fn with_prefix(subnet: &Subnet, ip: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::new(ip, subnet.cidr.prefix_len()).expect("prefix length comes from a valid subnet")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(cidr: &str, gateway: Option<&str>) -> Subnet {
        let cidr: Ipv4Net = cidr.parse().unwrap();
        let gateway = gateway.map(|g| g.parse().unwrap());
        Subnet {
            id: "s".into(),
            name: "s".into(),
            network_id: "n".into(),
            cidr,
            gateway,
            pools: default_pools(cidr, gateway),
            dhcp: Default::default(),
            meta: Default::default(),
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
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
    fn prefix_follows_the_subnet() {
        let s = subnet("172.16.101.0/24", Some("172.16.101.1"));
        assert_eq!(
            with_prefix(&s, ip("172.16.101.1")).to_string(),
            "172.16.101.1/24"
        );
    }
}
