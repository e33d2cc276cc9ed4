//! qrouter: OpenStack-Neutron-style virtual routers on a Linux host, as a library.
//!
//! The layers call only downward (see docs/architecture.md):
//! `cli` → `reconcile` / `store` / `output` → `model` → `kernel`.
//! The binary (`main.rs`) only sets up the process and maps errors to exit codes; the
//! integration tests, the demo and the benchmarks use this library.

// So that `qrouter::` names this crate inside it too (see demo/testbed.rs).
extern crate self as qrouter;

pub mod agent;
pub mod cli;
pub mod demo;
pub mod error;
pub mod explain;
pub mod kernel;
pub mod model;
pub mod ops;
pub mod output;
pub mod reconcile;
pub mod store;

/// Whether qrouter itself set RUST_LIB_BACKTRACE=0 (see main): not for the commands it runs
/// for the operator (`instance exec`).
pub static NO_LIB_BACKTRACE: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);
