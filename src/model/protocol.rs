//! What the command line and the hosts' agents say to each other through etcd, as data:
//! the status an agent reports for each object it converges, the report of the agent
//! itself, the requests a command makes of an agent (`router show`, `sync`, an instance's
//! lease) and their replies. Serialised with serde, tagged: nothing is built or split by
//! hand on either side. The keys they travel under are built in `store::etcd::keys`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The kinds of object an agent reports on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Router,
    Instance,
    /// A network whose DHCP server (dnsmasq) runs on the host.
    Network,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Router, Kind::Instance, Kind::Network];

    /// As keys and messages spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Router => "router",
            Kind::Instance => "instance",
            Kind::Network => "network",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object an agent converges.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub kind: Kind,
    pub id: String,
}

impl ObjectRef {
    pub fn new(kind: Kind, id: impl Into<String>) -> ObjectRef {
        ObjectRef {
            kind,
            id: id.into(),
        }
    }
}

/// Where an object stands, as `show` and `list` print it (Neutron's status values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Condition {
    /// Converged: the kernel matches the store.
    Active,
    /// Its agent could not converge it: the reason says why and what differs.
    Error,
    /// Its host's agent is away (no lease).
    Down,
    /// Placed on a live host whose agent has not reported it yet.
    Pending,
    /// Placed on no host yet.
    Build,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Active => "ACTIVE",
            Condition::Error => "ERROR",
            Condition::Down => "DOWN",
            Condition::Pending => "PENDING",
            Condition::Build => "BUILD",
        }
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an agent reported for one object (`status/<host>/<kind>/<id>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub state: Condition,
    /// Why it is not ACTIVE (the kernel's error, what differs); empty when it is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The revision of the desired state at which it was found so (an agent writes a status
    /// when it changes, not at every pass).
    pub revision: i64,
    /// When (seconds since the epoch, the agent's clock: for people, never compared).
    pub at: u64,
    /// An HA router's copy on the host: what keepalived made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<super::ha::HaState>,
}

impl Status {
    pub fn active(revision: i64) -> Status {
        Status {
            state: Condition::Active,
            reason: String::new(),
            revision,
            at: unix_now(),
            ha: None,
        }
    }

    pub fn error(reason: impl Into<String>, revision: i64) -> Status {
        Status {
            state: Condition::Error,
            reason: reason.into(),
            revision,
            at: unix_now(),
            ha: None,
        }
    }

    pub fn is_error(&self) -> bool {
        self.state == Condition::Error
    }
}

/// A key read from the store that was skipped because it does not parse or does not pass
/// the validation the command line applies to the same input: the key and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for Quarantined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// What an agent reports of itself (`report/<host>`), when it changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentReport {
    /// When it was written (seconds since the epoch).
    pub at: u64,
    /// What it skipped of what it read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantined: Vec<Quarantined>,
}

/// Who holds a host's lease (`alive/<host>`): the agent's process and where it runs, so
/// that a second agent for the same host is refused with the holder's details, and an
/// agent restarted on the same host tells its killed predecessor's lease from a live one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// The machine's boot and the agent's network namespace (`kernel::identity::here`).
    pub identity: String,
    pub hostname: String,
    pub local_ip: std::net::Ipv4Addr,
    /// When it started (seconds since the epoch).
    pub started: u64,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on machine {}, underlay {}, started {} s ago",
            self.pid,
            self.hostname,
            self.local_ip,
            unix_now().saturating_sub(self.started)
        )
    }
}

/// A request to a host's agent (`ask/<host>/<id>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Request {
    /// `router show`: the router's live views, as `router show` renders them on one host.
    RouterShow { router: String },
    /// `sync`: a full sync of the host's part, or with `dry_run` its drift.
    Sync { dry_run: bool },
    /// `instance show`: what the instance's DHCP client last got (its lease file there).
    InstanceLease { instance: String },
}

/// A request as written: where its answer goes (`answer/<id>`) and the asker's lease,
/// under which the answer is written so that it goes with the asker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    pub id: String,
    pub lease: i64,
    #[serde(flatten)]
    pub request: Request,
}

/// A titled table of a router's live views (Interfaces, Routes, NAT...), as the agent
/// rendered it from its kernel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveView {
    pub title: String,
    pub key: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// What one host's agent did for `sync`, or with `--dry-run` would do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// One line per kernel change.
    pub done: Vec<String>,
    /// Look-alikes left alone (named like qrouter's, without this store's mark).
    pub foreign: Vec<String>,
    /// The first object it failed to converge, and why.
    pub error: Option<String>,
    /// What it skipped of what it read from the store.
    #[serde(default)]
    pub quarantined: Vec<Quarantined>,
}

/// An agent's answer (`answer/<id>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Reply {
    RouterShow {
        /// "in sync", or how many differences.
        summary: String,
        views: Vec<LiveView>,
    },
    Sync(SyncReport),
    /// The lease file's fields; empty when the client got none yet.
    InstanceLease {
        lease: BTreeMap<String, String>,
    },
    /// The request could not be answered there (the router is not on that host, the
    /// kernel could not be read).
    Failed {
        error: String,
    },
}

/// Seconds since the epoch, for the `at` of what agents write.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_round_trip_tagged() {
        let ask = Ask {
            id: "a1".into(),
            lease: 7,
            request: Request::RouterShow {
                router: "r1".into(),
            },
        };
        let text = serde_json::to_string(&ask).unwrap();
        assert_eq!(
            text,
            r#"{"id":"a1","lease":7,"what":"router_show","router":"r1"}"#
        );
        assert_eq!(serde_json::from_str::<Ask>(&text).unwrap(), ask);
        let reply = Reply::Sync(SyncReport {
            done: vec!["x".into()],
            ..Default::default()
        });
        let text = serde_json::to_string(&reply).unwrap();
        assert!(text.starts_with(r#"{"what":"sync","done":["x"]"#), "{text}");
        assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), reply);
        // Garbage is an error, never a default request.
        assert!(serde_json::from_str::<Ask>(r#"{"id":"a","lease":1,"what":"rm -rf"}"#).is_err());
    }

    #[test]
    fn a_status_is_typed_not_a_string_to_split() {
        let s = Status::error("router r1: cannot add address: File exists", 42);
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains(r#""state":"ERROR""#), "{text}");
        let back: Status = serde_json::from_str(&text).unwrap();
        assert_eq!(back.reason, "router r1: cannot add address: File exists");
        assert!(back.is_error());
        let ok: Status = serde_json::from_str(r#"{"state":"ACTIVE","revision":3,"at":0}"#).unwrap();
        assert_eq!((ok.state, ok.reason.as_str()), (Condition::Active, ""));
    }
}
