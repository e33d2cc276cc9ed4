//! The VXLAN side of a host: a `vxlan-<VNI>` device on the bridge of each VXLAN network of
//! its part, flooding to the other hosts that have the network (head-end replication), and
//! sending each port of the network that lives on another host straight to that host
//! (l2population). Every registered host counts, alive or not: a lease that ended (an
//! agent stopped, etcd stalled) says nothing of the host's data plane, which still
//! forwards; only the desired state (an object moved or deleted, `host delete`) removes an
//! entry, as Neutron's l2population keeps a host's entries while its agent is down.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use super::options::Options;
use super::owner::Owner;
use super::view;
use crate::kernel::{vxlan, Kernel};
use crate::model::host::HostInfo;
use crate::model::{naming, State};
use crate::reconcile::host;

/// What the other hosts hold on this host's VXLAN segments, by VNI: what a host's VXLAN
/// side is made from, with its part's networks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Peers {
    /// The underlay addresses of the other hosts that have something on the segment.
    pub floods: HashMap<u32, BTreeSet<Ipv4Addr>>,
    /// The MAC (lower case) of each port on the segment plugged on another host, with that
    /// host's underlay address.
    pub macs: HashMap<u32, BTreeMap<String, Ipv4Addr>>,
}

/// For each VXLAN network of `mine` (this host's part), the other registered hosts that
/// have something on it, alive or not, and where each port on it that another host plugs
/// lives.
pub fn peers(
    state: &State,
    hosts: &[HostInfo],
    o: &Options,
    mine: &State,
    mtu: Option<u32>,
) -> Peers {
    let here: BTreeSet<u32> = mine.networks.iter().filter_map(|n| n.segment()).collect();
    let mut out = Peers::default();
    for h in hosts.iter().filter(|h| h.name != o.host) {
        let theirs = view::of(state, &h.name, h.role, mtu);
        // The segments both hosts have, by network id (a map: a host may have hundreds).
        let shared: HashMap<&str, u32> = (theirs.networks.iter())
            .filter_map(|n| Some((n.id.as_str(), n.segment()?)))
            .filter(|(_, vni)| here.contains(vni))
            .collect();
        for vni in shared.values() {
            out.floods.entry(*vni).or_default().insert(h.local_ip);
        }
        // An HA router's qr-/qg- MACs live on each of its copies, and only the master sends
        // from them: no static entry can follow it (the kernel keeps one destination per
        // MAC), so the VXLAN device learns it from the master's gratuitous ARPs.
        let ha = |p: &crate::model::Port| {
            theirs
                .router_by_id(&p.device_id)
                .is_some_and(|r| r.ha.is_some())
        };
        for p in view::ports_here(&theirs, &h.name).filter(|p| !ha(p)) {
            if let Some(&vni) = shared.get(p.network_id.as_str()) {
                let macs = out.macs.entry(vni).or_default();
                macs.insert(p.mac.to_ascii_lowercase(), h.local_ip);
            }
        }
    }
    out
}

