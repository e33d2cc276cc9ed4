//! `port set` and the admin states on the seed's desired state: what is refused (exit 2)
//! and which objects a change converges.

use super::tests::seed_state;
use super::{network, port, MetaEdit, Outcome};
use crate::error::exit_code;
use crate::model::{Meta, PortRole, State};

fn refused(state: &State, req: &port::Set) -> String {
    let err = port::set(&mut state.clone(), req).expect_err("refused");
    assert_eq!(exit_code(&err), 2, "{err:#}");
    format!("{err:#}")
}

fn set(port: &str) -> port::Set {
    port::Set {
        port: port.into(),
        ..Default::default()
    }
}

fn disable() -> MetaEdit {
    MetaEdit {
        admin_state_up: Some(false),
        ..Default::default()
    }
}

#[test]
fn port_set_changes_only_what_the_port_may_change() {
    let mut s = seed_state();
    let create = port::Create {
        name: "web1".into(),
        network: "vlan101".into(),
        fixed_ips: vec![],
        mac: None,
        meta: Meta::new(),
        host: None,
        port_security: None,
        allowed_addresses: vec![],
    };
    port::create(&mut s, &create).unwrap();
    let qr = s.ports.iter().find(|p| p.role == PortRole::RouterInterface);
    let qr = qr.unwrap().id.clone();
    let mac = |p: &str, mac: &str| port::Set {
        mac: Some(mac.into()),
        ..set(p)
    };
    let err = refused(&s, &mac(&qr, "12:22:33:44:55:66"));
    assert!(
        err.contains("are those of router router_100_101's device"),
        "{err}"
    );
    assert!(refused(&s, &mac("web1", "11:22:33:44:55:66")).contains("multicast"));
    let none = port::Set {
        no_fixed_ip: true,
        ..set("web1")
    };
    assert!(refused(&s, &none).contains("port web1: a port needs a fixed IP"));
    let take = |ip: &str| port::Set {
        add_fixed_ips: vec![(None, Some(ip.parse().unwrap()))],
        no_fixed_ip: true,
        ..set("web1")
    };
    assert!(refused(&s, &take("172.16.101.3")).contains("172.16.101.3 is already in use"));
    // Its own address is free again once dropped.
    let own = s.port("web1").unwrap().fixed_ips[0].ip.to_string();
    port::set(&mut s, &take(&own)).unwrap();
    assert_eq!(s.port("web1").unwrap().fixed_ips[0].ip.to_string(), own);
    let rename = port::Set {
        name: Some("web2".into()),
        ..set("web1")
    };
    port::set(&mut s, &rename).unwrap();
    assert_eq!(s.port("web2").unwrap().meta.revision_number, 2);
}

#[test]
fn enabling_or_disabling_converges_the_devices_owners() {
    let mut s = seed_state();
    let router = s.routers[0].id.clone();
    let vm = s.instances[0].id.clone();
    let qr = s.ports.iter().find(|p| p.role == PortRole::RouterInterface);
    let req = port::Set {
        meta: disable(),
        ..set(&qr.unwrap().id.clone())
    };
    let out: Outcome = port::set(&mut s, &req).unwrap();
    assert!(out.touched.routers.contains(&router));
    // vlan101 holds a router interface and cirros-vm3: both converge.
    let req = network::Set {
        network: "vlan101".into(),
        meta: disable(),
        ..Default::default()
    };
    let out = network::set(&mut s, &req).unwrap();
    assert!(out.touched.routers.contains(&router) && out.touched.instances.contains(&vm));
    let cirros = s.instances[0].port_id.clone();
    let why = s.port_down_because(s.port_by_id(&cirros).unwrap());
    assert_eq!(why.as_deref(), Some("network vlan101 is disabled"));
    // A description alone converges nothing but the network's DHCP files.
    let req = network::Set {
        network: "vlan101".into(),
        meta: MetaEdit {
            description: Some("x".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let out = network::set(&mut s, &req).unwrap();
    assert!(out.touched.routers.is_empty() && out.touched.instances.is_empty());
}
