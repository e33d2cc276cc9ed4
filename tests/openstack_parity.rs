//! python-openstackclient's functional test flows for network, subnet, router and floating
//! ip (openstackclient/tests/functional/network/v2/test_*.py), replayed with `qrouter` in
//! place of `openstack`: every step that needs no Keystone project, QoS, DVR, HA, sharing or
//! other extension, with the same assertions, and names made as they make them
//! (`uuid.uuid4().hex`). Floating IPs and ports are in modules of their own.

mod common;
#[path = "openstack_parity/floating_ip.rs"]
mod floating_ip;
#[path = "openstack_parity/port.rs"]
mod port;

use common::*;
use serde_json::Value;

/// The names in a list's `Name` column.
fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r["Name"].as_str().unwrap().to_string())
        .collect()
}

/// A tag set, unordered, as the Python tests compare them.
fn tags(v: &Value) -> std::collections::BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn set_of(items: &[&str]) -> std::collections::BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A name as openstackclient's functional tests make them: `uuid.uuid4().hex`.
fn hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// common.py's NetworkTagTests.test_tag_operation for `noun` (network, subnet, router);
/// `create` makes one object of that name with extra arguments.
fn tag_operation(noun: &str, create: &dyn Fn(&str, &[&str]) -> Value) {
    let check_create = |name: &str, args: &[&str], expected: &[&str]| {
        let out = create(name, args);
        assert!(out["id"].is_string());
        assert_eq!(
            tags(&out["tags"]),
            set_of(expected),
            "{noun} create {args:?}"
        );
    };
    let (t1, t2, t3) = (hex(), hex(), hex());
    check_create(&t1, &[], &[]);
    check_create(&t2, &["--tag", "red", "--tag", "blue"], &["red", "blue"]);
    check_create(&t3, &["--no-tag"], &[]);
    let set = |verb: &str, name: &str, args: &[&str], expected: &[&str]| {
        let out = ok(&[&[noun, verb][..], args, &[name]].concat());
        assert_eq!(out, "", "{noun} {verb} prints nothing");
        let show = json(&[noun, "show", name]);
        assert_eq!(
            tags(&show["tags"]),
            set_of(expected),
            "{noun} {verb} {args:?}"
        );
    };
    set(
        "set",
        &t1,
        &["--tag", "red", "--tag", "green"],
        &["red", "green"],
    );
    let list = json(&[noun, "list", "--long"]);
    for (name, expected) in [
        (&t1, set_of(&["red", "green"])),
        (&t2, set_of(&["red", "blue"])),
        (&t3, set_of(&[])),
    ] {
        let row = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["Name"] == name.as_str())
            .unwrap();
        assert_eq!(tags(&row["Tags"]), expected, "{noun} list --long: {name}");
    }
    // The tag filters of list, as Neutron applies them.
    let filtered = |args: &[&str]| names(&json(&[&[noun, "list"][..], args].concat()));
    assert_eq!(filtered(&["--tags", "red,green"]), [t1.as_str()]);
    assert_eq!(
        filtered(&["--any-tags", "green,blue"]),
        [t1.clone(), t2.clone()]
    );
    assert!(!filtered(&["--not-tags", "red,blue"]).contains(&t2));
    assert!(filtered(&["--not-any-tags", "red"]).contains(&t3));
    assert!(!filtered(&["--not-any-tags", "red"]).contains(&t1));

    set("set", &t1, &["--tag", "blue"], &["red", "green", "blue"]);
    set(
        "set",
        &t1,
        &[
            "--no-tag", "--tag", "yellow", "--tag", "orange", "--tag", "purple",
        ],
        &["yellow", "orange", "purple"],
    );
    set("unset", &t1, &["--tag", "yellow"], &["orange", "purple"]);
    set("unset", &t1, &["--all-tag"], &[]);
    set("set", &t2, &["--no-tag"], &[]);
    assert_eq!(ok(&[noun, "delete", &t1, &t2, &t3]), "");
}

