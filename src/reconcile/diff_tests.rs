use super::*;
use crate::model::{rules, rules_router};
use crate::reconcile::plan::Device;

fn link(index: u32, name: &str, up: bool) -> Link {
    Link {
        index,
        name: name.into(),
        mac: String::new(),
        up,
        oper_state: String::new(),
        controller: None,
        mtu: 1500,
        alias: None,
        kind: "veth".into(),
        peer: None,
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// The seed's router: qg- with 10.10.10.2/24 on br-ex, default via 10.10.10.1.
fn plan(gateway_device: &str, address: &str) -> Plan {
    Plan {
        vrrp: None,
        kind: Kind::Router,
        id: "r1".into(),
        namespace: "qrouter-r1".into(),
        devices: vec![Device {
            name: gateway_device.into(),
            tap: gateway_device.replace("qg-", "tap"),
            network_id: "ext".into(),
            bridge: "br-ex".into(),
            mac: "fa:16:3e:00:00:01".into(),
            addresses: vec![net(address)],
            mtu: None,
            up: true,
            tap_up: true,
            why_down: None,
        }],
        routes: vec![Route {
            destination: net("0.0.0.0/0"),
            via: vec!["10.10.10.1".parse().unwrap()],
            device: None,
        }],
        rules: vec![],
        lease: None,
        autoconf: vec![],
        ra_routes: vec![],
        sysctls: vec![],
        radvd: None,
    }
}

/// A kernel that holds exactly `plan("qg-a", "10.10.10.2/24")`.
fn in_sync() -> Observed {
    let mut tap = link(10, "tapa", true);
    tap.controller = Some(3);
    Observed {
        exists: true,
        links: vec![link(1, "lo", true), link(2, "qg-a", true)],
        addresses: vec![Address {
            link_index: 2,
            net: net("10.10.10.2/24"),
            permanent: true,
        }],
        routes: vec![route::Route {
            destination: net("0.0.0.0/0"),
            gateways: vec!["10.10.10.1".parse().unwrap()],
            oif: Some(2),
            scope: "global",
            protocol: "static",
        }],
        taps: [("tapa".to_string(), Some(tap))].into(),
        bridges: [("br-ex".to_string(), 3)].into(),
        ..Default::default()
    }
}

#[test]
fn a_kernel_that_matches_needs_no_step() {
    assert_eq!(diff(&plan("qg-a", "10.10.10.2/24"), &in_sync(), "s1"), []);
}

#[test]
fn a_device_set_down_is_set_up() {
    let mut seen = in_sync();
    seen.links[1].up = false;
    assert_eq!(
        diff(&plan("qg-a", "10.10.10.2/24"), &seen, "s1"),
        [Step::SetUp {
            device: "qg-a".into()
        }]
    );
}

#[test]
fn a_disabled_routers_devices_go_down_without_routes() {
    // `router set --disable`: the plan keeps devices and addresses, down, and no route.
    let mut disabled = plan("qg-a", "10.10.10.2/24");
    disabled.devices[0].up = false;
    disabled.routes.clear();
    let seen = in_sync();
    let steps = diff(&disabled, &seen, "s1");
    assert_eq!(
        steps,
        [
            Step::DeleteRoute(seen.routes[0].clone()),
            Step::SetDown {
                device: "qg-a".into()
            }
        ]
    );
    assert_eq!(
        steps[1].describe(&disabled),
        "qrouter-r1: set qg-a down (router disabled)"
    );
    // Once down (the kernel drops its routes), nothing differs.
    let mut down = in_sync();
    down.links[1].up = false;
    down.routes.clear();
    assert_eq!(diff(&disabled, &down, "s1"), []);
}

#[test]
fn a_tap_off_its_bridge_is_enslaved_again() {
    let mut seen = in_sync();
    let tap = seen.taps.get_mut("tapa").unwrap().as_mut().unwrap();
    tap.controller = None;
    let tap = tap.clone();
    let steps = diff(&plan("qg-a", "10.10.10.2/24"), &seen, "s1");
    assert_eq!(
        steps,
        [Step::Enslave {
            tap,
            bridge: "br-ex".into()
        }]
    );
    // On another bridge, or with br-ex made anew (another index), the same.
    seen.bridges.insert("br-ex".into(), 99);
    assert_eq!(diff(&plan("qg-a", "10.10.10.2/24"), &seen, "s1").len(), 1);
}

#[test]
fn sysctls_that_differ_are_set() {
    let mut seen = in_sync();
    seen.sysctls = vec!["net.ipv4.ip_forward".into()];
    assert_eq!(
        diff(&plan("qg-a", "10.10.10.2/24"), &seen, "s1"),
        [Step::SetSysctls(vec!["net.ipv4.ip_forward".into()])]
    );
}

#[test]
fn a_new_gateway_device_gets_the_default_route_back() {
    // The gateway port changed address: a new qg- replaces the old one, and the default
    // route through the old one goes with it.
    let steps = diff(&plan("qg-b", "10.10.10.200/24"), &in_sync(), "s1");
    let names: Vec<String> = steps
        .iter()
        .map(|s| s.describe(&plan("qg-b", "10.10.10.200/24")))
        .collect();
    assert_eq!(
        names,
        [
            "qrouter-r1: create veth qg-b (host end tapb on br-ex)",
            "qrouter-r1: delete stale device qg-a",
            "qrouter-r1: add address 10.10.10.200/24 to qg-b",
            "qrouter-r1: set qg-b up",
            "qrouter-r1: add route default via 10.10.10.1",
        ]
    );
}

#[test]
fn a_released_floating_ip_is_flushed_after_its_rules_change() {
    let mut seen = in_sync();
    seen.addresses.push(Address {
        link_index: 2,
        net: net("10.10.10.3/32"),
        permanent: true,
    });
    let mut nat = rules_router::RouterNat {
        gateway: Some((
            rules::IfName::new("qg-a").unwrap(),
            "10.10.10.2".parse().unwrap(),
        )),
        ..Default::default()
    };
    let mut plan = plan("qg-a", "10.10.10.2/24");
    plan.rules = rules_router::build(&nat);
    nat.floating.push((
        "10.10.10.3".parse().unwrap(),
        "172.16.101.3".parse().unwrap(),
    ));
    let before = rules_router::build(&nat);
    seen.rules = before.iter().map(|t| (t.key(), t.as_saved())).collect();
    let steps = diff(&plan, &seen, "s1");
    let order: Vec<&str> = steps
        .iter()
        .map(|s| match s {
            Step::DeleteAddress { .. } => "address",
            Step::UpdateRules(_) => "rules",
            Step::FlushConntrack(_) => "conntrack",
            _ => "other",
        })
        .collect();
    assert_eq!(order, ["address", "rules", "conntrack"]);
}

#[test]
fn a_missing_namespace_is_made_first_and_filled() {
    let p = plan("qg-a", "10.10.10.2/24");
    let steps = diff(&p, &Observed::default(), "s1");
    assert_eq!(steps[0], Step::CreateNamespace);
    assert!(steps.contains(&Step::AddRoute(p.routes[0].clone())));
    assert!(steps.contains(&Step::SetUp {
        device: "lo".into()
    }));
}

#[test]
fn a_dhcp_instance_runs_its_client_until_it_holds_the_lease() {
    // The plan holds no address: the lease's is the client's, neither added nor deleted.
    let mut p = plan("qg-a", "10.10.10.2/24");
    p.devices[0].addresses.clear();
    p.routes.clear();
    p.lease = Some(super::super::plan::Lease {
        device: "qg-a".into(),
        addresses: vec![net("10.10.10.2/24")],
        routes: vec![],
        options6: false,
    });
    let mut seen = in_sync();
    seen.routes.clear();
    assert_eq!(diff(&p, &seen, "s1"), []);
    seen.addresses.clear();
    let steps = diff(&p, &seen, "s1");
    assert_eq!(
        steps,
        [Step::RunDhcpClient {
            device: "qg-a".into(),
            v6: false,
        }]
    );
    assert_eq!(
        steps[0].describe(&p),
        "qrouter-r1: run udhcpc on qg-a (lease 10.10.10.2/24 from the network's dnsmasq)"
    );
}

#[test]
fn a_dhcpv6_stateless_instance_asks_for_its_options_once() {
    let mut p = plan("qg-a", "10.10.10.2/24");
    p.lease = Some(super::super::plan::Lease {
        device: "qg-a".into(),
        addresses: vec![],
        routes: vec![],
        options6: true,
    });
    let ask = Step::RequestDhcpv6Options {
        device: "qg-a".into(),
    };
    let mut seen = in_sync();
    assert_eq!(diff(&p, &seen, "s1"), std::slice::from_ref(&ask));
    assert_eq!(
        ask.describe(&p),
        "qrouter-r1: run dhclient -6 -S on qg-a (DNS server and domain from the network's dnsmasq)"
    );
    seen.dhcpv6_options = true;
    assert_eq!(diff(&p, &seen, "s1"), []);
    // A stateful address's client brings the options: no request of its own.
    seen.dhcpv6_options = false;
    let lease = p.lease.as_mut().unwrap();
    lease.addresses.push(net("2001:db8::5/128"));
    assert!(!diff(&p, &seen, "s1").contains(&ask));
}

#[test]
fn a_disabled_ports_tap_goes_down_and_waits_for_its_lease() {
    let mut p = plan("qg-a", "10.10.10.2/24");
    p.devices[0].tap_up = false;
    p.devices[0].why_down = Some("network ext is disabled".into());
    let steps = diff(&p, &in_sync(), "s1");
    let down = Step::SetTap {
        tap: "tapa".into(),
        up: false,
    };
    assert_eq!(steps, std::slice::from_ref(&down));
    assert_eq!(
        steps[0].describe(&p),
        "host: set tapa down (network ext is disabled)"
    );
    // A new veth comes with its tap up: set down right after.
    let mut missing = in_sync();
    missing.links.truncate(1);
    let steps = diff(&p, &missing, "s1");
    assert_eq!(
        &steps[..2],
        [
            Step::CreateVeth {
                device: "qg-a".into()
            },
            down
        ]
    );
    // No DHCP client behind a tap that is down: it would get no answer.
    p.lease = Some(super::super::plan::Lease {
        device: "qg-a".into(),
        addresses: vec![net("10.10.10.3/24")],
        routes: vec![],
        options6: false,
    });
    assert!(!diff(&p, &in_sync(), "s1").contains(&Step::RunDhcpClient {
        device: "qg-a".into(),
        v6: false,
    }));
}

#[test]
fn taps_left_by_a_namespace_being_destroyed_are_cleared_first() {
    // `ip netns del` behind qrouter's back: the namespace is gone, the kernel has yet to
    // remove its veths' host ends. Ours is deleted; another's is waited for while its
    // peer's namespace is being destroyed, and left to the apply to refuse otherwise.
    let plan = plan("qg-a", "10.10.10.2/24");
    let mut seen = Observed::default();
    let mut tap = link(10, "tapa", true);
    tap.alias = Some(naming::mark("s1", "r1"));
    seen.taps.insert("tapa".into(), Some(tap.clone()));
    let steps = diff(&plan, &seen, "s1");
    assert_eq!(
        steps[..3],
        [
            Step::CreateNamespace,
            Step::DeleteOrphanTap(tap),
            Step::CreateVeth {
                device: "qg-a".into()
            },
        ]
    );
    let steps = diff(&plan, &seen, "another store");
    assert_eq!(
        steps[1],
        Step::CreateVeth {
            device: "qg-a".into()
        }
    );
    seen.peer_gone.insert("tapa".into());
    let steps = diff(&plan, &seen, "another store");
    assert_eq!(steps[1], Step::AwaitTapRemoval("tapa".into()));
    assert_eq!(
        steps[1].describe(&plan),
        "host: wait for the kernel to remove tapa (its peer's namespace is being destroyed)"
    );
}

/// The seed's router as an HA copy: its address and default route keepalived's.
fn ha_copy() -> Plan {
    let mut p = plan("qg-a", "10.10.10.2/24");
    p.devices[0].addresses.clear();
    p.routes.clear();
    p.vrrp = Some(crate::model::ha::Vrrp {
        vrid: 1,
        interface: "ha-r1".into(),
        address: "169.254.192.1".parse().unwrap(),
        peers: vec!["169.254.192.2".parse().unwrap()],
        track: Some("qg-a".into()),
        addresses: vec![(net("10.10.10.2/24"), "qg-a".into())],
        routes: vec![crate::model::ha::VirtualRoute {
            destination: net("0.0.0.0/0"),
            via: Some("10.10.10.1".parse().unwrap()),
            device: None,
        }],
    });
    p
}

#[test]
fn an_ha_copy_leaves_its_addresses_and_routes_to_keepalived_and_keeps_it_running() {
    let plan = ha_copy();
    let vrrp = plan.vrrp.as_ref().unwrap();
    let config = vrrp.render(&keepalived::notify_command("r1"));
    let conntrackd = vrrp.render_conntrackd(&keepalived::dir("r1").to_string_lossy());
    // The master: it holds the address and the route; its keepalived and conntrackd run
    // as configured.
    let mut seen = in_sync();
    let running = keepalived::Seen {
        pid: Some(42),
        config: Some(config),
        conntrackd: Some(43),
        conntrackd_config: Some(conntrackd),
    };
    seen.keepalived = Some(running.clone());
    assert_eq!(diff(&plan, &seen, "s1"), []);
    // Its configuration is not the store's: rewritten and reloaded, nothing else.
    seen.keepalived.as_mut().unwrap().config = Some("old".into());
    assert_eq!(diff(&plan, &seen, "s1"), [Step::ReloadKeepalived(42)]);
    // Its keepalived is dead (a zombie copy keeps the addresses): started, which removes
    // them where it is not the master; the agent itself takes none away.
    seen.keepalived = Some(keepalived::Seen {
        pid: None,
        ..running.clone()
    });
    assert_eq!(diff(&plan, &seen, "s1"), [Step::StartKeepalived]);
    // Its conntrackd configured otherwise (or dead): restarted.
    seen.keepalived = Some(keepalived::Seen {
        conntrackd_config: Some("old".into()),
        ..running
    });
    assert_eq!(diff(&plan, &seen, "s1"), [Step::StartConntrackd]);
    // An address keepalived does not hold there is drift all the same.
    seen.addresses.push(Address {
        link_index: 2,
        net: net("10.10.10.9/24"),
        permanent: true,
    });
    assert!(matches!(
        diff(&plan, &seen, "s1")[0],
        Step::DeleteAddress { .. }
    ));
}

#[test]
fn a_router_that_is_no_ha_copy_here_stops_its_keepalived_first() {
    let mut seen = in_sync();
    seen.keepalived = Some(keepalived::Seen {
        pid: Some(42),
        config: Some("any".into()),
        ..Default::default()
    });
    let steps = diff(&plan("qg-a", "10.10.10.2/24"), &seen, "s1");
    assert_eq!(steps, [Step::StopKeepalived]);
}