/// Each VXLAN network's bridge and `vxlan-<VNI>` device on it, with its flood and per-MAC
/// entries; the devices of segments no longer here removed. With `dry_run`, what would be
/// done.
pub async fn segments(
    k: &mut Kernel,
    mine: &State,
    peers: &Peers,
    (o, mtu): (&Options, Option<u32>),
    owner: &Owner,
    dry_run: bool,
) -> (anyhow::Result<()>, Vec<String>) {
    let mut bridges = owner.changes();
    bridges.dry_run = dry_run;
    let mut done = vec![];
    let (no_peers, no_macs, nothing_seen) = Default::default();
    let mut wanted = BTreeSet::new();
    let marked = |alias: Option<&str>| owner.marked(alias);
    let seen = match vxlan::fdb_table(k.host()).await {
        Ok(table) => table,
        Err(e) => return (Err(e), done),
    };
    for n in &mine.networks {
        let Some(vni) = n.segment() else { continue };
        wanted.insert(vni);
        let made = host::ensure_network(k, n, &mut bridges).await;
        done.append(&mut bridges.done);
        if let Err(e) = made {
            return (Err(e), done);
        }
        let mark = naming::mark(&owner.id, &n.id);
        let segment = vxlan::Segment {
            vni,
            local: o.local_ip,
            bridge: &n.bridge,
            mtu: n.mtu.or(mtu).unwrap_or(1450),
            peers: peers.floods.get(&vni).unwrap_or(&no_peers),
            macs: peers.macs.get(&vni).unwrap_or(&no_macs),
            seen: seen.get(&vxlan::device(vni)).unwrap_or(&nothing_seen),
            mark: &mark,
            marked: &marked,
        };
        match vxlan::ensure(k.host(), &segment, dry_run).await {
            Ok(lines) => done.extend(lines),
            Err(e) => return (Err(e), done),
        }
    }
    match vxlan::remove_unwanted(k.host(), &wanted, marked, dry_run).await {
        Ok(lines) => done.extend(lines),
        Err(e) => return (Err(e), done),
    }
    (Ok(()), done)
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::model::host::Role;
    use crate::model::PortRole;

    fn host(name: &str, role: Role, ip: &str, alive: bool) -> HostInfo {
        HostInfo {
            local_ip: ip.parse().unwrap(),
            ..crate::model::fixtures::host(name, role, alive)
        }
    }

    fn options(host: &str, role: Role, ip: &str) -> Options {
        Options {
            host: host.into(),
            local_ip: ip.parse().unwrap(),
            role,
            lease_ttl: 10,
            failover_grace: None,
            resync_interval: std::time::Duration::from_secs(30),
        }
    }

    /// The seed with both tenant networks as VXLAN segments 1 and 2, the router and the
    /// DHCP servers on network1, cirros-vm3 on compute1.
    fn seed() -> State {
        let mut s = crate::ops::tests::seed_state();
        for (name, vni) in [("vlan100", 1), ("vlan101", 2)] {
            let i = s.networks.iter().position(|n| n.name == name).unwrap();
            Rc::make_mut(&mut s.networks[i]).vni = Some(vni);
        }
        Rc::make_mut(&mut s.routers[0]).host = Some("network1".into());
        Rc::make_mut(&mut s.instances[0]).host = Some("compute1".into());
        for p in s.ports.iter_mut().filter(|p| p.role == PortRole::Dhcp) {
            Rc::make_mut(p).host = Some("network1".into());
        }
        s
    }

    fn table(s: &State, hosts: &[HostInfo], me: &Options) -> Peers {
        let mine = view::of(s, &me.host, me.role, None);
        peers(s, hosts, me, &mine, None)
    }

    /// The MAC of the port of `role` on network `net` (by name).
    fn mac(s: &State, net: &str, role: PortRole) -> String {
        let net = &s.network(net).unwrap().id;
        let port = s
            .ports
            .iter()
            .find(|p| &p.network_id == net && p.role == role);
        port.unwrap().mac.to_ascii_lowercase()
    }

    #[test]
    fn each_port_on_another_live_host_is_sent_to_that_host() {
        let mut s = seed();
        let (n1, c1, c2) = ("192.168.50.11", "192.168.50.12", "192.168.50.13");
        let mut hosts = vec![
            host("network1", Role::Network, n1, true),
            host("compute1", Role::Compute, c1, true),
            host("compute2", Role::Compute, c2, true),
        ];
        let compute1 = options("compute1", Role::Compute, c1);
        let network1 = options("network1", Role::Network, n1);
        let qr = mac(&s, "vlan101", PortRole::RouterInterface);
        let dhcp = mac(&s, "vlan101", PortRole::Dhcp);
        let vm3 = mac(&s, "vlan101", PortRole::Instance);
        // compute1 has vlan101 only: the router's qr- port and the DHCP port there, both on
        // network1; not its own instance, nothing of vlan100.
        let seen = table(&s, &hosts, &compute1);
        let n1_ip: Ipv4Addr = n1.parse().unwrap();
        let want = BTreeMap::from([(qr.clone(), n1_ip), (dhcp.clone(), n1_ip)]);
        assert_eq!(seen.macs, HashMap::from([(2, want)]));
        assert_eq!(seen.floods, HashMap::from([(2, BTreeSet::from([n1_ip]))]));
        // network1 runs vlan101's DHCP server: every port on it is named there, but only
        // cirros-vm3's lives elsewhere; vlan100 has no port on another host.
        let seen = table(&s, &hosts, &network1);
        let vm3_at = BTreeMap::from([(vm3.clone(), c1.parse().unwrap())]);
        assert_eq!(seen.macs, HashMap::from([(2, vm3_at)]));
        // A workload port bound to compute2 enters both tables, and stays there while
        // compute2's agent is away (its lease gone): the host still forwards.
        let vlan101 = s.network("vlan101").unwrap().id.clone();
        let mut port = (*s.ports[s.ports.len() - 1]).clone();
        (port.id, port.network_id, port.role) = ("p-w".into(), vlan101, PortRole::Workload);
        (port.mac, port.host) = ("FA:16:3E:00:00:99".into(), Some("compute2".into()));
        port.fixed_ips[0].ip = "172.16.101.9".parse().unwrap();
        port.device_id.clear();
        s.ports.push(Rc::new(port));
        let workload = ("fa:16:3e:00:00:99".to_string(), c2.parse().unwrap());
        for me in [&compute1, &network1] {
            let macs = &table(&s, &hosts, me).macs[&2];
            assert_eq!(macs.get(&workload.0), Some(&workload.1), "{}", me.host);
        }
        hosts[2].alive = false;
        let away = table(&s, &hosts, &compute1);
        assert_eq!(away.macs[&2].get(&workload.0), Some(&workload.1));
        assert!(away.floods[&2].contains(&workload.1));
        // Only removing the host (`host delete`) takes its entries away.
        let removed: Vec<HostInfo> = hosts
            .iter()
            .filter(|h| h.name != "compute2")
            .cloned()
            .collect();
        assert!(!table(&s, &removed, &compute1).macs[&2].contains_key(&workload.0));
        // cirros-vm3 moved to compute2: its MAC follows it; gone when deleted.
        hosts[2].alive = true;
        Rc::make_mut(&mut s.instances[0]).host = Some("compute2".into());
        let macs = &table(&s, &hosts, &network1).macs[&2];
        assert_eq!(macs.get(&vm3), Some(&c2.parse().unwrap()));
        let vm3_id = s.instances[0].id.clone();
        s.instances.clear();
        s.ports.retain(|p| p.device_id != vm3_id);
        let macs = &table(&s, &hosts, &network1).macs[&2];
        assert!(!macs.contains_key(&vm3), "{macs:?}");
    }
}
