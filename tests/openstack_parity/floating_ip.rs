//! test_floating_ip.py's flows.

use super::*;

#[test]
fn floating_ip_flows() {
    sandboxed(|| {
        let ext = json(&["network", "create", "--external", "fext"]);
        ok(&["network", "create", "fpriv"]);
        ok(&[
            "subnet",
            "create",
            "fext-sub",
            "--network",
            "fext",
            "--subnet-range",
            "10.20.0.0/26",
        ]);
        ok(&[
            "subnet",
            "create",
            "fpriv-sub",
            "--network",
            "fpriv",
            "--subnet-range",
            "10.30.0.0/26",
        ]);

        // test_floating_ip_delete
        let f1 = json(&["floating", "ip", "create", "--description", "aaaa", "fext"]);
        assert!(f1["id"].is_string());
        assert_eq!(f1["description"], "aaaa");
        assert_eq!(f1["floating_network_id"], ext["id"]);
        let f2 = json(&["floating", "ip", "create", "--description", "bbbb", "fext"]);
        assert_eq!(f2["description"], "bbbb");
        let (id1, id2) = (f1["id"].as_str().unwrap(), f2["id"].as_str().unwrap());
        assert_eq!(ok(&["floating", "ip", "delete", id1, id2]), "");

        // test_floating_ip_list
        let f1 = json(&["floating", "ip", "create", "--description", "aaaa", "fext"]);
        let f2 = json(&["floating", "ip", "create", "--description", "bbbb", "fext"]);
        let list = json(&["floating", "ip", "list"]);
        let ids: Vec<&Value> = list.as_array().unwrap().iter().map(|r| &r["ID"]).collect();
        let addrs: Vec<&Value> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["Floating IP Address"])
            .collect();
        assert!(ids.contains(&&f1["id"]) && ids.contains(&&f2["id"]));
        assert!(addrs.contains(&&f1["floating_ip_address"]));
        assert!(addrs.contains(&&f2["floating_ip_address"]));
        assert_eq!(list[0]["Floating Network"], ext["id"]);
        let long = json(&["floating", "ip", "list", "--long"]);
        let descriptions: Vec<&Value> = long
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["Description"])
            .collect();
        assert!(descriptions.contains(&&Value::from("aaaa")));
        assert!(descriptions.contains(&&Value::from("bbbb")));
        let show = json(&["floating", "ip", "show", f1["id"].as_str().unwrap()]);
        assert_eq!(show["id"], f1["id"]);
        assert_eq!(show["description"], "aaaa");
        assert_eq!(show["floating_network_id"], ext["id"]);
        assert_eq!(show["floating_ip_address"], f1["floating_ip_address"]);
        assert_eq!(show["port_details"], Value::Null);

        // test_floating_ip_set_and_unset_port, with an instance's port for `port create`.
        ok(&["router", "create", "fr", "--external-gateway", "fext"]);
        ok(&["router", "add", "subnet", "fr", "fpriv-sub"]);
        ok(&["instance", "create", "fvm", "--network", "fpriv"]);
        let port = json(&["port", "list", "--network", "fpriv"])
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["Device Owner"] == "compute:none")
            .unwrap()["ID"]
            .as_str()
            .unwrap()
            .to_string();
        let ip1 = f1["id"].as_str().unwrap();
        let fixed = value(&["instance", "show", "fvm"], "fixed_ip");
        let wrong = qrouter(&[
            "floating",
            "ip",
            "set",
            "--port",
            &port,
            "--fixed-ip-address",
            "10.30.0.60",
            ip1,
        ]);
        assert_eq!(wrong.status.code(), Some(2));
        assert_eq!(
            ok(&[
                "floating",
                "ip",
                "set",
                "--port",
                &port,
                "--fixed-ip-address",
                &fixed,
                ip1
            ]),
            ""
        );
        let show = json(&["floating", "ip", "show", ip1]);
        assert_eq!(show["port_id"], port.as_str());
        assert_eq!(show["port_details"]["device_owner"], "compute:none");
        assert_eq!(show["port_details"]["admin_state_up"], true);
        assert_eq!(show["port_details"]["status"], "ACTIVE");
        // port_details follows the port's admin state.
        ok(&["port", "set", &port, "--disable"]);
        let details = &json(&["floating", "ip", "show", ip1])["port_details"];
        assert_eq!(
            (&details["admin_state_up"], &details["status"]),
            (&false.into(), &"DOWN".into())
        );
        ok(&["port", "set", &port, "--enable"]);
        assert!(show["router_id"].is_string());
        let filtered = json(&["floating", "ip", "list", "--port", &port]);
        assert_eq!(filtered.as_array().unwrap().len(), 1);
        assert_eq!(
            json(&["floating", "ip", "list", "--status", "ACTIVE"])
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(ok(&["floating", "ip", "unset", "--port", ip1]), "");
        assert_eq!(
            json(&["floating", "ip", "show", ip1])["port_id"],
            Value::Null
        );

        // Tags on floating IPs, as on every object.
        ok(&["floating", "ip", "set", ip1, "--tag", "red"]);
        assert_eq!(
            json(&["floating", "ip", "show", ip1])["tags"],
            serde_json::json!(["red"])
        );
        assert_eq!(
            json(&["floating", "ip", "list", "--tags", "red"])
                .as_array()
                .unwrap()
                .len(),
            1
        );
        ok(&["floating", "ip", "unset", ip1, "--all-tag"]);
        assert_eq!(
            json(&["floating", "ip", "show", ip1])["tags"],
            serde_json::json!([])
        );
    });
}
