//! The desired state in etcd v3, for several hosts (`--store etcd://HOST:PORT[,...]`).
//!
//! Keys (under `/qrouter/`):
//! - `state/<kind>/<id>`: one object, its JSON body as in the SQLite store;
//! - `state/ip/<subnet id>/<address>`: one allocated address, its owner (`port <id>` or
//!   `floating_ip <id>`): a change that allocates an address creates this key only if it does
//!   not exist, so two writers never hand out the same address;
//! - `state/vni/<VNI>`: one VXLAN segment, its network, likewise;
//! - `meta/id`: the store's id (the owner in every ownership mark);
//! - `lock/<lease>`: the write lock, each writer's key under its lease (`lock.rs`), checked
//!   by the change's transaction;
//! - `hosts/`, `alive/`, `status/`...: the agents' (see `agent`); every key is built in
//!   `keys.rs`.
//!
//! A change takes the lock and, in the same transaction, reads the store's id, everything
//! under `state/` with each key's mod revision, and the hosts; it writes what differs in one
//! transaction guarded by those revisions (a new key: that it still does not exist), which
//! also lets go of the lock: two requests, and a third for the process's lease at its
//! first change. A guard that fails writes nothing. The lock only makes concurrent writers wait
//! their turn instead of failing; correctness rests on the guards. The hosts and what their
//! agents report are read in `hosts.rs`; the state's keys are parsed, and an object that
//! fails its checks set aside, in `state.rs`.

pub mod client;
mod hosts;
pub mod keys;
mod lock;
mod state;

use hosts::hosts_from;
pub use hosts::HostLease;
pub use keys::LOCK;
pub use lock::{break_keys, describe as describe_lock, holders as lock_holders, LEASE_TTL};

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use anyhow::Context;

use crate::model::host::HostInfo;
use crate::model::protocol::{Quarantined, Status};
use crate::model::State;
use client::{Client, Cmp, Kv, Op};
use keys::{ALIVE, HOSTS, ID as ID_KEY, SEEN, STATE};
use state::{addresses, diff};

pub struct Etcd {
    pub client: Client,
    id: String,
    writable: bool,
    /// The revision of the last change this process committed (0: none).
    pub last_commit: i64,
    /// What the agents reported as they applied the change this command made, by status
    /// key: see `wait_applied`.
    reported: HashMap<String, Status>,
    /// The lease this process's changes hold the write lock under, from its first change.
    lease: Option<lock::Lease>,
    /// What the last read set aside (`state.rs`): the keys that failed to parse or their
    /// checks, the state's and the hosts'.
    pub quarantined: Vec<Quarantined>,
    /// Whether each read warns of what it set aside (a command does; an agent reports it
    /// once, in its own report).
    pub warn_quarantined: bool,
}

/// One read of everything an agent needs, as etcd answered it: plain data, which a thread
/// that waits on etcd can hand to the one that converges (`Snapshot::parse`).
pub struct Snapshot {
    ranges: Vec<Vec<Kv>>,
    pub revision: i64,
}

/// A snapshot parsed: the store's id, the state and the hosts at one revision, and what
/// was set aside.
pub struct Loaded {
    pub id: String,
    pub state: Rc<State>,
    pub revision: i64,
    pub hosts: Vec<HostInfo>,
    pub quarantined: Vec<Quarantined>,
}

impl Snapshot {
    pub fn parse(self) -> Loaded {
        let taken = take(self.ranges);
        Loaded {
            id: taken.id,
            state: taken.state,
            revision: self.revision,
            hosts: taken.hosts,
            quarantined: taken.quarantined,
        }
    }
}

/// What a transaction of `[get id, range state, (range hosts, alive, seen)]` read.
fn take(ranges: Vec<Vec<Kv>>) -> Taken {
    let mut ranges = ranges.into_iter();
    let mut next = || ranges.next().unwrap_or_default();
    let id = (next().first())
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
        .unwrap_or_default();
    let (state, revisions, mut quarantined) = state::parse(next());
    let (hosts, alive, seen) = (next(), next(), next());
    let (hosts, bad_hosts) = hosts_from(&hosts, &alive, &seen);
    quarantined.extend(bad_hosts);
    Taken {
        id,
        state: Rc::new(state),
        revisions,
        hosts,
        quarantined,
    }
}

/// What one read of the state took.
struct Taken {
    /// The store's id (empty while there is no store).
    id: String,
    state: Rc<State>,
    /// Every key's mod revision: what a change's transaction guards.
    revisions: HashMap<String, i64>,
    /// The hosts, when they were read too.
    hosts: Vec<HostInfo>,
    quarantined: Vec<Quarantined>,
}

