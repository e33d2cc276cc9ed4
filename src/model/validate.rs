//! Validation of operator input, before anything reaches the store, a kernel name,
//! a path or an iptables rule. Every error names the object and the reason.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

use super::{ipam, Pool};
use crate::bail_invalid;
use crate::error::invalid;

/// Names are shown in tables and used in scripts: letters, digits, `_`, `-`, `.`, at most 64.
pub fn name(kind: &str, name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > 64 {
        bail_invalid!("{kind} '{name}': a name must be 1 to 64 characters long");
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        bail_invalid!("{kind} '{name}': character {bad:?} is not allowed; use letters, digits, '_', '-' and '.'");
    }
    if name.starts_with(['-', '.']) {
        bail_invalid!("{kind} '{name}': a name cannot start with '-' or '.'");
    }
    Ok(())
}

/// A bridge or host interface name given by the operator: a valid Linux interface name.
pub fn interface_name(what: &str, name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > 15 {
        bail_invalid!("{what} '{name}': an interface name must be 1 to 15 characters long");
    }
    if name
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        || name.starts_with(['-', '.'])
    {
        bail_invalid!("{what} '{name}': not a valid interface name");
    }
    Ok(())
}

pub fn ip(what: &str, text: &str) -> anyhow::Result<Ipv4Addr> {
    text.parse()
        .map_err(|_| invalid(format!("{what}: '{text}' is not an IPv4 address")))
}

/// An address of either family.
pub fn addr(what: &str, text: &str) -> anyhow::Result<IpAddr> {
    text.parse()
        .map_err(|_| invalid(format!("{what}: '{text}' is not an IP address")))
}

/// A prefix of either family such as 172.16.101.0/24 or 2001:db8:101::/64; host bits must be
/// zero, as Neutron insists.
pub fn net(what: &str, text: &str) -> anyhow::Result<IpNet> {
    let net: IpNet = text.parse().map_err(|_| {
        invalid(format!(
            "{what}: '{text}' is not a CIDR like 172.16.101.0/24 or 2001:db8:101::/64"
        ))
    })?;
    if net.network() != net.addr() {
        bail_invalid!(
            "{what}: '{text}' has host bits set; did you mean {}?",
            net.trunc()
        );
    }
    Ok(net)
}

/// Neutron's check that an address given for a subnet is of its IP version:
/// `gateway_ip '10.0.0.1' does not match the ip_version '6'`.
pub fn same_version(what: &str, field: &str, ip: IpAddr, version: u8) -> anyhow::Result<()> {
    let is = if ip.is_ipv4() { 4 } else { 6 };
    if is != version {
        bail_invalid!("{what}: {field} '{ip}' does not match the ip_version '{version}'");
    }
    Ok(())
}

/// A network prefix such as 172.16.101.0/24; host bits must be zero, as Neutron insists.
pub fn cidr(what: &str, text: &str) -> anyhow::Result<Ipv4Net> {
    match text.parse::<Ipv4Net>().map(|_| net(what, text)) {
        Ok(Ok(IpNet::V4(net))) => Ok(net),
        Ok(Err(host_bits)) => Err(host_bits),
        _ => bail_invalid!("{what}: '{text}' is not an IPv4 CIDR like 172.16.101.0/24"),
    }
}

/// `key=value,key=value` as openstackclient's multi-key options take them.
pub fn key_values<'a>(
    what: &str,
    text: &'a str,
    keys: &[&str],
) -> anyhow::Result<Vec<(&'a str, &'a str)>> {
    let mut pairs = Vec::new();
    for part in text.split(',') {
        let Some((k, v)) = part.split_once('=') else {
            bail_invalid!(
                "{what}: '{part}' is not key=value (expected {})",
                keys.join(",")
            );
        };
        if !keys.contains(&k) {
            bail_invalid!("{what}: unknown key '{k}' (expected {})", keys.join(","));
        }
        if pairs.iter().any(|(seen, _)| *seen == k) {
            bail_invalid!("{what}: key '{k}' is given twice in '{text}'; give each once (repeat {what} for another)");
        }
        pairs.push((k, v));
    }
    Ok(pairs)
}

fn value<'a>(pairs: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// `start=IP,end=IP`.
pub fn pool(text: &str) -> anyhow::Result<Pool> {
    let what = "--allocation-pool";
    let pairs = key_values(what, text, &["start", "end"])?;
    let (Some(start), Some(end)) = (value(&pairs, "start"), value(&pairs, "end")) else {
        bail_invalid!("{what}: '{text}' needs both start=IP and end=IP");
    };
    let pool = Pool {
        start: addr(what, start)?,
        end: addr(what, end)?,
    };
    if pool.start.is_ipv4() != pool.end.is_ipv4() {
        bail_invalid!(
            "{what}: start {} and end {} are of different IP versions",
            pool.start,
            pool.end
        );
    }
    if pool.start > pool.end {
        bail_invalid!("{what}: start {} is after end {}", pool.start, pool.end);
    }
    Ok(pool)
}

