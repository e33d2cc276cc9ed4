//! The store of the desired state: `Store` (backend.rs) is the embedded SQLite store
//! (sqlite.rs, its files opened safely by sqlite/file.rs), the default, or etcd (etcd.rs and its
//! client) for several hosts.

mod around;
mod backend;
pub mod etcd;
mod sqlite;

pub use around::Around;
pub use backend::{etcd_endpoints, Store, Txn};
pub use etcd::client::{set_access as set_etcd_access, Access as EtcdAccess};
pub use sqlite::{Sqlite, SqliteTxn};

/// What a command reads of the store. What it does not read stays as it is: a change writes
/// only what differs between the state it read and the state it made.
pub enum Reads<'a> {
    All,
    /// Every object of these kinds (names of `Object::KIND`).
    Kinds(&'a [&'a str]),
    /// What a change to some routers can touch (see `around`).
    Around(Around),
}
