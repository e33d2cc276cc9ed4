//! Every key qrouter writes in etcd, built here and nowhere else (docs/multihost.md lists
//! them). Names that come from the store or the command line are validated before they
//! reach a key (`model::validate`), so a key never holds a `/` it was not built with.

use crate::model::protocol::{Kind, ObjectRef};

pub const ROOT: &str = "/qrouter/";
/// `state/<kind>/<id>`: one object, its JSON body.
pub const STATE: &str = "/qrouter/state/";
/// `state/ip/<subnet id>/<address>`: one allocated address, its owner.
pub const IPS: &str = "/qrouter/state/ip/";
/// The store's id, the owner in every ownership mark.
pub const ID: &str = "/qrouter/meta/id";
/// Every key of the write lock (and the bare key a qrouter before leases held it by).
pub const LOCK: &str = "/qrouter/lock";
/// `hosts/<host>`: a host as its agent registered it.
pub const HOSTS: &str = "/qrouter/hosts/";
/// `alive/<host>`: exists while the host's agent holds its lease.
pub const ALIVE: &str = "/qrouter/alive/";
/// `seen/<host>`: when the lease was last renewed.
pub const SEEN: &str = "/qrouter/seen/";
/// `status/<host>/<kind>/<id>`: what the agent reported for one object.
pub const STATUS: &str = "/qrouter/status/";
/// `applied/<host>`: the revision of the state the host's agent last converged.
pub const APPLIED: &str = "/qrouter/applied/";
/// `report/<host>`: what the agent reports of itself (`AgentReport`).
pub const REPORT: &str = "/qrouter/report/";
/// `ask/<host>/<id>`: a request to a host's agent, under the asker's lease.
pub const ASK: &str = "/qrouter/ask/";
/// `answer/<id>`: the agent's answer, under the same lease.
pub const ANSWER: &str = "/qrouter/answer/";

/// The key a writer holding `lease` takes the lock by (`lock.rs`).
pub fn lock(lease: i64) -> String {
    format!("{LOCK}/{lease:x}")
}

/// The key of an object (`kind` as `Object::KIND` names it).
pub fn object(kind: &str, id: &str) -> String {
    format!("{STATE}{}/{id}", kind.replace(' ', "_"))
}

/// The id of the object whose key is `key` (`state/<kind>/<id>`).
pub fn object_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(STATE)?;
    let (kind, id) = rest.split_once('/')?;
    (kind != "ip" && kind != "vni" && !id.is_empty()).then_some(id)
}

/// The key of an address allocated on a subnet.
pub fn address(subnet_id: &str, ip: impl std::fmt::Display) -> String {
    format!("{IPS}{subnet_id}/{ip}")
}

/// The key of a VXLAN segment.
pub fn segment(vni: u32) -> String {
    format!("{STATE}vni/{vni}")
}

pub fn host(name: &str) -> String {
    format!("{HOSTS}{name}")
}

pub fn alive(host: &str) -> String {
    format!("{ALIVE}{host}")
}

pub fn seen(host: &str) -> String {
    format!("{SEEN}{host}")
}

pub fn applied(host: &str) -> String {
    format!("{APPLIED}{host}")
}

pub fn report(host: &str) -> String {
    format!("{REPORT}{host}")
}

/// Every status a host's agent reported, as one prefix.
pub fn statuses(host: &str) -> String {
    format!("{STATUS}{host}/")
}

pub fn status(host: &str, object: &ObjectRef) -> String {
    format!("{STATUS}{host}/{}/{}", object.kind, object.id)
}

/// The host and object of a status key.
pub fn parse_status(key: &str) -> Option<(&str, ObjectRef)> {
    let rest = key.strip_prefix(STATUS)?;
    let (host, rest) = rest.split_once('/')?;
    let (kind, id) = rest.split_once('/')?;
    Some((host, ObjectRef::new(Kind::parse(kind)?, id)))
}

/// Every request to a host's agent, as one prefix.
pub fn asks(host: &str) -> String {
    format!("{ASK}{host}/")
}

pub fn ask(host: &str, id: &str) -> String {
    format!("{ASK}{host}/{id}")
}

pub fn answer(id: &str) -> String {
    format!("{ANSWER}{id}")
}

/// The name after `prefix` in `key` (a host's, for `alive/`, `hosts/`, `seen/`...).
pub fn name_in<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    key.strip_prefix(prefix).filter(|n| !n.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_keys_are_built_and_read_back() {
        let r = ObjectRef::new(Kind::Router, "0c0f04e1");
        let key = status("network1", &r);
        assert_eq!(key, "/qrouter/status/network1/router/0c0f04e1");
        assert_eq!(parse_status(&key), Some(("network1", r)));
        assert_eq!(parse_status("/qrouter/status/network1/nonsense/x"), None);
        assert_eq!(object("floating ip", "f1"), "/qrouter/state/floating_ip/f1");
        assert_eq!(object_id("/qrouter/state/router/r1"), Some("r1"));
        assert_eq!(object_id("/qrouter/state/ip/s1/10.0.0.1"), None);
        assert_eq!(object_id("/qrouter/hosts/h1"), None);
        assert_eq!(name_in(ALIVE, "/qrouter/alive/compute1"), Some("compute1"));
        assert_eq!(name_in(ALIVE, "/qrouter/alive/a/b"), None);
    }
}
