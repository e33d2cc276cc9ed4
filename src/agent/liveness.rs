//! When a host counts as dead, for automatic failover. A lease that ended proves nothing by
//! itself: etcd stalled (every lease it holds ends at once when it resumes), or this agent
//! was cut off, or the other host's agent alone stopped while its routers still forward.
//! A network host is dead only when its lease has been gone for a grace period (by default
//! three lease periods) while etcd was healthy: the grace counts from the latest of when
//! its lease was seen gone, since when this agent has renewed its own lease without a
//! break, and since when some other host's agent (if there is another) has held its lease.
//! After an etcd stall every lease ends at once; the live agents take new ones within a
//! third of a lease period, so only a host whose agent stays away that long after etcd is
//! healthy again is dead. Only then may its routers move (`ops::placement`). Times are this
//! process's monotonic clock: a jump of the wall clock changes nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::model::host::HostInfo;

/// Since when this agent's own lease has been renewed without a break (None while broken).
#[derive(Clone, Default)]
pub struct LeaseHealth(Arc<Mutex<Option<Instant>>>);

impl LeaseHealth {
    pub fn renewed(&self) {
        let mut since = self.0.lock().unwrap_or_else(|e| e.into_inner());
        since.get_or_insert_with(Instant::now);
    }

    pub fn broken(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn unbroken_since(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What this agent has seen of the other hosts' leases.
#[derive(Default)]
pub struct Deaths {
    /// Since when each host's lease has been seen gone, or seen held.
    absent_since: HashMap<String, Instant>,
    present_since: HashMap<String, Instant>,
}

impl Deaths {
    /// Note each host's lease as read now.
    pub fn observe(&mut self, hosts: &[HostInfo], now: Instant) {
        for h in hosts {
            let (gone, held) = match h.alive {
                true => (&mut self.absent_since, &mut self.present_since),
                false => (&mut self.present_since, &mut self.absent_since),
            };
            gone.remove(&h.name);
            held.entry(h.name.clone()).or_insert(now);
        }
        let known: BTreeSet<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        self.absent_since.retain(|h, _| known.contains(h.as_str()));
        self.present_since.retain(|h, _| known.contains(h.as_str()));
    }

    /// The network hosts confirmed dead at `now` (see the module's doc), from this agent
    /// (`me`) whose lease has been unbroken since `unbroken`.
    pub fn confirmed(
        &self,
        hosts: &[HostInfo],
        me: &str,
        unbroken: Option<Instant>,
        grace: Duration,
        now: Instant,
    ) -> BTreeSet<String> {
        (self.counting(hosts, me, unbroken))
            .filter(|(_, since)| now.saturating_duration_since(*since) >= grace)
            .map(|(h, _)| h.to_string())
            .collect()
    }

    /// How long until the next host that is gone, but not yet long enough, would be
    /// confirmed dead: the loop looks again then.
    pub fn next_due(
        &self,
        hosts: &[HostInfo],
        me: &str,
        unbroken: Option<Instant>,
        grace: Duration,
        now: Instant,
    ) -> Option<Duration> {
        (self.counting(hosts, me, unbroken))
            .map(|(_, since)| (since + grace).saturating_duration_since(now))
            .filter(|d| !d.is_zero())
            .min()
    }

    /// Each network host whose lease is gone, with since when its grace counts: from the
    /// latest of when its lease was seen gone, since when this agent's own lease has been
    /// unbroken, and since when some other host's agent (a witness, if there is another
    /// host) has held its lease. Nothing while this agent's own lease is broken.
    fn counting<'a>(
        &'a self,
        hosts: &'a [HostInfo],
        me: &'a str,
        unbroken: Option<Instant>,
    ) -> impl Iterator<Item = (&'a str, Instant)> + 'a {
        let candidates = hosts
            .iter()
            .filter(move |h| h.name != me && h.role.routes());
        candidates.filter_map(move |h| {
            let gone = *self.absent_since.get(&h.name)?;
            let witnesses: Vec<&HostInfo> = (hosts.iter())
                .filter(|w| w.name != me && w.name != h.name)
                .collect();
            let witness = match witnesses.is_empty() {
                true => None,
                false => Some(
                    (witnesses.iter())
                        .filter_map(|w| self.present_since.get(&w.name))
                        .min()?,
                ),
            };
            let since = gone.max(unbroken?).max(witness.copied().unwrap_or(gone));
            Some((h.name.as_str(), since))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::host::Role;

    use crate::model::fixtures::host;

    #[test]
    fn a_host_is_dead_only_after_the_grace_while_etcd_was_healthy() {
        let grace = Duration::from_secs(9);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let up = [
            host("net1", Role::Network, true),
            host("net2", Role::Network, true),
            host("cmp1", Role::Compute, true),
        ];
        let mut net2_gone = up.clone();
        net2_gone[1].alive = false;
        let mut d = Deaths::default();
        d.observe(&up, at(0));
        d.observe(&net2_gone, at(1));
        let dead =
            |d: &Deaths, unbroken, now| d.confirmed(&net2_gone, "net1", unbroken, grace, now);
        assert!(dead(&d, Some(at(0)), at(5)).is_empty(), "within the grace");
        assert_eq!(dead(&d, Some(at(0)), at(10)), ["net2".to_string()].into());
        let due = d.next_due(&net2_gone, "net1", Some(at(0)), grace, at(5));
        assert_eq!(due, Some(Duration::from_secs(5)));
        // This agent's own lease broke after net2's went (etcd stalled): the grace counts
        // from when it was renewed again; nothing while it is broken.
        assert!(dead(&d, Some(at(2)), at(10)).is_empty());
        assert_eq!(dead(&d, Some(at(2)), at(11)), ["net2".to_string()].into());
        assert!(dead(&d, None, at(30)).is_empty());
        // Back in time: net2's lease is held again.
        d.observe(&up, at(11));
        assert!(dead(&d, Some(at(0)), at(30)).is_empty());
    }

    #[test]
    fn every_lease_gone_at_once_is_etcd_not_the_hosts_until_they_come_back() {
        let grace = Duration::from_secs(9);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut hosts = vec![
            host("net1", Role::Network, true),
            host("net2", Role::Network, true),
            host("cmp1", Role::Compute, true),
        ];
        let mut d = Deaths::default();
        d.observe(&hosts, at(0));
        hosts[1].alive = false;
        hosts[2].alive = false;
        d.observe(&hosts, at(1));
        assert!(d
            .confirmed(&hosts, "net1", Some(at(0)), grace, at(30))
            .is_empty());
        // A compute host's agent took a lease again at 2 s (etcd was back), net2's did not:
        // its grace counts from then.
        hosts[2].alive = true;
        d.observe(&hosts, at(2));
        let dead = |now| d.confirmed(&hosts, "net1", Some(at(0)), grace, now);
        assert!(dead(at(10)).is_empty());
        assert_eq!(dead(at(11)), ["net2".to_string()].into());
    }
}
