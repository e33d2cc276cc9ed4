//! What `topology` marks as lacking: the kernel objects of its picture that this host does not
//! have.

use super::Session;
// The picture itself is drawn from the state (explain/); the command line reaches it here.
pub use crate::explain::topology::{build, dot, svg, text, utf8_locale, Drift, Filter, Topology};
use crate::kernel::{link, netns, Kernel};

impl Session {
    /// The bridges, namespaces and devices of `t` missing here; nothing marked where this
    /// process cannot reach the kernel (an ordinary user reading the store).
    pub async fn topology_drift(&mut self, t: &Topology) -> anyhow::Result<Drift> {
        match self.kernel() {
            Ok(k) => lacking(k, t).await,
            Err(_) => Ok(Drift::default()),
        }
    }
}

/// What the kernel lacks of the picture: bridges, namespaces, devices in namespaces.
async fn lacking(k: &mut Kernel, t: &Topology) -> anyhow::Result<Drift> {
    let mut drift = Drift::default();
    for n in &t.networks {
        if link::get(k.host(), &n.bridge).await?.is_none() {
            drift.bridges.insert(n.bridge.clone());
        }
    }
    let spaces = t
        .routers
        .iter()
        .map(|r| (&r.namespace, r.interfaces.iter().collect::<Vec<_>>()))
        .chain(
            t.instances
                .iter()
                .map(|i| (&i.namespace, i.interface.iter().collect())),
        );
    for (ns, devices) in spaces {
        if !netns::exists(ns) {
            drift.namespaces.insert(ns.clone());
            continue;
        }
        let links = link::list(&k.ns(ns)?).await?;
        for d in devices {
            if !links.iter().any(|l| l.name == d.device) {
                drift.devices.insert((ns.clone(), d.device.clone()));
            }
        }
    }
    Ok(drift)
}
