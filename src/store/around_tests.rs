use super::*;
use crate::model::fixtures;
use crate::reconcile::router_plan;
use crate::store::{Reads, Sqlite};

/// ext_net with the routers' gateways, an upstream instance and floating IPs; r1 on a and
/// b, with an instance on a that has a floating IP; r2 on c; r3 with no gateway, on d.
fn world() -> State {
    let net = |id: &str, external| Network {
        external,
        bridge: format!("br-{id}"),
        ..fixtures::network(id, id)
    };
    let subnet = |id: &str, net: &str, cidr: &str| Subnet {
        gateway: None,
        pools: vec![],
        ..fixtures::subnet(id, net, cidr)
    };
    let port = |id: &str, role, device: &str, subnet: &str, ip: &str| {
        let network = format!("n{}", &subnet[1..]);
        fixtures::port(id, &network, role, device, subnet, ip)
    };
    let router = |id: &str, gateway: Option<&str>| Router {
        gateway_port_id: gateway.map(Into::into),
        ..fixtures::router(id, id)
    };
    let fip = |id: &str, address: &str, port: Option<&str>| FloatingIp {
        id: id.into(),
        network_id: "next".into(),
        subnet_id: "sext".into(),
        address: address.parse().unwrap(),
        port_id: port.map(Into::into),
        router_id: None,
        meta: Default::default(),
    };
    use PortRole::*;
    State {
        positions: Default::default(),
        networks: ["next", "na", "nb", "nc", "nd"]
            .map(|n| net(n, n == "next").into())
            .into(),
        subnets: vec![
            subnet("sext", "next", "10.10.0.0/16").into(),
            // No port on it: an on-link route of each router with its gateway on next.
            subnet("sext2", "next", "9.4.5.0/24").into(),
            subnet("sa", "na", "172.16.1.0/24").into(),
            subnet("sb", "nb", "172.16.2.0/24").into(),
            subnet("sc", "nc", "172.16.3.0/24").into(),
            subnet("sd", "nd", "172.16.4.0/24").into(),
        ],
        routers: vec![
            router("r1", Some("p1g")).into(),
            router("r2", Some("p2g")).into(),
            router("r3", None).into(),
        ],
        ports: vec![
            port("pup", Instance, "up", "sext", "10.10.10.1").into(),
            port("p1g", RouterGateway, "r1", "sext", "10.10.10.2").into(),
            port("p1a", RouterInterface, "r1", "sa", "172.16.1.1").into(),
            port("p1b", RouterInterface, "r1", "sb", "172.16.2.1").into(),
            port("p2g", RouterGateway, "r2", "sext", "10.10.10.3").into(),
            port("p2c", RouterInterface, "r2", "sc", "172.16.3.1").into(),
            port("p3d", RouterInterface, "r3", "sd", "172.16.4.1").into(),
            port("pi1", Instance, "i1", "sa", "172.16.1.10").into(),
        ],
        instances: vec![
            crate::model::Instance {
                id: "up".into(),
                name: "up".into(),
                port_id: "pup".into(),
                dhcp: false,
                host: None,
            }
            .into(),
            crate::model::Instance {
                id: "i1".into(),
                name: "i1".into(),
                port_id: "pi1".into(),
                dhcp: false,
                host: None,
            }
            .into(),
        ],
        floating_ips: vec![
            fip("f1", "10.10.20.1", Some("pi1")).into(),
            fip("f2", "10.10.20.2", None).into(),
        ],
    }
}

fn ids<T: Object>(items: &[Rc<T>]) -> Vec<&str> {
    items.iter().map(|o| o.id()).collect()
}

/// `world()` in a new store in its own directory (`name`).
fn stored_world(name: &str) -> (std::path::PathBuf, Sqlite, State) {
    let dir = std::env::temp_dir().join(format!("qrouter-{name}-{}", std::process::id()));
    let mut store = Sqlite::open(&dir).unwrap();
    let whole = world();
    let (txn, old) = store.begin().unwrap();
    txn.save(&old, &whole).unwrap();
    txn.commit(&Rc::new(whole.clone())).unwrap();
    (dir, store, whole)
}

