//! The agent's side of `ops::ask`: requests written under `ask/<this host>/`, answered under
//! `answer/<id>` with the asker's lease, so an answer nobody reads goes with the lease.

use serde_json::{json, Value};

use crate::kernel::Kernel;
use crate::model::State;
use crate::output;
use crate::reconcile;
use crate::store::etcd::client::{Client, Kv};
use crate::store::etcd::ANSWER;

pub enum Request {
    /// `router show`: the router's live views, as `router show` renders them on one host.
    RouterShow { router: String },
    /// `sync`: a full sync of this host's part, or with `dry_run` its drift.
    Sync { dry_run: bool },
    /// `instance show`: what the instance's DHCP client last got (its lease file here).
    InstanceLease { instance: String },
}

/// A request and where its answer goes.
pub struct Asked {
    pub request: Request,
    id: String,
    lease: i64,
}

/// The request in a key written under `ask/<host>/`; None for one that makes no sense.
pub fn parse(kv: &Kv) -> Option<Asked> {
    let v: Value = serde_json::from_slice(&kv.value).ok()?;
    let request = match v["what"].as_str()? {
        "router show" => Request::RouterShow {
            router: v["router"].as_str()?.to_string(),
        },
        "sync" => Request::Sync {
            dry_run: v["dry_run"].as_bool().unwrap_or(false),
        },
        "instance lease" => Request::InstanceLease {
            instance: v["instance"].as_str()?.to_string(),
        },
        _ => return None,
    };
    Some(Asked {
        request,
        id: v["id"].as_str()?.to_string(),
        lease: v["lease"].as_i64()?,
    })
}

/// Write the answer; an asker that gave up has taken its lease, and the answer, with it.
pub fn answer(client: &mut Client, asked: &Asked, body: &Value) {
    let key = format!("{ANSWER}{}", asked.id);
    if let Err(e) = client.put(&key, body.to_string().as_bytes(), asked.lease) {
        super::run::log(format!("answer: {e:#} (the asker gave up?)"));
    }
}

/// `router show`'s live views of `router` (an id), from the kernel and this host's view of
/// the state, which is what the agent converges.
pub async fn router_show(k: &mut Kernel, view: &State, owner: &str, router: &str) -> Value {
    let Some(r) = view.router_by_id(router) else {
        return json!({"error": "the router is not on this host"});
    };
    match reconcile::inspect(k, view, r, owner).await {
        Ok(inspection) => json!({
            "summary": output::router::summary(&inspection),
            "sections": output::router::kernel_views(view, r, &inspection),
        }),
        Err(e) => json!({"error": format!("{e:#}")}),
    }
}

/// The lease instance `id`'s DHCP client got here, as `key: value`; empty when none.
pub fn instance_lease(id: &str) -> Value {
    let got = crate::kernel::udhcpc::read_lease(id);
    let fields = got.into_iter().filter(|(_, v)| !v.is_empty());
    json!({"lease": fields.map(|(k, v)| (k, Value::from(v))).collect::<serde_json::Map<_, _>>()})
}
