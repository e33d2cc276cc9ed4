//! Operations: what each mutating command does to the desired state, as functions of the
//! state and a plain request that return what they touched (`Outcome`), with no command-line
//! types; and the `Session` that applies them to the store and the kernel.

pub mod floating_ip;
pub mod instance;
pub mod network;
pub mod router;
mod session;
pub mod subnet;
mod sync;

pub use session::{connected, Done, Outcome, Session};

mod agents;
mod placement;
#[cfg(test)]
pub(crate) mod tests;
mod vxlan;
