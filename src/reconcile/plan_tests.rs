use super::*;
use crate::model::{fixtures, ipam, Network, PortRole, Router, State, Subnet};

fn seed() -> State {
    let net = |id: &str, name: &str, external: bool| match external {
        true => Network {
            external,
            bridge: "br-ex".into(),
            ..fixtures::network(id, name)
        },
        false => fixtures::network(id, name),
    };
    let subnet = fixtures::subnet;
    let port = |id: &str, net: &str, role, subnet: &str, ip: &str| {
        fixtures::port(id, net, role, "r1", subnet, ip)
    };
    State {
        positions: Default::default(),
        networks: vec![
            net("n-ext", "ext_net", true).into(),
            net("n101-0000-0000", "vlan101", false).into(),
        ],
        subnets: vec![
            subnet("s-ext", "n-ext", "10.10.10.0/24").into(),
            subnet("s101", "n101-0000-0000", "172.16.101.0/24").into(),
        ],
        routers: vec![Router {
            gateway_port_id: Some("b8b32a88-0305".into()),
            ..fixtures::router("r1", "router_100_101")
        }
        .into()],
        ports: vec![
            port(
                "b8b32a88-0305",
                "n-ext",
                PortRole::RouterGateway,
                "s-ext",
                "10.10.10.2",
            )
            .into(),
            port(
                "e17162c5-00aa",
                "n101-0000-0000",
                PortRole::RouterInterface,
                "s101",
                "172.16.101.1",
            )
            .into(),
        ],
        instances: vec![],
        floating_ips: vec![],
    }
}

#[test]
fn seed_router_plan() {
    let state = seed();
    let plan = router_plan(&state, &state.routers[0]);
    assert_eq!(plan.namespace, "qrouter-r1");
    let names: Vec<_> = plan
        .devices
        .iter()
        .map(|d| (d.name.as_str(), d.tap.as_str(), d.bridge.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("qg-b8b32a88-03", "tapb8b32a88-03", "br-ex"),
            ("qr-e17162c5-00", "tape17162c5-00", "brqn101-0000-0")
        ]
    );
    assert_eq!(
        plan.devices[0].addresses,
        ["10.10.10.2/24".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        plan.devices[1].addresses,
        ["172.16.101.1/24".parse::<IpNet>().unwrap()]
    );
    assert_eq!(plan.routes.len(), 1);
    assert_eq!(plan.routes[0].to_string(), "default via 10.10.10.1");
    let snat = &plan.rules[0]
        .chains
        .iter()
        .find(|(c, _)| c == "qrouter-snat")
        .unwrap()
        .1;
    assert_eq!(
        snat.last().unwrap().to_string(),
        "-o qg-b8b32a88-03 -j SNAT --to-source 10.10.10.2 --random-fully"
    );
}

#[test]
fn extra_routes_to_one_destination_make_one_multipath_route() {
    let mut state = seed();
    let r = std::rc::Rc::make_mut(&mut state.routers[0]);
    for via in ["10.10.10.6", "10.10.10.5"] {
        r.routes.push(crate::model::ExtraRoute {
            destination: "8.8.8.0/24".parse().unwrap(),
            nexthop: via.parse().unwrap(),
        });
    }
    let plan = router_plan(&state, &state.routers[0]);
    let routes: Vec<String> = plan.routes.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        routes,
        [
            "default via 10.10.10.1",
            "8.8.8.0/24 via 10.10.10.5, 10.10.10.6"
        ]
    );
}

#[test]
fn other_subnets_of_the_external_network_are_on_link() {
    let mut state = seed();
    let cidr: IpNet = "9.4.5.0/24".parse().unwrap();
    state.subnets.push(
        Subnet {
            name: "x".into(),
            gateway: None,
            pools: ipam::default_pools(cidr, None),
            ..fixtures::subnet("s-ext2", "n-ext", "9.4.5.0/24")
        }
        .into(),
    );
    let plan = router_plan(&state, &state.routers[0]);
    let routes: Vec<String> = plan.routes.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        routes,
        [
            "default via 10.10.10.1",
            "9.4.5.0/24 dev qg-b8b32a88-03 scope link"
        ]
    );
}

#[test]
fn router_without_gateway_has_no_default_route_and_no_nat() {
    let mut state = seed();
    std::rc::Rc::make_mut(&mut state.routers[0]).gateway_port_id = None;
    let plan = router_plan(&state, &state.routers[0]);
    assert_eq!(plan.devices.len(), 1);
    assert!(plan.routes.is_empty());
    assert!(plan
        .rules
        .iter()
        .flat_map(|t| &t.chains)
        .all(|(_, r)| r.is_empty()));
}

#[test]
fn a_disabled_network_or_port_has_its_taps_down_and_nothing_else_changed() {
    let mut state = seed();
    let enabled = router_plan(&state, &state.routers[0]);
    assert!(enabled.devices.iter().all(|d| d.tap_up && d.up));
    std::rc::Rc::make_mut(&mut state.networks[1])
        .meta
        .admin_state_up = false;
    let plan = router_plan(&state, &state.routers[0]);
    let taps: Vec<_> = plan
        .devices
        .iter()
        .map(|d| (d.tap_up, d.why_down.as_deref()))
        .collect();
    assert_eq!(
        taps,
        [(true, None), (false, Some("network vlan101 is disabled"))]
    );
    // The namespace ends, their addresses, routes and rules stay as they were.
    let same = |a: &Plan, b: &Plan| {
        a.devices
            .iter()
            .zip(&b.devices)
            .all(|(x, y)| x.up == y.up && x.addresses == y.addresses)
            && a.routes == b.routes
            && a.rules == b.rules
    };
    assert!(same(&plan, &enabled));
    let mut state = seed();
    std::rc::Rc::make_mut(&mut state.ports[0])
        .meta
        .admin_state_up = false;
    let plan = router_plan(&state, &state.routers[0]);
    assert!(!plan.devices[0].tap_up && plan.devices[1].tap_up);
}
