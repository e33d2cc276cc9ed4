//! The static trace over disabled objects: a device that is down passes nothing.

use std::rc::Rc;

use super::tests::{run, seed};
use super::trace::Outcome;
use crate::model::State;

#[test]
fn a_disabled_network_port_or_router_passes_nothing() {
    let dropped = |s: &State, why: &str| {
        let t = run(s, "vm100", "cirros-vm3");
        assert_eq!(t.outcome, Outcome::Dropped, "{why}");
        let notes = &t.hops.last().unwrap().notes;
        assert!(notes.iter().any(|n| n.contains(why)), "{notes:?}");
    };
    let mut s = seed();
    let n = s.networks.iter().position(|n| n.name == "vlan101").unwrap();
    Rc::make_mut(&mut s.networks[n]).meta.admin_state_up = false;
    dropped(&s, "(network vlan101 is disabled)");

    let mut s = seed();
    let vm = s.instances.iter().find(|i| i.name == "vm100").unwrap();
    let p = s.ports.iter().position(|p| p.id == vm.port_id).unwrap();
    Rc::make_mut(&mut s.ports[p]).meta.admin_state_up = false;
    dropped(&s, "is disabled), nothing passes it");

    let mut s = seed();
    Rc::make_mut(&mut s.routers[0]).meta.admin_state_up = false;
    dropped(&s, "router router_100_101 is disabled");
    // Dropped as it arrives at the router's qr-, down: nothing routed or translated there,
    // as the kernel has no route through a device that is down.
    let t = run(&s, "cirros-vm3", "10.10.10.1");
    let router = t.hops.last().unwrap();
    assert_eq!(router.node.kind, "router");
    assert_eq!(router.down.as_deref(), Some(super::tests::QR101));
    assert!(router.route.is_none() && router.rules.is_empty() && router.nat.is_empty());
    assert_eq!(
        run(&seed(), "vm100", "cirros-vm3").outcome,
        Outcome::Delivered
    );
}
