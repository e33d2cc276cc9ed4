//! `qrouter trace` and `qrouter topology` in the sandbox: the static trace and the live one
//! (routes, counters, a real probe traced by netfilter) agree hop by hop on every path of the
//! seed; drift made by hand makes them differ and says so; tracing leaves nothing behind.

mod common;

use common::trace_check::*;
use common::*;
use serde_json::Value;

#[test]
fn static_and_live_agree_on_the_seed_paths() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        let qg = router_device("router_100_101", "10.10.10.2");
        // Seed step 7-8: two hops, SNAT to 10.10.10.2 by the rule iptables prints.
        let live = agree("cirros-vm3", "10.10.10.1", &[]);
        assert_eq!(live["probe"]["result"], "answered");
        let hop = router_hop(&live, "router_100_101");
        assert_eq!(
            rules_of(&hop),
            [format!(
                "-A qrouter-snat -o {qg} -j SNAT --to-source 10.10.10.2 --random-fully"
            )]
        );
        assert_eq!(hop["leaves"]["src"], "10.10.10.2");
        assert_eq!(live["static"]["outcome"], "delivered");
        assert_eq!(live["static"]["hops"].as_array().unwrap().len(), 3);
        // Seed step 10: the outside (with a route to the tenant subnet) is dropped, in words.
        let upstream = namespace_of("instance", "upstream");
        sh_ok(&format!(
            "ip netns exec {upstream} ip route add 172.16.101.0/24 via 10.10.10.2"
        ));
        let live = agree(
            "upstream",
            "cirros-vm3",
            &["--protocol", "tcp", "--port", "22"],
        );
        assert_eq!(live["static"]["outcome"], "dropped");
        assert_eq!(
            live["static"]["summary"],
            format!("dropped by `-A qrouter-FORWARD -i {qg} -j DROP`: a new connection from the external network that was not DNAT'ed to a floating IP")
        );
        assert_ne!(live["probe"]["result"], "answered");
        let text = ok(&[
            "trace",
            "upstream",
            "172.16.101.3",
            "--protocol",
            "tcp",
            "--port",
            "22",
        ]);
        assert!(text.contains("=>      DROPPED"), "{text}");
        // Between tenant networks of one router: routed, no NAT.
        ok(&["instance", "create", "vm100", "--network", "vlan100"]);
        let live = agree("vm100", "cirros-vm3", &[]);
        let hop = router_hop(&live, "router_100_101");
        assert_eq!(
            rules_of(&hop),
            [format!(
                "-A qrouter-POSTROUTING ! -o {qg} -m conntrack ! --ctstate DNAT -j ACCEPT"
            )]
        );
        assert_eq!(hop["leaves"], hop["arrives"]);
        // A floating IP: DNAT in, and the reply leaves from the floating IP.
        ok(&[
            "floating",
            "ip",
            "create",
            "ext_net",
            "--floating-ip-address",
            "10.10.10.3",
            "--instance",
            "cirros-vm3",
        ]);
        let live = agree("upstream", "10.10.10.3", &[]);
        assert_eq!(live["probe"]["result"], "answered");
        let hop = router_hop(&live, "router_100_101");
        assert_eq!(
            rules_of(&hop)[0],
            "-A qrouter-PREROUTING -d 10.10.10.3/32 -j DNAT --to-destination 172.16.101.3"
        );
        assert_eq!(hop["leaves"]["dst"], "172.16.101.3");
        let reply = live["static"]["reply"].as_array().unwrap();
        assert_eq!(reply.last().unwrap()["arrives"]["src"], "10.10.10.3");
        ok(&["floating", "ip", "delete", "10.10.10.3"]);
        // SNAT disabled: the instance's own address leaves through the gateway.
        ok(&["router", "set", "router_100_101", "--disable-snat"]);
        let live = agree("cirros-vm3", "10.10.10.1", &[]);
        let hop = router_hop(&live, "router_100_101");
        assert!(rules_of(&hop).is_empty());
        assert_eq!(hop["leaves"]["src"], "172.16.101.3");
        assert_eq!(
            live["probe"]["result"], "answered",
            "upstream has a route back"
        );
        nothing_left_behind();
    });
}

