//! A small blocking client for etcd v3, over the JSON gateway etcd serves on its client port
//! (`/v3/kv/range`, `/v3/kv/txn`, `/v3/lease/*`, `/v3/watch`; etcd 3.4 and later). The
//! gateway speaks HTTP/1.1: one keep-alive connection for unary calls, one per watch.
//! int64 fields travel as JSON strings, keys and values as base64.
//!
//! Why not the `etcd-client` crate: it is async (the store is called synchronously from
//! inside the command's runtime, where blocking on another future is not possible), needs
//! `protoc` at build time, and brings 57 crates qrouter does not have (tonic, hyper, h2,
//! tower, axum, prost-build, regex, petgraph...). This file needs none; the HTTP/1.1 it
//! speaks is in `client/http.rs`.

use std::io::BufReader;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};

mod http;

use http::{read_head, read_response, send, Chunked, Response};

/// A key as etcd returned it.
#[derive(Clone, Debug)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

/// A guard of a transaction: the key's mod revision (0 = the key must not exist).
#[derive(Clone, Debug)]
pub struct Cmp {
    pub key: String,
    pub mod_revision: i64,
}

/// One request of a transaction.
#[derive(Clone, Debug)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: i64,
    },
    Delete {
        key: String,
    },
    /// Read one key. A read in a transaction that also writes, or among several reads
    /// (`Client::read`), costs no round trip of its own: about 1 ms each on these machines.
    Get {
        key: String,
    },
    /// Read every key under `prefix`.
    Range {
        prefix: String,
    },
}

impl Op {
    pub fn get(key: impl Into<String>) -> Op {
        Op::Get { key: key.into() }
    }

    pub fn range(prefix: impl Into<String>) -> Op {
        Op::Range {
            prefix: prefix.into(),
        }
    }
}

/// What a transaction did.
#[derive(Debug, Default)]
pub struct TxnAnswer {
    /// Whether every guard held (the success branch ran).
    pub succeeded: bool,
    /// The store's revision after it.
    pub revision: i64,
    /// The keys each `Op::Get` and `Op::Range` of the branch that ran read, in its order.
    pub ranges: Vec<Vec<Kv>>,
}

pub struct Client {
    endpoints: Vec<String>,
    conn: Option<BufReader<TcpStream>>,
    /// How long one unary call may take.
    pub timeout: Duration,
}

impl Client {
    /// `spec`: `HOST:PORT[,HOST:PORT…]`, as after `etcd://`.
    pub fn new(spec: &str) -> anyhow::Result<Client> {
        let endpoints: Vec<String> = spec
            .split(',')
            .map(|e| e.trim().trim_start_matches("http://").to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(crate::error::invalid(format!(
                "store etcd://{spec}: no endpoint given (etcd://HOST:PORT[,HOST:PORT...])"
            )));
        }
        Ok(Client {
            endpoints,
            conn: None,
            // A transaction of thousands of keys takes etcd seconds on a loaded machine.
            timeout: Duration::from_secs(30),
        })
    }

    /// The endpoints, as the operator gave them, for messages.
    pub fn endpoints(&self) -> String {
        self.endpoints.join(",")
    }

