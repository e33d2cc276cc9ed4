//! `sync`: make the kernel match the store for every object (after a reboot, or to repair
//! changes made behind qrouter's back), and remove the orphans this store owns. With an
//! etcd store, each host's agent does it for its own part when asked (`sync_hosts`).

use std::time::Duration;

use super::session::{connected, Session};
use crate::kernel;
use crate::model::protocol::{Reply, Request, SyncReport};
use crate::reconcile::{converge, remove_orphan_links, Changes, Progress, Touched};

/// What `sync` did: here, or on each host by its agent.
pub enum Synced {
    Here(Box<Changes>),
    Hosts(Vec<(String, HostSync)>),
}

impl Session {
    /// `sync`: converge everything, here with the embedded store, by each host's agent (or
    /// `only` one's) with etcd, waiting up to `wait` for them; with `dry_run`, only find what
    /// differs. `progress` is told how many namespaces there are here, and gives what to call
    /// as each is done, if anything.
    pub async fn sync(
        &mut self,
        dry_run: bool,
        only: Option<&str>,
        wait: Duration,
        progress: impl FnOnce(u64) -> Option<Progress>,
    ) -> anyhow::Result<Synced> {
        match self.backend() == super::Backend::Here && only.is_none() {
            true => Ok(Synced::Here(Box::new(
                self.sync_here(dry_run, progress).await?,
            ))),
            false => Ok(Synced::Hosts(self.sync_hosts(dry_run, only, wait)?)),
        }
    }

    /// Converge everything here. The changes made (or to make) are in the returned log, the
    /// foreign objects left alone, and each object that could not be converged, with why
    /// (`Changes::failures`): the others were.
    async fn sync_here(
        &mut self,
        dry_run: bool,
        progress: impl FnOnce(u64) -> Option<Progress>,
    ) -> anyhow::Result<Changes> {
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
        let touched = Touched::all_here(&state);
        let mut log = Changes::new(&owner);
        let total = state.routers.len() + state.instances.len();
        (log.dry_run, log.check_drift) = (dry_run, true);
        // One object that cannot be converged (a foreign device holding its tap's name)
        // holds no other back: the rest is repaired, and its failure reported with theirs.
        log.keep_going = true;
        log.progress = progress(total as u64);
        let k = connected(&mut self.kernel)?;
        converge(k, &state, &state, &touched, &mut log).await?;
        let orphans = remove_orphan_links(k, &state, &mut log).await;
        log.outcome(None, orphans)?;
        drop(txn);
        Ok(log)
    }
}

/// What one host's agent said to `sync`.
pub enum HostSync {
    /// Its lease has expired: nothing asked.
    Down,
    /// Its agent did not answer in time.
    NoAnswer,
    /// What it changed (or with `dry_run` would), the foreign look-alikes it left alone,
    /// its error if converging failed, and what it set aside of what it read.
    Done(SyncReport),
}

impl Session {
    /// `sync` with an etcd store: ask the agent of every host (or of `only`) to sync its part
    /// (with `dry_run`, to list its drift), all at once, and wait up to `wait` for them.
    fn sync_hosts(
        &mut self,
        dry_run: bool,
        only: Option<&str>,
        wait: Duration,
    ) -> anyhow::Result<Vec<(String, HostSync)>> {
        let Some(etcd) = self.store.etcd() else {
            crate::bail_invalid!("sync --host is for an etcd store, whose hosts run agents");
        };
        let hosts = etcd.hosts()?;
        if let Some(h) = only {
            if !hosts.iter().any(|x| x.name == h) {
                crate::bail_invalid!("host {h}: no such host (no agent registered it)");
            }
        }
        let mut out = vec![];
        let mut asked = vec![];
        let request = Request::Sync { dry_run };
        for h in hosts.iter().filter(|h| only.is_none_or(|o| o == h.name)) {
            match h.alive {
                true => asked.push(super::ask::send(etcd, &h.name, request.clone(), wait)?),
                false => out.push((h.name.clone(), HostSync::Down)),
            }
        }
        let answers = super::ask::collect(etcd, &asked, wait)?;
        for (a, answer) in asked.iter().zip(answers) {
            let said = match answer {
                None => HostSync::NoAnswer,
                Some(Reply::Sync(report)) => HostSync::Done(report),
                Some(Reply::Failed { error }) => HostSync::Done(SyncReport {
                    error: Some(error),
                    ..Default::default()
                }),
                Some(other) => HostSync::Done(SyncReport {
                    error: Some(format!("its agent answered another question: {other:?}")),
                    ..Default::default()
                }),
            };
            out.push((a.host.clone(), said));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}
