//! What a store hands over is checked as the command line checks input: a store several
//! hosts share (etcd) can be written by anyone who can write one key, and what an agent
//! reads becomes namespace and device names, dnsmasq's files and iptables rules. Each object
//! passes the validation its command applies (names, ids, bridge and interface names, MACs,
//! CIDRs, numbers in range) and its references must lead somewhere; an object that fails
//! is set aside, named with the reason, and everything else goes on. Typed fields
//! (addresses, prefixes) were checked by parsing them.

use std::collections::HashSet;
use std::rc::Rc;

use super::{
    dhcp, ipv6, validate, FloatingIp, Instance, Network, Object, Port, Router, State, Subnet,
};

/// One object set aside: its kind (`Object::KIND`), its id as its key gave it, and why.
#[derive(Debug, PartialEq)]
pub struct Rejected {
    pub kind: &'static str,
    pub id: String,
    pub reason: String,
}

/// The MTUs a bridge and its veths take with IPv6 on them (see `cli::network`'s `--mtu`).
pub const MTUS: std::ops::RangeInclusive<u32> = 1280..=65535;
/// The VXLAN network identifiers (24 bits; 0 is not a segment).
pub const VNIS: std::ops::RangeInclusive<u32> = 1..=(1 << 24) - 1;

/// `state` with every object that fails its checks, or refers to one that is missing or
/// failed, taken out, and the router or instance that owns such a port (its plan would lack
/// the port, and converging it would delete the device); and what was taken out. In the
/// order references run (a subnet's network first), so one pass settles it. What is taken
/// out is left alone, never removed: an agent keeps what it last converged of it.
pub fn admit(state: State) -> (State, Vec<Rejected>) {
    let mut rejected = vec![];
    let networks = keep(state.networks, &mut rejected, network);
    let network_ids = ids(&networks);
    let subnets = keep(state.subnets, &mut rejected, |s| {
        subnet(s)?;
        refers("network", &s.network_id, &network_ids)
    });
    let subnet_ids = ids(&subnets);
    let device_of: std::collections::HashMap<String, String> = (state.ports.iter())
        .map(|p| (p.id.clone(), p.device_id.clone()))
        .collect();
    let on_network: HashSet<(&str, &str)> = (subnets.iter())
        .map(|s| (s.id.as_str(), s.network_id.as_str()))
        .collect();
    let ports = keep(state.ports, &mut rejected, |p| {
        port(p)?;
        refers("network", &p.network_id, &network_ids)?;
        for f in &p.fixed_ips {
            refers("subnet", &f.subnet_id, &subnet_ids)?;
            if !on_network.contains(&(f.subnet_id.as_str(), p.network_id.as_str())) {
                return Err(format!("subnet {} is not on its network", f.subnet_id));
            }
            let s = subnets.iter().find(|s| s.id == f.subnet_id);
            if s.is_some_and(|s| !s.cidr.contains(&f.ip)) {
                return Err(format!("{} is outside its subnet", f.ip));
            }
        }
        Ok(())
    });
    let port_ids = ids(&ports);
    // The routers and instances that own a port set aside.
    let owners: HashSet<String> = (rejected.iter())
        .filter(|r| r.kind == Port::KIND)
        .filter_map(|r| device_of.get(&r.id).cloned())
        .collect();
    let routers = keep(state.routers, &mut rejected, |r| {
        router(r)?;
        if owners.contains(&r.id) {
            return Err("one of its ports is set aside".into());
        }
        match &r.gateway_port_id {
            Some(p) => refers("gateway port", p, &port_ids),
            None => Ok(()),
        }
    });
    let router_ids = ids(&routers);
    let instances = keep(state.instances, &mut rejected, |i| {
        instance(i)?;
        refers("port", &i.port_id, &port_ids)
    });
    let floating_ips = keep(state.floating_ips, &mut rejected, |f| {
        floating_ip(f)?;
        refers("network", &f.network_id, &network_ids)?;
        refers("subnet", &f.subnet_id, &subnet_ids)?;
        if let Some(p) = &f.port_id {
            refers("port", p, &port_ids)?;
        }
        match &f.router_id {
            Some(r) => refers("router", r, &router_ids),
            None => Ok(()),
        }
    });
    let state = State {
        positions: Default::default(),
        networks,
        subnets,
        routers,
        ports,
        instances,
        floating_ips,
    };
    (state, rejected)
}

fn keep<T: Object>(
    items: Vec<Rc<T>>,
    rejected: &mut Vec<Rejected>,
    check: impl Fn(&T) -> Result<(), String>,
) -> Vec<Rc<T>> {
    let mut kept = Vec::with_capacity(items.len());
    for item in items {
        match check(&item) {
            Ok(()) => kept.push(item),
            Err(reason) => rejected.push(Rejected {
                kind: T::KIND,
                id: item.id().to_string(),
                reason,
            }),
        }
    }
    kept
}

fn ids<T: Object>(items: &[Rc<T>]) -> HashSet<&str> {
    items.iter().map(|o| o.id()).collect()
}

