//! The watch of etcd, on a thread of its own: it wakes the agent's loop on each change of
//! the desired state and the hosts, and hands it each request for its host. The watch only
//! wakes the loop, which reads everything again (level-triggered): an event lost across a
//! reconnect or a compaction cannot leave the host behind. It resumes from the revision
//! after the last one it delivered, so nothing is replayed either.

use super::control::{Reach, FIRST_BACKOFF, MAX_BACKOFF};
use super::wake::{Sender, Wake};
use crate::model::protocol::Ask;
use crate::store::etcd::client::{Client, Kv};
use crate::store::etcd::keys::{self, ALIVE, HOSTS, ROOT, STATE};

/// Watch everything under the root from revision `from`, for `host`, until the loop is gone.
pub fn start(
    endpoints: &str,
    host: &str,
    from: i64,
    wake: Sender,
    reach: Reach,
) -> anyhow::Result<()> {
    let client = Client::new(endpoints)?;
    let asks = keys::asks(host);
    let host = host.to_string();
    std::thread::spawn(move || {
        let mut next = from;
        let mut pause = FIRST_BACKOFF;
        loop {
            let mut watch = match client.watch(ROOT, next) {
                Ok(w) => w,
                Err(e) => {
                    reach.failed("watch", &e);
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            loop {
                let batch = match watch.recv() {
                    Ok(batch) => batch,
                    Err(e) => {
                        reach.failed("watch", &e);
                        // Whatever happened meanwhile is read again by the loop.
                        if wake.send(Wake::Changed).is_err() {
                            return;
                        }
                        std::thread::sleep(pause);
                        break;
                    }
                };
                reach.answered();
                pause = FIRST_BACKOFF;
                if batch.compacted > 0 {
                    // Events gone: resume at the current revision; the loop re-reads.
                    next = batch.compacted;
                    let _ = wake.send(Wake::Changed);
                    break;
                }
                for (deleted, kv) in &batch.events {
                    let sent = match (deleted, what(kv, &asks, &host)) {
                        (false, Some(Seen::Asked)) => {
                            match serde_json::from_slice::<Ask>(&kv.value) {
                                Ok(ask) => wake.send(Wake::Asked(ask)),
                                Err(e) => {
                                    log::warn!("{}: not a request ({e}); ignored", kv.key);
                                    Ok(())
                                }
                            }
                        }
                        (true, Some(Seen::Released)) => match keys::parse_status(&kv.key) {
                            Some((_, object)) => wake.send(Wake::Released(object)),
                            None => Ok(()),
                        },
                        _ => Ok(()),
                    };
                    if sent.is_err() {
                        return;
                    }
                }
                if let Some((_, kv)) = batch.events.last() {
                    next = next.max(kv.mod_revision + 1);
                }
                let relevant = (batch.events.iter())
                    .any(|(_, kv)| what(kv, &asks, &host) == Some(Seen::Changed));
                if relevant && wake.send(Wake::Changed).is_err() {
                    return;
                }
            }
        }
    });
    Ok(())
}

#[derive(PartialEq)]
enum Seen {
    Changed,
    Asked,
    Released,
}

/// What an event on `kv` means to the agent of `host`, whose requests are under `asks`.
fn what(kv: &Kv, asks: &str, host: &str) -> Option<Seen> {
    let key = kv.key.as_str();
    if key.starts_with(STATE) || key.starts_with(HOSTS) || key.starts_with(ALIVE) {
        return Some(Seen::Changed);
    }
    if key.starts_with(asks) {
        return Some(Seen::Asked);
    }
    match keys::parse_status(key) {
        Some((by, _)) if by != host => Some(Seen::Released),
        _ => None,
    }
}