#[test]
fn network_flows() {
    sandboxed(|| {
        // Named as openstackclient's tests name them: uuid.uuid4().hex.
        let (net1, net2) = (hex(), hex());
        // test_network_create_network / test_network_delete_network
        let n1 = json(&[
            "network",
            "create",
            "--description",
            "aaaa",
            "--no-default",
            net1.as_str(),
        ]);
        assert!(n1["id"].is_string());
        assert_eq!(n1["description"], "aaaa");
        assert_eq!(n1["admin_state_up"], true);
        assert_eq!(n1["router:external"], false);
        assert_eq!(n1["shared"], false);
        assert_eq!(n1["is_default"], false);
        assert_eq!(n1["status"], "ACTIVE");
        assert_eq!(n1["mtu"], 1500);
        assert_eq!(n1["revision_number"], 0);
        assert!(n1["created_at"].as_str().unwrap().ends_with('Z'));
        let n2 = json(&[
            "network",
            "create",
            "--description",
            "bbbb",
            "--disable",
            "--share",
            net2.as_str(),
        ]);
        assert_eq!(n2["description"], "bbbb");
        assert_eq!(n2["admin_state_up"], false);
        assert_eq!(n2["shared"], true);
        assert_eq!(n2["is_default"], false);

        // test_network_list
        let all = names(&json(&["network", "list"]));
        assert!(all.contains(&net1) && all.contains(&net2));
        let long = json(&["network", "list", "--long"]);
        assert_eq!(names(&long), [net1.as_str(), net2.as_str()]);
        assert_eq!(long[1]["State"], "DOWN");
        assert_eq!(long[0]["Router Type"], "Internal");
        assert_eq!(
            names(&json(&["network", "list", "--enable", "--long"])),
            [net1.as_str()]
        );
        assert_eq!(
            names(&json(&["network", "list", "--disable", "--long"])),
            [net2.as_str()]
        );
        assert_eq!(
            names(&json(&["network", "list", "--name", net2.as_str()])),
            [net2.as_str()]
        );
        assert_eq!(
            names(&json(&["network", "list", "--share"])),
            [net2.as_str()]
        );
        assert_eq!(
            names(&json(&["network", "list", "--no-share"])),
            [net1.as_str()]
        );
        assert_eq!(long[0]["Shared"], false);
        assert_eq!(long[1]["Shared"], true);

        // test_network_set
        let out = ok(&[
            "network",
            "set",
            "--description",
            "cccc",
            "--disable",
            "--share",
            "--external",
            net1.as_str(),
        ]);
        assert_eq!(out, "");
        let show = json(&["network", "show", net1.as_str()]);
        assert_eq!(show["description"], "cccc");
        assert_eq!(show["admin_state_up"], false);
        assert_eq!(show["shared"], true);
        assert_eq!(show["router:external"], true);
        assert_eq!(show["is_default"], false);
        assert_eq!(show["revision_number"], 1);
        // The default external network: an external one, one at most; made internal, it is
        // no longer the default.
        ok(&["network", "set", "--default", "--no-share", net1.as_str()]);
        let show = json(&["network", "show", net1.as_str()]);
        assert_eq!(
            (&show["is_default"], &show["shared"]),
            (&true.into(), &false.into())
        );
        let refused = |args: &[&str], said: &str| {
            let out = qrouter(args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(said), "{args:?}: {err}");
        };
        refused(
            &["network", "create", "--external", "--default", "other"],
            &format!("network other: network {net1} is the default external network already"),
        );
        refused(
            &["network", "set", "--default", net2.as_str()],
            &format!("network {net2}: --default needs an external network"),
        );
        ok(&["network", "set", "--internal", net1.as_str()]);
        assert_eq!(
            json(&["network", "show", net1.as_str()])["is_default"],
            false
        );
        ok(&["network", "set", "--external", net1.as_str()]);
        assert_eq!(
            names(&json(&["network", "list", "--external"])),
            [net1.as_str()]
        );
        assert_eq!(
            names(&json(&["network", "list", "--internal"])),
            [net2.as_str()]
        );
        // The subnets of a network are its subnets' ids, as Neutron gives them.
        let sub = json(&[
            "subnet",
            "create",
            "s1",
            "--network",
            net2.as_str(),
            "--subnet-range",
            "10.0.9.0/24",
        ]);
        assert_eq!(
            json(&["network", "show", net2.as_str()])["subnets"],
            serde_json::json!([sub["id"]])
        );
        // -f shell writes router:external as router_external, with --prefix.
        let shell = ok(&[
            "network",
            "show",
            net1.as_str(),
            "-f",
            "shell",
            "--prefix",
            "n_",
            "-c",
            "router:external",
        ]);
        assert_eq!(shell, "n_router_external=\"true\"\n");

        // Deleting several: every one it can, then "N of M networks failed to delete."
        let out = qrouter(&["network", "delete", net1.as_str(), "nosuch"]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("network nosuch: no such network"), "{err}");
        assert!(err.contains("1 of 2 networks failed to delete."), "{err}");
        assert_eq!(names(&json(&["network", "list"])), [net2.as_str()]);
        assert_eq!(ok(&["network", "delete", net2.as_str()]), "");

        tag_operation("network", &|name, args| {
            json(&[&["network", "create"][..], args, &[name]].concat())
        });
    });
}

