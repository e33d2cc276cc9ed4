//! The store interface the operations use: the embedded SQLite store (the default, one
//! host) or etcd (several hosts). An enum, not a trait object: the SQLite path is a match
//! away from what it was, and its transaction keeps borrowing the connection.

use std::path::Path;
use std::rc::Rc;

use super::etcd::{Etcd, EtcdTxn};
use super::{Reads, Sqlite, SqliteTxn};
use crate::model::State;

pub struct Store {
    kind: Kind,
    /// Only a process that runs several commands keeps the cache (a copy of the state):
    /// see `Sqlite::keep_cache`. etcd reads every time.
    pub keep_cache: bool,
}

enum Kind {
    Sqlite(Sqlite),
    Etcd(Etcd),
}

/// A write transaction with the state as it was when the lock was taken.
pub enum Txn<'a> {
    Sqlite(SqliteTxn<'a>),
    Etcd(EtcdTxn<'a>),
}

impl Store {
    /// The embedded store in `dir`, for a command that may change it.
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        Ok(Store::from(Sqlite::open(dir)?))
    }

    /// The embedded store in `dir`, for a command that only reads.
    pub fn open_read_only(dir: &Path) -> anyhow::Result<Store> {
        Ok(Store::from(Sqlite::open_read_only(dir)?))
    }

    /// The store `spec` names (`etcd://HOST:PORT[,...]` and the like: see `etcd_endpoints`),
    /// or else the embedded one in `dir`.
    pub fn open_spec(spec: Option<&str>, dir: &Path, writable: bool) -> anyhow::Result<Store> {
        match spec.filter(|s| !s.is_empty()) {
            None => match writable {
                true => Store::open(dir),
                false => Store::open_read_only(dir),
            },
            Some(spec) => match etcd_endpoints(spec) {
                Some(endpoints) => Ok(Store {
                    kind: Kind::Etcd(Etcd::open(&endpoints, writable)?),
                    keep_cache: false,
                }),
                None if spec.starts_with("sqlite://") || spec.starts_with('/') => {
                    let dir = Path::new(spec.trim_start_matches("sqlite://"));
                    Store::open_spec(None, dir, writable)
                }
                None => Err(crate::error::invalid(format!(
                    "store {spec}: not a store (etcd://HOST:PORT[,HOST:PORT...], etcds:// for \
                     TLS, or a directory)"
                ))),
            },
        }
    }

    /// Whether the command converges the kernel itself (the embedded store), or the hosts'
    /// agents do (etcd).
    pub fn converges_here(&self) -> bool {
        matches!(self.kind, Kind::Sqlite(_))
    }

    /// The etcd store, where it is one.
    pub fn etcd(&mut self) -> Option<&mut Etcd> {
        match &mut self.kind {
            Kind::Etcd(e) => Some(e),
            Kind::Sqlite(_) => None,
        }
    }

    fn sqlite(&mut self) -> Option<&mut Sqlite> {
        let keep = self.keep_cache;
        match &mut self.kind {
            Kind::Sqlite(s) => {
                s.keep_cache = keep;
                Some(s)
            }
            Kind::Etcd(_) => None,
        }
    }

    /// The committed state, for read-only commands.
    pub fn load(&mut self) -> anyhow::Result<Rc<State>> {
        self.load_only(&Reads::All)
    }

    /// The committed state, as much of it as `reads` says (etcd reads it all).
    pub fn load_only(&mut self, reads: &Reads) -> anyhow::Result<Rc<State>> {
        if let Some(s) = self.sqlite() {
            return s.load_only(reads);
        }
        match &mut self.kind {
            Kind::Etcd(e) => e.load(),
            Kind::Sqlite(_) => unreachable!(),
        }
    }

    /// Whether `reads` is what will be read: etcd reads everything.
    pub fn reads_partly(&self) -> bool {
        self.converges_here()
    }

    /// See `Sqlite::id_of`.
    pub fn id_of(&self, kind: &str, key: &str) -> anyhow::Result<Option<String>> {
        match &self.kind {
            Kind::Sqlite(s) => s.id_of(kind, key),
            // None: "read the whole state and find it there", which etcd does anyway.
            Kind::Etcd(_) => Ok(None),
        }
    }

    /// See `Sqlite::floating_ip_id`.
    pub fn floating_ip_id(&self, key: &str) -> anyhow::Result<Option<String>> {
        match &self.kind {
            Kind::Sqlite(s) => s.floating_ip_id(key),
            Kind::Etcd(_) => Ok(None),
        }
    }

    /// See `Sqlite::load_growing`; etcd and a process that caches the state read it all.
    pub fn load_growing(
        &mut self,
        first: &super::Around,
        more: &mut dyn FnMut(&State) -> Option<super::Around>,
    ) -> anyhow::Result<Rc<State>> {
        match &mut self.kind {
            Kind::Sqlite(s) if !self.keep_cache => s.load_growing(first, more),
            _ => self.load(),
        }
    }

    /// See `Sqlite::subnets_holding`; None where the whole state is read anyway (etcd).
    pub fn subnets_holding(&self, ip: std::net::IpAddr) -> anyhow::Result<Option<Vec<String>>> {
        match &self.kind {
            Kind::Sqlite(s) => s.subnets_holding(ip).map(Some),
            Kind::Etcd(_) => Ok(None),
        }
    }

    pub fn begin(&mut self) -> anyhow::Result<(Txn<'_>, Rc<State>)> {
        self.begin_only(&Reads::All)
    }

    /// Take the write lock and read (what `reads` says of) the state under it.
    pub fn begin_only(&mut self, reads: &Reads) -> anyhow::Result<(Txn<'_>, Rc<State>)> {
        let keep = self.keep_cache;
        match &mut self.kind {
            Kind::Sqlite(s) => {
                s.keep_cache = keep;
                let (txn, state) = s.begin_only(reads)?;
                Ok((Txn::Sqlite(txn), state))
            }
            Kind::Etcd(e) => {
                let (txn, state) = e.begin()?;
                Ok((Txn::Etcd(txn), state))
            }
        }
    }

    /// The store's id: what marks an object as this store's (see `Sqlite::id`).
    pub fn id(&self) -> &str {
        match &self.kind {
            Kind::Sqlite(s) => s.id(),
            Kind::Etcd(e) => e.id(),
        }
    }

    /// An error naming the store unless it exists.
    pub fn must_exist(&mut self, why: &str) -> anyhow::Result<()> {
        match &mut self.kind {
            Kind::Sqlite(s) => s.must_exist(why),
            Kind::Etcd(e) => match e.exists()? {
                true => Ok(()),
                false => anyhow::bail!(
                    "store etcd://{}: no qrouter store there yet; {why}",
                    e.client.endpoints()
                ),
            },
        }
    }
}

