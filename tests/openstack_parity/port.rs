//! test_port.py's flows, and what a disabled network does to its ports. Security groups,
//! trunks and Keystone's admin are out of scope; the network gets a subnet, as qrouter's
//! ports always hold an address.

use super::*;

fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap()
}

/// The rows of a port listing, by ID.
fn by_id(list: &Value) -> std::collections::BTreeMap<String, Value> {
    let rows = list.as_array().unwrap().iter();
    rows.map(|r| (r["ID"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

/// The lines of the network's dnsmasq hosts file.
fn dhcp_hosts(network: &str) -> String {
    let net = value(&["network", "show", network], "id");
    sh_ok(&format!("cat /run/qrouter/dhcp/{net}/host"))
}

#[test]
fn port_flows() {
    sandboxed(|| {
        ok(&["network", "create", "port-net"]);
        ok(&[
            "subnet",
            "create",
            "port-sub",
            "--network",
            "port-net",
            "--subnet-range",
            "10.40.0.0/24",
        ]);
        let create = |name: &str, extra: &[&str]| {
            json(
                &[
                    &["port", "create", "--network", "port-net"][..],
                    extra,
                    &[name],
                ]
                .concat(),
            )
        };

        // test_port_delete
        let (p1, p2) = (create("pa", &[]), create("pax", &[]));
        for (p, name) in [(&p1, "pa"), (&p2, "pax")] {
            assert!(p["id"].is_string() && p["mac_address"].is_string());
            assert_eq!(p["name"], name);
        }
        assert_eq!(ok(&["port", "delete", id(&p1), id(&p2)]), "");
        assert!(!names(&json(&["port", "list"])).contains(&"pa".into()));
        // Deleting several: every one it can, then "N of M ports failed to delete."
        create("pb", &[]);
        let out = qrouter(&["port", "delete", "pb", "nosuch"]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("port nosuch: no such port"), "{err}");
        assert!(err.contains("1 of 2 ports failed to delete."), "{err}");
        assert!(!names(&json(&["port", "list"])).contains(&"pb".into()));

        // test_port_list
        let (p1, p2) = (create("pa", &[]), create("pax", &[]));
        let (mac1, mac2) = (&p1["mac_address"], &p2["mac_address"]);
        let list = by_id(&json(&["port", "list"]));
        assert_eq!(&list[id(&p1)]["MAC Address"], mac1);
        assert_eq!(&list[id(&p2)]["MAC Address"], mac2);
        // Nothing plugged the workloads' taps yet: Neutron's DOWN.
        assert_eq!(list[id(&p1)]["Status"], "DOWN");
        let long = by_id(&json(&["port", "list", "--long"]));
        for p in [&p1, &p2] {
            let row = &long[id(p)];
            assert_eq!(row["Security Groups"], serde_json::json!([]));
            assert_eq!(row["Device Owner"], "");
            assert_eq!(row["Tags"], serde_json::json!([]));
        }
        let dhcp = long.values().find(|r| r["Device Owner"] == "network:dhcp");
        assert_eq!(dhcp.expect("the network's DHCP port")["Status"], "ACTIVE");
        let by_mac = by_id(&json(&[
            "port",
            "list",
            "--mac-address",
            mac2.as_str().unwrap(),
        ]));
        assert_eq!(by_mac.keys().collect::<Vec<_>>(), [id(&p2)]);
        // Unknown columns beside known ones are ignored; none known is an error.
        let some = json(&["port", "list", "-c", "ID", "-c", "Name", "-c", "device_id"]);
        let ids = by_id(&some);
        assert!(ids.contains_key(id(&p1)) && ids.contains_key(id(&p2)));
        assert!(some[0].get("device_id").is_none(), "{some}");
        let only = qrouter(&["port", "list", "-c", "device_id"]);
        assert_eq!(only.status.code(), Some(2));
        let err = String::from_utf8_lossy(&only.stderr);
        assert!(
            err.contains("No recognized column names in ['device_id']"),
            "{err}"
        );
        assert_eq!(ok(&["port", "delete", id(&p1), id(&p2)]), "");

        // test_port_set
        let p = create("ps", &["--description", "xyzpdq", "--disable"]);
        assert_eq!(p["name"], "ps");
        assert_eq!(p["description"], "xyzpdq");
        assert_eq!(p["admin_state_up"], false);
        assert_eq!(ok(&["port", "set", "--enable", "ps"]), "");
        let show = json(&["port", "show", "ps"]);
        assert_eq!(show["name"], "ps");
        assert_eq!(show["description"], "xyzpdq");
        assert_eq!(show["admin_state_up"], true);
        assert!(show["mac_address"].is_string());
        assert_eq!(show["security_group_ids"], serde_json::json!([]));

        // test_port_admin_set. Its 11:22:33:44:55:66 is a multicast address, which Linux
        // refuses on an Ethernet device (EADDRNOTAVAIL): refused up front, nothing changed.
        let refused = qrouter(&["port", "set", "--mac-address", "11:22:33:44:55:66", "ps"]);
        assert_eq!(refused.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&refused.stderr).contains("port ps: --mac-address"));
        assert_eq!(
            json(&["port", "show", "ps"])["mac_address"],
            show["mac_address"]
        );
        let mac = "12:22:33:44:55:66";
        assert_eq!(ok(&["port", "set", "--mac-address", mac, "ps"]), "");
        let show = json(&["port", "show", "ps"]);
        assert_eq!(show["mac_address"], mac);
        // The network's dnsmasq now pins the port's address to the new MAC.
        let ip = show["fixed_ips"][0]["ip_address"].as_str().unwrap();
        let hosts = dhcp_hosts("port-net");
        assert!(
            hosts.lines().any(|l| l.starts_with(mac) && l.ends_with(ip)),
            "{hosts}"
        );

        // Name, description and fixed IPs, set and unset; each change is a revision.
        let revision = show["revision_number"].as_u64().unwrap();
        let set = ["port", "set", "ps", "--name", "ps2", "--description", "abc"];
        assert_eq!(ok(&set), "");
        let show = json(&["port", "show", "ps2"]);
        assert_eq!(
            (&show["name"], &show["description"]),
            (&"ps2".into(), &"abc".into())
        );
        assert_eq!(show["revision_number"], revision + 1);
        let refused = qrouter(&["port", "set", "ps2", "--fixed-ip", "ip-address=10.40.0.200"]);
        assert_eq!(refused.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&refused.stderr)
            .contains("port ps2: it already has an address on subnet port-sub"));
        let set = ["--no-fixed-ip", "--fixed-ip", "ip-address=10.40.0.200"];
        assert_eq!(ok(&[&["port", "set", "ps2"][..], &set].concat()), "");
        let fixed = &json(&["port", "show", "ps2"])["fixed_ips"];
        assert_eq!(fixed.as_array().unwrap().len(), 1);
        assert_eq!(fixed[0]["ip_address"], "10.40.0.200");
        let hosts = dhcp_hosts("port-net");
        assert!(hosts.contains(&format!("{mac},")) && hosts.contains("10.40.0.200"));
        assert!(!hosts.contains(&format!(",{ip}\n")), "{hosts}");
        // A port keeps one address at least.
        let refused = qrouter(&[
            "port",
            "unset",
            "ps2",
            "--fixed-ip",
            "ip-address=10.40.0.200",
        ]);
        assert_eq!(refused.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("port ps2: a port needs a fixed IP")
        );

        // A router's port keeps the MAC and address its qr- device holds; its name, state
        // and tags change as any port's.
        ok(&["router", "create", "pr"]);
        ok(&["router", "add", "subnet", "pr", "port-sub"]);
        let rport = json(&["port", "list", "--router", "pr"])[0]["ID"]
            .as_str()
            .unwrap()
            .to_string();
        let before = json(&["port", "show", &rport]);
        let refused = qrouter(&["port", "set", &rport, "--mac-address", "12:22:33:44:55:77"]);
        assert_eq!(refused.status.code(), Some(2));
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(err.contains("are those of router pr's device"), "{err}");
        assert_eq!(json(&["port", "show", &rport]), before);
        ok(&["port", "set", &rport, "--name", "pr-port", "--tag", "edge"]);
        assert_eq!(
            json(&["port", "show", "pr-port"])["tags"],
            serde_json::json!(["edge"])
        );
        ok(&["router", "remove", "subnet", "pr", "port-sub"]);

        tag_operation("port", &|name, args| {
            json(
                &[
                    &["port", "create", "--network", "port-net"][..],
                    args,
                    &[name],
                ]
                .concat(),
            )
        });
        assert_eq!(ok(&["port", "delete", "ps2"]), "");
    });
}

/// One ping from `instance` to `ip`, allowed three tries (a bridge port coming back up
/// learns again).
fn reaches(instance: &str, ip: &str) -> bool {
    (0..3).any(|_| {
        let ping = [
            "instance", "exec", instance, "--", "ping", "-c", "1", "-W", "1", ip,
        ];
        qrouter(&ping).status.success()
    })
}

/// The host link `name` is administratively up.
fn tap_up(name: &str) -> bool {
    let line = sh_ok(&format!("ip -o link show {name}"));
    let flags = line
        .split(['<', '>'])
        .nth(1)
        .unwrap_or_default()
        .to_string();
    flags.split(',').any(|f| f == "UP")
}

/// The host ends of the network's ports.
fn taps_of(network: &str) -> Vec<String> {
    let ports = json(&["port", "list", "--network", network]);
    let ids = by_id(&ports).into_keys();
    ids.map(|id| value(&["port", "show", &id], "host_device"))
        .collect()
}

/// Statuses of the network's ports, from `port list` and each `port show`.
fn statuses(network: &str) -> Vec<String> {
    let ports = json(&["port", "list", "--network", network]);
    let mut all = vec![];
    for (id, row) in by_id(&ports) {
        all.push(row["Status"].as_str().unwrap().to_string());
        all.push(value(&["port", "show", &id], "status"));
    }
    all
}

#[test]
fn a_disabled_network_has_its_ports_down() {
    sandboxed(|| {
        tenant_network("blue", "10.50.1.0/24");
        tenant_network("green", "10.50.2.0/24");
        ok(&["router", "create", "rd"]);
        ok(&["router", "add", "subnet", "rd", "blue"]);
        ok(&["router", "add", "subnet", "rd", "green"]);
        ok(&["instance", "create", "vb", "--network", "blue"]);
        ok(&["instance", "create", "vg", "--network", "green"]);
        let vg = value(&["instance", "show", "vg"], "fixed_ip");
        assert!(reaches("vb", &vg));
        let green = taps_of("green");
        assert_eq!(green.len(), 3, "router, instance and DHCP ports: {green:?}");

        assert_eq!(ok(&["network", "set", "green", "--disable"]), "");
        assert!(
            !reaches("vb", &vg),
            "a disabled network still carries traffic"
        );
        // trace says so, and the kernel agrees.
        let live = json(&["trace", "vb", &vg, "--live"]);
        assert_eq!(live["static"]["outcome"], "dropped", "{live:#}");
        let summary = live["static"]["summary"].as_str().unwrap();
        assert!(summary.contains("(network green is disabled)"), "{summary}");
        assert_eq!(live["agrees"], true, "{live:#}");
        for tap in &green {
            assert!(!tap_up(tap), "{tap} is still up");
        }
        assert!(taps_of("blue").iter().all(|t| tap_up(t)));
        assert!(
            statuses("green").iter().all(|s| s == "DOWN"),
            "{:?}",
            statuses("green")
        );
        assert!(
            statuses("blue").iter().all(|s| s == "ACTIVE"),
            "{:?}",
            statuses("blue")
        );
        let show = json(&["network", "show", "green"]);
        assert_eq!(
            (&show["status"], &show["admin_state_up"]),
            (&"DOWN".into(), &false.into())
        );
        // The router is up and in sync: only its port on green is down.
        assert_eq!(value(&["router", "show", "rd"], "status"), "ACTIVE");
        assert_eq!(value(&["router", "show", "rd"], "kernel"), "in sync");
        assert!(ok(&["sync", "--dry-run"]).starts_with("in sync"));

        // A tap set up behind qrouter's back is drift, shown, and set down again by sync.
        let owner = ["port", "list", "--network", "green", "--device-owner"];
        let rport = json(&[&owner[..], &["network:router_interface"]].concat());
        let tap = value(
            &["port", "show", rport[0]["ID"].as_str().unwrap()],
            "host_device",
        );
        sh_ok(&format!("ip link set {tap} up"));
        let dry = qrouter(&["sync", "--dry-run"]);
        assert_eq!(
            dry.status.code(),
            Some(1),
            "sync --dry-run exits 1 on drift"
        );
        let drift = String::from_utf8_lossy(&dry.stdout);
        let line = format!("host: set {tap} down (network green is disabled)");
        assert!(drift.contains(&line), "{drift}");
        let show = ok(&["router", "show", "rd"]);
        assert!(
            show.contains("tap up (network green is disabled)"),
            "{show}"
        );
        assert_ne!(value(&["router", "show", "rd"], "kernel"), "in sync");
        ok(&["sync"]);
        assert!(!tap_up(&tap));
        assert!(ok(&["sync", "--dry-run"]).starts_with("in sync"));

        assert_eq!(ok(&["network", "set", "green", "--enable"]), "");
        assert!(reaches("vb", &vg));
        assert!(green.iter().all(|t| tap_up(t)));
        assert!(
            statuses("green").iter().all(|s| s == "ACTIVE"),
            "{:?}",
            statuses("green")
        );
        assert_eq!(value(&["network", "show", "green"], "status"), "ACTIVE");
        assert_eq!(value(&["router", "show", "rd"], "kernel"), "in sync");

        // A network made disabled has its ports down from the start; so has a disabled port.
        ok(&["network", "create", "red", "--disable"]);
        ok(&[
            "subnet",
            "create",
            "red",
            "--network",
            "red",
            "--subnet-range",
            "10.50.3.0/24",
        ]);
        ok(&["router", "add", "subnet", "rd", "red"]);
        assert!(taps_of("red").iter().all(|t| !tap_up(t)));
        assert!(statuses("red").iter().all(|s| s == "DOWN"));
        let port = json(&[
            "port",
            "list",
            "--network",
            "green",
            "--device-owner",
            "compute:none",
        ]);
        let port = port[0]["ID"].as_str().unwrap().to_string();
        ok(&["port", "set", &port, "--disable"]);
        assert!(!reaches("vb", &vg), "a disabled port still carries traffic");
        assert_eq!(value(&["port", "show", &port], "status"), "DOWN");
        ok(&["port", "set", &port, "--enable"]);
        assert!(reaches("vb", &vg));
        assert!(ok(&["sync", "--dry-run"]).starts_with("in sync"));
    });
}
