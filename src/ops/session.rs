//! The session every operation runs in: it reads the store, lets an operation change a copy
//! of the state, writes it under the store's lock, converges the kernel, and rolls both back
//! when the kernel refuses. An atomic batch collects the changes and applies them as one.

use std::rc::Rc;

use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};

use crate::kernel::{self, Kernel};
use crate::model::State;
use crate::reconcile::{converge, Changes, Touched};
use crate::store::{Reads, Store};

/// One process's way to the desired state and the kernel: the store, the kernel once
/// needed, and the changes an atomic batch collects.
pub struct Session {
    pub store: Store,
    pub(super) kernel: Option<Kernel>,
    /// In `batch --atomic`: the changes made so far, applied together at the end.
    pending: Option<Pending>,
    /// With an etcd store: how long a change waits for the hosts' agents to apply it
    /// (None: `--no-wait`, it returns once written).
    pub wait: Option<std::time::Duration>,
}

/// What an operation did: the objects whose kernel state it changed, and the object it made
/// or changed (none for a deletion).
#[derive(Debug, Default)]
pub struct Outcome {
    pub touched: Touched,
    pub id: Option<String>,
}

impl Outcome {
    pub fn new(touched: Touched, id: &str) -> Outcome {
        Outcome {
            touched,
            id: Some(id.to_string()),
        }
    }
}

/// A change applied (or, in an atomic batch, collected): the state it made and its object.
pub struct Done {
    pub state: Rc<State>,
    pub id: Option<String>,
}

struct Pending {
    old: State,
    /// Shared with the command that just read it; edited in place once it has let go.
    new: Rc<State>,
    touched: Touched,
}

impl Session {
    /// A session on the store `spec` names (`--store`: none for the embedded one in
    /// `state_dir`, or etcd endpoints), opened for writing unless `writable` is false.
    pub fn open(
        spec: Option<&str>,
        state_dir: &std::path::Path,
        writable: bool,
    ) -> anyhow::Result<Session> {
        Ok(Session::new(Store::open_spec(spec, state_dir, writable)?))
    }

    pub fn new(store: Store) -> Session {
        Session {
            store,
            kernel: None,
            pending: None,
            wait: Some(std::time::Duration::from_secs(10)),
        }
    }

    /// A new command of this process (a batch's line, the shell's): with etcd, statuses seen
    /// while the last one waited are not printed for this one.
    pub fn next_command(&mut self) {
        if let Some(etcd) = self.store.etcd() {
            etcd.forget_reported();
        }
    }

    pub fn kernel(&mut self) -> anyhow::Result<&mut Kernel> {
        connected(&mut self.kernel)
    }

    /// The state as this command sees it: committed, or with an atomic batch's pending changes.
    pub fn load(&mut self) -> anyhow::Result<Rc<State>> {
        self.load_only(&Reads::All)
    }

    /// `load`, reading only what `reads` says of the committed state.
    pub fn load_only(&mut self, reads: &Reads) -> anyhow::Result<Rc<State>> {
        match &self.pending {
            Some(p) => Ok(p.new.clone()),
            None => self.store.load_only(reads),
        }
    }

    /// Validate and apply one change: `f` edits a copy of the state and says what it touched.
    /// The store keeps the write lock until the kernel matches; if converging fails, the store
    /// change is rolled back and the touched objects are converged back to the old state.
    /// In an atomic batch the change is only validated and kept for `finish_atomic`.
    pub async fn change(
        &mut self,
        f: impl FnOnce(&mut State) -> anyhow::Result<Outcome>,
    ) -> anyhow::Result<Done> {
        self.change_only(Reads::All, f).await
    }

    /// `change` for a command that reads and writes only what `reads` says: the rest of the
    /// store is not read. Creating a network, for one, needs only the networks of its name.
    pub async fn change_only(
        &mut self,
        reads: Reads<'_>,
        f: impl FnOnce(&mut State) -> anyhow::Result<Outcome>,
    ) -> anyhow::Result<Done> {
        // A failed change fails the whole batch, which then applies nothing: the pending
        // state is edited in place, not copied for each line (quadratic in a large batch).
        if let Some(p) = &mut self.pending {
            let new = Rc::make_mut(&mut p.new);
            let Outcome { touched, id } = f(new)?;
            new.settle_floating_ips()?;
            p.touched.extend(touched);
            return Ok(Done {
                state: p.new.clone(),
                id,
            });
        }
        // etcd reads the whole state whatever is asked.
        let reads = if self.store.reads_partly() {
            reads
        } else {
            Reads::All
        };
        let partial = matches!(reads, Reads::Around(_));
        let (txn, old) = self.store.begin_only(&reads)?;
        // The one copy a change needs: `old` stays for the diff and for rolling back.
        let mut new = (*old).clone();
        let Outcome { mut touched, id } = f(&mut new)?;
        new.settle_floating_ips()?;
        touched.follow_networks(&old, &new);
        super::placement::schedule(&txn, &old, &mut new)?;
        // A router is converged from its plan, which needs all its ports: only a router read
        // whole, or one this change made, may change. Another one (a floating IP's, chosen
        // by what was read before the change began) means the store changed meanwhile.
        if let Reads::Around(around) = &reads {
            let partly_read = |r: &String| !around.reads_whole(&old, r);
            if touched.routers.iter().any(partly_read) {
                anyhow::bail!(
                    "the store changed while this command ran; nothing was changed, run it again"
                );
            }
        }
        let involved = super::agents::involved(&txn, &old, &new, &touched);
        let state = apply(&mut self.kernel, txn, old, new, touched, partial).await?;
        super::agents::wait(&mut self.store, &involved, self.wait)?;
        Ok(Done { state, id })
    }