#[test]
fn other_routers_extra_routes_and_no_gateway() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        tenant_network("vlan102", "172.16.102.0/24");
        ok(&[
            "router",
            "create",
            "router2",
            "--external-gateway",
            "ext_net",
        ]);
        ok(&["router", "add", "interface", "router2", "vlan102"]);
        ok(&[
            "instance",
            "create",
            "vm5",
            "--network",
            "vlan102",
            "--fixed-ip",
            "172.16.102.5",
        ]);
        let gw2 = value(&["router", "show", "router2"], "external_gateway_ip");
        let qg2 = router_device("router2", &gw2);
        // Behind another router: its fixed address is not reachable (the upstream does not
        // forward), its floating IP is: SNAT out of one router, DNAT into the other.
        let live = agree("cirros-vm3", "vm5", &[]);
        assert_eq!(live["static"]["outcome"], "dropped");
        ok(&[
            "floating",
            "ip",
            "create",
            "ext_net",
            "--floating-ip-address",
            "10.10.10.50",
            "--instance",
            "vm5",
        ]);
        let live = agree("cirros-vm3", "10.10.10.50", &[]);
        assert_eq!(live["static"]["outcome"], "delivered");
        assert_eq!(live["probe"]["result"], "answered");
        let last = live["static"]["hops"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(last["node"]["name"], "vm5");
        assert_eq!(last["arrives"]["src"], "10.10.10.2");
        // An extra route via router2's gateway: routed there, and router2 lets no new
        // connection in through its gateway.
        ok(&[
            "router",
            "add",
            "route",
            "router_100_101",
            "--route",
            &format!("destination=172.16.102.0/24,gateway={gw2}"),
        ]);
        let live = agree("cirros-vm3", "vm5", &[]);
        let hop = router_hop(&live, "router_100_101");
        assert_eq!(hop["next_hop"], gw2.as_str());
        assert!(hop["route"]
            .as_str()
            .unwrap()
            .starts_with(&format!("172.16.102.0/24 via {gw2} dev qg-")));
        assert_eq!(
            rules_of(&router_hop(&live, "router2")),
            [format!("-A qrouter-FORWARD -i {qg2} -j DROP")]
        );
        // A router without a gateway: no route.
        tenant_network("vlan103", "172.16.103.0/24");
        ok(&["router", "create", "router3"]);
        ok(&["router", "add", "interface", "router3", "vlan103"]);
        ok(&["instance", "create", "vm6", "--network", "vlan103"]);
        let live = agree("vm6", "10.10.10.1", &[]);
        assert_eq!(live["static"]["outcome"], "no_route");
        assert!(live["static"]["summary"]
            .as_str()
            .unwrap()
            .contains("it has no external gateway"));
        nothing_left_behind();
    });
}

