//! `sync`: make the kernel match the store for every object (after a reboot, or to repair
//! changes made behind qrouter's back), and remove the orphans this store owns.

use std::collections::BTreeSet;

use super::session::{connected, Session};
use crate::kernel::{self, netns};
use crate::reconcile::{converge, remove_orphan_links, Changes, Touched};

impl Session {
    /// Converge everything; with `dry_run`, only find what differs. The changes made (or to
    /// make) are in the returned log, and the foreign objects left alone. `progress` makes a
    /// bar for so many namespaces, if it wants one.
    pub async fn sync(
        &mut self,
        dry_run: bool,
        progress: impl FnOnce(u64) -> Option<indicatif::ProgressBar>,
    ) -> anyhow::Result<Changes> {
        if !self.store.converges_here() {
            crate::bail_invalid!(
                "with an etcd store each host's agent converges its part ('qrouter agent'); \
                 'sync' is for the embedded store"
            );
        }
        self.store.must_exist("nothing to sync against")?;
        kernel::preflight()?;
        let owner = self.store.id().to_string();
        // `sync` holds the write lock so no other command changes the store meanwhile; a dry
        // run changes nothing, and so works on a store it cannot write (a read-only mount).
        let (txn, state) = match dry_run {
            true => (None, self.store.load()?),
            false => {
                let (txn, state) = self.store.begin()?;
                (Some(txn), state)
            }
        };
        let mut touched = Touched {
            networks: state.networks.iter().map(|n| n.id.clone()).collect(),
            routers: state.routers.iter().map(|r| r.id.clone()).collect(),
            instances: state.instances.iter().map(|i| i.id.clone()).collect(),
        };
        // Namespaces named like ours with no object in the store may be orphans: converging
        // an id that is not in the store removes its namespace, if it carries our mark.
        for name in namespaces() {
            if let Some(id) = name.strip_prefix("qrouter-") {
                touched.routers.insert(id.to_string());
            } else if let Some(id) = name.strip_prefix("qinstance-") {
                touched.instances.insert(id.to_string());
            } else if let Some(id) = name.strip_prefix("qdhcp-") {
                touched.networks.insert(id.to_string());
            }
        }
        let mut log = Changes::new(&owner);
        let total = state.routers.len() + state.instances.len();
        (log.dry_run, log.check_drift) = (dry_run, true);
        log.progress = progress(total as u64);
        let k = connected(&mut self.kernel)?;
        converge(k, &state, &state, &touched, &mut log).await?;
        remove_orphan_links(k, &state, &mut log).await?;
        drop(txn);
        Ok(log)
    }
}

fn namespaces() -> BTreeSet<String> {
    let Ok(dir) = std::fs::read_dir(netns::NETNS_DIR) else {
        return BTreeSet::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect()
}
