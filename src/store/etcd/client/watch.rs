//! A watch: the gateway's `/v3/watch` stream, read on a thread of its own that hands each
//! message over a channel, so that the reader waits as long as it chooses (`set_timeout`).
//! A stream that breaks is opened again on any endpoint (the one that answers), from the
//! revision after the last event delivered: nothing is missed or replayed.

use std::cell::Cell;
use std::io::BufReader;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

use super::conn::Conn;
use super::{b64, int, kv, revision, Kv};

/// A watch's events, as they come.
pub struct Watch {
    messages: mpsc::Receiver<anyhow::Result<WatchBatch>>,
    timeout: Cell<Duration>,
}

/// One watch message.
#[derive(Debug, Default)]
pub struct WatchBatch {
    pub revision: i64,
    /// (deleted, key value)
    pub events: Vec<(bool, Kv)>,
    /// The revision asked for was compacted away: read everything again.
    pub compacted: i64,
    pub canceled: bool,
}

/// What is watched: every key from `key` up to, not including, `end`.
struct Range {
    key: Vec<u8>,
    end: Vec<u8>,
}

/// Streams opened one after the other that brought nothing: then etcd is taken as gone.
const EMPTY_STREAMS: u32 = 3;

impl Watch {
    /// Watch `key`..`end` from revision `from`. An etcd that no endpoint reaches is an error
    /// here; later breaks are mended on the watch's thread.
    pub(super) fn start(conn: Conn, key: &str, end: &[u8], from: i64) -> anyhow::Result<Watch> {
        let range = Range {
            key: key.as_bytes().to_vec(),
            end: end.to_vec(),
        };
        let stream = open(&conn, &range, from)?;
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || pump(conn, range, from, stream, tx));
        Ok(Watch {
            messages,
            timeout: Cell::new(Duration::from_secs(3600)),
        })
    }

    /// How long `recv` waits for the next message before it fails.
    pub fn set_timeout(&self, timeout: Duration) -> anyhow::Result<()> {
        self.timeout.set(timeout.max(Duration::from_millis(1)));
        Ok(())
    }

    /// The next message; an error when none came in time, or when etcd is gone.
    pub fn recv(&mut self) -> anyhow::Result<WatchBatch> {
        match self.messages.recv_timeout(self.timeout.get()) {
            Ok(message) => message,
            Err(mpsc::RecvTimeoutError::Timeout) => anyhow::bail!("etcd watch: no news in time"),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                anyhow::bail!("etcd watch: the connection closed")
            }
        }
    }
}

fn open(conn: &Conn, range: &Range, from: i64) -> anyhow::Result<ureq::BodyReader<'static>> {
    let body = json!({"create_request": {
        "key": b64(&range.key), "range_end": b64(&range.end),
        "start_revision": from.to_string()}});
    conn.open("/v3/watch", &body)
}

/// Hand every message over until the reader goes away; open the stream again where it broke.
fn pump(
    conn: Conn,
    range: Range,
    from: i64,
    stream: ureq::BodyReader<'static>,
    tx: mpsc::Sender<anyhow::Result<WatchBatch>>,
) {
    let (mut next, mut stream, mut empty) = (from, stream, 0);
    loop {
        let messages = serde_json::Deserializer::from_reader(BufReader::new(stream));
        let mut delivered = false;
        for message in messages.into_iter::<Value>() {
            let Ok(message) = message else { break };
            let batch = batch(&message);
            if let Ok(b) = &batch {
                if let Some((_, kv)) = b.events.last() {
                    next = next.max(kv.mod_revision + 1);
                }
            }
            let failed = batch.is_err();
            if tx.send(batch).is_err() || failed {
                return;
            }
            delivered = true;
        }
        empty = if delivered { 0 } else { empty + 1 };
        if empty >= EMPTY_STREAMS {
            let _ = tx.send(Err(anyhow::anyhow!(
                "etcd at {}: the watch keeps closing",
                conn.endpoints()
            )));
            return;
        }
        if empty > 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
        match open(&conn, &range, next) {
            Ok(s) => stream = s,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
}

/// One message of the stream.
fn batch(v: &Value) -> anyhow::Result<WatchBatch> {
    let r = &v["result"];
    if r.is_null() {
        let why = v["error"]["message"].as_str().map(str::to_string);
        return Err(anyhow::anyhow!(
            "etcd watch: {}",
            why.unwrap_or(v.to_string())
        ));
    }
    Ok(WatchBatch {
        revision: revision(r),
        events: (r["events"].as_array().into_iter().flatten())
            .filter_map(|e| Some((e["type"].as_str() == Some("DELETE"), kv(&e["kv"])?)))
            .collect(),
        compacted: int(&r["compact_revision"]).unwrap_or(0),
        canceled: r["canceled"].as_bool().unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_gives_its_events_and_an_error_its_reason() {
        let v = json!({"result": {"header": {"revision": "7"}, "events": [
            {"kv": {"key": "L2E=", "value": "eA==", "mod_revision": "7", "create_revision": "5"}},
            {"type": "DELETE", "kv": {"key": "L2I=", "mod_revision": "7"}}]}});
        let b = batch(&v).unwrap();
        assert_eq!(b.revision, 7);
        let events: Vec<_> = (b.events.iter())
            .map(|(d, kv)| (*d, kv.key.as_str(), kv.value.clone(), kv.create_revision))
            .collect();
        assert_eq!(
            events,
            [(false, "/a", b"x".to_vec(), 5), (true, "/b", vec![], 0)]
        );
        let e = batch(
            &json!({"error": {"http_code": 401, "message": "etcdserver: invalid auth token"}}),
        );
        assert!(format!("{:#}", e.unwrap_err()).contains("invalid auth token"));
    }
}
