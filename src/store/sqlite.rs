//! The embedded store: one SQLite file in the state directory.
//! Each object is a row (kind, id, JSON body). A mutating command holds the write lock
//! (`BEGIN IMMEDIATE`) from reading the state until its change is converged, so parallel
//! invocations serialise, and readers only ever see committed states.

use std::collections::HashMap;

use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::Context;
use rusqlite::{params, Connection, TransactionBehavior};
use serde::{de::DeserializeOwned, Serialize};

use super::{around, Around, Reads};

mod file;
use crate::model::{FloatingIp, Instance, Network, Object, Port, Router, State, Subnet};
use file::describe;

pub struct Sqlite {
    /// None while there is no store: it reads as empty, and the first write creates it.
    conn: Option<Connection>,
    dir: PathBuf,
    path: PathBuf,
    writable: bool,
    id: String,
    /// The state last read or written, and SQLite's `data_version` then: while no other
    /// connection has committed, a batch's next command reuses it instead of parsing every row.
    cached: Option<(i64, Rc<State>)>,
    /// Only a process that runs several commands keeps the cache (a copy of the state).
    pub keep_cache: bool,
}

/// A write transaction with the state as it was when the lock was taken.
pub struct SqliteTxn<'a> {
    tx: rusqlite::Transaction<'a>,
    cached: &'a mut Option<(i64, Rc<State>)>,
    path: &'a Path,
    id: &'a str,
}

/// Raised with every change to SCHEMA (which only ever adds what does not exist yet).
/// 3: the `meta` table with the store's id.
const SCHEMA_VERSION: i64 = 3;
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (kind, id)
);
CREATE INDEX IF NOT EXISTS objects_by_name ON objects (kind, json_extract(body, '$.name'));
CREATE INDEX IF NOT EXISTS objects_by_network ON objects (kind, json_extract(body, '$.network_id'));
CREATE INDEX IF NOT EXISTS objects_by_device ON objects (kind, json_extract(body, '$.device_id'));
CREATE INDEX IF NOT EXISTS objects_by_port ON objects (kind, json_extract(body, '$.port_id'));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);";

impl Sqlite {
    /// The committed state, for read-only commands.
    pub fn load(&mut self) -> anyhow::Result<Rc<State>> {
        self.load_only(&Reads::All)
    }

    /// The committed state, as much of it as `reads` says.
    pub fn load_only(&mut self, reads: &Reads) -> anyhow::Result<Rc<State>> {
        self.read(|tx, cached, keep| cached_or_load(cached, keep, tx, reads))
    }

    /// `read` the state in one read transaction; a missing store reads as empty.
    fn read(
        &mut self,
        read: impl FnOnce(&Connection, &mut Option<(i64, Rc<State>)>, bool) -> anyhow::Result<Rc<State>>,
    ) -> anyhow::Result<Rc<State>> {
        self.attach()?;
        let (dir, path) = (&self.dir, &self.path);
        let reading = || format!("store {}: cannot read it", path.display());
        let Some(conn) = &mut self.conn else {
            return Ok(Rc::new(State::default()));
        };
        let tx = conn
            .transaction()
            .map_err(|e| describe(e, dir, reading()))?;
        read(&tx, &mut self.cached, self.keep_cache).with_context(reading)
    }

    /// The id of the object of `kind` named or identified by `key`, read without loading the
    /// state; None where it takes more than an exact match (an id prefix, a typo, a name
    /// several objects share). An exact id wins over a name, as in openstackclient.
    pub fn id_of(&self, kind: &str, key: &str) -> anyhow::Result<Option<String>> {
        let Some(conn) = &self.conn else {
            return Ok(None);
        };
        let exact = || -> rusqlite::Result<Option<String>> {
            let mut stmt =
                conn.prepare_cached("SELECT id FROM objects WHERE kind = ?1 AND id = ?2")?;
            let found = stmt.query_map(params![kind, key], |row| row.get(0))?.next();
            found.transpose()
        };
        match exact().map_err(|e| self.failed(e, "cannot read it"))? {
            Some(id) => Ok(Some(id)),
            None => self.id_by(kind, "name", key),
        }
    }

    /// `id_of` for a floating IP, which goes by its address.
    pub fn floating_ip_id(&self, key: &str) -> anyhow::Result<Option<String>> {
        self.id_by(FloatingIp::KIND, "address", key)
    }

