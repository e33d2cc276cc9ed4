//! Operations: what each mutating command does to the desired state, as functions of the
//! state and a plain request that return what they touched (`Outcome`), with no command-line
//! types; and the `Session` that applies them to the store and the kernel.

pub mod floating_ip;
pub mod host;
pub mod instance;
pub mod network;
pub mod port;
pub mod router;
mod session;
pub mod subnet;
mod sync;
pub mod topology;
pub mod trace;
pub mod unlock;

pub use session::{connected, Done, Outcome, Session};
pub use sync::{HostSync, Synced};
// What `sync` tells of its progress, for the command line to draw.
pub use crate::reconcile::Progress;
// How the command line reaches an etcd store (its global options), and what a read covers.
pub use crate::store::{etcd_endpoints, set_etcd_access, EtcdAccess, Reads};

use std::path::Path;
use std::rc::Rc;

use crate::model::{FloatingIp, Instance, Network, Object, State, Subnet};
use crate::store::{Around, Store};

/// Where the daemons' files live (`--state-dir`), for every command of this process.
pub fn set_state_dir(dir: &Path) {
    crate::kernel::dnsmasq::set_state_dir(dir);
}

/// What to tell a process without CAP_NET_ADMIN (not root); None for one that has it.
pub fn needs_root() -> Option<&'static str> {
    (!crate::kernel::has_net_admin()).then_some(crate::kernel::NEEDS_ROOT)
}

/// The embedded store in `dir`, read without a lock and without changing anything: what
/// completion offers, at every key press.
pub fn read_only_state(dir: &Path) -> anyhow::Result<Rc<State>> {
    Store::open_read_only(dir)?.load()
}

mod agents;
mod live;
pub use live::{Backend, PortStatus, RouterLive};
pub mod ask;
pub mod placement;
#[cfg(test)]
mod port_tests;
#[cfg(test)]
pub(crate) mod tests;
mod vxlan;

/// What showing one object reads: the object with everything around it (`store::around`:
/// its network expanded), found by exact name or id; otherwise (an id prefix, a typo, a name
/// several share) the whole store, whose lookup explains. With a thousand routers present
/// that is a few dozen objects instead of eight thousand.
pub fn reads_for_show<T: Object>(store: &Store, key: &str) -> anyhow::Result<Reads<'static>> {
    let kind = T::KIND;
    let id = match kind {
        FloatingIp::KIND => store.floating_ip_id(key)?,
        _ => store.id_of(kind, key)?,
    };
    let Some(id) = id else {
        return Ok(Reads::All);
    };
    let mut around = Around::default();
    match kind {
        Network::KIND => around.networks.push(id),
        Subnet::KIND => around.subnets.push(id),
        Instance::KIND => around.instances.push(id),
        FloatingIp::KIND => around.floating_ips.push(id),
        _ => return Ok(Reads::All),
    }
    Ok(Reads::Around(around))
}

/// What `create`, `set` and `unset` ask of the fields every object has (`model::Meta`).
#[derive(Debug, Default, Clone)]
pub struct MetaEdit {
    pub description: Option<String>,
    pub admin_state_up: Option<bool>,
    /// `--no-tag`, `--all-tag`: clear the tags first.
    pub clear_tags: bool,
    pub remove_tags: Vec<String>,
    pub add_tags: Vec<String>,
}

impl MetaEdit {
    /// Whether it asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.description.is_none()
            && self.admin_state_up.is_none()
            && !self.clear_tags
            && self.remove_tags.is_empty()
            && self.add_tags.is_empty()
    }

    /// The fields changed, without counting a revision (a new object's).
    pub fn apply_fields(&self, meta: &mut crate::model::Meta) {
        if let Some(d) = &self.description {
            meta.description = d.clone();
        }
        if let Some(up) = self.admin_state_up {
            meta.admin_state_up = up;
        }
        meta.edit_tags(self.clear_tags, &self.remove_tags, &self.add_tags);
    }

    /// The fields changed, as a new revision.
    pub fn apply(&self, meta: &mut crate::model::Meta) {
        self.apply_fields(meta);
        meta.touch();
    }
}
