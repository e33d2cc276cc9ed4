//! A small blocking client for etcd v3, over the JSON gateway etcd serves on its client port
//! (`/v3/kv/range`, `/v3/kv/txn`, `/v3/lease/*`, `/v3/watch`, `/v3/auth/authenticate`; etcd
//! 3.4 and later): int64 fields travel as JSON strings, keys and values as base64. The
//! endpoints, TLS and auth, and why this HTTP client, are in `client/conn.rs`; watches in
//! `client/watch.rs`.

use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use serde_json::{json, Value};

mod conn;
mod watch;

pub use conn::{set_access, Access};
pub use watch::{Watch, WatchBatch};

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

#[derive(Clone)]
pub struct Client {
    conn: conn::Conn,
    /// How long one unary call may take.
    pub timeout: Duration,
}

impl Client {
    /// `spec`: `ENDPOINT[,ENDPOINT…]`, each `HOST:PORT`, `http://HOST:PORT` or
    /// `https://HOST:PORT`, reached as this process was told (`set_access`).
    pub fn new(spec: &str) -> anyhow::Result<Client> {
        Client::with_access(spec, conn::access())
    }

    /// As `new`, with certificates and a user of its own.
    pub fn with_access(spec: &str, access: &Access) -> anyhow::Result<Client> {
        Ok(Client {
            conn: conn::Conn::new(spec, access)?,
            // A transaction of thousands of keys takes etcd seconds on a loaded machine.
            timeout: Duration::from_secs(30),
        })
    }

    /// The endpoints, as the operator gave them, for messages.
    pub fn endpoints(&self) -> String {
        self.conn.endpoints()
    }

    /// One unary call of the gateway, on the first endpoint that answers. A transaction is
    /// never sent twice: it may have been applied.
    pub fn call(&mut self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let answer = self
            .conn
            .post(path, body, self.timeout, path != "/v3/kv/txn")?;
        if answer.status != 200 {
            let v = &answer.body;
            let msg = (v["message"].as_str())
                .or(v["error"].as_str())
                .unwrap_or("error");
            let hint = match msg.contains("user name is empty") {
                true => " (etcd has auth enabled: give --user USER[:PASSWORD])",
                false => "",
            };
            anyhow::bail!("etcd at {}: {path}: {msg}{hint}", self.endpoints());
        }
        Ok(answer.body)
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
        Watch::start(self.conn.clone(), key, end, from)
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

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_after_its_last_byte() {
        assert_eq!(prefix_end("/q/"), b"/q0");
    }

    #[test]
    fn no_endpoint_is_invalid() {
        assert!(Client::new(" , ").is_err());
    }
}