    /// The ids of the subnets whose range holds `ip`, read without loading the state: only
    /// each subnet's range is parsed, in SQLite.
    pub fn subnets_holding(&self, ip: std::net::IpAddr) -> anyhow::Result<Vec<String>> {
        let Some(conn) = &self.conn else {
            return Ok(vec![]);
        };
        // The range is cut out of the body as serde_json writes it (`"cidr":"10.0.0.0/24"`,
        // the only `cidr` key of a subnet): with 2000 subnets this takes 7 M instructions,
        // where parsing the bodies, in SQLite or serde, took 15-21 M. A body written otherwise
        // is parsed whole.
        const KEY: &str = "\"cidr\":\"";
        let failed = |e| self.failed(e, "cannot read it");
        let mut stmt = conn
            .prepare_cached("SELECT id, body FROM objects WHERE kind = 'subnet'")
            .map_err(failed)?;
        let mut rows = stmt.query([]).map_err(failed)?;
        let mut ids = Vec::new();
        while let Some(row) = rows.next().map_err(failed)? {
            let id = row.get_ref(0).map_err(failed)?.as_str()?;
            let body = row.get_ref(1).map_err(failed)?.as_str()?;
            let cut = body.find(KEY).and_then(|at| {
                let rest = &body[at + KEY.len()..];
                rest.split('"').next()?.parse::<ipnet::IpNet>().ok()
            });
            let range = match cut {
                Some(range) => range,
                None => {
                    serde_json::from_str::<Subnet>(body)
                        .with_context(|| format!("store: subnet {id} is corrupt"))?
                        .cidr
                }
            };
            if range.contains(&ip) {
                ids.push(id.to_string());
            }
        }
        Ok(ids)
    }

    /// `around::load_growing` (see there), in one read transaction.
    pub fn load_growing(
        &mut self,
        first: &Around,
        more: &mut dyn FnMut(&State) -> Option<Around>,
    ) -> anyhow::Result<Rc<State>> {
        self.read(|tx, _, _| Ok(Rc::new(around::load_growing(tx, first, more)?)))
    }

    /// The one object of `kind` whose id or `field` is `key`.
    fn id_by(&self, kind: &str, field: &str, key: &str) -> anyhow::Result<Option<String>> {
        let Some(conn) = &self.conn else {
            return Ok(None);
        };
        self.id_in(conn, kind, field, key)
            .map_err(|e| self.failed(e, "cannot read it"))
    }

    fn id_in(
        &self,
        conn: &Connection,
        kind: &str,
        field: &str,
        key: &str,
    ) -> rusqlite::Result<Option<String>> {
        // Two lookups: SQLite would answer `id = ?2 OR name = ?2` with a scan. `name` has an
        // index; `address` is looked for among the floating IPs only.
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT id FROM objects WHERE kind = ?1 AND id = ?2
             UNION SELECT id FROM objects WHERE kind = ?1 AND json_extract(body, '$.{field}') = ?2
             LIMIT 2"
        ))?;
        let ids: Vec<String> = stmt
            .query_map(params![kind, key], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(match ids.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        })
    }

    /// Take the write lock, waiting for other writers, and read the state under it.
    pub fn begin(&mut self) -> anyhow::Result<(SqliteTxn<'_>, Rc<State>)> {
        self.begin_only(&Reads::All)
    }

    /// `begin`, reading only what `reads` says: the rest stays out of the state, and so
    /// unwritten. A process that caches the state reads it all.
    /// A missing store is created here, by the first write.
    pub fn begin_only(&mut self, reads: &Reads) -> anyhow::Result<(SqliteTxn<'_>, Rc<State>)> {
        if !self.writable {
            anyhow::bail!("store {}: opened read-only", self.path.display());
        }
        if !self.attach()? {
            self.create()?;
        }
        let (dir, path, id) = (&self.dir, &self.path, &self.id);
        let conn = self.conn.as_mut().expect("created above");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| {
                describe(
                    e,
                    dir,
                    format!("store {}: cannot write to it", path.display()),
                )
            })?;
        let state = cached_or_load(&mut self.cached, self.keep_cache, &tx, reads)
            .with_context(|| format!("store {}: cannot read it", path.display()))?;
        Ok((
            SqliteTxn {
                tx,
                cached: &mut self.cached,
                path,
                id,
            },
            state,
        ))
    }
}

impl SqliteTxn<'_> {
    /// The id of the store being written (see `Sqlite::id`), never empty.
    pub fn store_id(&self) -> &str {
        self.id
    }

    fn failed(&self, err: rusqlite::Error, doing: &str) -> anyhow::Error {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        describe(err, dir, format!("store {}: {doing}", self.path.display()))
    }
}

