//! The hosts of a store spread over several hosts (etcd): what a host's agent registers.
//! Plain data, shared by the store that keeps it, the placement that reads it and the agent
//! that writes it.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// What a host's agent runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Routers (their namespaces, gateways, NAT) and DHCP servers.
    Network,
    /// Instances.
    Compute,
    /// Both.
    All,
}

impl Role {
    /// Every role, as `--role` spells them.
    pub const NAMES: [&'static str; 3] = ["network", "compute", "all"];

    pub fn routes(self) -> bool {
        matches!(self, Role::Network | Role::All)
    }

    pub fn computes(self) -> bool {
        matches!(self, Role::Compute | Role::All)
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "network" => Ok(Role::Network),
            "compute" => Ok(Role::Compute),
            "all" => Ok(Role::All),
            _ => Err(format!("role {s}: not one of {}", Role::NAMES.join(", "))),
        }
    }
}

/// A host as its agent registered it (`/qrouter/hosts/<name>`), and whether its lease lives
/// (`/qrouter/alive/<name>`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostInfo {
    pub name: String,
    pub role: Role,
    pub local_ip: Ipv4Addr,
    /// When the agent started (seconds since the epoch).
    pub started: u64,
    #[serde(default)]
    pub alive: bool,
    /// When its lease was last renewed (seconds since the epoch).
    #[serde(default)]
    pub last_seen: u64,
}
