//! What wakes the agent's loop, sent from the threads that wait for it: the watch of etcd
//! (`watch.rs`) and the kernel's events (`kernel::events`, through `run.rs`).

use crate::model::protocol::{Ask, ObjectRef};

pub enum Wake {
    /// The desired state or the hosts changed.
    Changed,
    /// A request for this host.
    Asked(Ask),
    /// Another host's agent stopped reporting an object (it tore its copy down): if this
    /// host now runs it, it announces it again.
    Released(ObjectRef),
    /// A tap appeared on no bridge: a workload's, perhaps.
    Tap(String),
    /// A device or a namespace of the host went: what used it is repaired at once.
    Gone(String),
}

pub type Sender = tokio::sync::mpsc::UnboundedSender<Wake>;
pub type Receiver = tokio::sync::mpsc::UnboundedReceiver<Wake>;
