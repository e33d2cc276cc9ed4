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
#[path = "openstack_parity/router.rs"]
mod router;

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
