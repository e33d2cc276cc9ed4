//! `store unlock`: the etcd store's write lock as it stands, and breaking it. A writer that
//! died lets go by itself when its lease ends; what this is for is a key no lease ends (a
//! value written by hand, a lock of a qrouter before leases) or a writer that hangs.

use crate::bail_invalid;
use crate::store::etcd::client::Kv;
use crate::store::etcd::{break_keys, describe_lock, lock_holders};
use crate::store::Store;

/// The keys of the write lock when they were read.
pub struct Holders {
    keys: Vec<Kv>,
}

impl Holders {
    /// Each key and what it holds, oldest (the holder) first.
    pub fn described(&self) -> Vec<String> {
        self.keys.iter().map(describe_lock).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The write lock's keys; exit 2 with the embedded store, whose lock is SQLite's.
pub fn holders(store: &mut Store) -> anyhow::Result<Holders> {
    let Some(etcd) = store.etcd() else {
        bail_invalid!(
            "store unlock: the embedded store's lock is SQLite's, let go when its holder \
             exits; nothing to unlock"
        );
    };
    Ok(Holders {
        keys: lock_holders(&mut etcd.client)?,
    })
}

/// Delete the keys `holders` read, each only if unchanged since: how many went.
pub fn break_lock(store: &mut Store, holders: &Holders) -> anyhow::Result<usize> {
    let etcd = store.etcd().expect("holders() read an etcd store");
    break_keys(&mut etcd.client, &holders.keys)
}
