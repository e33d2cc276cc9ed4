use super::*;

fn net(id: &str, name: &str) -> Network {
    Network {
        port_security: true,
        id: id.into(),
        name: name.into(),
        external: false,
        bridge: String::new(),
        owns_bridge: true,
        provider_interface: None,
        mtu: None,
        meta: Meta::default(),
        vni: None,
        shared: false,
        is_default: false,
    }
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
