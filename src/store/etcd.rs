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
//! - `hosts/`, `alive/`, `status/`: the agents' (see `agent`).
//!
//! A change takes the lock and, in the same transaction, reads the store's id, everything
//! under `state/` with each key's mod revision, and the hosts; it writes what differs in one
//! transaction guarded by those revisions (a new key: that it still does not exist), which
//! also lets go of the lock: two requests, and a third for the process's lease at its
//! first change. A guard that fails writes nothing. The lock only makes concurrent writers wait
//! their turn instead of failing; correctness rests on the guards. The hosts and what their
//! agents report are read in `hosts.rs`.

pub mod client;
mod hosts;
mod lock;

use hosts::hosts_from;
pub use hosts::{ALIVE, ANSWER, APPLIED, ASK, HOSTS, SEEN, STATUS};
pub use lock::{break_keys, describe as describe_lock, holders as lock_holders, LEASE_TTL, LOCK};

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use anyhow::Context;
use serde::{de::DeserializeOwned, Serialize};

use crate::model::host::HostInfo;
use crate::model::{Object, State};
use client::{Client, Cmp, Kv, Op};

pub const ROOT: &str = "/qrouter/";
pub const STATE: &str = "/qrouter/state/";
const IPS: &str = "/qrouter/state/ip/";
const ID_KEY: &str = "/qrouter/meta/id";

pub struct Etcd {
    pub client: Client,
    id: String,
    writable: bool,
    /// The revision of the last change this process committed (0: none).
    pub last_commit: i64,
    /// What the agents reported as they applied the change this command made
    /// (`status/<host>/<kind>/<id>` without the prefix): see `wait_applied`.
    reported: HashMap<String, serde_json::Value>,
    /// The lease this process's changes hold the write lock under, from its first change.
    lease: Option<lock::Lease>,
}

/// What one read of the state took.
struct Taken {
    state: Rc<State>,
    /// Every key's mod revision: what a change's transaction guards.
    revisions: HashMap<String, i64>,
    /// The hosts, when they were read too.
    hosts: Vec<HostInfo>,
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
}

/// A writer's key in the write lock, and its revision (which the change's commit checks).
struct Held {
    key: String,
    revision: i64,
}

