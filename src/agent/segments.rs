//! The VXLAN side of a host: a `vxlan-<VNI>` device on the bridge of each VXLAN network of
//! its part, flooding to the other live hosts that have the network (head-end replication).

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use super::run::Options;
use super::view;
use crate::kernel::{vxlan, Kernel};
use crate::model::{naming, State};
use crate::reconcile::{host, Changes};
use crate::store::etcd::HostInfo;

/// For each VXLAN network on this host, the underlay addresses of the other live hosts that
/// have something on it.
pub fn peers(state: &State, hosts: &[HostInfo], o: &Options, mtu: Option<u32>) -> Peers {
    let mut out: HashMap<u32, BTreeSet<Ipv4Addr>> = HashMap::new();
    for h in hosts.iter().filter(|h| h.alive && h.name != o.host) {
        let theirs = view::of(state, &h.name, h.role, mtu);
        for n in &theirs.networks {
            if let Some(vni) = n.segment() {
                out.entry(vni).or_default().insert(h.local_ip);
            }
        }
    }
    out
}

/// The VXLAN peers of each segment, by VNI.
pub type Peers = HashMap<u32, BTreeSet<Ipv4Addr>>;

/// Each VXLAN network's bridge and `vxlan-<VNI>` device on it, with its flood entries; the
/// devices of segments no longer here removed. With `dry_run`, what would be done.
pub async fn segments(
    k: &mut Kernel,
    mine: &State,
    peers: &Peers,
    (o, mtu): (&Options, Option<u32>),
    owner: &str,
    dry_run: bool,
) -> (anyhow::Result<()>, Vec<String>) {
    let mut bridges = Changes::new(owner);
    bridges.dry_run = dry_run;
    let mut done = vec![];
    let none = BTreeSet::new();
    let mut wanted = BTreeSet::new();
    let floods = match vxlan::flood_table() {
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
        let mark = naming::mark(owner, &n.id);
        let segment = vxlan::Segment {
            vni,
            local: o.local_ip,
            bridge: &n.bridge,
            mtu: n.mtu.or(mtu).unwrap_or(1450),
            peers: peers.get(&vni).unwrap_or(&none),
            floods: floods.get(&vxlan::device(vni)).unwrap_or(&none),
            mark: &mark,
        };
        match vxlan::ensure(k.host(), &segment, dry_run).await {
            Ok(lines) => done.extend(lines),
            Err(e) => return (Err(e), done),
        }
    }
    let marked = |alias: Option<&str>| naming::marked_by(alias, owner);
    match vxlan::remove_unwanted(k.host(), &wanted, marked, dry_run).await {
        Ok(lines) => done.extend(lines),
        Err(e) => return (Err(e), done),
    }
    (Ok(()), done)
}