fn read_state(store: &mut Sqlite, around: Around) -> State {
    (*store.load_only(&Reads::Around(around)).unwrap()).clone()
}

/// Router `id`'s plan, as text to compare.
fn plan(state: &State, id: &str) -> String {
    format!("{:?}", router_plan(state, state.router_by_id(id).unwrap()))
}

#[test]
fn a_router_is_read_with_what_its_commands_need_and_nothing_else() {
    let (dir, mut store, whole) = stored_world("around");
    let read = |store: &mut Sqlite, routers: &[&str], subnets: &[&str], networks: &[&str]| {
        let ids = |keys: &[&str]| keys.iter().map(|s| s.to_string()).collect();
        let around = Around {
            routers: ids(routers),
            subnets: ids(subnets),
            networks: ids(networks),
            ..Default::default()
        };
        read_state(store, around)
    };

    // Each router's plan, floating IPs included, is the one the whole store gives.
    for r in &whole.routers {
        let part = read(&mut store, &[&r.id], &[], &[]);
        assert_eq!(plan(&part, &r.id), plan(&whole, &r.id), "router {}", r.id);
        part.clone().settle_floating_ips().unwrap();
    }

    let r1 = read(&mut store, &["r1"], &[], &[]);
    assert_eq!(ids(&r1.routers), ["r1"]);
    assert_eq!(ids(&r1.networks), ["next", "na", "nb"]);
    assert_eq!(ids(&r1.ports), ["p1g", "p1a", "p1b", "pi1"]);
    assert_eq!(ids(&r1.instances), ["i1"]);
    assert_eq!(ids(&r1.floating_ips), ["f1"]);

    // Joining ext_net reads every address on it, and what serves its floating IPs.
    let r3 = read(&mut store, &["r3"], &[], &["next"]);
    assert_eq!(ids(&r3.routers), ["r1", "r3"]);
    assert_eq!(ids(&r3.ports), ["pup", "p1g", "p1a", "p2g", "p3d", "pi1"]);
    assert_eq!(ids(&r3.floating_ips), ["f1", "f2"]);
    assert_eq!(
        r3.used_addresses(r3.subnet("sext").unwrap()),
        whole.used_addresses(whole.subnet("sext").unwrap())
    );
    r3.clone().settle_floating_ips().unwrap();

    // Joining a subnet reads the ports on it and their owners.
    let r3c = read(&mut store, &["r3"], &["sc"], &[]);
    assert_eq!(ids(&r3c.routers), ["r2", "r3"]);
    assert_eq!(ids(&r3c.ports), ["p2g", "p2c", "p3d"]);

    // A subnet named is expanded even when a port of the router read it first.
    let r1ext = read(&mut store, &["r1"], &["sext"], &[]);
    assert_eq!(ids(&r1ext.ports)[..3], ["pup", "p1g", "p1a"]);
    assert!(ids(&r1ext.ports).contains(&"p2g"));

    // A name to check reads the objects of that name, and what they refer to.
    let around = Around {
        names: vec![(Router::KIND, "r2".into()), (Subnet::KIND, "sa".into())],
        ..Default::default()
    };
    let named = store.load_only(&Reads::Around(around)).unwrap();
    assert_eq!(ids(&named.routers), ["r2"]);
    assert_eq!(ids(&named.subnets), ["sext", "sa"]);
    assert_eq!(ids(&named.ports), ["p2g"]);
    assert_eq!(ids(&named.networks), ["next", "na"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_instance_is_read_with_the_router_that_serves_it() {
    let (dir, mut store, whole) = stored_world("around-instance");
    // First read: the instance, its network and ext_net; the serving router is found.
    let first = read_state(
        &mut store,
        Around {
            networks: vec!["next".into()],
            instances: vec!["i1".into()],
            ..Default::default()
        },
    );
    assert_eq!(first.router_for_floating_ip("next", "sa"), Some("r1"));
    assert_eq!(
        first.router_for_floating_ip("next", "sa"),
        whole.router_for_floating_ip("next", "sa")
    );
    // Then with that router whole: its plan, the addresses on ext_net and the floating IPs
    // already on the instance's port are those of the whole store.
    let part = read_state(
        &mut store,
        Around {
            routers: vec!["r1".into()],
            networks: vec!["next".into()],
            instances: vec!["i1".into()],
            ..Default::default()
        },
    );
    assert_eq!(plan(&part, "r1"), plan(&whole, "r1"));
    assert_eq!(
        part.used_addresses(part.subnet("sext").unwrap()),
        whole.used_addresses(whole.subnet("sext").unwrap())
    );
    let on_port = |s: &State| -> Vec<String> {
        s.floating_ips
            .iter()
            .filter(|f| f.port_id.as_deref() == Some("pi1"))
            .map(|f| f.id.clone())
            .collect()
    };
    assert_eq!(on_port(&part), on_port(&whole));
    part.clone().settle_floating_ips().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_floating_ip_is_read_with_the_router_that_serves_it() {
    let (dir, mut store, whole) = stored_world("around-fip");
    // First read: f1 and its port's network; the router serving it is found.
    let first = read_state(
        &mut store,
        Around {
            floating_ips: vec!["f1".into()],
            ..Default::default()
        },
    );
    assert_eq!(first.router_for_floating_ip("next", "sa"), Some("r1"));
    // Then with that router whole: with or without f1, its plan is the whole store's.
    let part = read_state(
        &mut store,
        Around {
            routers: vec!["r1".into()],
            floating_ips: vec!["f1".into()],
            ..Default::default()
        },
    );
    assert_eq!(plan(&part, "r1"), plan(&whole, "r1"));
    let without_f1 = |s: &State| {
        let mut s = s.clone();
        s.floating_ips.retain(|f| f.id != "f1");
        s
    };
    assert_eq!(
        plan(&without_f1(&part), "r1"),
        plan(&without_f1(&whole), "r1")
    );
    part.clone().settle_floating_ips().unwrap();
    // An unassociated one with the instance it is to go to: the same router is found.
    let set = read_state(
        &mut store,
        Around {
            floating_ips: vec!["f2".into()],
            instances: vec!["i1".into()],
            ..Default::default()
        },
    );
    assert_eq!(set.router_for_floating_ip("next", "sa"), Some("r1"));
    assert_eq!(ids(&set.floating_ips), ["f1", "f2"]);
    // An address is an exact key too.
    assert_eq!(
        store.floating_ip_id("10.10.20.1").unwrap().as_deref(),
        Some("f1")
    );
    assert_eq!(store.floating_ip_id("f2").unwrap().as_deref(), Some("f2"));
    assert_eq!(store.floating_ip_id("10.10.20").unwrap(), None);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_network_is_read_with_its_routers_whole() {
    let (dir, mut store, whole) = stored_world("around-routers-on");
    let next = || Around {
        networks: vec!["next".into()],
        ..Default::default()
    };
    // A subnet made on next: the routers with their gateway there are read whole, so
    // their plans (on-link routes to the new subnet) are the whole store's.
    let with_routers = || Around {
        routers_on: vec!["next".into()],
        ..next()
    };
    let part = read_state(&mut store, with_routers());
    assert_eq!(ids(&part.routers), ["r1", "r2"]);
    for r in ["r1", "r2"] {
        assert_eq!(plan(&part, r), plan(&whole, r), "router {r}");
        assert!(with_routers().reads_whole(&part, r));
    }
    // Without them, r1 is read (it serves f1 on next) but not whole: a change may not
    // converge it.
    let without = read_state(&mut store, next());
    assert!(without.router_by_id("r1").is_some());
    assert!(!next().reads_whole(&without, "r1"));
    std::fs::remove_dir_all(&dir).unwrap();
}
