//! `qrouter agent`: one per host with an etcd store. See run.rs.

mod ask;
mod control;
mod host;
mod liveness;
mod options;
mod owner;
mod pass;
mod report;
mod run;
mod segments;
pub mod view;
mod wake;
mod watch;

pub use options::Options;
pub use run::run;
