//! The embedded store of the desired state: one SQLite file in the state directory.
//! Each object is a row (kind, id, JSON body). A mutating command holds the write lock
//! (`BEGIN IMMEDIATE`) from reading the state until its change is converged, so parallel
//! invocations serialise, and readers only ever see committed states.

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use rusqlite::{params, Connection, TransactionBehavior};
use serde::{de::DeserializeOwned, Serialize};

use crate::model::{Object, State};

pub struct Store {
    conn: Connection,
}

/// A write transaction with the state as it was when the lock was taken.
pub struct Txn<'a> {
    tx: rusqlite::Transaction<'a>,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (kind, id)
);";

impl Store {
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("state directory {}: cannot create it", dir.display()))?;
        } else if dir.metadata()?.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let path = dir.join("qrouter.db");
        let conn = Connection::open(&path)
            .with_context(|| format!("store {}: cannot open it", path.display()))?;
        conn.busy_timeout(Duration::from_secs(60))?;
        // WAL keeps readers off the writer's lock; FULL makes every commit durable.
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| conn.pragma_update(None, "synchronous", "FULL"))
            .and_then(|_| conn.execute_batch(SCHEMA))
            .with_context(|| {
                format!(
                    "store {}: not a qrouter store, or unreadable",
                    path.display()
                )
            })?;
        Ok(Store { conn })
    }

    /// The committed state, for read-only commands.
    pub fn load(&mut self) -> anyhow::Result<State> {
        let tx = self.conn.transaction()?;
        load(&tx)
    }

    /// Take the write lock, waiting for other writers, and read the state under it.
    pub fn begin(&mut self) -> anyhow::Result<(Txn<'_>, State)> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let state = load(&tx)?;
        Ok((Txn { tx }, state))
    }
}

impl Txn<'_> {
    /// Write what differs between `old` and `new`.
    pub fn save(&self, old: &State, new: &State) -> anyhow::Result<()> {
        save(&self.tx, &old.networks, &new.networks)?;
        save(&self.tx, &old.subnets, &new.subnets)?;
        save(&self.tx, &old.routers, &new.routers)?;
        save(&self.tx, &old.ports, &new.ports)?;
        save(&self.tx, &old.instances, &new.instances)?;
        save(&self.tx, &old.floating_ips, &new.floating_ips)?;
        Ok(())
    }

    pub fn commit(self) -> anyhow::Result<()> {
        self.tx.commit().context("store: cannot commit")
    }
}

fn load(conn: &Connection) -> anyhow::Result<State> {
    Ok(State {
        networks: load_kind(conn)?,
        subnets: load_kind(conn)?,
        routers: load_kind(conn)?,
        ports: load_kind(conn)?,
        instances: load_kind(conn)?,
        floating_ips: load_kind(conn)?,
    })
}

/// Objects of one kind in creation order: an update keeps the row, and so its rowid.
fn load_kind<T: Object + DeserializeOwned>(conn: &Connection) -> anyhow::Result<Vec<T>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, body FROM objects WHERE kind = ?1 ORDER BY rowid")?;
    let rows = stmt.query_map([T::KIND], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut items = Vec::new();
    for row in rows {
        let (id, body) = row?;
        let item = serde_json::from_str(&body)
            .with_context(|| format!("store: {} {id} is corrupt", T::KIND))?;
        items.push(item);
    }
    Ok(items)
}

fn save<T: Object + Serialize>(conn: &Connection, old: &[T], new: &[T]) -> anyhow::Result<()> {
    let old: HashMap<&str, String> = old.iter().map(|o| (o.id(), body(o))).collect();
    let mut kept = std::collections::HashSet::new();
    for item in new {
        kept.insert(item.id());
        let body = body(item);
        if old.get(item.id()) != Some(&body) {
            conn.prepare_cached(
                "INSERT INTO objects (kind, id, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body",
            )?
            .execute(params![T::KIND, item.id(), body])?;
        }
    }
    for id in old.keys().filter(|id| !kept.contains(*id)) {
        conn.prepare_cached("DELETE FROM objects WHERE kind = ?1 AND id = ?2")?
            .execute(params![T::KIND, id])?;
    }
    Ok(())
}

fn body<T: Serialize>(item: &T) -> String {
    serde_json::to_string(item).expect("model objects always serialise")
}