fn refers(what: &str, id: &str, known: &HashSet<&str>) -> Result<(), String> {
    match known.contains(id) {
        true => Ok(()),
        false => Err(format!("its {what} {id:?} is missing or set aside")),
    }
}

/// The message of a command-line check, for the reason.
fn checked(result: anyhow::Result<impl Sized>) -> Result<(), String> {
    result.map(drop).map_err(|e| format!("{e:#}"))
}

/// Ids name namespaces and devices (`qrouter-<id>`, `tap<id[:11]>`): only the UUIDs qrouter
/// makes.
pub fn id(what: &str, id: &str) -> Result<(), String> {
    let hyphenated = id.len() == 36 && uuid::Uuid::try_parse(id).is_ok();
    match hyphenated && !id.bytes().any(|b| b.is_ascii_uppercase()) {
        true => Ok(()),
        false => Err(format!("{what} {id:?} is not an id qrouter makes (a UUID)")),
    }
}

fn host(h: &Option<String>) -> Result<(), String> {
    h.as_deref()
        .map_or(Ok(()), |h| checked(validate::name("host", h)))
}

fn network(n: &Network) -> Result<(), String> {
    id("id", &n.id)?;
    checked(validate::name("network", &n.name))?;
    checked(validate::interface_name("bridge", &n.bridge))?;
    if let Some(iface) = &n.provider_interface {
        checked(validate::interface_name("provider interface", iface))?;
    }
    if let Some(mtu) = n.mtu.filter(|m| !MTUS.contains(m)) {
        return Err(format!("mtu {mtu} is not in {MTUS:?}"));
    }
    if let Some(gw) = n.ipv6_gateway {
        if !n.external || !ipv6::is_link_local(gw) {
            return Err(format!(
                "ipv6_gateway {gw} is not the link-local address of an external network's upstream"
            ));
        }
    }
    match n.vni.filter(|v| !VNIS.contains(v)) {
        Some(vni) => Err(format!("segment {vni} is not in {VNIS:?}")),
        None => Ok(()),
    }
}

fn subnet(s: &Subnet) -> Result<(), String> {
    id("id", &s.id)?;
    checked(validate::name("subnet", &s.name))?;
    if s.cidr.network() != s.cidr.addr() {
        return Err(format!("{} has host bits set", s.cidr));
    }
    checked(validate::subnet(&s.name, s.cidr, s.gateway, &s.pools))?;
    // What radvd and dnsmasq are told: modes as Neutron allows them, servers and routes
    // of the subnet's version.
    let (ra, address) = (s.ipv6_ra_mode, s.ipv6_address_mode);
    checked(ipv6::check_modes(
        &s.name,
        s.cidr,
        ra,
        address,
        s.dhcp.enabled,
    ))?;
    let version = s.ip_version();
    for dns in &s.dhcp.dns_nameservers {
        checked(validate::same_version(
            &s.name,
            "dns_nameserver",
            *dns,
            version,
        ))?;
    }
    if s.is_v6() && !s.dhcp.host_routes.is_empty() {
        return Err("an IPv6 subnet with host routes".into());
    }
    Ok(())
}

fn router(r: &Router) -> Result<(), String> {
    id("id", &r.id)?;
    checked(validate::name("router", &r.name))?;
    if let Some(route) = r
        .routes
        .iter()
        .find(|x| x.destination.network().is_ipv4() != x.nexthop.is_ipv4())
    {
        return Err(format!(
            "route {} via {} mixes IP versions",
            route.destination, route.nexthop
        ));
    }
    for opening in &r.inbound {
        opening
            .check()
            .map_err(|e| format!("--allow-inbound {opening}: {e}"))?;
    }
    host(&r.host)?;
    let Some(ha) = &r.ha else { return Ok(()) };
    // Its VRID and addresses reach keepalived's configuration, its hosts the placement.
    if !super::ha::VRIDS.contains(&ha.vrid) || !super::ha::COPIES.contains(&ha.wanted) {
        return Err(format!(
            "HA vrid {} or copies {} out of range",
            ha.vrid, ha.wanted
        ));
    }
    let mut hosts = HashSet::new();
    for c in &ha.copies {
        host(&Some(c.host.clone()))?;
        checked(dhcp::unicast_mac("HA mac", &c.mac))?;
        if !super::ha::cidr().contains(&c.address) || !hosts.insert(c.host.as_str()) {
            return Err(format!(
                "HA copy on {} at {}: not a copy qrouter makes",
                c.host, c.address
            ));
        }
    }
    Ok(())
}

fn port(p: &Port) -> Result<(), String> {
    id("id", &p.id)?;
    if !p.name.is_empty() {
        checked(validate::name("port", &p.name))?;
    }
    if !p.device_id.is_empty() {
        id("device", &p.device_id)?;
    }
    checked(dhcp::unicast_mac("mac", &p.mac))?;
    host(&p.host)
}

fn instance(i: &Instance) -> Result<(), String> {
    id("id", &i.id)?;
    checked(validate::name("instance", &i.name))?;
    host(&i.host)
}