pub struct EtcdTxn<'a> {
    store: &'a mut Etcd,
    /// Every key read, with its mod revision.
    read: HashMap<String, i64>,
    /// The hosts, read with the state.
    hosts: Vec<HostInfo>,
    writes: RefCell<(Vec<Cmp>, Vec<Op>)>,
    /// The lock this change holds (None: let go).
    lock: Option<Held>,
    /// The hosts this change removes: their statuses go once it is committed.
    forgotten: Vec<String>,
}

/// A writer's key in the write lock, and its revision (which the change's commit checks).
struct Held {
    key: String,
    revision: i64,
}

impl Etcd {
    /// `spec`: `HOST:PORT[,HOST:PORT…]`. Nothing is asked of etcd yet: the store's id comes
    /// with the first read of the state, which is where an unreachable etcd fails.
    pub fn open(spec: &str, writable: bool) -> anyhow::Result<Etcd> {
        Ok(Etcd {
            client: Client::new(spec)?,
            id: String::new(),
            writable,
            last_commit: 0,
            reported: HashMap::new(),
            lease: None,
            quarantined: vec![],
            warn_quarantined: true,
        })
    }

    /// The store's id, once the state was read (empty before, or while there is no store).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn exists(&mut self) -> anyhow::Result<bool> {
        if self.id.is_empty() {
            self.id = (self.client.get(ID_KEY)?)
                .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
                .unwrap_or_default();
        }
        Ok(!self.id.is_empty())
    }

    /// The committed state.
    pub fn load(&mut self) -> anyhow::Result<Rc<State>> {
        let answer = self.client.read(&[Op::get(ID_KEY), Op::range(STATE)])?;
        Ok(self.took(answer).state)
    }

    /// The store's id, the committed state, the hosts, and the revision they are at: one
    /// round trip, parsed by whoever takes the snapshot.
    pub fn snapshot(&mut self) -> anyhow::Result<Snapshot> {
        let reads = [
            Op::get(ID_KEY),
            Op::range(STATE),
            Op::range(HOSTS),
            Op::range(ALIVE),
            Op::range(SEEN),
        ];
        let answer = self.client.txn_either(&[], &reads, &[])?;
        Ok(Snapshot {
            ranges: answer.ranges,
            revision: answer.revision,
        })
    }

    /// What a transaction of `[get id, range state, (range hosts, alive, seen)]` read, with
    /// what it set aside warned of (see `warn_quarantined`) and kept in `quarantined`.
    fn took(&mut self, ranges: Vec<Vec<Kv>>) -> Taken {
        let mut taken = take(ranges);
        if !taken.id.is_empty() {
            self.id = taken.id.clone();
        }
        if self.warn_quarantined {
            for q in &taken.quarantined {
                log::warn!("store: {q}; set aside, the rest goes on");
            }
        }
        self.quarantined = std::mem::take(&mut taken.quarantined);
        taken
    }

    /// Take the write lock and read the state and the hosts under it, in one transaction.
    pub fn begin(&mut self) -> anyhow::Result<(EtcdTxn<'_>, Rc<State>)> {
        if !self.writable {
            anyhow::bail!("store etcd://{}: opened read-only", self.client.endpoints());
        }
        let (held, ranges) = self.lock()?;
        let begun = (|| {
            let taken = self.took(ranges);
            if self.id.is_empty() {
                // Made here unless another writer made it meanwhile: then it is read back.
                let id = uuid::Uuid::new_v4().to_string();
                let create = [Op::Put {
                    key: ID_KEY.into(),
                    value: id.clone().into_bytes(),
                    lease: 0,
                }];
                let answer =
                    self.client
                        .txn_either(&[guard(ID_KEY, 0)], &create, &[Op::get(ID_KEY)])?;
                self.id = match answer.succeeded {
                    true => id,
                    false => (answer.ranges.into_iter().flatten().next())
                        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
                        .context("etcd: the store id vanished as it was made")?,
                };
            }
            Ok(taken)
        })();
        let taken = match begun {
            Ok(b) => b,
            Err(e) => {
                self.unlock(&held);
                return Err(e);
            }
        };
        Ok((
            EtcdTxn {
                store: self,
                read: taken.revisions,
                hosts: taken.hosts,
                writes: RefCell::default(),
                lock: Some(held),
                forgotten: vec![],
            },
            taken.state,
        ))
    }

    /// Let go of the lock `held` (a delete of this writer's own key: another's is never
    /// touched).
    fn unlock(&mut self, held: &Held) {
        if let Some(lease) = &self.lease {
            lease.renew_while(false);
        }
        let del = [Op::Delete {
            key: held.key.clone(),
        }];
        let _ = self.client.txn(&[guard(&held.key, held.revision)], &del);
    }
}

