//! `qrouter agent`: one per host with an etcd store. See run.rs.

mod ask;
mod host;
mod pass;
mod run;
mod segments;
mod taps;
pub mod view;

pub use run::{run, Options};
