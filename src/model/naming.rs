//! Kernel names, following Neutron's conventions so operators recognise them.
//! Every name is derived from a UUID, never from an operator-given name, so it is always
//! short enough (IFNAMSIZ) and safe in paths and iptables rules.

use super::{Port, PortRole};

/// Characters of a port or network id used in device names: "b8b32a88-03".
const ID_CHARS: usize = 11;

/// The router's namespace, as `ip netns` lists it.
pub fn router_namespace(router_id: &str) -> String {
    format!("qrouter-{router_id}")
}

/// The namespace of a test instance (a fake VM like cirros-vm3).
pub fn instance_namespace(instance_id: &str) -> String {
    format!("qinstance-{instance_id}")
}

/// The namespace of a network's DHCP server (dnsmasq), as Neutron names it.
pub fn dhcp_namespace(network_id: &str) -> String {
    format!("qdhcp-{network_id}")
}

/// The bridge of a network unless `--bridge` named one.
pub fn network_bridge(network_id: &str) -> String {
    format!("brq{}", short(network_id))
}

/// The namespace end of a port's veth: `qr-`/`qg-` in a router, `eth0` in an instance.
pub fn port_device(port: &Port) -> String {
    match port.role {
        PortRole::RouterInterface => format!("qr-{}", short(&port.id)),
        PortRole::RouterGateway => format!("qg-{}", short(&port.id)),
        PortRole::Instance => "eth0".to_string(),
        PortRole::Dhcp => format!("ns-{}", short(&port.id)),
        // The workload's own device is the tap: the VM or container plugs it.
        PortRole::Workload => port_tap(port),
    }
}

/// The host end of a port's veth, enslaved to the network's bridge.
pub fn port_tap(port: &Port) -> String {
    tap_of(&port.id)
}

/// The host end of the veth of the port whose id is `port_id`.
pub fn tap_of(port_id: &str) -> String {
    format!("tap{}", short(port_id))
}

/// The mark qrouter puts on every device it makes (the interface alias, which the kernel
/// keeps and `ip -d link` prints): which store made it, for which object. A host is shared
/// with other software, and a name pattern proves nothing; only marked devices, and
/// namespaces whose `lo` is marked, are ever deleted as orphans.
pub fn mark(store_id: &str, object_id: &str) -> String {
    format!("qrouter:{store_id}:{object_id}")
}

/// Whether `alias` is the mark of the store `store_id` (a store without an id owns nothing).
pub fn marked_by(alias: Option<&str>, store_id: &str) -> bool {
    !store_id.is_empty()
        && alias.is_some_and(|a| {
            a.strip_prefix("qrouter:")
                .and_then(|rest| rest.strip_prefix(store_id))
                .is_some_and(|rest| rest.starts_with(':'))
        })
}

/// The nf_tables table (bridge family) that holds the port security rules of the store
/// `store_id`: its name carries the store's id, so stores sharing a host never touch each
/// other's, and its comment carries the store's mark. None for an id that could not be
/// written into an nft batch safely (the id is read back from the store, which may be
/// shared: it is checked as operator input is).
pub fn port_security_table(store_id: &str) -> Option<(String, String)> {
    let safe = !store_id.is_empty()
        && store_id.len() <= 64
        && store_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    safe.then(|| {
        (
            format!("qrouter-{store_id}"),
            mark(store_id, "port-security"),
        )
    })
}

/// The object a mark of the store `store_id` names, if `alias` is one.
pub fn marked_for<'a>(alias: Option<&'a str>, store_id: &str) -> Option<&'a str> {
    let rest = alias?.strip_prefix("qrouter:")?.strip_prefix(store_id)?;
    rest.strip_prefix(':').filter(|_| !store_id.is_empty())
}

fn short(id: &str) -> &str {
    &id[..ID_CHARS.min(id.len())]
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_this_stores_mark_proves_ownership() {
        let m = super::mark("s1", "r1");
        assert_eq!(m, "qrouter:s1:r1");
        assert!(super::marked_by(Some(&m), "s1"));
        assert!(!super::marked_by(Some(&m), "s"));
        assert!(!super::marked_by(Some(&m), ""));
        assert!(!super::marked_by(Some("qrouter:s2:r1"), "s1"));
        assert!(!super::marked_by(None, "s1"));
        assert_eq!(super::marked_for(Some(&m), "s1"), Some("r1"));
        assert_eq!(super::marked_for(Some(&m), "s"), None);
    }

    use super::*;

    #[test]
    fn the_port_security_table_carries_the_store() {
        let (name, comment) = port_security_table("1b4e28ba-2fa1").unwrap();
        assert_eq!(name, "qrouter-1b4e28ba-2fa1");
        assert!(marked_by(Some(&comment), "1b4e28ba-2fa1"));
        assert!(port_security_table("").is_none());
        assert!(port_security_table("a\"; flush ruleset").is_none());
    }

    fn port(id: &str, role: PortRole) -> Port {
        crate::model::fixtures::port(id, "", role, "", "", "")
    }

    #[test]
    fn names_match_the_seed() {
        let gw = port(
            "b8b32a88-0305-4a4e-9d07-1c1f0ad6b5a1",
            PortRole::RouterGateway,
        );
        assert_eq!(port_device(&gw), "qg-b8b32a88-03");
        assert_eq!(port_tap(&gw), "tapb8b32a88-03");
        let qr = port(
            "e17162c5-00aa-4bbb-8ccc-123456789abc",
            PortRole::RouterInterface,
        );
        assert_eq!(port_device(&qr), "qr-e17162c5-00");
        assert_eq!(port_device(&port("x", PortRole::Instance)), "eth0");
        assert_eq!(
            network_bridge("d568ba1a-74ab-4000-8000-000000000000"),
            "brqd568ba1a-74"
        );
        assert_eq!(
            router_namespace("0c0f04e1-6e4a-4bd5-9cd4-ec0e7a0e2f6a"),
            "qrouter-0c0f04e1-6e4a-4bd5-9cd4-ec0e7a0e2f6a"
        );
    }

    #[test]
    fn device_names_fit_ifnamsiz() {
        let id = super::super::new_id();
        for role in [PortRole::RouterInterface, PortRole::RouterGateway] {
            let p = port(&id, role);
            assert_eq!(port_device(&p).len(), 14);
            assert_eq!(port_tap(&p).len(), 14);
        }
        assert_eq!(network_bridge(&id).len(), 14);
    }
}