    fn connect_any(&self, timeout: Duration) -> anyhow::Result<TcpStream> {
        let mut why = Vec::new();
        for ep in &self.endpoints {
            let addrs = match ep.to_socket_addrs() {
                Ok(a) => a,
                Err(e) => {
                    why.push(format!("{ep}: {e}"));
                    continue;
                }
            };
            for addr in addrs {
                match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                    Ok(s) => {
                        s.set_nodelay(true).ok();
                        s.set_read_timeout(Some(timeout)).ok();
                        s.set_write_timeout(Some(timeout)).ok();
                        return Ok(s);
                    }
                    Err(e) => why.push(format!("{ep}: {e}")),
                }
            }
        }
        anyhow::bail!(
            "etcd at {}: unreachable ({}); nothing was changed",
            self.endpoints(),
            why.join("; ")
        )
    }

    /// One unary call of the gateway. A kept connection that the server closed meanwhile is
    /// replaced once, before anything was read back, except for a transaction: it may have
    /// been applied, and sending it again would then fail its own guards.
    pub fn call(&mut self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let retry = path != "/v3/kv/txn";
        let body = body.to_string();
        for attempt in 0..2 {
            let fresh = self.conn.is_none();
            if fresh {
                self.conn = Some(BufReader::new(self.connect_any(self.timeout)?));
            }
            let conn = self.conn.as_mut().expect("connected");
            let sent = send(conn.get_mut(), path, &body);
            let answer = sent.and_then(|()| read_response(conn));
            match answer {
                Ok(Response {
                    status, body, keep, ..
                }) => {
                    if !keep {
                        self.conn = None;
                    }
                    let value: Value = serde_json::from_slice(&body).with_context(|| {
                        format!("etcd at {}: unreadable answer", self.endpoints())
                    })?;
                    if status != 200 {
                        let msg = value["message"]
                            .as_str()
                            .or(value["error"].as_str())
                            .unwrap_or("error");
                        anyhow::bail!("etcd at {}: {path}: {msg}", self.endpoints());
                    }
                    return Ok(value);
                }
                Err(e) => {
                    self.conn = None;
                    if fresh || attempt == 1 || !e.is_stale || !retry {
                        return Err(anyhow::anyhow!(
                            "etcd at {}: {}; nothing was changed",
                            self.endpoints(),
                            e.err
                        ));
                    }
                }
            }
        }
        unreachable!("the second attempt returns")
    }

    /// Every key under `prefix`, in key order, and the store's revision then.
    pub fn range_prefix(&mut self, prefix: &str) -> anyhow::Result<(i64, Vec<Kv>)> {
        let v = self.call(
            "/v3/kv/range",
            &json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix))}),
        )?;
        Ok((revision(&v), kvs(&v["kvs"])))
    }

    pub fn get(&mut self, key: &str) -> anyhow::Result<Option<Kv>> {
        let v = self.call("/v3/kv/range", &json!({"key": b64(key.as_bytes())}))?;
        Ok(kvs(&v["kvs"]).into_iter().next())
    }

    /// One transaction: `ops` if every guard holds, else nothing. Whether it was applied,
    /// and the revision after it.
    pub fn txn(&mut self, guards: &[Cmp], ops: &[Op]) -> anyhow::Result<(bool, i64)> {
        let answer = self.txn_either(guards, ops, &[])?;
        Ok((answer.succeeded, answer.revision))
    }

    /// One transaction: `success` if every guard holds, else `failure`.
    pub fn txn_either(
        &mut self,
        guards: &[Cmp],
        success: &[Op],
        failure: &[Op],
    ) -> anyhow::Result<TxnAnswer> {
        let compare: Vec<Value> = guards
            .iter()
            .map(|c| match c.mod_revision {
                0 => json!({"target": "CREATE", "key": b64(c.key.as_bytes()),
                            "create_revision": "0", "result": "EQUAL"}),
                r => json!({"target": "MOD", "key": b64(c.key.as_bytes()),
                            "mod_revision": r.to_string(), "result": "EQUAL"}),
            })
            .collect();
        let v = self.call(
            "/v3/kv/txn",
            &json!({"compare": compare, "success": requests(success), "failure": requests(failure)}),
        )?;
        let ranges = v["responses"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .filter(|r| !r["response_range"].is_null())
                    .map(|r| kvs(&r["response_range"]["kvs"]))
                    .collect()
            })
            .unwrap_or_default();
        Ok(TxnAnswer {
            succeeded: v["succeeded"].as_bool().unwrap_or(false),
            revision: revision(&v),
            ranges,
        })
    }

    /// Several reads (`Op::Get`, `Op::Range`) at one revision, in one round trip: the keys
    /// each read.
    pub fn read(&mut self, reads: &[Op]) -> anyhow::Result<Vec<Vec<Kv>>> {
        Ok(self.txn_either(&[], reads, &[])?.ranges)
    }

    pub fn put(&mut self, key: &str, value: &[u8], lease: i64) -> anyhow::Result<i64> {
        let v = self.call(
            "/v3/kv/put",
            &json!({"key": b64(key.as_bytes()), "value": b64(value), "lease": lease.to_string()}),
        )?;
        Ok(revision(&v))
    }

    pub fn delete_prefix(&mut self, prefix: &str) -> anyhow::Result<()> {
        self.call(
            "/v3/kv/deleterange",
            &json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix))}),
        )
        .map(drop)
    }

    /// A lease of `ttl` seconds: its id.
    pub fn grant(&mut self, ttl: i64) -> anyhow::Result<i64> {
        let v = self.call("/v3/lease/grant", &json!({"TTL": ttl.to_string()}))?;
        int(&v["ID"]).context("etcd: a lease without an id")
    }

    /// Renew a lease: its remaining TTL, 0 when it has expired.
    pub fn keepalive(&mut self, id: i64) -> anyhow::Result<i64> {
        let v = self.call("/v3/lease/keepalive", &json!({"ID": id.to_string()}))?;
        Ok(int(&v["result"]["TTL"]).unwrap_or(0))
    }

    pub fn revoke(&mut self, id: i64) -> anyhow::Result<()> {
        self.call("/v3/lease/revoke", &json!({"ID": id.to_string()}))
            .map(drop)
    }

    /// Watch every key under `prefix` from revision `from` (nothing before it is replayed,
    /// nothing after it is missed while the watch lives).
    pub fn watch(&self, prefix: &str, from: i64) -> anyhow::Result<Watch> {
        self.watch_range(prefix, &prefix_end(prefix), from)
    }

    /// Watch every key from `key` up to, not including, `end`, from revision `from`.
    pub fn watch_range(&self, key: &str, end: &[u8], from: i64) -> anyhow::Result<Watch> {
        let mut stream = self.connect_any(Duration::from_secs(3600))?;
        let body = json!({"create_request": {
            "key": b64(key.as_bytes()), "range_end": b64(end),
            "start_revision": from.to_string()}})
        .to_string();
        send(&mut stream, "/v3/watch", &body).map_err(|e| anyhow::anyhow!("{}", e.err))?;
        let mut reader = BufReader::new(stream);
        let head = read_head(&mut reader).map_err(|e| anyhow::anyhow!("{}", e.err))?;
        if head.status != 200 {
            anyhow::bail!(
                "etcd at {}: watch refused ({})",
                self.endpoints(),
                head.status
            );
        }
        Ok(Watch {
            chunks: Chunked::new(reader),
        })
    }
}

