//! The write lock, as etcd's own concurrency lock (and `etcdctl lock /qrouter/lock`) takes
//! it: each writer creates `/qrouter/lock/<its lease, hex>` under its lease, and the key with
//! the lowest create revision holds the lock; the others wait on a watch of the key created
//! just before theirs. A writer that dies lets go when its lease ends (`LEASE_TTL`), with
//! nobody to break anything; one that lives renews its lease while it holds or waits.
//!
//! Creating the key is one write in the transaction that also reads the state (see
//! `Etcd::begin`); letting go is a delete in the change's own transaction. The lease is
//! granted once per process, at its first change: a third request, a raft write like the
//! other two (see `Lease::grant` for what it costs). A key under the lock's prefix that no lease ends (a garbage value, a lock
//! left by a qrouter before leases) would block every writer for good: it is reported at
//! once with what it holds, and `qrouter store unlock` breaks it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

use super::client::{Client, Kv, Op};
use super::keys::{self, LOCK};
use super::{guard, Etcd, Held, ALIVE, HOSTS, ID_KEY, SEEN, STATE};
/// How long a dead writer holds the lock, in seconds.
pub const LEASE_TTL: i64 = 5;
/// How long a writer waits behind a live one before giving up.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long a writer waits before it says whom it waits for.
const QUIET: Duration = Duration::from_secs(1);

/// This process's lease: granted at its first change, renewed on a thread while the process
/// holds or waits for the lock.
pub(super) struct Lease {
    pub(super) id: i64,
    holding: Arc<AtomicBool>,
}

impl Lease {
    /// A lease, granted before the transaction that takes the lock names it. Measured (2
    /// loaded cores, etcd on tmpfs, 200 interleaved runs each): a change took 1.0-2.4 ms
    /// longer (first quartile, median) than with the lease-less lock. Sent alongside that transaction instead, on a
    /// thread, the grant reached etcd second 36-47 times in 100 (the transaction then fails,
    /// "lease not found", and goes again): no faster, and one more raft entry.
    pub(super) fn grant(client: &mut Client) -> anyhow::Result<Lease> {
        let id = client.grant(LEASE_TTL)?;
        let holding = Arc::new(AtomicBool::new(false));
        let mut renewer = client.clone();
        renewer.timeout = Duration::from_secs(LEASE_TTL as u64 / 2 + 1);
        let flag = holding.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(LEASE_TTL as u64 * 1000 / 3));
            // The process let go of its `Etcd`.
            if Arc::strong_count(&flag) == 1 {
                return;
            }
            if flag.load(Ordering::Relaxed) {
                if let Err(e) = renewer.keepalive(id) {
                    log::warn!("etcd lease {id:x}: {e:#}");
                }
            }
        });
        Ok(Lease { id, holding })
    }

    /// The key this process's change holds the lock by.
    pub(super) fn key(&self) -> String {
        keys::lock(self.id)
    }

    pub(super) fn renew_while(&self, holding: bool) {
        self.holding.store(holding, Ordering::Relaxed);
    }
}

impl Etcd {
    /// Take the write lock, and read the store's id, the state and the hosts under it (see
    /// `took`), in one transaction when nobody else holds it. Returns this writer's key and
    /// what was read.
    pub(super) fn lock(&mut self) -> anyhow::Result<(Held, Vec<Vec<Kv>>)> {
        // The lock's keys, then what `took` reads.
        let reads = || {
            [Op::range(LOCK), Op::get(ID_KEY)]
                .into_iter()
                .chain([STATE, HOSTS, ALIVE, SEEN].map(Op::range))
        };
        let mut answer = None;
        for attempt in 0..2 {
            let lease = match &mut self.lease {
                Some(lease) => lease,
                none => none.insert(Lease::grant(&mut self.client)?),
            };
            lease.renew_while(true);
            let take = Op::Put {
                key: lease.key(),
                value: holder_value(),
                lease: lease.id,
            };
            let ops: Vec<Op> = std::iter::once(take).chain(reads()).collect();
            match self.client.txn_either(&[], &ops, &[]) {
                // The lease ended while the process was idle (a shell): another one.
                Err(e) if attempt == 0 && format!("{e:#}").contains("lease not found") => {
                    self.lease = None
                }
                result => {
                    answer = Some(result?);
                    break;
                }
            }
        }
        let answer = answer.context("etcd: the write lock's lease was never there")?;
        let key = self.lease.as_ref().expect("granted").key();
        let (mut ranges, mut seen) = (answer.ranges, answer.revision);
        let revision = (ranges.first().into_iter().flatten())
            .find(|kv| kv.key == key)
            .map_or(answer.revision, |kv| kv.create_revision);
        let held = Held { key, revision };
        let (started, mut said) = (Instant::now(), false);
        loop {
            let queue = Queue {
                keys: std::mem::take(&mut ranges[0]),
                mine: held.key.clone(),
                revision,
            };
            let waited = match queue.turn() {
                Turn::Mine => {
                    ranges.remove(0);
                    return Ok((held, ranges));
                }
                Turn::Stuck(kv) => Err(anyhow::anyhow!(
                    "etcd at {}: the write lock is held by {}; nothing was changed \
                     ('qrouter store unlock' breaks it)",
                    self.client.endpoints(),
                    describe(&kv)
                )),
                Turn::Wait { first, before } => {
                    wait_for(&self.client, &before, &first, seen + 1, started, &mut said)
                }
            };
            // Look again, and read the state with it: this writer's turn may have come.
            let look: Vec<Op> = reads().collect();
            let again = waited.and_then(|()| {
                let mine = [guard(&held.key, held.revision)];
                self.client.txn_either(&mine, &look, &[])
            });
            match again {
                Ok(a) if a.succeeded => (ranges, seen) = (a.ranges, a.revision),
                Ok(_) => {
                    self.unlock(&held);
                    anyhow::bail!(
                        "etcd at {}: this command's place in the write lock was taken away \
                         while it waited ('qrouter store unlock'?); nothing was changed",
                        self.client.endpoints()
                    )
                }
                Err(e) => {
                    self.unlock(&held);
                    return Err(e);
                }
            }
        }
    }
}

