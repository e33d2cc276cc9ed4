//! The hosts of an etcd store and what their agents report: each host as its agent
//! registered it, its liveness, the status of each object it converged, and the revision it
//! last applied, which a command waits for.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::Etcd;
use crate::model::host::HostInfo;
use crate::store::etcd::client::{Kv, Op};

pub const HOSTS: &str = "/qrouter/hosts/";
pub const ALIVE: &str = "/qrouter/alive/";
pub const SEEN: &str = "/qrouter/seen/";
pub const STATUS: &str = "/qrouter/status/";
/// The revision of the state a host's agent last converged.
pub const APPLIED: &str = "/qrouter/applied/";
/// `ask/<host>/<id>`: a request to a host's agent (`ops::ask`), under the asker's lease.
pub const ASK: &str = "/qrouter/ask/";
/// `answer/<id>`: the agent's answer, under the same lease.
pub const ANSWER: &str = "/qrouter/answer/";

impl Etcd {
    /// Every registered host, alive or not, by name.
    pub fn hosts(&mut self) -> anyhow::Result<Vec<HostInfo>> {
        let read = self
            .client
            .read(&[Op::range(HOSTS), Op::range(ALIVE), Op::range(SEEN)])?;
        match &read[..] {
            [hosts, alive, seen] => hosts_from(hosts, alive, seen),
            _ => anyhow::bail!("etcd at {}: an incomplete answer", self.client.endpoints()),
        }
    }

    /// Whether `host`'s agent holds its lease.
    pub fn alive(&mut self, host: &str) -> anyhow::Result<bool> {
        Ok(self.client.get(&format!("{ALIVE}{host}"))?.is_some())
    }

    /// Whether `host`'s agent holds its lease, and what it reported for one object, if
    /// anything: as it reported it applying the change this command made (`wait_applied`),
    /// or else one round trip.
    pub fn reported(
        &mut self,
        host: &str,
        kind: &str,
        id: &str,
    ) -> anyhow::Result<(bool, Option<serde_json::Value>)> {
        let object = format!("{host}/{kind}/{id}");
        if let Some(status) = self.reported.get(&object) {
            return Ok((true, Some(status.clone())));
        }
        let read = self.client.read(&[
            Op::get(format!("{ALIVE}{host}")),
            Op::get(format!("{STATUS}{object}")),
        ])?;
        let alive = read.first().is_some_and(|kvs| !kvs.is_empty());
        let status = read
            .get(1)
            .and_then(|kvs| kvs.first())
            .and_then(|kv| serde_json::from_slice(&kv.value).ok());
        Ok((alive, status))
    }

    /// A new command (of a batch, or at the shell): what the agents reported while the last
    /// one waited is not fresh enough for it.
    pub fn forget_reported(&mut self) {
        self.reported.clear();
    }

    /// Wait until the agent of each of `hosts` has applied `revision` or a later one
    /// (`applied/<host>`). It watches those keys from the revision on, rather than asking
    /// again and again while the agents work, and with them the statuses the agents report
    /// in the same transactions: `reported` answers from those without asking again. The
    /// hosts that had not applied it when `timeout` passed.
    pub fn wait_applied(
        &mut self,
        hosts: &[&str],
        revision: i64,
        timeout: Duration,
    ) -> anyhow::Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut left: BTreeSet<&str> = hosts.iter().copied().collect();
        self.reported.clear();
        let reported = &mut self.reported;
        let mut take = |kv: &Kv, left: &mut BTreeSet<&str>| {
            if let Some(host) = kv.key.strip_prefix(APPLIED) {
                let applied = String::from_utf8_lossy(&kv.value).parse::<i64>();
                if applied.is_ok_and(|a| a >= revision) {
                    left.remove(host);
                }
            } else if let Some(object) = kv.key.strip_prefix(STATUS) {
                if let Ok(status) = serde_json::from_slice(&kv.value) {
                    reported.insert(object.to_string(), status);
                }
            }
        };
        // Nothing written before the change can say it is applied. The range holds both
        // prefixes (and what sorts between them, passed over).
        let mut from = revision + 1;
        let end = crate::store::etcd::client::prefix_end(STATUS);
        'watch: while !left.is_empty() {
            let mut watch = self.client.watch_range(APPLIED, &end, from)?;
            while !left.is_empty() {
                let Some(time_left) = deadline.checked_duration_since(Instant::now()) else {
                    break 'watch;
                };
                watch.set_timeout(time_left)?;
                let batch = match watch.recv() {
                    Ok(batch) => batch,
                    // The socket's timeout is the deadline.
                    Err(_) if Instant::now() + Duration::from_millis(10) >= deadline => {
                        break 'watch
                    }
                    Err(e) => return Err(e),
                };
                if batch.compacted > 0 || batch.canceled {
                    // The history since the change is gone: read what is applied now, and
                    // watch from there (statuses not seen are read by whoever needs them).
                    let now = self.client.txn_either(&[], &[Op::range(APPLIED)], &[])?;
                    for kv in now.ranges.iter().flatten() {
                        take(kv, &mut left);
                    }
                    from = now.revision + 1;
                    continue 'watch;
                }
                for (deleted, kv) in &batch.events {
                    if !deleted {
                        take(kv, &mut left);
                    }
                }
            }
        }
        Ok(left.into_iter().map(str::to_string).collect())
    }

    /// What `host`'s agent reported for each object: (kind, id) → status record.
    pub fn statuses(
        &mut self,
        host: &str,
    ) -> anyhow::Result<HashMap<(String, String), serde_json::Value>> {
        let prefix = format!("{STATUS}{host}/");
        let (_, kvs) = self.client.range_prefix(&prefix)?;
        Ok(kvs
            .iter()
            .filter_map(|kv| {
                let (kind, id) = kv.key[prefix.len()..].split_once('/')?;
                let v = serde_json::from_slice(&kv.value).ok()?;
                Some(((kind.to_string(), id.to_string()), v))
            })
            .collect())
    }
}

/// The hosts registered (`hosts`), with their liveness and when last seen.
pub(super) fn hosts_from(hosts: &[Kv], alive: &[Kv], seen: &[Kv]) -> anyhow::Result<Vec<HostInfo>> {
    let alive: std::collections::HashSet<&str> =
        alive.iter().map(|kv| &kv.key[ALIVE.len()..]).collect();
    let seen: HashMap<&str, u64> = seen
        .iter()
        .map(|kv| {
            let at = String::from_utf8_lossy(&kv.value).parse().unwrap_or(0);
            (&kv.key[SEEN.len()..], at)
        })
        .collect();
    let mut out = Vec::with_capacity(hosts.len());
    for kv in hosts {
        let mut host: HostInfo = serde_json::from_slice(&kv.value)
            .with_context(|| format!("etcd: host {} is corrupt", kv.key))?;
        host.alive = alive.contains(host.name.as_str());
        host.last_seen = seen
            .get(host.name.as_str())
            .copied()
            .unwrap_or(host.started);
        out.push(host);
    }
    Ok(out)
}