/// The etcd endpoints a store spec names, as the etcd client takes them, or None when it
/// names no etcd: `etcd://HOST:PORT[,…]` (plain HTTP), `etcds://HOST:PORT[,…]` (TLS), or
/// etcdctl's endpoints, `http://HOST:PORT` or `https://HOST:PORT`, comma-separated.
pub fn etcd_endpoints(spec: &str) -> Option<String> {
    if let Some(endpoints) = spec.strip_prefix("etcd://") {
        return Some(endpoints.to_string());
    }
    if let Some(endpoints) = spec.strip_prefix("etcds://") {
        let tls = |e: &str| match e.contains("://") {
            true => e.to_string(),
            false => format!("https://{}", e.trim()),
        };
        let endpoints = endpoints.split(',').filter(|e| !e.trim().is_empty());
        return Some(endpoints.map(tls).collect::<Vec<_>>().join(","));
    }
    (spec.starts_with("http://") || spec.starts_with("https://")).then(|| spec.to_string())
}

impl From<Sqlite> for Store {
    fn from(s: Sqlite) -> Store {
        Store {
            keep_cache: s.keep_cache,
            kind: Kind::Sqlite(s),
        }
    }
}

impl Txn<'_> {
    /// The etcd store being written, where it is one.
    pub fn etcd(&mut self) -> Option<&mut Etcd> {
        match self {
            Txn::Etcd(t) => Some(t.store()),
            Txn::Sqlite(_) => None,
        }
    }

    /// Whether the command converges the kernel itself (see `Store::converges_here`).
    pub fn converges_here(&self) -> bool {
        matches!(self, Txn::Sqlite(_))
    }

    /// The hosts as they were when the lock was taken (none with the embedded store).
    pub fn hosts(&self) -> &[crate::model::host::HostInfo] {
        match self {
            Txn::Etcd(t) => t.hosts(),
            Txn::Sqlite(_) => &[],
        }
    }

    /// The id of the store being written, never empty.
    pub fn store_id(&self) -> &str {
        match self {
            Txn::Sqlite(t) => t.store_id(),
            Txn::Etcd(t) => t.store_id(),
        }
    }

    /// Write (etcd: record, for `commit`) what differs between `old` and `new`.
    pub fn save(&self, old: &State, new: &State) -> anyhow::Result<()> {
        match self {
            Txn::Sqlite(t) => t.save(old, new),
            Txn::Etcd(t) => t.save(old, new),
        }
    }

    /// Commit `new`, written with `save`.
    pub fn commit(self, new: &Rc<State>) -> anyhow::Result<()> {
        match self {
            Txn::Sqlite(t) => t.commit(new),
            Txn::Etcd(t) => t.commit(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::etcd_endpoints;

    #[test]
    fn etcd_is_named_as_etcdctl_names_it() {
        let of = |spec| etcd_endpoints(spec);
        assert_eq!(of("etcd://a:1,b:2").as_deref(), Some("a:1,b:2"));
        assert_eq!(
            of("etcds://a:1,http://b:2").as_deref(),
            Some("https://a:1,http://b:2")
        );
        assert_eq!(of("https://a:1").as_deref(), Some("https://a:1"));
        assert_eq!(of("etcds://").as_deref(), Some(""));
        assert_eq!(of("/var/lib/qrouter"), None);
    }
}
