//! The static trace and the topology over a seed-like state, without a kernel.

use std::net::IpAddr;
use std::rc::Rc;

use super::trace::{self, Outcome, Protocol, Request, Trace};
use crate::model::{
    fixtures, ExtraRoute, FloatingIp, Network, Port, PortRole, Router, State, Subnet,
};

pub const QG: &str = "qg-b8b32a88-03";
pub const QR101: &str = "qr-e17162c5-00";

fn network(id: &str, name: &str, external: bool) -> Rc<Network> {
    Rc::new(fixtures::network_of(id, name, external))
}

fn subnet(id: &str, net: &str, cidr: &str) -> Rc<Subnet> {
    Rc::new(fixtures::subnet(id, net, cidr))
}

fn port(id: &str, net: &str, role: PortRole, device: &str, subnet: &str, ip: &str) -> Rc<Port> {
    Rc::new(fixtures::port(id, net, role, device, subnet, ip))
}

/// The seed after step 1 (`fixtures::seed`), with vm100 at 172.16.100.2 and upstream at
/// 10.10.10.1 too.
pub fn seed() -> State {
    let mut s = fixtures::seed();
    fixtures::add_instance(&mut s, "vm100", "n100-0000-0000", "s100", "172.16.100.2");
    fixtures::add_instance(&mut s, "upstream", "next-0000-0000", "sext", "10.10.10.1");
    s
}

fn add_floating_ip(s: &mut State, address: &str, instance: &str) {
    let port = s.instance(instance).unwrap().port_id.clone();
    s.floating_ips.push(Rc::new(FloatingIp {
        meta: Default::default(),
        id: format!("f-{address}"),
        network_id: "next-0000-0000".into(),
        subnet_id: "sext".into(),
        address: address.parse().unwrap(),
        port_id: Some(port),
        router_id: None,
    }));
}

/// A second router with its gateway at 10.10.10.4 and vlan102 (172.16.102.0/24) with vm5.
fn add_router2(s: &mut State) {
    s.networks.push(network("n102-0000-0000", "vlan102", false));
    s.subnets
        .push(subnet("s102", "n102-0000-0000", "172.16.102.0/24"));
    s.routers.push(Rc::new(Router {
        gateway_port_id: Some("aaaa2222-0000".into()),
        ..fixtures::router("r2", "router2")
    }));
    s.ports.push(port(
        "aaaa2222-0000",
        "next-0000-0000",
        PortRole::RouterGateway,
        "r2",
        "sext",
        "10.10.10.4",
    ));
    s.ports.push(port(
        "bbbb2222-0000",
        "n102-0000-0000",
        PortRole::RouterInterface,
        "r2",
        "s102",
        "172.16.102.1",
    ));
    fixtures::add_instance(s, "vm5", "n102-0000-0000", "s102", "172.16.102.5");
}