/// `data_version` changes when another connection commits; our own commits don't change it.
/// The cache holds the whole state, so a process that keeps it reads every kind.
fn cached_or_load(
    cached: &mut Option<(i64, Rc<State>)>,
    keep: bool,
    conn: &Connection,
    reads: &Reads,
) -> anyhow::Result<Rc<State>> {
    if !keep {
        return Ok(Rc::new(match reads {
            Reads::All => load(conn, None)?,
            Reads::Kinds(kinds) => load(conn, Some(kinds))?,
            Reads::Around(around) => around::load(conn, around)?,
        }));
    }
    let version: i64 = conn.pragma_query_value(None, "data_version", |r| r.get(0))?;
    if let Some((v, state)) = cached {
        if *v == version {
            return Ok(state.clone());
        }
    }
    let state = Rc::new(load(conn, None)?);
    *cached = Some((version, state.clone()));
    Ok(state)
}

impl SqliteTxn<'_> {
    /// Write what differs between `old` and `new`.
    pub fn save(&self, old: &State, new: &State) -> anyhow::Result<()> {
        (|| {
            save(&self.tx, &old.networks, &new.networks)?;
            save(&self.tx, &old.subnets, &new.subnets)?;
            save(&self.tx, &old.routers, &new.routers)?;
            save(&self.tx, &old.ports, &new.ports)?;
            save(&self.tx, &old.instances, &new.instances)?;
            save(&self.tx, &old.floating_ips, &new.floating_ips)
        })()
        .map_err(|e| self.failed(e, "cannot save the change"))
    }

    /// Commit `new`, written with `save`.
    pub fn commit(self, new: &Rc<State>) -> anyhow::Result<()> {
        let version: i64 = self
            .tx
            .pragma_query_value(None, "data_version", |r| r.get(0))
            .map_err(|e| self.failed(e, "cannot commit"))?;
        let (path, dir) = (self.path, self.path.parent().unwrap_or(Path::new(".")));
        self.tx
            .commit()
            .map_err(|e| describe(e, dir, format!("store {}: cannot commit", path.display())))?;
        if self.cached.is_some() {
            *self.cached = Some((version, new.clone()));
        }
        Ok(())
    }
}

/// Every object (of the kinds in `only`) in one pass over the table in rowid order, which is
/// creation order (an update keeps the row, and so its rowid): no index lookups and no sort.
/// Parsing is most of the cost, and rows of other kinds are skipped before it.
fn load(conn: &Connection, only: Option<&[&str]>) -> anyhow::Result<State> {
    let mut state = State::default();
    let mut stmt = conn.prepare_cached("SELECT kind, id, body FROM objects ORDER BY rowid")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let kind = row.get_ref(0)?.as_str()?;
        if only.is_some_and(|kinds| !kinds.contains(&kind)) {
            continue;
        }
        let (id, body) = (row.get_ref(1)?.as_str()?, row.get_ref(2)?.as_str()?);
        let parsed = match kind {
            Network::KIND => push(&mut state.networks, body),
            Subnet::KIND => push(&mut state.subnets, body),
            Router::KIND => push(&mut state.routers, body),
            Port::KIND => push(&mut state.ports, body),
            Instance::KIND => push(&mut state.instances, body),
            FloatingIp::KIND => push(&mut state.floating_ips, body),
            _ => Ok(()),
        };
        parsed.with_context(|| format!("store: {kind} {id} is corrupt"))?;
    }
    Ok(state)
}

fn push<T: DeserializeOwned>(items: &mut Vec<Rc<T>>, body: &str) -> serde_json::Result<()> {
    items.push(Rc::new(serde_json::from_str(body)?));
    Ok(())
}

fn save<T: Object + Serialize + Eq>(
    conn: &Connection,
    old: &[Rc<T>],
    new: &[Rc<T>],
) -> rusqlite::Result<()> {
    // Objects keep their creation order: without a deletion, old and new line up position by
    // position and each needs one comparison (a pointer, for an object the change did not
    // copy; ids only for the others), no map of thousands of ids.
    let same_id = |(o, n): (&Rc<T>, &Rc<T>)| Rc::ptr_eq(o, n) || o.id() == n.id();
    if old.len() <= new.len() && old.iter().zip(new).all(same_id) {
        for (i, item) in new.iter().enumerate() {
            if old.get(i) != Some(item) {
                upsert(conn, item.as_ref())?;
            }
        }
        return Ok(());
    }
    let old: HashMap<&str, &Rc<T>> = old.iter().map(|o| (o.id(), o)).collect();
    let mut kept = std::collections::HashSet::new();
    for item in new {
        kept.insert(item.id());
        if old.get(item.id()) != Some(&item) {
            upsert(conn, item.as_ref())?;
        }
    }
    for id in old.keys().filter(|id| !kept.contains(*id)) {
        conn.prepare_cached("DELETE FROM objects WHERE kind = ?1 AND id = ?2")?
            .execute(params![T::KIND, id])?;
    }
    Ok(())
}