#[test]
fn hand_made_drift_makes_the_live_trace_differ_and_say_so() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        let ns = namespace_of("router", "router_100_101");
        let qg = router_device("router_100_101", "10.10.10.2");
        // The SNAT rule deleted by hand.
        sh_ok(&format!("ip netns exec {ns} iptables -t nat -D qrouter-snat -o {qg} -j SNAT --to-source 10.10.10.2 --random-fully"));
        let out = qrouter(&["trace", "cirros-vm3", "10.10.10.1", "--live", "-f", "json"]);
        assert_eq!(out.status.code(), Some(1), "a differing live trace exits 1");
        let live: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(live["agrees"], false);
        let said = live["differences"].to_string();
        assert!(
            said.contains(&format!(
                "the store expects `-A qrouter-snat -o {qg} -j SNAT"
            )),
            "{said}"
        );
        assert!(live["advice"].as_str().unwrap().contains("'qrouter sync'"));
        let text =
            String::from_utf8(qrouter(&["trace", "cirros-vm3", "10.10.10.1", "--live"]).stdout)
                .unwrap();
        assert!(text.contains("DIFFERS") && text.contains("drift"), "{text}");
        // The default route deleted by hand.
        sh_ok(&format!("ip netns exec {ns} ip route del default"));
        let live: Value = serde_json::from_slice(
            &qrouter(&["trace", "cirros-vm3", "8.8.8.8", "--live", "-f", "json"]).stdout,
        )
        .unwrap();
        assert_eq!(live["agrees"], false);
        assert!(
            live["differences"]
                .to_string()
                .contains("the kernel has no route"),
            "{live:#}"
        );
        // sync repairs both; then they agree again.
        ok(&["sync"]);
        agree("cirros-vm3", "10.10.10.1", &[]);
        nothing_left_behind();

        // Interrupted while it traces (its chain is in place): Ctrl-C waits until the
        // chain and the monitors are gone, then takes effect.
        let mut child = command(&["trace", "cirros-vm3", "10.10.10.1", "--live"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !sh_ok(&format!("ip netns exec {ns} iptables-save -t raw")).contains("qrouter-trace")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the live trace never started tracing"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        sh_ok(&format!("kill -INT {}", child.id()));
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(2),
            "Ctrl-C took effect once done: {status:?}"
        );
        nothing_left_behind();
        // Killed outright it cannot clean up: sync removes what it left, and trips on nothing.
        sh_ok(&format!("ip netns exec {ns} sh -c 'printf \"*raw\\n:qrouter-trace - [0:0]\\n-A PREROUTING -j qrouter-trace\\n-A qrouter-trace -p icmp -j TRACE\\nCOMMIT\\n\" | iptables-restore --noflush'"));
        let dry = String::from_utf8(qrouter(&["sync", "--dry-run"]).stdout).unwrap();
        assert!(dry.contains("update qrouter chains of table raw"), "{dry}");
        ok(&["sync"]);
        nothing_left_behind();
        agree("cirros-vm3", "10.10.10.1", &[]);
    });
}

/// A disabled router: `sync --dry-run` and `trace --live` read the same plan, so they agree:
/// both in sync while its devices are down, both differing once one is set up by hand.
#[test]
fn a_disabled_router_is_in_sync_for_dry_run_and_live_trace_alike() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        ok(&["router", "set", "router_100_101", "--disable"]);
        assert!(ok(&["sync", "--dry-run"]).starts_with("in sync"));
        let live = agree("cirros-vm3", "10.10.10.1", &[]);
        assert_eq!(live["static"]["outcome"], "dropped");
        assert_eq!(live["probe"]["result"], "no answer");
        let qr = router_device("router_100_101", "172.16.101.1");
        let hop = router_hop(&live, "router_100_101");
        assert_eq!(hop["down"], qr.as_str(), "{hop:#}");
        assert!(
            hop["route"].is_null(),
            "a device that is down routes nothing: {hop:#}"
        );

        // Drift: its qr- set up by hand. Both say so.
        let ns = namespace_of("router", "router_100_101");
        sh_ok(&format!("ip -n {ns} link set {qr} up"));
        let dry = qrouter(&["sync", "--dry-run"]);
        assert_eq!(dry.status.code(), Some(1));
        let out = qrouter(&["trace", "cirros-vm3", "10.10.10.1", "--live", "-f", "json"]);
        assert_eq!(out.status.code(), Some(1));
        let live: Value = serde_json::from_slice(&out.stdout).unwrap();
        let said = live["differences"].to_string();
        assert!(
            said.contains(&format!(
                "device {qr}: the store has it down, the kernel has it up"
            )),
            "{said}"
        );
        assert!(live["advice"].as_str().unwrap().contains("'qrouter sync'"));
        ok(&["sync"]);
        agree("cirros-vm3", "10.10.10.1", &[]);
        ok(&["router", "set", "router_100_101", "--enable"]);
        assert_eq!(
            agree("cirros-vm3", "10.10.10.1", &[])["probe"]["result"],
            "answered"
        );
    });
}

