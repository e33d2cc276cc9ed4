//! test_router.py's flows.

use super::*;

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
