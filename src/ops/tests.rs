//! The operations on the seed's desired state, without a store or a kernel: what each
//! refuses (exit 2, naming the object and the reason) and what it records.

use super::{floating_ip, instance, network, router, subnet, Outcome};
use crate::error::exit_code;
use crate::model::{ExtraRoute, State};

/// Run an operation as the session does: the change, then the floating IPs settled.
fn run(state: &mut State, op: impl FnOnce(&mut State) -> anyhow::Result<Outcome>) -> Outcome {
    let outcome = op(state).unwrap();
    state.settle_floating_ips().unwrap();
    outcome
}

/// An operation that must be refused as invalid input; its message.
fn refused(state: &State, op: impl FnOnce(&mut State) -> anyhow::Result<Outcome>) -> String {
    let mut copy = state.clone();
    let err = op(&mut copy)
        .and_then(|o| copy.settle_floating_ips().map(|_| o))
        .expect_err("refused");
    assert_eq!(exit_code(&err), 2, "{err:#}");
    format!("{err:#}")
}

fn net(state: &mut State, name: &str, external: bool) {
    let req = network::Create {
        name: name.into(),
        external,
        bridge: external.then(|| "br-ex".into()),
        ..Default::default()
    };
    run(state, |s| network::create(s, &req, &Default::default()));
}

fn sub(state: &mut State, name: &str, cidr: &str, gateway: subnet::Gateway) {
    let req = subnet::Create {
        ip_version: None,
        ipv6_ra_mode: None,
        ipv6_address_mode: None,
        meta: Default::default(),
        name: name.into(),
        network: name.into(),
        cidr: cidr.parse().unwrap(),
        gateway,
        pools: vec![],
        dhcp: None,
        dns_nameservers: vec![],
        host_routes: vec![],
    };
    run(state, |s| subnet::create(s, &req));
}