/// The key of an object.
pub fn object_key(kind: &str, id: &str) -> String {
    format!("{STATE}{}/{id}", kind.replace(' ', "_"))
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
        Ok(self.took(answer)?.state)
    }

    /// The committed state, its revision, and the hosts then: one round trip.
    pub fn load_with_hosts(&mut self) -> anyhow::Result<(Rc<State>, i64, Vec<HostInfo>)> {
        let reads = [
            Op::get(ID_KEY),
            Op::range(STATE),
            Op::range(HOSTS),
            Op::range(ALIVE),
            Op::range(SEEN),
        ];
        let answer = self.client.txn_either(&[], &reads, &[])?;
        let taken = self.took(answer.ranges)?;
        Ok((taken.state, answer.revision, taken.hosts))
    }

    /// What a transaction of `[get id, range state, (range hosts, alive, seen)]` read.
    fn took(&mut self, ranges: Vec<Vec<Kv>>) -> anyhow::Result<Taken> {
        let mut ranges = ranges.into_iter();
        let mut next = || ranges.next().unwrap_or_default();
        if let Some(kv) = next().first() {
            self.id = String::from_utf8_lossy(&kv.value).into_owned();
        }
        let (state, revisions) = parse_state(next())?;
        let (hosts, alive, seen) = (next(), next(), next());
        let hosts = hosts_from(&hosts, &alive, &seen)?;
        Ok(Taken {
            state,
            revisions,
            hosts,
        })
    }

    /// Take the write lock and read the state and the hosts under it, in one transaction.
    pub fn begin(&mut self) -> anyhow::Result<(EtcdTxn<'_>, Rc<State>)> {
        if !self.writable {
            anyhow::bail!("store etcd://{}: opened read-only", self.client.endpoints());
        }
        let (held, ranges) = self.lock()?;
        let begun = (|| {
            let taken = self.took(ranges)?;
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
            anyhow::bail!(
                "the store changed while this command ran (an address or object was taken \
                 meanwhile); nothing was changed, run it again"
            );
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

fn guard(key: &str, mod_revision: i64) -> Cmp {
    Cmp {
        key: key.to_string(),
        mod_revision,
    }
}

fn diff<T: Object + Serialize + Eq>(
    read: &HashMap<String, i64>,
    old: &[Rc<T>],
    new: &[Rc<T>],
    guards: &mut Vec<Cmp>,
    ops: &mut Vec<Op>,
) {
    let was: HashMap<&str, &Rc<T>> = old.iter().map(|o| (o.id(), o)).collect();
    let mut kept = std::collections::HashSet::new();
    for item in new {
        kept.insert(item.id());
        if was.get(item.id()) != Some(&item) {
            let key = object_key(T::KIND, item.id());
            // A new object: its key must not exist.
            let rev = match was.contains_key(item.id()) {
                true => read.get(&key).copied().unwrap_or(0),
                false => 0,
            };
            guards.push(guard(&key, rev));
            ops.push(Op::Put {
                key,
                value: serde_json::to_vec(item.as_ref()).expect("model objects serialise"),
                lease: 0,
            });
        }
    }
    for id in was.keys().filter(|id| !kept.contains(*id)) {
        let key = object_key(T::KIND, id);
        guards.push(guard(&key, read.get(&key).copied().unwrap_or(0)));
        ops.push(Op::Delete { key });
    }
}

/// One key per allocated address (and VXLAN segment), and who holds it.
fn addresses(state: &State) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for p in &state.ports {
        for f in &p.fixed_ips {
            out.insert(
                format!("{IPS}{}/{}", f.subnet_id, f.ip),
                format!("port {}", p.id),
            );
        }
    }
    for f in &state.floating_ips {
        out.insert(
            format!("{IPS}{}/{}", f.subnet_id, f.address),
            format!("floating_ip {}", f.id),
        );
    }
    // One key per VXLAN segment, likewise.
    for n in &state.networks {
        if let Some(vni) = n.vni {
            out.insert(format!("{STATE}vni/{vni}"), format!("network {}", n.id));
        }
    }
    out
}

/// The state from its keys (addresses and segments are read, not parsed), and every key's
/// mod revision.
fn parse_state(kvs: Vec<Kv>) -> anyhow::Result<(Rc<State>, HashMap<String, i64>)> {
    let mut read = HashMap::with_capacity(kvs.len());
    let mut objects = Vec::with_capacity(kvs.len());
    for kv in kvs {
        read.insert(kv.key.clone(), kv.mod_revision);
        if !kv.key.starts_with(IPS) {
            objects.push(kv);
        }
    }
    // Creation order, as the SQLite store keeps it.
    objects.sort_by_key(|kv| kv.create_revision);
    let mut state = State::default();
    for kv in &objects {
        let rest = &kv.key[STATE.len()..];
        let (kind, id) = rest.split_once('/').unwrap_or((rest, ""));
        let body = &kv.value;
        let parsed = match kind {
            "network" => push(&mut state.networks, body),
            "subnet" => push(&mut state.subnets, body),
            "router" => push(&mut state.routers, body),
            "port" => push(&mut state.ports, body),
            "instance" => push(&mut state.instances, body),
            "floating_ip" => push(&mut state.floating_ips, body),
            _ => Ok(()),
        };
        parsed.with_context(|| format!("store: {kind} {id} is corrupt"))?;
    }
    Ok((Rc::new(state), read))
}

fn push<T: DeserializeOwned>(items: &mut Vec<Rc<T>>, body: &[u8]) -> serde_json::Result<()> {
    items.push(Rc::new(serde_json::from_slice(body)?));
    Ok(())
}
