//! The hosts of an etcd store and what their agents report: each host as its agent
//! registered it, its liveness, the status of each object it converged, the revision it
//! last applied, which a command waits for, and the agent's report of itself.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::keys::{self, ALIVE, APPLIED, HOSTS, SEEN, STATUS};
use super::Etcd;
use crate::model::host::HostInfo;
use crate::model::protocol::{AgentReport, Holder, ObjectRef, Quarantined, Status};
use crate::model::validate;
use crate::store::etcd::client::{Kv, Op};

/// Who holds a host's liveness key (`alive/<host>`), under a lease that lives.
pub struct HostLease {
    pub host: String,
    /// Who holds it; None for a value that is no holder (an older agent's).
    pub holder: Option<Holder>,
}

impl Etcd {
    /// Every registered host, alive or not, by name; a registration that is corrupt is set
    /// aside (`quarantined`, warned of) and the others read.
    pub fn hosts(&mut self) -> anyhow::Result<Vec<HostInfo>> {
        let read = self
            .client
            .read(&[Op::range(HOSTS), Op::range(ALIVE), Op::range(SEEN)])?;
        let [hosts, alive, seen] = &read[..] else {
            anyhow::bail!("etcd at {}: an incomplete answer", self.client.endpoints());
        };
        let (hosts, quarantined) = hosts_from(hosts, alive, seen);
        if self.warn_quarantined {
            for q in &quarantined {
                log::warn!("store: {q}; set aside, the rest goes on");
            }
        }
        self.quarantined = quarantined;
        Ok(hosts)
    }

    /// The registered hosts, and each live lease on a host's liveness key.
    pub fn holders(&mut self) -> anyhow::Result<(Vec<HostInfo>, Vec<HostLease>)> {
        let hosts = self.hosts()?;
        let (_, alive) = self.client.range_prefix(ALIVE)?;
        let holders = alive
            .iter()
            .filter_map(|kv| {
                Some(HostLease {
                    host: keys::name_in(ALIVE, &kv.key)?.to_string(),
                    holder: serde_json::from_slice(&kv.value).ok(),
                })
            })
            .collect();
        Ok((hosts, holders))
    }

    /// Whether `host`'s agent holds its lease.
    pub fn alive(&mut self, host: &str) -> anyhow::Result<bool> {
        Ok(self.client.get(&keys::alive(host))?.is_some())
    }

    /// Whether `host`'s agent holds its lease, and what it reported for one object, if
    /// anything: as it reported it applying the change this command made (`wait_applied`),
    /// or else one round trip.
    pub fn reported(
        &mut self,
        host: &str,
        object: &ObjectRef,
    ) -> anyhow::Result<(bool, Option<Status>)> {
        let key = keys::status(host, object);
        if let Some(status) = self.reported.get(&key) {
            return Ok((true, Some(status.clone())));
        }
        let read = self
            .client
            .read(&[Op::get(keys::alive(host)), Op::get(key)])?;
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
            if let Some(host) = keys::name_in(APPLIED, &kv.key) {
                let applied = String::from_utf8_lossy(&kv.value).parse::<i64>();
                if applied.is_ok_and(|a| a >= revision) {
                    left.remove(host);
                }
            } else if keys::parse_status(&kv.key).is_some() {
                if let Ok(status) = serde_json::from_slice(&kv.value) {
                    reported.insert(kv.key.clone(), status);
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

    /// What `host`'s agent reported for each object; a record that does not parse is left
    /// out (the object then shows as not reported).
    pub fn statuses(&mut self, host: &str) -> anyhow::Result<HashMap<ObjectRef, Status>> {
        let (_, kvs) = self.client.range_prefix(&keys::statuses(host))?;
        Ok(kvs
            .iter()
            .filter_map(|kv| {
                let (_, object) = keys::parse_status(&kv.key)?;
                Some((object, serde_json::from_slice(&kv.value).ok()?))
            })
            .collect())
    }

    /// What `host`'s agent last reported of itself, if anything readable.
    pub fn agent_report(&mut self, host: &str) -> anyhow::Result<Option<AgentReport>> {
        let kv = self.client.get(&keys::report(host))?;
        Ok(kv.and_then(|kv| serde_json::from_slice(&kv.value).ok()))
    }
}

/// The hosts registered (`hosts`), with their liveness and when last seen; a registration
/// that does not parse, names another host than its key or fails the checks a host name and
/// role pass at the agent's start, is set aside with the reason.
pub(super) fn hosts_from(
    hosts: &[Kv],
    alive: &[Kv],
    seen: &[Kv],
) -> (Vec<HostInfo>, Vec<Quarantined>) {
    let alive: HashSet<&str> = alive
        .iter()
        .filter_map(|kv| keys::name_in(ALIVE, &kv.key))
        .collect();
    let seen: HashMap<&str, u64> = seen
        .iter()
        .filter_map(|kv| {
            let at = String::from_utf8_lossy(&kv.value).parse().unwrap_or(0);
            Some((keys::name_in(SEEN, &kv.key)?, at))
        })
        .collect();
    let mut out = Vec::with_capacity(hosts.len());
    let mut quarantined = vec![];
    for kv in hosts {
        let mut host = match registration(kv) {
            Ok(h) => h,
            Err(reason) => {
                quarantined.push(Quarantined {
                    key: kv.key.clone(),
                    reason,
                });
                continue;
            }
        };
        host.alive = alive.contains(host.name.as_str());
        host.last_seen = seen
            .get(host.name.as_str())
            .copied()
            .unwrap_or(host.started);
        out.push(host);
    }
    (out, quarantined)
}

fn registration(kv: &Kv) -> Result<HostInfo, String> {
    let host: HostInfo = serde_json::from_slice(&kv.value)
        .map_err(|e| format!("not a host as an agent registers it: {e}"))?;
    validate::name("host", &host.name).map_err(|e| format!("{e:#}"))?;
    if keys::name_in(HOSTS, &kv.key) != Some(host.name.as_str()) {
        return Err(format!("it names host {:?}, not its key's", host.name));
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> Kv {
        Kv {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: 1,
            lease: 0,
        }
    }

    #[test]
    fn a_corrupt_registration_is_set_aside_and_the_other_hosts_read() {
        let good = r#"{"name":"compute1","role":"compute","local_ip":"192.168.50.12","started":1}"#;
        let (hosts, quarantined) = hosts_from(
            &[
                kv("/qrouter/hosts/compute1", good),
                kv("/qrouter/hosts/junk", "not json {"),
                kv("/qrouter/hosts/other", good),
            ],
            &[kv("/qrouter/alive/compute1", "1")],
            &[],
        );
        assert_eq!(hosts.len(), 1);
        assert!(hosts[0].alive);
        let keys: Vec<&str> = quarantined.iter().map(|q| q.key.as_str()).collect();
        assert_eq!(keys, ["/qrouter/hosts/junk", "/qrouter/hosts/other"]);
    }
}