/// The seed: vlan100, vlan101, ext_net with its subnet, router_100_101 on both tenant
/// subnets with its gateway set, and cirros-vm3 at 172.16.101.3.
pub(crate) fn seed_state() -> State {
    let mut state = State::default();
    net(&mut state, "vlan100", false);
    net(&mut state, "vlan101", false);
    net(&mut state, "ext_net", true);
    sub(
        &mut state,
        "vlan100",
        "172.16.100.0/24",
        subnet::Gateway::Auto,
    );
    sub(
        &mut state,
        "vlan101",
        "172.16.101.0/24",
        subnet::Gateway::Auto,
    );
    let upstream = subnet::Gateway::Ip("10.10.10.1".parse().unwrap());
    let ext = subnet::Create {
        ip_version: None,
        ipv6_ra_mode: None,
        ipv6_address_mode: None,
        meta: Default::default(),
        name: "ext".into(),
        network: "ext_net".into(),
        cidr: "10.10.10.0/24".parse().unwrap(),
        gateway: upstream,
        pools: vec![],
        dhcp: None,
        dns_nameservers: vec![],
        host_routes: vec![],
    };
    run(&mut state, |s| subnet::create(s, &ext));
    let create = router::Create {
        ha: None,
        meta: Default::default(),
        name: "router_100_101".into(),
        gateway: None,
        snat: true,
        host: None,
    };
    run(&mut state, |s| router::create(s, &create));
    for subnet in ["vlan100", "vlan101"] {
        run(&mut state, |s| {
            router::add_interface(s, "router_100_101", subnet)
        });
    }
    let set = router::Set {
        router: "router_100_101".into(),
        gateway: Some(router::Gateway {
            network: "ext_net".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    run(&mut state, |s| router::set(s, &set));
    let vm = instance::Create {
        name: "cirros-vm3".into(),
        network: "vlan101".into(),
        fixed_ips: vec!["172.16.101.3".parse().unwrap()],
        dhcp: false,
        host: None,
    };
    run(&mut state, |s| instance::create(s, &vm));
    state
}

#[test]
fn the_seed_gateway_takes_the_first_pool_address() {
    let state = seed_state();
    let r = state.router("router_100_101").unwrap();
    let gw = state
        .port_by_id(r.gateway_port_id.as_deref().unwrap())
        .unwrap();
    assert_eq!(gw.fixed_ips[0].ip.to_string(), "10.10.10.2");
}

#[test]
fn router_operations_refuse_what_cannot_work() {
    let state = seed_state();
    let msg = refused(&state, |s| {
        router::add_interface(s, "router_100_101", "ext")
    });
    assert!(
        msg.contains("subnet ext: it is on external network ext_net"),
        "{msg}"
    );
    let msg = refused(&state, |s| {
        router::add_interface(s, "router_100_101", "vlan101")
    });
    assert!(
        msg.contains("already has an interface on subnet vlan101"),
        "{msg}"
    );
    let msg = refused(&state, |s| {
        router::delete(s, &["router_100_101".into()], false)
    });
    assert!(msg.contains("it still has interfaces"), "{msg}");
    let far = ExtraRoute {
        destination: "192.168.50.0/24".parse().unwrap(),
        nexthop: "192.168.1.1".parse().unwrap(),
    };
    let msg = refused(&state, |s| {
        router::edit_routes(s, "router_100_101", &[far], true)
    });
    assert!(
        msg.contains("not on any subnet the router is connected to"),
        "{msg}"
    );
    let msg = refused(&state, |s| router::add_interface(s, "no-such", "vlan100"));
    assert!(msg.contains("no-such"), "{msg}");
}

#[test]
fn networks_and_subnets_in_use_are_not_deleted() {
    let state = seed_state();
    let msg = refused(&state, |s| network::delete(s, &["vlan101".into()]));
    assert!(msg.contains("network vlan101: in use by"), "{msg}");
    let msg = refused(&state, |s| subnet::delete(s, &["vlan100".into()]));
    assert!(
        msg.contains("subnet vlan100: in use by router router_100_101"),
        "{msg}"
    );
    let overlap = subnet::Create {
        ip_version: None,
        ipv6_ra_mode: None,
        ipv6_address_mode: None,
        meta: Default::default(),
        name: "vlan101b".into(),
        network: "vlan101".into(),
        cidr: "172.16.101.128/25".parse().unwrap(),
        gateway: subnet::Gateway::Auto,
        pools: vec![],
        dhcp: None,
        dns_nameservers: vec![],
        host_routes: vec![],
    };
    let msg = refused(&state, |s| subnet::create(s, &overlap));
    assert!(msg.contains("overlaps subnet vlan101"), "{msg}");
}

#[test]
fn a_floating_ip_records_the_router_that_serves_it() {
    let mut state = seed_state();
    let req = floating_ip::Create {
        meta: Default::default(),
        network: "ext_net".into(),
        subnet: None,
        address: Some("10.10.10.3".parse().unwrap()),
        target: Some(floating_ip::Target::Instance("cirros-vm3".into())),
    };
    let made = run(&mut state, |s| floating_ip::create(s, &req));
    let router = state.router("router_100_101").unwrap().id.clone();
    assert_eq!(made.touched.routers, [router.clone()].into());
    let fip = floating_ip::find(&state, "10.10.10.3").unwrap();
    assert_eq!(fip.router_id.as_deref(), Some(router.as_str()));
    // The router can no longer leave the instance's subnet, nor lose its gateway.
    let msg = refused(&state, |s| {
        router::remove_interface(s, "router_100_101", "vlan101")
    });
    assert!(
        msg.contains("floating ip 10.10.10.3: it is associated through this router"),
        "{msg}"
    );
    let msg = refused(&state, |s| router::unset(s, "router_100_101"));
    assert!(msg.contains("floating ip 10.10.10.3"), "{msg}");
    // Unset, it serves nothing.
    run(&mut state, |s| floating_ip::disassociate(s, "10.10.10.3"));
    assert_eq!(
        floating_ip::find(&state, "10.10.10.3").unwrap().router_id,
        None
    );
}

/// A second SLAAC subnet on a network with DHCP: the DHCP port keeps the EUI-64 address it
/// holds on the first and takes its EUI-64 on the second (its MAC brings both).
#[test]
fn a_second_slaac_subnet_gives_the_dhcp_port_its_second_eui64_address() {
    let mut state = seed_state();
    for (name, cidr) in [("v6a", "2001:db8:101::/64"), ("v6b", "2001:db8:1011::/64")] {
        let req = subnet::Create {
            ip_version: None,
            ipv6_ra_mode: Some(crate::model::ipv6::Mode::Slaac),
            ipv6_address_mode: Some(crate::model::ipv6::Mode::Slaac),
            meta: Default::default(),
            name: name.into(),
            network: "vlan101".into(),
            cidr: cidr.parse().unwrap(),
            gateway: subnet::Gateway::Auto,
            pools: vec![],
            dhcp: None,
            dns_nameservers: vec![],
            host_routes: vec![],
        };
        run(&mut state, |s| subnet::create(s, &req));
    }
    let network = state.network("vlan101").unwrap().id.clone();
    let dhcp = state
        .ports
        .iter()
        .find(|p| p.network_id == network && p.role == crate::model::PortRole::Dhcp)
        .unwrap();
    let v6: Vec<String> = dhcp
        .fixed_ips
        .iter()
        .filter(|f| f.ip.is_ipv6())
        .map(|f| f.ip.to_string())
        .collect();
    let id = crate::model::ipv6::link_local(&dhcp.mac)
        .unwrap()
        .addr()
        .to_string();
    let id = id.trim_start_matches("fe80::");
    assert_eq!(
        v6,
        [
            format!("2001:db8:101:0:{id}"),
            format!("2001:db8:1011:0:{id}")
        ]
    );
}
