use super::*;

fn net(id: &str, name: &str) -> Network {
    super::fixtures::network(id, name)
}

#[test]
fn find_by_name_id_and_prefix() {
    let nets = vec![
        net("1234abcd-0000", "vlan100").into(),
        net("5678abcd-0000", "vlan101").into(),
    ];
    assert_eq!(find(&nets, "vlan101").unwrap().id, "5678abcd-0000");
    assert_eq!(find(&nets, "1234abcd-0000").unwrap().name, "vlan100");
    assert_eq!(find(&nets, "5678").unwrap().name, "vlan101");
    let err = find(&nets, "vlan10").unwrap_err().to_string();
    assert!(err.starts_with("network vlan10: no such network"), "{err}");
    assert!(err.contains("did you mean 'vlan100'?"), "{err}");
    assert!(find(&nets, "ext_net")
        .unwrap_err()
        .to_string()
        .ends_with("no such network"));
}

#[test]
fn an_exact_id_wins_over_a_name_and_a_shared_name_is_refused() {
    // Issue 15 item 6: a router renamed to another's id was found in its place.
    let id = "5678abcd-0000-4000-8000-000000000001";
    let nets = vec![
        net("1234abcd-0000", id).into(),
        net(id, "vlan101").into(),
        net("9999abcd-0000", "twin").into(),
        net("8888abcd-0000", "twin").into(),
    ];
    assert_eq!(find(&nets, id).unwrap().name, "vlan101");
    let e = find(&nets, "twin").unwrap_err();
    assert_eq!(crate::error::exit_code(&e), 2);
    assert_eq!(
        e.to_string(),
        "More than one network exists with the name 'twin': 9999abcd-0000, 8888abcd-0000; use an id"
    );
    // An exact name still wins over an id prefix.
    let nets = vec![net("abcd1234", "x").into(), net("ffff", "abcd").into()];
    assert_eq!(find(&nets, "abcd").unwrap().id, "ffff");
}

#[test]
fn old_stores_read_with_default_meta_and_times_are_rfc3339() {
    let old = r#"{"id":"n1","name":"vlan100","external":false,"bridge":"brqn1","owns_bridge":true,"provider_interface":null,"mtu":null}"#;
    let n: Network = serde_json::from_str(old).unwrap();
    assert!(n.meta.admin_state_up && n.meta.tags.is_empty() && n.meta.description.is_empty());
    let back: Network = serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
    assert_eq!(back, n);
    let now = now();
    assert!(now.len() == 20 && now.ends_with('Z'), "{now}");
    assert!(humantime::parse_rfc3339(&now).is_ok(), "{now}");
    let mut m = Meta::default();
    m.edit_tags(false, &[], &["red".into(), "blue".into(), "red".into()]);
    m.edit_tags(false, &["red".into()], &["green".into()]);
    assert_eq!(m.tags, ["blue", "green"]);
    m.edit_tags(true, &[], &[]);
    assert!(m.tags.is_empty());
}

#[test]
fn ids_and_macs_look_like_neutrons() {
    let id = new_id();
    assert_eq!(id.len(), 36);
    assert_eq!(&id[8..9], "-");
    let mac = new_mac();
    assert!(mac.starts_with("fa:16:3e:") && mac.len() == 17, "{mac}");
}

#[test]
fn an_ipv4_subnet_port_and_router_read_and_write_as_before_ipv6() {
    // Bodies as the binary before IPv6 wrote them: the same text comes back.
    let subnet = r#"{"id":"s1","name":"vlan101","network_id":"n1","cidr":"172.16.101.0/24","gateway":"172.16.101.1","pools":[{"start":"172.16.101.2","end":"172.16.101.254"}],"dhcp":{"enabled":true,"dns_nameservers":["9.9.9.9"]},"created_at":"","updated_at":"","revision_number":0}"#;
    let s: Subnet = serde_json::from_str(subnet).unwrap();
    assert_eq!((s.ip_version(), s.ipv6_ra_mode), (4, None));
    assert_eq!(serde_json::to_string(&s).unwrap(), subnet);
    let route = r#"{"destination":"10.9.0.0/16","nexthop":"10.10.10.5"}"#;
    let r: ExtraRoute = serde_json::from_str(route).unwrap();
    assert_eq!(serde_json::to_string(&r).unwrap(), route);
    let fixed = r#"{"subnet_id":"s1","ip":"172.16.101.3"}"#;
    let f: FixedIp = serde_json::from_str(fixed).unwrap();
    assert_eq!(serde_json::to_string(&f).unwrap(), fixed);
    // An IPv6 subnet carries its modes.
    let v6 = r#"{"id":"s6","name":"v6","network_id":"n1","cidr":"2001:db8:101::/64","gateway":"2001:db8:101::1","pools":[],"dhcp":{"enabled":true},"ipv6_ra_mode":"slaac","ipv6_address_mode":"slaac","created_at":"","updated_at":"","revision_number":0}"#;
    let s: Subnet = serde_json::from_str(v6).unwrap();
    assert!(s.is_auto_address() && s.ip_version() == 6);
    assert_eq!(serde_json::to_string(&s).unwrap(), v6);
}
