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