#[test]
fn subnet_flows() {
    sandboxed(|| {
        let (net, sub1, sub2, sub3, rs) = (hex(), hex(), hex(), hex(), hex());
        let sub3_ = format!("{sub3}_");
        let created = json(&["network", "create", net.as_str()]);
        let net_id = created["id"].as_str().unwrap();
        let create = |name: &str, range: &str, extra: &[&str]| {
            json(
                &[
                    &["subnet", "create", "--network", net.as_str()][..],
                    extra,
                    &["--subnet-range", range, name],
                ]
                .concat(),
            )
        };
        // test_subnet_create_and_delete
        let s1 = create(sub1.as_str(), "10.0.1.0/26", &[]);
        assert_eq!(s1["name"], sub1.as_str());
        assert_eq!(s1["network_id"], net_id);
        assert_eq!(s1["ip_version"], 4);
        assert_eq!(
            s1["allocation_pools"],
            serde_json::json!([{"start": "10.0.1.2", "end": "10.0.1.62"}])
        );
        assert_eq!(s1["gateway_ip"], "10.0.1.1");
        let s2 = create(sub2.as_str(), "10.0.2.0/26", &[]);
        assert_eq!(s2["network_id"], net_id);
        assert_eq!(ok(&["subnet", "delete", sub1.as_str(), sub2.as_str()]), "");

        // test_subnet_list
        create(sub1.as_str(), "10.0.1.0/26", &[]);
        create(sub2.as_str(), "10.0.2.0/26", &["--gateway", "10.0.2.62"]);
        let long = json(&["subnet", "list", "--long"]);
        assert_eq!(names(&long), [sub1.as_str(), sub2.as_str()]);
        assert_eq!(long[0]["IP Version"], 4);
        assert_eq!(long[0]["Network"], net_id);
        assert_eq!(
            names(&json(&["subnet", "list", "--name", sub1.as_str()])),
            [sub1.as_str()]
        );
        assert_eq!(
            names(&json(&["subnet", "list", "--network", net_id])),
            [sub1.as_str(), sub2.as_str()]
        );
        assert!(names(&json(&["subnet", "list", "--ip-version", "6"])).is_empty());
        assert_eq!(
            names(&json(&["subnet", "list", "--gateway", "10.0.2.62"])),
            [sub2.as_str()]
        );
        assert_eq!(
            names(&json(&["subnet", "list", "--subnet-range", "10.0.1.0/26"])),
            [sub1.as_str()]
        );
        assert_eq!(ok(&["subnet", "delete", sub1.as_str(), sub2.as_str()]), "");

        // test_subnet_set_show_unset (the new gateway inside the subnet's own range, outside
        // its pools: Neutron refuses a gateway in a pool, and so does qrouter)
        let s = create(
            sub3.as_str(),
            "10.10.11.0/26",
            &[
                "--description",
                "aaaa",
                "--allocation-pool",
                "start=10.10.11.2,end=10.10.11.50",
            ],
        );
        assert_eq!(s["name"], sub3.as_str());
        assert_eq!(s["description"], "aaaa");
        let out = ok(&[
            "subnet",
            "set",
            "--name",
            sub3_.as_str(),
            "--description",
            "bbbb",
            "--gateway",
            "10.10.11.62",
            sub3.as_str(),
        ]);
        assert_eq!(out, "");
        let show = json(&["subnet", "show", sub3_.as_str()]);
        assert_eq!(show["name"], sub3_.as_str());
        assert_eq!(show["description"], "bbbb");
        assert_eq!(show["gateway_ip"], "10.10.11.62");
        assert_eq!(ok(&["subnet", "unset", "--gateway", sub3_.as_str()]), "");
        assert_eq!(
            json(&["subnet", "show", sub3_.as_str()])["gateway_ip"],
            Value::Null
        );
        // Allocation pools: replaced, added to, removed from.
        ok(&[
            "subnet",
            "set",
            sub3_.as_str(),
            "--no-allocation-pool",
            "--allocation-pool",
            "start=10.10.11.10,end=10.10.11.19",
        ]);
        ok(&[
            "subnet",
            "set",
            sub3_.as_str(),
            "--allocation-pool",
            "start=10.10.11.30,end=10.10.11.39",
        ]);
        ok(&[
            "subnet",
            "unset",
            sub3_.as_str(),
            "--allocation-pool",
            "start=10.10.11.10,end=10.10.11.19",
        ]);
        assert_eq!(
            json(&["subnet", "show", sub3_.as_str()])["allocation_pools"],
            serde_json::json!([{"start": "10.10.11.30", "end": "10.10.11.39"}])
        );
        // A gateway a router interface holds is not moved under it.
        ok(&["subnet", "set", sub3_.as_str(), "--gateway", "10.10.11.1"]);
        ok(&["router", "create", rs.as_str()]);
        ok(&["router", "add", "subnet", rs.as_str(), sub3_.as_str()]);
        let refused = qrouter(&["subnet", "set", sub3_.as_str(), "--gateway", "10.10.11.2"]);
        assert_eq!(refused.status.code(), Some(2));
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(
            said.contains(&format!("is the interface of router {rs}")),
            "{said}"
        );
        ok(&["router", "remove", "subnet", rs.as_str(), sub3_.as_str()]);
        ok(&["router", "delete", rs.as_str()]);
        ok(&["subnet", "delete", sub3_.as_str()]);

        let made = std::cell::Cell::new(0);
        tag_operation("subnet", &|name, args| {
            made.set(made.get() + 1);
            let range = format!("10.1.{}.0/26", made.get());
            json(
                &[
                    &["subnet", "create", "--network", net.as_str()][..],
                    args,
                    &["--subnet-range", &range, name],
                ]
                .concat(),
            )
        });
        assert_eq!(ok(&["network", "delete", net.as_str()]), "");
    });
}