fn upsert<T: Object + Serialize>(conn: &Connection, item: &T) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO objects (kind, id, body) VALUES (?1, ?2, ?3)
         ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body",
    )?
    .execute(params![T::KIND, item.id(), body(item)])?;
    Ok(())
}

fn body<T: Serialize>(item: &T) -> String {
    serde_json::to_string(item).expect("model objects always serialise")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A router as the store tests keep it.
    pub(crate) fn router(name: &str) -> Rc<Router> {
        Rc::new(crate::model::fixtures::router(&format!("id-{name}"), name))
    }

    /// Commit a new router named `name`.
    pub(crate) fn add(store: &mut Sqlite, name: &str) {
        let (txn, old) = store.begin().unwrap();
        let mut new = (*old).clone();
        new.routers.push(router(name));
        txn.save(&old, &new).unwrap();
        txn.commit(&Rc::new(new)).unwrap();
    }

    #[test]
    fn the_cache_never_hides_another_connections_commit() {
        let dir = std::env::temp_dir().join(format!("qrouter-store-{}", std::process::id()));
        let (mut a, mut b) = (Sqlite::open(&dir).unwrap(), Sqlite::open(&dir).unwrap());
        (a.keep_cache, b.keep_cache) = (true, true);
        add(&mut a, "r1");
        assert_eq!(b.load().unwrap().routers, [router("r1")]);
        add(&mut b, "r2");
        // `a` cached its own write; b's commit must still show.
        assert_eq!(a.load().unwrap().routers, [router("r1"), router("r2")]);
        add(&mut a, "r3");
        assert_eq!(b.begin().unwrap().1.routers.len(), 3);
        // A change that is not committed is not cached.
        let (txn, old) = a.begin().unwrap();
        let mut new = (*old).clone();
        new.routers.clear();
        txn.save(&old, &new).unwrap();
        drop(txn);
        assert_eq!(a.load().unwrap().routers.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn id_of_takes_an_exact_name_or_id() {
        let dir = std::env::temp_dir().join(format!("qrouter-store-id-{}", std::process::id()));
        let mut store = Sqlite::open(&dir).unwrap();
        add(&mut store, "r1");
        add(&mut store, "r2");
        assert_eq!(
            store.id_of(Router::KIND, "r2").unwrap().as_deref(),
            Some("id-r2")
        );
        assert_eq!(
            store.id_of(Router::KIND, "id-r1").unwrap().as_deref(),
            Some("id-r1")
        );
        assert_eq!(store.id_of(Router::KIND, "id-r").unwrap(), None);
        assert_eq!(store.id_of(Router::KIND, "r3").unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn id_of_prefers_an_exact_id_to_a_name() {
        let dir = std::env::temp_dir().join(format!("qrouter-store-idwins-{}", std::process::id()));
        let mut store = Sqlite::open(&dir).unwrap();
        add(&mut store, "r1");
        // A router (from an older store) named after r1's id.
        add(&mut store, "id-r1");
        assert_eq!(
            store.id_of(Router::KIND, "id-r1").unwrap().as_deref(),
            Some("id-r1")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_change_that_reads_some_kinds_leaves_the_others_alone() {
        let dir = std::env::temp_dir().join(format!("qrouter-store-only-{}", std::process::id()));
        let mut store = Sqlite::open(&dir).unwrap();
        add(&mut store, "r1");
        let (txn, old) = store.begin_only(&Reads::Kinds(&[Network::KIND])).unwrap();
        assert!(old.routers.is_empty());
        let mut new = (*old).clone();
        new.networks
            .push(Rc::new(crate::model::fixtures::network("id-n1", "n1")));
        txn.save(&old, &new).unwrap();
        txn.commit(&Rc::new(new)).unwrap();
        let state = store.load().unwrap();
        assert_eq!(state.routers, [router("r1")]);
        assert_eq!(state.networks.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
