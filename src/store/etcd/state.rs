//! The desired state as etcd keys: each object its key and JSON body, each allocated address
//! and VXLAN segment a key of its own; read back with every object checked as the command
//! line checks input (`model::trust`), and what fails set aside (quarantined) rather than
//! failing the read: one corrupt key must not stop every command and every agent.

use std::collections::HashMap;
use std::rc::Rc;

use serde::{de::DeserializeOwned, Serialize};

use super::client::{Cmp, Kv, Op};
use super::{guard, keys};
use crate::model::protocol::Quarantined;
use crate::model::{trust, Object, State};

/// Record in `guards` and `ops` what differs between `old` and `new` of one kind: a new
/// object's key must not exist yet, a changed or deleted one must be as it was `read`.
pub(super) fn diff<T: Object + Serialize + Eq>(
    read: &HashMap<String, i64>,
    old: &[Rc<T>],
    new: &[Rc<T>],
    guards: &mut Vec<Cmp>,
    ops: &mut Vec<Op>,
) {
    let was: HashMap<&str, &Rc<T>> = old.iter().map(|o| (o.id(), o)).collect();
    let mut kept = std::collections::HashSet::new();
    for item in new {
        kept.insert(item.id());
        if was.get(item.id()) != Some(&item) {
            let key = keys::object(T::KIND, item.id());
            // A new object: its key must not exist.
            let rev = match was.contains_key(item.id()) {
                true => read.get(&key).copied().unwrap_or(0),
                false => 0,
            };
            guards.push(guard(&key, rev));
            ops.push(Op::Put {
                key,
                value: serde_json::to_vec(item.as_ref()).expect("model objects serialise"),
                lease: 0,
            });
        }
    }
    for id in was.keys().filter(|id| !kept.contains(*id)) {
        let key = keys::object(T::KIND, id);
        guards.push(guard(&key, read.get(&key).copied().unwrap_or(0)));
        ops.push(Op::Delete { key });
    }
}

/// One key per allocated address (and VXLAN segment), and who holds it.
pub(super) fn addresses(state: &State) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for p in &state.ports {
        for f in &p.fixed_ips {
            out.insert(keys::address(&f.subnet_id, f.ip), format!("port {}", p.id));
        }
    }
    for f in &state.floating_ips {
        out.insert(
            keys::address(&f.subnet_id, f.address),
            format!("floating_ip {}", f.id),
        );
    }
    // One key per VXLAN segment, likewise.
    for n in &state.networks {
        if let Some(vni) = n.vni {
            out.insert(keys::segment(vni), format!("network {}", n.id));
        }
    }
    out
}

/// The state from its keys (addresses and segments are read, not parsed), every key's mod
/// revision, and the keys set aside with the reason: a body that is not an object of its
/// kind, an id other than its key's, or an object that fails its checks.
pub(super) fn parse(kvs: Vec<Kv>) -> (State, HashMap<String, i64>, Vec<Quarantined>) {
    let mut read = HashMap::with_capacity(kvs.len());
    let mut objects = Vec::with_capacity(kvs.len());
    for kv in kvs {
        read.insert(kv.key.clone(), kv.mod_revision);
        if !kv.key.starts_with(keys::IPS) {
            objects.push(kv);
        }
    }
    // Creation order, as the SQLite store keeps it.
    objects.sort_by_key(|kv| kv.create_revision);
    let mut state = State::default();
    let mut quarantined = vec![];
    for kv in &objects {
        let rest = &kv.key[keys::STATE.len()..];
        let (kind, id) = rest.split_once('/').unwrap_or((rest, ""));
        let body = &kv.value;
        let parsed = match kind {
            "network" => push(&mut state.networks, id, body),
            "subnet" => push(&mut state.subnets, id, body),
            "router" => push(&mut state.routers, id, body),
            "port" => push(&mut state.ports, id, body),
            "instance" => push(&mut state.instances, id, body),
            "floating_ip" => push(&mut state.floating_ips, id, body),
            "vni" => Ok(()),
            _ => Err(format!("no kind of object is called {kind:?}")),
        };
        if let Err(reason) = parsed {
            quarantined.push(Quarantined {
                key: kv.key.clone(),
                reason,
            });
        }
    }
    let (state, rejected) = trust::admit(state);
    quarantined.extend(rejected.into_iter().map(|r| Quarantined {
        key: keys::object(r.kind, &r.id),
        reason: r.reason,
    }));
    (state, read, quarantined)
}

fn push<T: DeserializeOwned + Object>(
    items: &mut Vec<Rc<T>>,
    id: &str,
    body: &[u8],
) -> Result<(), String> {
    let item: T = serde_json::from_slice(body)
        .map_err(|e| format!("not a {} as qrouter writes it: {e}", T::KIND))?;
    if item.id() != id {
        return Err(format!("its body's id {:?} is not its key's", item.id()));
    }
    items.push(Rc::new(item));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, revision: i64) -> Kv {
        Kv {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            create_revision: revision,
            mod_revision: revision,
            lease: 0,
        }
    }

    #[test]
    fn a_corrupt_key_is_set_aside_and_the_rest_read() {
        let id = crate::model::new_id();
        let network = format!(
            r#"{{"id":"{id}","name":"web","external":false,"bridge":"brqweb","owns_bridge":true,"provider_interface":null,"mtu":null}}"#
        );
        let (state, read, quarantined) = parse(vec![
            kv(&format!("/qrouter/state/network/{id}"), &network, 5),
            kv("/qrouter/state/router/junk", "not json {", 6),
            kv("/qrouter/state/network/other", &network, 7),
        ]);
        assert_eq!(state.networks.len(), 1);
        assert_eq!(read.len(), 3);
        let keys: Vec<&str> = quarantined.iter().map(|q| q.key.as_str()).collect();
        assert_eq!(
            keys,
            ["/qrouter/state/router/junk", "/qrouter/state/network/other"]
        );
        assert!(
            quarantined[0].reason.starts_with("not a router"),
            "{quarantined:?}"
        );
        assert!(
            quarantined[1].reason.contains("not its key's"),
            "{quarantined:?}"
        );
    }
}