#[test]
fn router_flows() {
    sandboxed(|| {
        let [r1, r2, ext, ext_sub, rgw, rl1, rl2, rs, rnet, rsub, rr] =
            std::array::from_fn(|_| hex());
        let rs_ = format!("{rs}_");
        // test_router_create_and_delete
        assert_eq!(
            json(&["router", "create", r1.as_str()])["name"],
            r1.as_str()
        );
        assert_eq!(
            json(&["router", "create", r2.as_str()])["name"],
            r2.as_str()
        );
        assert_eq!(ok(&["router", "delete", r1.as_str(), r2.as_str()]), "");

        // test_router_create_with_external_gateway
        let ext_net = json(&["network", "create", "--external", ext.as_str()]);
        ok(&[
            "subnet",
            "create",
            ext_sub.as_str(),
            "--network",
            ext.as_str(),
            "--subnet-range",
            "10.0.0.0/24",
        ]);
        ok(&[
            "router",
            "create",
            "--external-gateway",
            ext.as_str(),
            rgw.as_str(),
        ]);
        let show = json(&["router", "show", rgw.as_str()]);
        let gw = &show["external_gateway_info"];
        assert_eq!(gw["network_id"], ext_net["id"]);
        assert_eq!(gw["enable_snat"], true);
        assert_eq!(gw["external_fixed_ips"][0]["ip_address"], "10.0.0.2");
        assert!(gw["external_fixed_ips"][0]["subnet_id"].is_string());

        // test_router_list
        let l1 = json(&["router", "create", "--disable", rl1.as_str()]);
        assert_eq!(l1["name"], rl1.as_str());
        assert_eq!(l1["admin_state_up"], false);
        let l2 = json(&["router", "create", rl2.as_str()]);
        assert_eq!(l2["admin_state_up"], true);
        let disabled = names(&json(&["router", "list", "--disable"]));
        assert!(disabled.contains(&rl1) && !disabled.contains(&rl2));
        assert_eq!(
            names(&json(&["router", "list", "--name", rl1.as_str()])),
            [rl1.as_str()]
        );
        let long = json(&["router", "list", "--long"]);
        assert!(names(&long).contains(&rl1) && names(&long).contains(&rl2));
        let row = long
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["Name"] == rgw.as_str())
            .unwrap();
        assert_eq!(row["External gateway info"]["network_id"], ext_net["id"]);
        assert_eq!(row["State"], "UP");
        assert_eq!(ok(&["router", "delete", rl1.as_str(), rl2.as_str()]), "");

        // test_router_set_show_unset
        let r = json(&["router", "create", "--description", "aaaa", rs.as_str()]);
        assert_eq!(r["name"], rs.as_str());
        assert_eq!(r["description"], "aaaa");
        ok(&[
            "router",
            "set",
            rs.as_str(),
            "--external-gateway",
            ext.as_str(),
        ]);
        let out = ok(&[
            "router",
            "set",
            "--name",
            rs_.as_str(),
            "--description",
            "bbbb",
            "--disable",
            rs.as_str(),
        ]);
        assert_eq!(out, "");
        let show = json(&["router", "show", rs_.as_str()]);
        assert_eq!(show["name"], rs_.as_str());
        assert_eq!(show["description"], "bbbb");
        assert_eq!(show["admin_state_up"], false);
        assert_eq!(
            ok(&["router", "unset", "--external-gateway", rs_.as_str()]),
            ""
        );
        assert_eq!(
            json(&["router", "show", rs_.as_str()])["external_gateway_info"],
            Value::Null
        );
        // -c with a column this command lacks is ignored beside a known one.
        assert_eq!(
            ok(&[
                "router",
                "show",
                rs_.as_str(),
                "-f",
                "value",
                "-c",
                "project_id",
                "-c",
                "name"
            ]),
            format!("{rs_}\n")
        );

        // test_router_add_remove_route
        ok(&["network", "create", rnet.as_str()]);
        ok(&[
            "subnet",
            "create",
            rsub.as_str(),
            "--network",
            rnet.as_str(),
            "--subnet-range",
            "10.0.5.0/24",
        ]);
        ok(&["router", "create", rr.as_str()]);
        assert_eq!(
            ok(&["router", "add", "subnet", rr.as_str(), rsub.as_str()]),
            ""
        );
        let out1 = json(&[
            "router",
            "add",
            "route",
            rr.as_str(),
            "--route",
            "destination=10.0.10.0/24,gateway=10.0.5.10",
        ]);
        assert_eq!(out1["routes"].as_array().unwrap().len(), 1);
        assert_eq!(
            out1["routes"][0],
            serde_json::json!({"destination": "10.0.10.0/24", "nexthop": "10.0.5.10"})
        );
        let out2 = json(&[
            "router",
            "add",
            "route",
            rr.as_str(),
            "--route",
            "destination=10.0.10.0/24,gateway=10.0.5.10",
            "--route",
            "destination=10.0.11.0/24,gateway=10.0.5.11",
        ]);
        assert_eq!(out2["routes"].as_array().unwrap().len(), 2);
        let out3 = json(&[
            "router",
            "remove",
            "route",
            rr.as_str(),
            "--route",
            "destination=10.0.11.0/24,gateway=10.0.5.11",
            "--route",
            "destination=10.0.12.0/24,gateway=10.0.5.12",
        ]);
        assert_eq!(out3["routes"].as_array().unwrap().len(), 1);
        // set --route adds, --no-route clears, unset --route removes.
        assert_eq!(
            ok(&[
                "router",
                "set",
                rr.as_str(),
                "--route",
                "destination=10.0.13.0/24,gateway=10.0.5.13"
            ]),
            ""
        );
        assert_eq!(
            json(&["router", "show", rr.as_str()])["routes"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        ok(&[
            "router",
            "unset",
            rr.as_str(),
            "--route",
            "destination=10.0.13.0/24,gateway=10.0.5.13",
        ]);
        assert_eq!(
            json(&["router", "show", rr.as_str()])["routes"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        ok(&["router", "set", rr.as_str(), "--no-route"]);
        assert_eq!(
            json(&["router", "show", rr.as_str()])["routes"],
            serde_json::json!([])
        );
        let ns = namespace_of("router", rr.as_str());
        assert!(!sh_ok(&format!("ip -n {ns} route")).contains("10.0.10.0/24"));

        // interfaces_info, and router add/remove port with the interface's port id.
        let show = json(&["router", "show", rr.as_str()]);
        let info = &show["interfaces_info"][0];
        assert_eq!(info["ip_address"], "10.0.5.1");
        let port = info["port_id"].as_str().unwrap().to_string();
        assert_eq!(
            json(&["port", "show", &port])["fixed_ips"][0]["ip_address"],
            "10.0.5.1"
        );
        assert_eq!(ok(&["router", "remove", "port", rr.as_str(), &port]), "");
        assert_eq!(
            json(&["router", "show", rr.as_str()])["interfaces_info"],
            serde_json::json!([])
        );
        let refused = qrouter(&["router", "remove", "port", rr.as_str(), &port]);
        assert_eq!(refused.status.code(), Some(2));

        // A disabled router forwards nothing: its devices go down, and show, sync --dry-run
        // and sync agree.
        ok(&["router", "add", "subnet", rr.as_str(), rsub.as_str()]);
        ok(&[
            "router",
            "set",
            rr.as_str(),
            "--external-gateway",
            ext.as_str(),
        ]);
        let links = || sh_ok(&format!("ip -n {ns} -o link show"));
        assert_eq!(ok(&["router", "set", rr.as_str(), "--disable"]), "");
        let down = links();
        for line in down
            .lines()
            .filter(|l| l.contains(": qr-") || l.contains(": qg-"))
        {
            assert!(!line.contains("state UP"), "{down}");
        }
        assert!(!sh_ok(&format!("ip -n {ns} route")).contains("default"));
        assert_eq!(value(&["router", "show", rr.as_str()], "kernel"), "in sync");
        assert_eq!(value(&["router", "show", rr.as_str()], "status"), "DOWN");
        assert!(ok(&["sync", "--dry-run"]).starts_with("in sync"));
        ok(&["router", "set", rr.as_str(), "--enable"]);
        let up = links();
        assert_eq!(
            up.lines()
                .filter(|l| (l.contains(": qr-") || l.contains(": qg-")) && l.contains("state UP"))
                .count(),
            2,
            "{up}"
        );
        assert!(sh_ok(&format!("ip -n {ns} route")).contains("default via 10.0.0.1"));
        assert_eq!(value(&["router", "show", rr.as_str()], "kernel"), "in sync");

        // Deleting several: every one it can, then "N of M routers failed to delete."
        let out = qrouter(&["router", "delete", rs_.as_str(), rr.as_str(), "nosuch"]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("router {rr}: it still has interfaces")),
            "{err}"
        );
        assert!(err.contains("2 of 3 routers failed to delete."), "{err}");
        let left = names(&json(&["router", "list"]));
        assert!(!left.contains(&rs_) && left.contains(&rr), "{left:?}");
        // One name that matches nothing keeps its message and exit code.
        let out = qrouter(&["router", "delete", "nosuch"]);
        assert_eq!(out.status.code(), Some(2));

        tag_operation("router", &|name, args| {
            json(&[&["router", "create"][..], args, &[name]].concat())
        });
    });
}
