//! How an agent was started (`qrouter agent`'s options), handed down to each part of it.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::model::host::Role;

pub struct Options {
    pub host: String,
    pub local_ip: Ipv4Addr,
    pub role: Role,
    /// Seconds without renewal after which the host counts as down.
    pub lease_ttl: i64,
    /// Move a dead network host's routers and DHCP servers to live ones, once its lease has
    /// been gone this long while etcd was healthy (see `liveness`); None: never.
    pub failover_grace: Option<Duration>,
    /// How often the whole host is checked against its part and repaired (drift made behind
    /// qrouter's back), besides what the watch and the kernel's events bring.
    pub resync_interval: Duration,
}

impl Options {
    /// One lease period: how long a host may go without renewing its lease.
    pub fn lease_period(&self) -> Duration {
        Duration::from_secs(self.lease_ttl.max(1) as u64)
    }
}
