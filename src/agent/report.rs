//! What an agent writes back after each pass: the status of each object it converged whose
//! outcome changed (a typed `Status`, with the revision it was found so at: a periodic
//! resync that finds everything as it was writes nothing), the removal of the statuses of
//! objects that left its part (which tells the host now running one that this copy is gone:
//! `Wake::Released`), the revision applied, last, in the same transaction (the command line
//! takes it as "everything up to this revision is applied here"), and, when it changes, its
//! report of itself (what it set aside of what it read). What could not be written (etcd
//! away) is written with the next pass.

use std::collections::{BTreeMap, BTreeSet};

use super::control::Control;
use super::pass::Statuses;
use super::view;
use crate::model::ha::HaState;
use crate::model::protocol::{unix_now, AgentReport, Kind, ObjectRef, Quarantined, Status};
use crate::model::State;
use crate::store::etcd::client::Op;
use crate::store::etcd::keys;

#[derive(Default)]
pub struct Reporter {
    /// The objects whose status is in etcd, as this agent last wrote them (None: written by
    /// an earlier run of the agent).
    reported: BTreeMap<ObjectRef, Option<Result<(), String>>>,
    /// The revision last written as applied.
    applied: i64,
    /// Statuses not written yet (etcd did not answer): written with the next report.
    unwritten: Statuses,
    /// The report of itself last written.
    last: Option<AgentReport>,
    /// Each HA router copy's state here, as last written (with its status).
    ha: BTreeMap<String, HaState>,
}

impl Reporter {
    /// The statuses a previous run of the agent wrote: those of objects no longer here go.
    pub fn inherit(&mut self, previous: impl IntoIterator<Item = ObjectRef>) {
        self.reported
            .extend(previous.into_iter().map(|o| (o, None)));
    }

    /// Write `statuses` (converged at `revision`) for `host`, whose part is now `part`.
    pub async fn report(
        &mut self,
        control: &Control,
        host: &str,
        revision: i64,
        statuses: Statuses,
        part: &State,
        quarantined: &[Quarantined],
    ) {
        let mut statuses = statuses;
        for (o, s) in std::mem::take(&mut self.unwritten) {
            statuses.entry(o).or_insert(s);
        }
        let here = objects(part);
        let changed = |o: &ObjectRef, s: &Result<(), String>| {
            here.contains(o)
                && self
                    .reported
                    .get(o)
                    .is_none_or(|was| was.as_ref() != Some(s))
        };
        let mut ops: Vec<Op> = (statuses.iter())
            .filter(|(o, s)| changed(o, s))
            .map(|(o, s)| {
                let status = self.status(o, s, revision);
                Op::Put {
                    key: keys::status(host, o),
                    value: serde_json::to_vec(&status).expect("a status serialises"),
                    lease: 0,
                }
            })
            .collect();
        let gone = (self.reported.keys()).filter(|o| !here.contains(*o));
        ops.extend(gone.map(|o| Op::Delete {
            key: keys::status(host, o),
        }));
        let report = AgentReport {
            at: unix_now(),
            quarantined: quarantined.to_vec(),
        };
        let report_changed =
            (self.last.as_ref()).is_none_or(|l| l.quarantined != report.quarantined);
        if report_changed {
            ops.push(Op::Put {
                key: keys::report(host),
                value: serde_json::to_vec(&report).expect("a report serialises"),
                lease: 0,
            });
        }
        if ops.is_empty() && revision == self.applied {
            return;
        }
        ops.push(Op::Put {
            key: keys::applied(host),
            value: revision.to_string().into_bytes(),
            lease: 0,
        });
        let chunks: Vec<Vec<Op>> = ops.chunks(100).map(<[Op]>::to_vec).collect();
        let written = control
            .call("status", move |s| {
                (chunks.iter()).try_for_each(|c| s.client.txn(&[], c).map(drop))
            })
            .await;
        if written.is_err() {
            self.unwritten = statuses;
            return;
        }
        self.reported.retain(|o, _| here.contains(o));
        let kept = statuses.into_iter().filter(|(o, _)| here.contains(o));
        self.reported.extend(kept.map(|(o, s)| (o, Some(s))));
        self.applied = revision;
        if report_changed {
            self.last = Some(report);
        }
    }
}

impl Reporter {
    /// The status of `o`, converged with `outcome` at `revision`, with its HA state.
    fn status(&self, o: &ObjectRef, outcome: &Result<(), String>, revision: i64) -> Status {
        let mut status = match outcome {
            Ok(()) => Status::active(revision),
            Err(why) => Status::error(why.clone(), revision),
        };
        if o.kind == Kind::Router {
            status.ha = self.ha.get(&o.id).copied();
        }
        status
    }

    /// Write the HA state of each router copy here whose state changed since last written
    /// (keepalived changes it, not a pass): its status again, with the new state.
    pub async fn report_ha(
        &mut self,
        control: &Control,
        host: &str,
        states: BTreeMap<String, HaState>,
    ) {
        let changed: Vec<(String, HaState)> = (states.iter())
            .filter(|(id, s)| self.ha.get(*id) != Some(s))
            .map(|(id, s)| (id.clone(), *s))
            .collect();
        if changed.is_empty() {
            self.ha = states;
            return;
        }
        let mut ops = vec![];
        for (id, state) in &changed {
            let o = ObjectRef::new(Kind::Router, id);
            let outcome = (self.reported.get(&o).cloned().flatten()).unwrap_or(Ok(()));
            let mut status = self.status(&o, &outcome, self.applied);
            status.ha = Some(*state);
            ops.push(Op::Put {
                key: keys::status(host, &o),
                value: serde_json::to_vec(&status).expect("a status serialises"),
                lease: 0,
            });
        }
        let written = control
            .call("status", move |s| s.client.txn(&[], &ops).map(drop))
            .await;
        if written.is_ok() {
            for (id, state) in changed {
                log::info!("router {id}: HA state {state}");
            }
            self.ha = states;
        }
    }
}

/// The objects a host's part has a status for.
fn objects(part: &State) -> BTreeSet<ObjectRef> {
    let routers = (part.routers.iter()).map(|r| ObjectRef::new(Kind::Router, &r.id));
    let instances = (part.instances.iter()).map(|i| ObjectRef::new(Kind::Instance, &i.id));
    let dhcp = view::dhcp_networks(part).map(|n| ObjectRef::new(Kind::Network, n));
    routers.chain(instances).chain(dhcp).collect()
}