/// What this writer's key says: who, since when.
pub(super) fn holder_value() -> Vec<u8> {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "?".into());
    let since = humantime::format_rfc3339_seconds(SystemTime::now());
    format!("pid {} on {host} since {since}", std::process::id()).into_bytes()
}

/// The lock's keys, as the transaction that created this writer's read them.
pub(super) struct Queue {
    pub(super) keys: Vec<Kv>,
    /// This writer's key and its create revision.
    pub(super) mine: String,
    pub(super) revision: i64,
}

/// Where a writer stands.
pub(super) enum Turn {
    Mine,
    /// Behind `first` (who holds it), waiting for `before` (the key created just before).
    Wait {
        first: Kv,
        before: Kv,
    },
    /// Behind a key no lease ends.
    Stuck(Kv),
}

impl Queue {
    pub(super) fn turn(&self) -> Turn {
        let mut ahead: Vec<&Kv> = (self.keys.iter())
            .filter(|kv| kv.key != self.mine && kv.create_revision < self.revision)
            .collect();
        ahead.sort_by_key(|kv| kv.create_revision);
        if let Some(stuck) = ahead.iter().find(|kv| kv.lease == 0) {
            return Turn::Stuck((*stuck).clone());
        }
        match (ahead.first(), ahead.last()) {
            (Some(first), Some(before)) => Turn::Wait {
                first: (*first).clone(),
                before: (*before).clone(),
            },
            _ => Turn::Mine,
        }
    }
}

/// A lock key and what it holds, for messages.
pub fn describe(kv: &Kv) -> String {
    let value = String::from_utf8_lossy(&kv.value);
    let mut value = crate::error::printable(value.trim()).into_owned();
    if value.chars().count() > 120 {
        value = value.chars().take(120).collect::<String>() + "…";
    }
    let value = match value.is_empty() {
        true => "no value (not a qrouter writer: etcdctl lock's, say)".to_string(),
        false => format!("\"{value}\""),
    };
    let lease = match kv.lease {
        0 => "under no lease: it never ends by itself".to_string(),
        l => format!("lease {l:x}"),
    };
    format!(
        "{} ({value}, {lease}, since revision {})",
        kv.key, kv.create_revision
    )
}

/// Wait until `key` (the one before this writer's) is deleted (the caller then looks
/// again). Says once, after `QUIET`, whom it waits for; gives up after `PATIENCE`.
pub(super) fn wait_for(
    client: &Client,
    key: &Kv,
    first: &Kv,
    from: i64,
    started: Instant,
    said: &mut bool,
) -> anyhow::Result<()> {
    if started.elapsed() > PATIENCE {
        anyhow::bail!(
            "etcd at {}: the write lock is held by {}, for {}s now; nothing was changed \
             ('qrouter store unlock' breaks it)",
            client.endpoints(),
            describe(first),
            PATIENCE.as_secs()
        );
    }
    if !*said && started.elapsed() > QUIET {
        log::warn!("waiting for the write lock, held by {}", describe(first));
        *said = true;
    }
    let mut end = key.key.as_bytes().to_vec();
    end.push(0);
    let mut watch = client.watch_range(&key.key, &end, from)?;
    // Until the key goes, or it is time to say whom this waits for, or to give up.
    let until = started + if *said { PATIENCE } else { QUIET };
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        watch.set_timeout(left)?;
        match watch.recv() {
            Ok(batch) if batch.events.iter().any(|(deleted, _)| *deleted) => return Ok(()),
            Ok(batch) if batch.compacted > 0 || batch.canceled => return Ok(()),
            Ok(_) => {}
            // The watch broke: look again (a moment later, not in a tight loop).
            Err(_) => {
                std::thread::sleep(Duration::from_millis(100));
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Every key of the lock now, oldest first.
pub fn holders(client: &mut Client) -> anyhow::Result<Vec<Kv>> {
    let (_, mut keys) = client.range_prefix(LOCK)?;
    keys.sort_by_key(|kv| kv.create_revision);
    Ok(keys)
}

/// Delete `keys` (as `holders` read them), each only if it is unchanged since: how many went.
pub fn break_keys(client: &mut Client, keys: &[Kv]) -> anyhow::Result<usize> {
    let mut broken = 0;
    for kv in keys {
        let guard = super::guard(&kv.key, kv.mod_revision);
        let del = [Op::Delete {
            key: kv.key.clone(),
        }];
        if client.txn(&[guard], &del)?.0 {
            broken += 1;
        }
    }
    Ok(broken)
}