/// A workload port (`port create`) is an end of a trace, as the help says: its address is
/// the port's, held by the VM behind its tap, which sends through the subnet's gateway as
/// its DHCP lease says.
#[test]
fn a_workload_port_is_an_end_of_a_trace() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        let port = json(&["port", "create", "p4", "--network", "vlan101"]);
        let ip = port["fixed_ips"][0]["ip_address"]
            .as_str()
            .unwrap()
            .to_string();
        let (tap, mac) = (&port["device_name"], &port["mac_address"]);
        // The VM: a namespace whose eth0's peer is the port's tap, as libvirt would plug it.
        sh_ok(&format!(
            "ip netns add vm4 && ip link add {tap} type veth peer name eth0 netns vm4 && \
             ip -n vm4 link set eth0 address {mac} up && ip -n vm4 addr add {ip}/24 dev eth0 && \
             ip -n vm4 route add default via 172.16.101.1"
        ));
        ok(&["sync"]);

        let out = json(&["trace", "p4", "10.10.10.1"]);
        assert_eq!(out["src"], format!("port p4 ({ip})"), "{out:#}");
        assert_eq!(out["outcome"], "delivered", "{out:#}");
        assert_eq!(out["hops"][0]["egress"]["tap"], *tap, "{out:#}");
        assert_eq!(
            out["reply"].as_array().unwrap().last().unwrap()["node"]["kind"],
            "port"
        );

        let live = agree("cirros-vm3", "p4", &[]);
        assert_eq!(live["static"]["dst"], format!("port p4 ({ip})"));
        assert_eq!(live["static"]["outcome"], "delivered");
        assert_eq!(live["probe"]["result"], "answered", "{live:#}");
        // By its address too, and from the outside through a floating IP.
        assert_eq!(json(&["trace", "cirros-vm3", &ip])["outcome"], "delivered");
        let fip = value(
            &["floating", "ip", "create", "ext_net", "--port", "p4"],
            "floating_ip_address",
        );
        let live = agree("upstream", &fip, &[]);
        assert_eq!(live["probe"]["result"], "answered", "{live:#}");
    });
}

#[test]
fn topology_formats_and_bad_names() {
    sandboxed(|| {
        seed_topology();
        set_gateway();
        ok(&[
            "floating",
            "ip",
            "create",
            "ext_net",
            "--instance",
            "cirros-vm3",
        ]);
        // SVG: valid XML (Python's parser), an svg root.
        let svg = ok(&["topology", "-f", "svg"]);
        std::fs::write("/run/topology.svg", &svg).unwrap();
        let root = sh_ok("python3 -c \"import xml.etree.ElementTree as E; print(E.parse('/run/topology.svg').getroot().tag)\"");
        assert_eq!(root.trim(), "{http://www.w3.org/2000/svg}svg");
        // JSON round-trips through the library's type.
        let text = ok(&["topology", "-f", "json"]);
        let t: qrouter::explain::topology::Topology = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string_pretty(&t).unwrap() + "\n", text);
        assert_eq!(t.routers[0].floating_ips.len(), 1);
        // dot: accepted by Graphviz where it is installed.
        let dot = ok(&["topology", "-f", "dot"]);
        std::fs::write("/run/topology.dot", &dot).unwrap();
        match sh("command -v dot").0 {
            true => {
                sh_ok("dot -Tsvg /run/topology.dot -o /dev/null");
            }
            false => eprintln!(
                "topology_formats: Graphviz 'dot' not installed; dot output not checked by it"
            ),
        }
        // Text: box drawing on a UTF-8 locale, ASCII otherwise; narrowed; drift marked.
        let utf8 = String::from_utf8(
            command(&["topology"])
                .env("LC_ALL", "C.UTF-8")
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        assert!(utf8.contains("├── router router_100_101"), "{utf8}");
        let ascii = topology_text(&["--network", "vlan101"], "C");
        assert!(
            ascii.is_ascii() && ascii.starts_with("vlan101 172.16.101.0/24"),
            "{ascii}"
        );
        assert!(!ascii.contains("ext_net"), "{ascii}");
        let vm3 = namespace_of("instance", "cirros-vm3");
        sh_ok(&format!("ip netns del {vm3}"));
        let drift = String::from_utf8(
            command(&["topology"])
                .env("LC_ALL", "C")
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        assert!(
            drift.contains("instance cirros-vm3  eth0  172.16.101.3  [MISSING in the kernel]"),
            "{drift}"
        );
        // Bad SRC/DST: exit 2, naming it.
        let out = qrouter(&["trace", "cirros-vm9", "10.10.10.1"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("SRC cirros-vm9"));
        let out = qrouter(&["trace", "cirros-vm3", "nowhere"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("DST nowhere"));
    });
}