fn floating_ip(f: &FloatingIp) -> Result<(), String> {
    id("id", &f.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> State {
        let mut s = crate::model::fixtures::seed();
        // The fixtures' ids are short; a store's are UUIDs.
        let mut ids = std::collections::HashMap::new();
        let mut uuid = |old: &mut String| {
            let new = ids
                .entry(old.clone())
                .or_insert_with(super::super::new_id)
                .clone();
            *old = new;
        };
        for n in &mut s.networks {
            uuid(&mut Rc::make_mut(n).id);
        }
        for x in &mut s.subnets {
            let x = Rc::make_mut(x);
            uuid(&mut x.id);
            uuid(&mut x.network_id);
        }
        for r in &mut s.routers {
            let r = Rc::make_mut(r);
            uuid(&mut r.id);
            r.gateway_port_id.iter_mut().for_each(&mut uuid);
        }
        for p in &mut s.ports {
            let p = Rc::make_mut(p);
            uuid(&mut p.id);
            uuid(&mut p.network_id);
            uuid(&mut p.device_id);
            p.fixed_ips.iter_mut().for_each(|f| uuid(&mut f.subnet_id));
        }
        for i in &mut s.instances {
            let i = Rc::make_mut(i);
            uuid(&mut i.id);
            uuid(&mut i.port_id);
        }
        s
    }

    #[test]
    fn a_valid_state_is_admitted_whole() {
        let s = seed();
        let (admitted, rejected) = admit(s.clone());
        assert_eq!(rejected, []);
        assert_eq!(admitted, s);
    }

    #[test]
    fn what_would_reach_a_rule_or_a_name_is_checked_and_what_refers_to_it_goes_too() {
        let mut s = seed();
        let i = s.networks.iter().position(|n| n.name == "vlan101").unwrap();
        let vlan101 = s.networks[i].id.clone();
        Rc::make_mut(&mut s.networks[i]).bridge = "e\n-I INPUT -s 6.6.6.6 -j ACCEPT\n#".into();
        Rc::make_mut(&mut s.routers[0]).name = "r\n-F".into();
        let (admitted, rejected) = admit(s.clone());
        let why: Vec<(&str, &str)> = rejected
            .iter()
            .map(|r| (r.kind, r.reason.as_str()))
            .collect();
        assert!(
            why[0].0 == "network" && why[0].1.starts_with("bridge 'e\n-I INPUT"),
            "{why:?}"
        );
        assert!(why
            .iter()
            .any(|(k, r)| *k == "router" && r.contains("not allowed")));
        // vlan101's subnet, its ports and cirros-vm3 go with it; vlan100 stays.
        assert!(admitted.networks.iter().all(|n| n.id != vlan101));
        assert!(admitted.subnets.iter().all(|x| x.network_id != vlan101));
        assert!(admitted.ports.iter().all(|p| p.network_id != vlan101));
        assert!(admitted.instances.is_empty() && admitted.routers.is_empty());
        assert!(admitted.network("vlan100").is_ok());
        // Short enough, but not a name the kernel would take.
        let mut s = seed();
        Rc::make_mut(&mut s.networks[0]).bridge = "e\n-F\n#".into();
        let (_, rejected) = admit(s);
        assert!(
            rejected[0].reason.contains("not a valid interface name"),
            "{rejected:?}"
        );
        // Ids, MACs and numbers too.
        let mut s = seed();
        let owner = s.ports[0].device_id.clone();
        Rc::make_mut(&mut s.ports[0]).mac = "fa:16:3e:00:00:01 dev x".into();
        Rc::make_mut(&mut s.networks[0]).mtu = Some(70000);
        Rc::make_mut(&mut s.instances[0]).id = "../../etc".into();
        let (_, rejected) = admit(s);
        // The port's owner goes with it: converged without it, it would lose its device.
        assert!(rejected.iter().any(|r| r.id == owner), "{rejected:?}");
        let reasons: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
        assert!(
            reasons.iter().any(|r| r.contains("not a MAC address")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.contains("mtu 70000")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.contains("not an id")),
            "{reasons:?}"
        );
    }

    #[test]
    fn ipv6_settings_are_checked_as_the_command_line_checks_them() {
        let mut s = seed();
        let ext = s.networks.iter().position(|n| n.external).unwrap();
        Rc::make_mut(&mut s.networks[ext]).ipv6_gateway = Some("2001:db8::1".parse().unwrap());
        let sub = Rc::make_mut(&mut s.subnets[0]);
        sub.ipv6_ra_mode = Some(ipv6::Mode::Slaac);
        let route = crate::model::ExtraRoute {
            destination: "2001:db8:500::/64".parse().unwrap(),
            nexthop: "10.10.10.5".parse().unwrap(),
        };
        Rc::make_mut(&mut s.routers[0]).routes.push(route);
        let (_, rejected) = admit(s);
        let reasons: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
        for expected in [
            "is not the link-local address",
            "ipv6_ra_mode is not valid when ip_version is 4",
            "mixes IP versions",
        ] {
            assert!(
                reasons.iter().any(|r| r.contains(expected)),
                "{expected}: {reasons:?}"
            );
        }
    }
}
