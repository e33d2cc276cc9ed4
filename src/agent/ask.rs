//! The agent's side of `ops::ask`: requests written under `ask/<this host>/`, answered under
//! `answer/<id>` with the asker's lease, so an answer nobody reads goes with the lease.

use std::collections::BTreeMap;

use super::control::Control;
use crate::kernel::Kernel;
use crate::model::protocol::{Ask, LiveView, Reply};
use crate::model::State;
use crate::output;
use crate::reconcile;
use crate::store::etcd::keys;

/// Write the answer; an asker that gave up has taken its lease, and the answer, with it.
pub async fn answer(control: &Control, asked: &Ask, reply: &Reply) {
    let key = keys::answer(&asked.id);
    let lease = asked.lease;
    let body = match serde_json::to_vec(reply) {
        Ok(b) => b,
        Err(e) => return log::warn!("answer: {e}"),
    };
    let written = (control.call("answer", move |s| s.client.put(&key, &body, lease))).await;
    if let Err(e) = written {
        log::info!("answer: {e:#} (the asker gave up?)");
    }
}

/// `router show`'s live views of `router` (an id), from the kernel and this host's view of
/// the state, which is what the agent converges.
pub async fn router_show(k: &mut Kernel, view: &State, owner: &str, router: &str) -> Reply {
    let Some(r) = view.router_by_id(router) else {
        return Reply::Failed {
            error: "the router is not on this host".into(),
        };
    };
    match reconcile::inspect(k, view, r, owner).await {
        Ok(inspection) => Reply::RouterShow {
            summary: output::router::summary(&inspection),
            views: (output::router::kernel_views(view, r, &inspection).into_iter())
                .map(LiveView::from)
                .collect(),
        },
        Err(e) => Reply::Failed {
            error: format!("{e:#}"),
        },
    }
}

/// The lease instance `id`'s DHCP client got here; empty when none.
pub fn instance_lease(id: &str) -> Reply {
    let got = crate::kernel::udhcpc::read_lease(id);
    let lease: BTreeMap<String, String> = got.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    Reply::InstanceLease { lease }
}
