//! The topology views over the same states as the trace's tests.

use super::*;
use crate::explain::topology::{self, Drift, Filter, Topology};

fn seed_with_fip() -> State {
    let mut s = seed();
    add_floating_ip(&mut s, "10.10.10.3", "cirros-vm3");
    s
}

#[test]
fn text_hangs_routers_and_instances_from_their_networks() {
    let s = seed_with_fip();
    let t = topology::build(&s, &Filter::default(), &Drift::default());
    assert_eq!(t.networks[0].name, "ext_net", "external network first");
    let text = topology::text(&t, true);
    assert!(
        text.contains("ext_net (external) 10.10.10.0/24 [br-ex]\n━━━"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "├── router router_100_101  {QG}  10.10.10.2  gateway, SNAT on\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("│   └── floating IP 10.10.10.3 → 172.16.101.3 (cirros-vm3)\n"),
        "{text}"
    );
    assert!(
        text.contains("└── instance cirros-vm3  eth0  172.16.101.3\n"),
        "{text}"
    );
    let ascii = topology::text(&t, false);
    assert!(ascii.is_ascii(), "{ascii}");
    assert!(
        ascii.contains("|   `-- floating IP 10.10.10.3 -> 172.16.101.3"),
        "{ascii}"
    );
}

#[test]
fn locale_decides_unicode() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    assert!(topology::utf8_locale(env(&[("LANG", "en_US.UTF-8")])));
    assert!(!topology::utf8_locale(env(&[
        ("LC_ALL", "C"),
        ("LANG", "en_US.UTF-8")
    ])));
    assert!(topology::utf8_locale(env(&[
        ("LC_ALL", ""),
        ("LC_CTYPE", "C.utf8")
    ])));
    assert!(!topology::utf8_locale(env(&[])));
}

#[test]
fn narrowed_to_a_network_or_a_router() {
    let mut s = seed();
    add_router2(&mut s);
    let vlan102 = s.network("vlan102").unwrap().id.clone();
    let t = topology::build(
        &s,
        &Filter {
            network: Some(vlan102),
            router: None,
        },
        &Drift::default(),
    );
    assert_eq!(t.networks.len(), 1);
    assert_eq!(
        t.routers
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["router2"]
    );
    assert_eq!(
        t.instances
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>(),
        ["vm5"]
    );
    let t = topology::build(
        &s,
        &Filter {
            network: None,
            router: Some("r1".into()),
        },
        &Drift::default(),
    );
    let nets: Vec<&str> = t.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(nets, ["ext_net", "vlan100", "vlan101"]);
    assert!(!t.instances.iter().any(|i| i.name == "vm5"));
}