pub fn run(s: &State, src: &str, dst: &str) -> Trace {
    let req = Request {
        src: trace::resolve(s, "SRC", src, None).unwrap(),
        dst: trace::resolve(s, "DST", dst, None).unwrap(),
        from_network: None,
        protocol: Protocol::Icmp,
        port: None,
    };
    trace::trace(s, &req).unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn nodes(t: &[trace::Hop]) -> Vec<String> {
    t.iter()
        .map(|h| format!("{} {}", h.node.kind, h.node.name))
        .collect()
}

fn rules(h: &trace::Hop) -> Vec<&str> {
    h.rules.iter().map(|r| r.rule.as_str()).collect()
}

#[test]
fn seed_instance_to_upstream_two_hops_and_snat_by_the_rule() {
    let s = seed();
    let t = run(&s, "cirros-vm3", "10.10.10.1");
    assert_eq!(t.outcome, Outcome::Delivered, "{}", trace::render_text(&t));
    assert_eq!(
        nodes(&t.hops),
        [
            "instance cirros-vm3",
            "router router_100_101",
            "instance upstream"
        ]
    );
    let (vm, router) = (&t.hops[0], &t.hops[1]);
    assert_eq!(
        vm.route.as_deref(),
        Some("default via 172.16.101.1 dev eth0 proto static")
    );
    assert_eq!(vm.next_hop, Some(ip("172.16.101.1")));
    assert_eq!(router.ingress.as_ref().unwrap().device, QR101);
    assert_eq!(
        router.route.as_deref(),
        Some(format!("10.10.10.0/24 dev {QG} proto kernel scope link src 10.10.10.2").as_str())
    );
    assert_eq!(
        rules(router),
        [format!(
            "-A qrouter-snat -o {QG} -j SNAT --to-source 10.10.10.2 --random-fully"
        )]
    );
    assert_eq!(router.arrives.src, ip("172.16.101.3"));
    assert_eq!(router.leaves.src, ip("10.10.10.2"));
    assert_eq!(router.egress.as_ref().unwrap().tap, "tapb8b32a88-03");
    assert_eq!(router.egress.as_ref().unwrap().bridge, "br-ex");
    assert_eq!(router.next_hop, Some(ip("10.10.10.1")));
    // The reply: conntrack reverses the SNAT in the router, back to cirros-vm3.
    assert_eq!(
        nodes(&t.reply),
        [
            "instance upstream",
            "router router_100_101",
            "instance cirros-vm3"
        ]
    );
    assert!(t.reply[1].nat[0]
        .contains("conntrack reverses the SNAT: destination 10.10.10.2 -> 172.16.101.3"));
    assert_eq!(
        rules(&t.reply[1]),
        [format!(
            "-A qrouter-FORWARD -i {QG} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        )]
    );
    assert_eq!(t.reply[2].arrives.dst, ip("172.16.101.3"));
    let text = trace::render_text(&t);
    assert!(
        text.contains("2. router router_100_101 [qrouter-r1]"),
        "{text}"
    );
}

#[test]
fn upstream_to_instance_is_dropped_by_the_forward_rule_in_words() {
    let s = seed();
    let t = run(&s, "upstream", "172.16.101.3");
    assert_eq!(t.outcome, Outcome::Dropped);
    assert_eq!(
        nodes(&t.hops),
        ["instance upstream", "router router_100_101"]
    );
    assert!(t.hops[0].notes.iter().any(|n| n.contains("assumed: the outside routes 172.16.101.0/24 via router router_100_101's gateway 10.10.10.2")));
    assert_eq!(
        t.summary,
        format!("dropped by `-A qrouter-FORWARD -i {QG} -j DROP`: a new connection from the external network that was not DNAT'ed to a floating IP")
    );
    assert!(t.reply.is_empty());
    // The same from an address outside every network, coming in from ext_net.
    let t = run(&s, "8.8.8.8", "cirros-vm3");
    assert_eq!(t.outcome, Outcome::Dropped);
    assert_eq!(t.hops[0].node.kind, "outside");
}

#[test]
fn upstream_to_floating_ip_is_dnat_and_the_reply_comes_from_the_floating_ip() {
    let mut s = seed();
    add_floating_ip(&mut s, "10.10.10.3", "cirros-vm3");
    let t = run(&s, "upstream", "10.10.10.3");
    assert_eq!(t.outcome, Outcome::Delivered, "{}", trace::render_text(&t));
    let router = &t.hops[1];
    assert_eq!(router.ingress.as_ref().unwrap().device, QG);
    assert_eq!(
        rules(router),
        [
            "-A qrouter-PREROUTING -d 10.10.10.3/32 -j DNAT --to-destination 172.16.101.3"
                .to_string(),
            format!("-A qrouter-FORWARD -i {QG} -m conntrack --ctstate DNAT -j ACCEPT"),
        ]
    );
    assert_eq!(router.leaves.dst, ip("172.16.101.3"));
    assert_eq!(
        router.leaves.src,
        ip("10.10.10.1"),
        "the instance sees the caller"
    );
    assert_eq!(t.hops[2].node.name, "cirros-vm3");
    let back = &t.reply[1];
    assert!(
        back.nat
            .iter()
            .any(|n| n == "conntrack reverses the DNAT: source 172.16.101.3 -> 10.10.10.3"),
        "{:?}",
        back.nat
    );
    assert_eq!(t.reply.last().unwrap().arrives.src, ip("10.10.10.3"));
    assert_eq!(t.reply.last().unwrap().outcome, Some(Outcome::Delivered));
}

#[test]
fn between_tenant_networks_of_one_router_nothing_is_translated() {
    let s = seed();
    let t = run(&s, "vm100", "cirros-vm3");
    assert_eq!(t.outcome, Outcome::Delivered);
    let router = &t.hops[1];
    assert_eq!(
        rules(router),
        [format!(
            "-A qrouter-POSTROUTING ! -o {QG} -m conntrack ! --ctstate DNAT -j ACCEPT"
        )]
    );
    assert!(router.notes.contains(
        &"NAT: not leaving through the gateway: traffic between tenant networks keeps its addresses"
            .to_string()
    ));
    assert_eq!(router.leaves, router.arrives);
    assert_eq!(
        router.route.as_deref(),
        Some(
            format!("172.16.101.0/24 dev {QR101} proto kernel scope link src 172.16.101.1")
                .as_str()
        )
    );
    assert_eq!(t.hops[2].arrives.src, ip("172.16.100.2"));
}

#[test]
fn behind_another_router_only_through_its_floating_ip() {
    let mut s = seed();
    add_router2(&mut s);
    // Its fixed address: out through the upstream gateway, a test host that does not forward.
    let t = run(&s, "cirros-vm3", "vm5");
    assert_eq!(t.outcome, Outcome::Dropped);
    assert_eq!(t.hops.last().unwrap().node.name, "upstream");
    assert!(t.summary.contains("does not forward"), "{}", t.summary);
    // Its floating IP: SNAT out of router_100_101, DNAT into router2.
    add_floating_ip(&mut s, "10.10.10.5", "vm5");
    let t = run(&s, "cirros-vm3", "10.10.10.5");
    assert_eq!(t.outcome, Outcome::Delivered, "{}", trace::render_text(&t));
    assert_eq!(
        nodes(&t.hops),
        [
            "instance cirros-vm3",
            "router router_100_101",
            "router router2",
            "instance vm5"
        ]
    );
    assert_eq!(
        t.hops[1].route.as_deref(),
        Some(format!("10.10.10.0/24 dev {QG} proto kernel scope link src 10.10.10.2").as_str())
    );
    assert_eq!(t.hops[3].arrives.src, ip("10.10.10.2"));
    assert_eq!(t.hops[3].arrives.dst, ip("172.16.102.5"));
    assert_eq!(t.reply.len(), 4);
}

#[test]
fn snat_disabled_leaves_the_source_as_it_is() {
    let mut s = seed();
    Rc::make_mut(&mut s.routers[0]).snat = false;
    let t = run(&s, "cirros-vm3", "10.10.10.1");
    assert_eq!(t.outcome, Outcome::Delivered);
    let router = &t.hops[1];
    assert!(router.rules.is_empty());
    assert_eq!(router.leaves.src, ip("172.16.101.3"));
    assert!(
        router.notes.iter().any(|n| n.contains("SNAT is disabled")),
        "{:?}",
        router.notes
    );
}

#[test]
fn no_gateway_no_route() {
    let mut s = seed();
    Rc::make_mut(&mut s.routers[0]).gateway_port_id = None;
    s.ports.retain(|p| p.role != PortRole::RouterGateway);
    let t = run(&s, "cirros-vm3", "10.10.10.1");
    assert_eq!(t.outcome, Outcome::NoRoute);
    assert_eq!(t.hops.len(), 2);
    assert!(
        t.summary
            .contains("it has no external gateway, so no default route"),
        "{}",
        t.summary
    );
}

#[test]
fn extra_route_via_a_next_hop() {
    let mut s = seed();
    add_router2(&mut s);
    Rc::make_mut(&mut s.routers[0]).routes.push(ExtraRoute {
        destination: "172.16.102.0/24".parse().unwrap(),
        nexthop: ip("10.10.10.4"),
    });
    let t = run(&s, "cirros-vm3", "vm5");
    assert_eq!(
        t.hops[1].route.as_deref(),
        Some(format!("172.16.102.0/24 via 10.10.10.4 dev {QG} proto static").as_str())
    );
    assert_eq!(t.hops[1].next_hop, Some(ip("10.10.10.4")));
    // router2 lets no new connection in through its gateway.
    assert_eq!(nodes(&t.hops)[2], "router router2");
    assert_eq!(t.outcome, Outcome::Dropped);
    assert!(t.summary.contains("-i qg-aaaa2222-00 -j DROP"));
    // Two next hops to one destination: a multipath route.
    Rc::make_mut(&mut s.routers[0]).routes.push(ExtraRoute {
        destination: "172.16.102.0/24".parse().unwrap(),
        nexthop: ip("10.10.10.1"),
    });
    let t = run(&s, "cirros-vm3", "vm5");
    assert_eq!(t.hops[1].next_hop, Some(ip("10.10.10.1")));
    assert_eq!(t.hops[1].multipath, [ip("10.10.10.4")]);
}

#[test]
fn an_address_outside_every_network() {
    let mut s = seed();
    let t = run(&s, "cirros-vm3", "8.8.8.8");
    assert_eq!(t.dst, "8.8.8.8 (in no network qrouter knows)");
    assert_eq!(t.hops[1].leaves.src, ip("10.10.10.2"));
    assert_eq!(
        t.hops[1].route.as_deref(),
        Some(format!("default via 10.10.10.1 dev {QG} proto static").as_str())
    );
    assert_eq!(
        t.outcome,
        Outcome::Dropped,
        "the upstream here is a test host"
    );
    // With a real upstream gateway (no instance holds 10.10.10.1): it leaves qrouter.
    s.instances.retain(|i| i.name != "upstream");
    let t = run(&s, "cirros-vm3", "8.8.8.8");
    assert_eq!(t.outcome, Outcome::LeftQrouter);
    assert!(
        t.summary
            .contains("handed to the upstream gateway 10.10.10.1 on ext_net"),
        "{}",
        t.summary
    );
    // An unused tenant address: nobody answers ARP.
    let t = run(&s, "cirros-vm3", "172.16.100.77");
    assert_eq!(t.outcome, Outcome::Unreachable);
}

#[test]
fn bad_src_or_dst_is_invalid_input_naming_it() {
    let s = seed();
    let err = trace::resolve(&s, "SRC", "cirros-vm9", None).unwrap_err();
    assert_eq!(crate::error::exit_code(&err), 2);
    assert!(
        err.to_string().starts_with("SRC cirros-vm9: no instance"),
        "{err}"
    );
    let req = Request {
        src: trace::resolve(&s, "SRC", "172.16.101.99", None).unwrap(),
        dst: trace::resolve(&s, "DST", "cirros-vm3", None).unwrap(),
        from_network: None,
        protocol: Protocol::Icmp,
        port: None,
    };
    let err = trace::trace(&s, &req).unwrap_err();
    assert_eq!(crate::error::exit_code(&err), 2);
    assert!(err.to_string().contains("SRC 172.16.101.99"), "{err}");
}

#[test]
fn json_gives_hops_as_data() {
    let s = seed();
    let t = run(&s, "cirros-vm3", "10.10.10.1");
    let v = serde_json::to_value(&t).unwrap();
    assert_eq!(v["outcome"], "delivered");
    assert_eq!(v["hops"][1]["rules"][0]["target"], "SNAT");
    assert_eq!(v["hops"][1]["leaves"]["src"], "10.10.10.2");
    assert_eq!(v["hops"][1]["egress"]["device"], QG);
}

mod topology;

#[test]
fn a_workload_port_sends_and_receives_as_its_lease_says() {
    let mut s = seed();
    let mut p4 = (*port(
        "f3190633-aeaa",
        "n101-0000-0000",
        PortRole::Workload,
        "",
        "s101",
        "172.16.101.4",
    ))
    .clone();
    p4.name = "p4".into();
    s.ports.push(Rc::new(p4));
    let t = run(&s, "p4", "10.10.10.1");
    assert_eq!(t.outcome, Outcome::Delivered, "{}", trace::render_text(&t));
    assert_eq!(
        nodes(&t.hops),
        ["port p4", "router router_100_101", "instance upstream"]
    );
    assert_eq!(t.hops[0].egress.as_ref().unwrap().tap, "tapf3190633-ae");
    assert_eq!(t.hops[0].next_hop, Some(ip("172.16.101.1")));
    assert_eq!(nodes(&t.reply).last().unwrap(), "port p4");
    let t = run(&s, "cirros-vm3", "p4");
    assert_eq!(t.outcome, Outcome::Delivered, "{}", trace::render_text(&t));
    assert_eq!(t.dst, "port p4 (172.16.101.4)");
    assert!(t
        .summary
        .contains("the VM or container plugged into its tap holds it"));
}