/// `subnet=S,ip-address=IP`, either part optional.
pub fn fixed_ip(text: &str) -> anyhow::Result<(Option<String>, Option<IpAddr>)> {
    let pairs = key_values("--fixed-ip", text, &["subnet", "ip-address"])?;
    let address = value(&pairs, "ip-address")
        .map(|a| addr("--fixed-ip", a))
        .transpose()?;
    Ok((value(&pairs, "subnet").map(str::to_string), address))
}

/// Ranges no router interface or neighbour can have an address in: "this network", loopback
/// (martian outside `lo`), multicast, and the reserved class E with the limited broadcast.
const UNROUTABLE: [(&str, &str); 4] = [
    ("0.0.0.0/8", "\"this network\" (0.0.0.0/8)"),
    ("127.0.0.0/8", "loopback (127.0.0.0/8)"),
    ("224.0.0.0/4", "multicast (224.0.0.0/4)"),
    ("240.0.0.0/4", "reserved (240.0.0.0/4)"),
];

/// The same for IPv6: the reserved block with the unspecified, loopback and IPv4-mapped
/// addresses, link-local (never forwarded), multicast.
const UNROUTABLE6: [(&str, &str); 3] = [
    (
        "::/8",
        "reserved (::/8: unspecified, loopback, IPv4-mapped)",
    ),
    ("fe80::/10", "link-local (fe80::/10)"),
    ("ff00::/8", "multicast (ff00::/8)"),
];

fn unroutable_ranges(cidr: IpNet) -> impl Iterator<Item = (IpNet, &'static str)> {
    let list: &[(&str, &'static str)] = match cidr {
        IpNet::V4(_) => &UNROUTABLE,
        IpNet::V6(_) => &UNROUTABLE6,
    };
    list.iter()
        .map(|(range, what)| (range.parse().expect("a valid range"), *what))
}

/// What `cidr` overlaps among the ranges a router cannot use, if any.
pub fn unroutable(cidr: IpNet) -> Option<&'static str> {
    unroutable_ranges(cidr)
        .find_map(|(range, what)| (range.contains(&cidr) || cidr.contains(&range)).then_some(what))
}

/// The range a route destination lies in that no router can forward to, if any: a route
/// such as 0.0.0.0/1 that only spans one is fine.
pub fn unroutable_destination(cidr: IpNet) -> Option<&'static str> {
    unroutable_ranges(cidr).find_map(|(range, what)| range.contains(&cidr).then_some(what))
}

/// Neutron's limit for a subnet that serves DHCP: an IPv6 prefix of at most /126 (IPv4's
/// /30 holds for every subnet, `subnet` below).
pub fn dhcp_prefix(name: &str, cidr: IpNet) -> anyhow::Result<()> {
    if cidr.network().is_ipv6() && cidr.prefix_len() > 126 {
        bail_invalid!("subnet {name}: {cidr}: Subnet has a prefix length that is incompatible with DHCP service enabled");
    }
    Ok(())
}