#[test]
fn drift_is_marked_in_every_format() {
    let s = seed();
    let mut drift = Drift::default();
    drift.namespaces.insert("qinstance-i-vm100".into());
    drift.devices.insert(("qrouter-r1".into(), QR101.into()));
    let t = topology::build(&s, &Filter::default(), &drift);
    let text = topology::text(&t, false);
    assert!(
        text.contains("instance vm100  eth0  172.16.100.2  [MISSING in the kernel]"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{QR101}  172.16.101.1  [MISSING in the kernel]")),
        "{text}"
    );
    assert!(topology::dot(&t).contains("color=red"));
    assert!(topology::svg(&t).contains("MISSING"));
    let json = serde_json::to_string(&t).unwrap();
    let back: Topology = serde_json::from_str(&json).unwrap();
    assert_eq!(back, t);
}

#[test]
fn svg_escapes_names() {
    let mut s = seed();
    Rc::make_mut(&mut s.instances[0]).name = "a<b>&\"c".into();
    let svg = topology::svg(&topology::build(&s, &Filter::default(), &Drift::default()));
    assert!(svg.contains("instance a&lt;b&gt;&amp;&quot;c"));
    assert!(svg.starts_with("<?xml") && svg.ends_with("</svg>\n"));
}

/// Router k of `many_routers`: its gateway on ext_net, a tenant network of its own with an
/// instance on it.
fn add_router(s: &mut State, k: u32) {
    let (net, sub, r) = (
        format!("n{k:03}-0000-0000"),
        format!("s{k:03}"),
        format!("r{k:03}"),
    );
    s.networks
        .push(network(&net, &format!("tenant{k:03}"), false));
    s.subnets
        .push(subnet(&sub, &net, &format!("172.20.{k}.0/24")));
    let gateway = format!("{k:04}aaaa-0000");
    s.routers.push(Rc::new(Router {
        gateway_port_id: Some(gateway.clone()),
        ..crate::model::fixtures::router(&r, &format!("router-{k:03}"))
    }));
    let ip = |last: u32| format!("10.10.{}.{}", 10 + last / 250, last % 250 + 2);
    s.ports.push(port(
        &gateway,
        "next-0000-0000",
        PortRole::RouterGateway,
        &r,
        "sext",
        &ip(k),
    ));
    let inside = format!("{k:04}bbbb-0000");
    let gw = format!("172.20.{k}.1");
    s.ports.push(port(
        &inside,
        &net,
        PortRole::RouterInterface,
        &r,
        &sub,
        &gw,
    ));
    fixtures::add_instance(
        s,
        &format!("vm-{k:03}"),
        &net,
        &sub,
        &format!("172.20.{k}.3"),
    );
}

/// The seed with 50 more routers, two of which share a tenant network.
fn many_routers() -> State {
    let mut s = seed();
    Rc::make_mut(&mut s.subnets[2]).cidr = "10.10.0.0/16".parse().unwrap();
    add_floating_ip(&mut s, "10.10.10.3", "cirros-vm3");
    for k in 1..=50 {
        add_router(&mut s, k);
    }
    let shared = port(
        "5eed0000-0000",
        "n001-0000-0000",
        PortRole::RouterInterface,
        "r002",
        "s001",
        "172.20.1.254",
    );
    s.ports.push(shared);
    s
}

/// Each `<text>` of an SVG as (x, y, font size, content), content unescaped.
fn texts(svg: &str) -> Vec<(i64, i64, i64, String)> {
    let attr = |tag: &str, name: &str| -> i64 {
        let at = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        tag[at..tag[at..].find('"').unwrap() + at].parse().unwrap()
    };
    svg.split("<text ")
        .skip(1)
        .map(|rest| {
            let (tag, after) = rest.split_once('>').unwrap();
            let content = after.split_once("</text>").unwrap().0;
            let content = content
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&amp;", "&");
            let tag = format!(" {tag}");
            (
                attr(&tag, "x"),
                attr(&tag, "y"),
                attr(&tag, "font-size"),
                content,
            )
        })
        .collect()
}

#[test]
fn svg_of_fifty_routers_is_readable() {
    let s = many_routers();
    let t = topology::build(&s, &Filter::default(), &Drift::default());
    let svg = topology::svg(&t);
    let dim = |name: &str| -> i64 {
        let at = svg.find("<svg ").unwrap();
        let tag = &svg[at..at + svg[at..].find('>').unwrap()];
        let v = tag.split(&format!(" {name}=\"")).nth(1).unwrap();
        v[..v.find('"').unwrap()].parse().unwrap()
    };
    let (width, height) = (dim("width"), dim("height"));
    assert!(width <= 4000, "{width} px wide");
    // Every label whole, inside the picture, and no two overlapping: each label's box is
    // as wide as its characters take (0.65 em) and as tall as its font.
    let texts = texts(&svg);
    let boxes: Vec<(i64, i64, i64, i64, &str)> = texts
        .iter()
        .map(|(x, y, size, text)| {
            (
                *x,
                y - size,
                x + topology::text_width(text, *size),
                y + size / 4,
                text.as_str(),
            )
        })
        .collect();
    for b in &boxes {
        assert!(
            b.0 >= 0 && b.1 >= 0 && b.2 <= width && b.3 <= height,
            "{b:?} is cut ({width}x{height})"
        );
    }
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            let apart = a.2 <= b.0 || b.2 <= a.0 || a.3 <= b.1 || b.3 <= a.1;
            assert!(apart, "labels overlap: {a:?} and {b:?}");
        }
    }
    let has = |label: &str| texts.iter().filter(|t| t.3 == label).count();
    // Networks that routers share, drawn once: the external one and tenant001 (r001, r002).
    assert_eq!(has("ext_net (external) 10.10.0.0/16 [br-ex]"), 1, "{svg}");
    let tenant1 = t.networks.iter().find(|n| n.name == "tenant001").unwrap();
    assert_eq!(
        has(&format!("tenant001 172.20.1.0/24 [{}]", tenant1.bridge)),
        1
    );
    for r in &t.routers {
        assert_eq!(has(&format!("router {}", r.name)), 1, "router {}", r.name);
        for a in &r.interfaces {
            assert_eq!(
                has(&format!("{} {}", a.device, a.addresses.join(", "))),
                1,
                "{a:?}"
            );
        }
    }
    for i in &t.instances {
        assert_eq!(
            has(&format!("instance {}", i.name)),
            1,
            "instance {}",
            i.name
        );
    }
    for n in t
        .networks
        .iter()
        .filter(|n| !n.external && n.name != "tenant001")
    {
        assert_eq!(
            has(&format!(
                "{} {} [{}]",
                n.name,
                n.subnets.join(", "),
                n.bridge
            )),
            1
        );
    }
    assert_eq!(has("floating IP 10.10.10.3 → 172.16.101.3 (cirros-vm3)"), 1);
}