impl EtcdTxn<'_> {
    pub fn store(&mut self) -> &mut Etcd {
        self.store
    }

    pub fn store_id(&self) -> &str {
        &self.store.id
    }

    /// The hosts as they were when the lock was taken.
    pub fn hosts(&self) -> &[HostInfo] {
        &self.hosts
    }

    /// Record what differs between `old` and `new`: written by `commit`, in one transaction.
    pub fn save(&self, old: &State, new: &State) -> anyhow::Result<()> {
        let mut w = self.writes.borrow_mut();
        let (guards, ops) = &mut *w;
        diff(&self.read, &old.networks, &new.networks, guards, ops);
        diff(&self.read, &old.subnets, &new.subnets, guards, ops);
        diff(&self.read, &old.routers, &new.routers, guards, ops);
        diff(&self.read, &old.ports, &new.ports, guards, ops);
        diff(&self.read, &old.instances, &new.instances, guards, ops);
        diff(
            &self.read,
            &old.floating_ips,
            &new.floating_ips,
            guards,
            ops,
        );
        let (was, now) = (addresses(old), addresses(new));
        for (key, owner) in &now {
            if was.get(key) != Some(owner) {
                // A new address: its key must not exist, whatever was read (a key no object
                // of the state explains is someone else's address all the same).
                let rev = if was.contains_key(key) {
                    self.rev(key)
                } else {
                    0
                };
                guards.push(guard(key, rev));
                ops.push(Op::Put {
                    key: key.clone(),
                    value: owner.clone().into_bytes(),
                    lease: 0,
                });
            }
        }
        for key in was.keys().filter(|k| !now.contains_key(*k)) {
            guards.push(guard(key, self.rev(key)));
            ops.push(Op::Delete { key: key.clone() });
        }
        Ok(())
    }

    /// Commit only if `key` does not exist then (a host's liveness, for one).
    pub fn guard_absent(&mut self, key: &str) {
        self.writes.borrow_mut().0.push(guard(key, 0));
    }

    /// Remove host `name`'s registration and what its agent wrote of itself, in the same
    /// transaction, if its agent holds no lease then; its statuses go once it committed.
    pub fn forget_host(&mut self, name: &str) {
        let mut w = self.writes.borrow_mut();
        w.0.push(guard(&keys::alive(name), 0));
        for key in [
            keys::host(name),
            keys::seen(name),
            keys::applied(name),
            keys::report(name),
        ] {
            w.1.push(Op::Delete { key });
        }
        self.forgotten.push(name.to_string());
    }

    fn rev(&self, key: &str) -> i64 {
        self.read.get(key).copied().unwrap_or(0)
    }

    /// Write everything saved, if no key read has changed since and the lock is still
    /// this change's, and let go of the lock, in one transaction.
    pub fn commit(mut self) -> anyhow::Result<()> {
        let (mut guards, mut ops) = self.writes.take();
        if ops.is_empty() {
            return Ok(());
        }
        let held = self
            .lock
            .take()
            .expect("a change holds the lock until it ends");
        guards.push(guard(&held.key, held.revision));
        ops.push(Op::Delete {
            key: held.key.clone(),
        });
        let result = self.store.client.txn(&guards, &ops);
        let Ok((applied, revision)) = result else {
            // Whether it was applied is unknown: the lock is let go of only if it still is ours.
            self.store.unlock(&held);
            return result.map(drop);
        };
        self.store.last_commit = revision;
        if let Some(lease) = &self.store.lease {
            lease.renew_while(false);
        }
        if !applied {
            self.store.unlock(&held);
            if !self.store.quarantined.is_empty() {
                anyhow::bail!(
                    "an address, a segment or an object this change takes is held by a key \
                     set aside as the store was read ({} of them, named above), or was \
                     taken meanwhile; nothing was changed: repair or delete those keys, or \
                     give the address or segment yourself",
                    self.store.quarantined.len()
                );
            }
            anyhow::bail!(
                "the store changed while this command ran (an address or object was taken \
                 meanwhile); nothing was changed, run it again"
            );
        }
        for host in std::mem::take(&mut self.forgotten) {
            self.store.client.delete_prefix(&keys::statuses(&host))?;
        }
        Ok(())
    }
}

impl Drop for EtcdTxn<'_> {
    fn drop(&mut self) {
        if let Some(held) = self.lock.take() {
            self.store.unlock(&held);
        }
    }
}

pub(crate) fn guard(key: &str, mod_revision: i64) -> Cmp {
    Cmp {
        key: key.to_string(),
        mod_revision,
    }
}