/// A subnet's range is one a router can serve, and its gateway and pools are consistent with it.
/// A /31 (RFC 3021) and a /32 are refused: qrouter's router and a neighbour need two host
/// addresses besides the network and broadcast ones, which is what its address management
/// and the kernel's broadcast address assume.
/// An IPv6 /127 (RFC 6164) still has the two addresses; a /128 has one.
pub fn subnet(
    name: &str,
    cidr: IpNet,
    gateway: Option<IpAddr>,
    pools: &[Pool],
) -> anyhow::Result<()> {
    let what = format!("subnet {name}");
    let version = if cidr.network().is_ipv4() { 4 } else { 6 };
    let most = if version == 4 { 30 } else { 127 };
    if cidr.prefix_len() == 0 {
        bail_invalid!(
            "subnet {name}: {cidr} is every address; a subnet needs a prefix of 1 to {most}"
        );
    }
    if let Some(what) = unroutable(cidr) {
        bail_invalid!("subnet {name}: {cidr} overlaps the {what} range, which a router cannot use");
    }
    if cidr.prefix_len() > most {
        bail_invalid!("subnet {name}: {cidr} is too small; a routed subnet needs at least a /{most} (a gateway and a neighbour{})", if version == 4 { ", the network and broadcast addresses" } else { "" });
    }
    let hosts = ipam::default_pools(cidr, None);
    let host = |ip: IpAddr| ipam::in_pools(&hosts, ip);
    if let Some(gw) = gateway {
        same_version(&what, "gateway_ip", gw, version)?;
        if !cidr.contains(&gw) {
            bail_invalid!("subnet {name}: gateway {gw} is not a host address of {cidr} (it is outside the range; Neutron would take it as on link, qrouter's routers and instances reach a gateway on the subnet only)");
        }
        if !host(gw) {
            bail_invalid!("subnet {name}: gateway {gw} is not a host address of {cidr}");
        }
    }
    for (i, p) in pools.iter().enumerate() {
        same_version(&what, "allocation_pools", p.start, version)?;
        if !host(p.start) || !host(p.end) {
            bail_invalid!(
                "subnet {name}: allocation pool {}-{} is outside the host addresses of {cidr}",
                p.start,
                p.end
            );
        }
        if let Some(gw) = gateway.filter(|gw| ipam::in_pools(std::slice::from_ref(p), *gw)) {
            bail_invalid!(
                "subnet {name}: allocation pool {}-{} contains the gateway {gw}",
                p.start,
                p.end
            );
        }
        if let Some(q) = pools[..i]
            .iter()
            .find(|q| q.start <= p.end && p.start <= q.end)
        {
            bail_invalid!(
                "subnet {name}: allocation pools {}-{} and {}-{} overlap",
                q.start,
                q.end,
                p.start,
                p.end
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: anyhow::Result<impl std::fmt::Debug>) -> String {
        let e = r.unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        e.to_string()
    }

    #[test]
    fn names() {
        assert!(name("router", "router_100_101").is_ok());
        assert!(err(name("router", "")).contains("1 to 64"));
        assert!(err(name("router", "a b")).contains("' '"));
        assert!(err(name("router", "r;rm")).contains("';'"));
        assert!(err(name("network", "-x")).contains("cannot start"));
        assert!(err(name("network", &"x".repeat(65))).contains("1 to 64"));
        // Shaped like ids (uuid4().hex, as openstackclient's tests name objects): names
        // still; only another object's id is refused (lookup::check_new_name).
        let id = "0f9c2d3e-1a2b-4c3d-8e4f-5a6b7c8d9e0f";
        assert!(name("router", id).is_ok());
        assert!(name("subnet", &id.replace('-', "")).is_ok());
        assert!(err(interface_name("--bridge", "br-external-long")).contains("1 to 15"));
        assert!(interface_name("--bridge", "br-ex").is_ok());
    }

    #[test]
    fn cidrs() {
        assert_eq!(
            cidr("subnet x", "172.16.101.0/24").unwrap().to_string(),
            "172.16.101.0/24"
        );
        assert!(err(cidr("subnet x", "172.16.101.1/24")).contains("did you mean 172.16.101.0/24?"));
        assert!(err(cidr("subnet x", "172.16.101.0/33")).contains("not an IPv4 CIDR"));
        assert!(err(cidr("subnet x", "banana")).contains("not an IPv4 CIDR"));
        assert!(err(ip("--gateway", "10.10.10.300")).contains("not an IPv4 address"));
    }

    #[test]
    fn pools_and_fixed_ips() {
        let p = pool("start=10.10.10.10,end=10.10.10.20").unwrap();
        assert_eq!(
            (p.start.to_string(), p.end.to_string()),
            ("10.10.10.10".into(), "10.10.10.20".into())
        );
        assert!(err(pool("start=10.10.10.20,end=10.10.10.10")).contains("after end"));
        assert!(err(pool("start=10.10.10.20")).contains("needs both"));
        assert!(err(pool("begin=1.1.1.1,end=1.1.1.2")).contains("unknown key 'begin'"));
        // Issue 15 item 9: a repeated key was silently reduced to its first value.
        assert!(err(pool("start=10.0.0.2,end=10.0.0.5,end=10.0.0.9"))
            .contains("key 'end' is given twice in 'start=10.0.0.2,end=10.0.0.5,end=10.0.0.9'"));
        assert!(err(key_values(
            "--route",
            "destination=10.1.0.0/24,gateway=10.0.0.1,destination=10.2.0.0/24,gateway=10.0.0.2",
            &["destination", "gateway"]
        ))
        .contains("--route: key 'destination' is given twice"));
        let (s, ip) = fixed_ip("subnet=ext,ip-address=10.10.10.9").unwrap();
        assert_eq!(
            (s.as_deref(), ip.map(|i| i.to_string())),
            (Some("ext"), Some("10.10.10.9".into()))
        );
    }

    #[test]
    fn subnets() {
        let c: IpNet = "10.10.10.0/24".parse().unwrap();
        let gw = Some("10.10.10.1".parse().unwrap());
        assert!(subnet("ext", c, gw, &ipam::default_pools(c, gw)).is_ok());
        assert!(
            err(subnet("ext", c, Some("10.10.11.1".parse().unwrap()), &[]))
                .contains("gateway 10.10.11.1 is not a host address")
        );
        assert!(
            err(subnet("ext", c, Some("10.10.10.255".parse().unwrap()), &[]))
                .contains("not a host address")
        );
        let outside = [pool("start=10.10.10.200,end=10.10.11.5").unwrap()];
        assert!(err(subnet("ext", c, gw, &outside)).contains("outside the host addresses"));
        let over_gw = [pool("start=10.10.10.1,end=10.10.10.5").unwrap()];
        assert!(err(subnet("ext", c, gw, &over_gw)).contains("contains the gateway 10.10.10.1"));
        let overlap = [
            pool("start=10.10.10.2,end=10.10.10.9").unwrap(),
            pool("start=10.10.10.9,end=10.10.10.20").unwrap(),
        ];
        assert!(err(subnet("ext", c, gw, &overlap)).contains("overlap"));
        // IPv6: the gateway and pools are of the subnet's version and inside it.
        let c6: IpNet = "2001:db8:101::/64".parse().unwrap();
        let gw6 = Some("2001:db8:101::1".parse().unwrap());
        assert!(subnet("v6", c6, gw6, &ipam::default_pools(c6, gw6)).is_ok());
        assert!(err(subnet("v6", c6, gw, &[]))
            .contains("gateway_ip '10.10.10.1' does not match the ip_version '6'"));
        assert!(err(subnet(
            "v6",
            c6,
            Some("2001:db8:102::1".parse().unwrap()),
            &[]
        ))
        .contains("gateway 2001:db8:102::1 is not a host address of 2001:db8:101::/64"));
        assert!(err(subnet(
            "v6",
            c6,
            Some("2001:db8:101::".parse().unwrap()),
            &[]
        ))
        .contains("not a host address"));
        assert!(err(pool("start=2001:db8::2,end=10.0.0.1")).contains("different IP versions"));
        assert!(err(dhcp_prefix("v6", "2001:db8::/127".parse().unwrap()))
            .contains("incompatible with DHCP"));
        assert!(
            err(net("--subnet-range", "2001:db8::1/64")).contains("did you mean 2001:db8::/64?")
        );
    }

    #[test]
    fn subnets_a_router_cannot_use() {
        let refused = |c: &str| {
            let c: IpNet = c.parse().unwrap();
            err(subnet("x", c, None, &[]))
        };
        assert!(refused("224.1.2.0/24").contains("overlaps the multicast (224.0.0.0/4) range"));
        assert!(refused("240.0.0.0/24").contains("reserved (240.0.0.0/4)"));
        assert!(refused("255.255.255.0/24").contains("reserved (240.0.0.0/4)"));
        assert!(refused("127.0.0.0/24").contains("loopback (127.0.0.0/8)"));
        assert!(refused("0.0.0.0/24").contains("this network"));
        assert!(refused("0.0.0.0/0").contains("is every address"));
        // Ranges that hold one of them.
        assert!(refused("192.0.0.0/2").contains("multicast"));
        assert!(refused("96.0.0.0/3").contains("loopback"));
        assert!(refused("10.0.0.0/31").contains("too small"));
        assert!(refused("10.0.0.1/32").contains("too small"));
        let ok = |c: &str| subnet("x", c.parse().unwrap(), None, &[]).is_ok();
        assert!(ok("10.0.0.0/30") && ok("223.255.255.0/24") && ok("128.0.0.0/2"));
        assert!(refused("ff02::/64").contains("multicast (ff00::/8)"));
        assert!(refused("fe80::/64").contains("link-local"));
        assert!(refused("::/64").contains("reserved (::/8"));
        assert!(refused("2001:db8::1/128").contains("too small"));
        assert!(ok("2001:db8::/127") && ok("2001:db8:101::/64"));
        let dst = |c: &str| unroutable_destination(c.parse().unwrap());
        assert_eq!(dst("224.0.0.0/24"), Some("multicast (224.0.0.0/4)"));
        assert_eq!(dst("0.0.0.0/1"), None);
        assert_eq!(dst("8.8.8.0/24"), None);
    }
}