    /// Whether changes are being collected for an atomic batch, which reads the store once.
    pub fn collecting(&self) -> bool {
        self.pending.is_some()
    }

    /// From now on, changes are collected instead of applied.
    pub fn start_atomic(&mut self) -> anyhow::Result<()> {
        let old = (*self.store.load()?).clone();
        self.pending = Some(Pending {
            new: Rc::new(old.clone()),
            old,
            touched: Touched::default(),
        });
        Ok(())
    }

    /// Apply everything collected since `start_atomic` as one change, or nothing.
    pub async fn finish_atomic(&mut self) -> anyhow::Result<()> {
        let p = self.pending.take().expect("an atomic batch was started");
        let mut new = Rc::unwrap_or_clone(p.new);
        let (txn, current) = self.store.begin()?;
        super::placement::schedule(&txn, &p.old, &mut new)?;
        if *current != p.old {
            anyhow::bail!("the store changed while the batch was being read; nothing was applied, run it again");
        }
        let old = Rc::new(p.old);
        let mut touched = p.touched;
        touched.follow_networks(&old, &new);
        let involved = super::agents::involved(&txn, &old, &new, &touched);
        apply(&mut self.kernel, txn, old, new, touched, false).await?;
        super::agents::wait(&mut self.store, &involved, self.wait)
    }
}

/// Write `new` under the lock `txn` holds and converge the touched objects; on failure roll
/// the store back and converge them back to `old`.
async fn apply(
    kernel: &mut Option<Kernel>,
    txn: crate::store::Txn<'_>,
    old: Rc<State>,
    new: State,
    touched: Touched,
    partial: bool,
) -> anyhow::Result<Rc<State>> {
    if new == *old {
        return Ok(old);
    }
    // With etcd, the hosts' agents converge what the store says.
    let needs_kernel = txn.converges_here()
        && !(touched.networks.is_empty()
            && touched.routers.is_empty()
            && touched.instances.is_empty());
    if needs_kernel {
        kernel::preflight()?;
    }
    let _deferred = SignalsDeferred::new();
    txn.save(&old, &new)?;
    if needs_kernel {
        let k = connected(kernel)?;
        let owner = txn.store_id().to_string();
        let mut changes = Changes::new(&owner);
        changes.partial = partial;
        let result = converge(k, &old, &new, &touched, &mut changes).await;
        changes.done.iter().for_each(|c| log::debug!("{c}"));
        if let Err(err) = result {
            drop(txn);
            let mut back = Changes::new(&owner);
            back.partial = partial;
            if let Err(undo) = converge(k, &new, &old, &touched, &mut back).await {
                log::warn!("rolling the kernel back also failed: {undo:#}; run 'qrouter sync'");
            }
            return Err(err);
        }
    }
    let new = Rc::new(new);
    txn.commit(&new)?;
    Ok(new)
}

/// Ctrl-C, SIGTERM and SIGHUP wait while a change is applied: the change finishes or rolls
/// back, then the signal acts. Blocked signals stay blocked in the threads started meanwhile;
/// the iptables processes run in their own process group, out of reach of the terminal's
/// Ctrl-C, so none of them is stopped halfway either.
struct SignalsDeferred(SigSet);

impl SignalsDeferred {
    fn new() -> Self {
        let mut set = SigSet::empty();
        [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP]
            .into_iter()
            .for_each(|s| set.add(s));
        let mut old = SigSet::empty();
        // Only the main thread exists outside a change; it is the one that takes signals.
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
            .expect("blocking signals cannot fail");
        SignalsDeferred(old)
    }
}

impl Drop for SignalsDeferred {
    fn drop(&mut self) {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}

pub fn connected(slot: &mut Option<Kernel>) -> anyhow::Result<&mut Kernel> {
    if slot.is_none() {
        *slot = Some(Kernel::connect()?);
    }
    Ok(slot.as_mut().expect("just connected"))
}