/// A watch's events, as they come.
pub struct Watch {
    chunks: Chunked,
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

impl Watch {
    /// How long `recv` waits for the next message before it fails.
    pub fn set_timeout(&self, timeout: Duration) -> anyhow::Result<()> {
        let timeout = timeout.max(Duration::from_millis(1));
        self.chunks.stream().set_read_timeout(Some(timeout))?;
        Ok(())
    }

    /// The next message; an error when the connection is gone.
    pub fn recv(&mut self) -> anyhow::Result<WatchBatch> {
        let mut de = serde_json::Deserializer::from_reader(&mut self.chunks).into_iter::<Value>();
        let v = match de.next() {
            Some(v) => v.context("etcd watch: unreadable message")?,
            None => anyhow::bail!("etcd watch: the connection closed"),
        };
        let r = &v["result"];
        if r.is_null() {
            anyhow::bail!("etcd watch: {}", v);
        }
        Ok(WatchBatch {
            revision: revision(r),
            events: r["events"]
                .as_array()
                .map(|es| {
                    es.iter()
                        .filter_map(|e| {
                            let kv = kv(&e["kv"])?;
                            Some((e["type"].as_str() == Some("DELETE"), kv))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            compacted: int(&r["compact_revision"]).unwrap_or(0),
            canceled: r["canceled"].as_bool().unwrap_or(false),
        })
    }
}

fn requests(ops: &[Op]) -> Vec<Value> {
    ops.iter()
        .map(|op| match op {
            Op::Put { key, value, lease } => json!({"request_put": {
                "key": b64(key.as_bytes()), "value": b64(value), "lease": lease.to_string()}}),
            Op::Delete { key } => json!({"request_delete_range": {"key": b64(key.as_bytes())}}),
            Op::Get { key } => json!({"request_range": {"key": b64(key.as_bytes())}}),
            Op::Range { prefix } => json!({"request_range": {
                "key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix))}}),
        })
        .collect()
}

fn revision(v: &Value) -> i64 {
    int(&v["header"]["revision"]).unwrap_or(0)
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn kv(v: &Value) -> Option<Kv> {
    Some(Kv {
        key: String::from_utf8(unb64(v["key"].as_str()?)?).ok()?,
        value: v["value"].as_str().and_then(unb64).unwrap_or_default(),
        create_revision: int(&v["create_revision"]).unwrap_or(0),
        mod_revision: int(&v["mod_revision"]).unwrap_or(0),
        lease: int(&v["lease"]).unwrap_or(0),
    })
}

fn kvs(v: &Value) -> Vec<Kv> {
    v.as_array()
        .map(|a| a.iter().filter_map(kv).collect())
        .unwrap_or_default()
}

/// The end of the range of keys that start with `prefix`.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn b64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn unb64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        if c == b'=' {
            break;
        }
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "abcd", "/qrouter/router/x"] {
            assert_eq!(unb64(&b64(s.as_bytes())).unwrap(), s.as_bytes());
        }
        assert_eq!(b64(b"/a"), "L2E=");
        assert_eq!(b64(b"x"), "eA==");
    }

    #[test]
    fn a_prefix_ends_after_its_last_byte() {
        assert_eq!(prefix_end("/q/"), b"/q0");
    }

    #[test]
    fn no_endpoint_is_invalid() {
        assert!(Client::new(" , ").is_err());
    }
}
