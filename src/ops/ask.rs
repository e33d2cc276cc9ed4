//! Asking hosts' agents something only their kernel knows, through etcd: the live views of a
//! router (`router show`), a sync of the host's part or its drift (`sync`), an instance's
//! DHCP lease. The asker grants a lease, writes its request (`protocol::Ask`) under
//! `ask/<host>/<id>` with it, and waits for `answer/<id>` (a `protocol::Reply`), which the
//! agent writes under the same lease: whatever the outcome (an answer, no answer in time,
//! the asker killed), both keys go with the lease, so nothing is left behind in etcd. An
//! agent sees only requests made after its watch started; one that was down sees none, and
//! the asker says so once its time is up.

use std::time::{Duration, Instant};

use crate::model::protocol::{Ask, Reply, Request};
use crate::store::etcd::{keys, Etcd};

/// A request written, not yet answered.
pub struct Asked {
    pub host: String,
    id: String,
    lease: i64,
}

/// Write `request` for `host`'s agent, to be answered within `wait`.
pub fn send(
    etcd: &mut Etcd,
    host: &str,
    request: Request,
    wait: Duration,
) -> anyhow::Result<Asked> {
    // The lease outlives the wait a little: an answer written at the last moment is read.
    let lease = etcd.client.grant(wait.as_secs() as i64 + 2)?;
    let id = uuid::Uuid::new_v4().to_string();
    let ask = Ask {
        id: id.clone(),
        lease,
        request,
    };
    let body = serde_json::to_vec(&ask)?;
    etcd.client.put(&keys::ask(host, &id), &body, lease)?;
    Ok(Asked {
        host: host.to_string(),
        id,
        lease,
    })
}

/// The answers to `asked`, each as it comes, within `wait` from now: None for a host whose
/// agent did not answer in time. The requests and answers are removed (their leases revoked).
pub fn collect(
    etcd: &mut Etcd,
    asked: &[Asked],
    wait: Duration,
) -> anyhow::Result<Vec<Option<Reply>>> {
    let start = Instant::now();
    let mut answers: Vec<Option<Reply>> = asked.iter().map(|_| None).collect();
    let mut pause = Duration::from_millis(1);
    loop {
        for (a, answer) in asked.iter().zip(answers.iter_mut()) {
            if answer.is_some() {
                continue;
            }
            if let Some(kv) = etcd.client.get(&keys::answer(&a.id))? {
                *answer =
                    Some(
                        serde_json::from_slice(&kv.value).unwrap_or_else(|e| Reply::Failed {
                            error: format!("an answer that is not a reply: {e}"),
                        }),
                    );
                let _ = etcd.client.revoke(a.lease);
            }
        }
        if answers.iter().all(Option::is_some) || start.elapsed() > wait {
            break;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
    for (a, answer) in asked.iter().zip(&answers) {
        if answer.is_none() {
            let _ = etcd.client.revoke(a.lease);
        }
    }
    Ok(answers)
}

/// One request to one host: its answer, or None when its agent did not answer in time.
pub fn ask(
    etcd: &mut Etcd,
    host: &str,
    request: Request,
    wait: Duration,
) -> anyhow::Result<Option<Reply>> {
    let asked = send(etcd, host, request, wait)?;
    Ok(collect(etcd, &[asked], wait)?.pop().flatten())
}
