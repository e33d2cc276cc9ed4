//! What Neutron's DHCP agent does that a demanding operator checks: a deleted port's device
//! is unplugged and its address, leased again, goes to the next port (and to a port whose
//! MAC changed); every lease carries the network's MTU; the network's DNS server answers
//! NXDOMAIN and empty NOERROR as an authoritative server does; the qdhcp namespace routes
//! through its router, so instances behind that router reach its DNS server.

mod common;

use common::vm::{dns_query, fake_vm, udhcpc};
use common::*;

/// Both the report lines and the diagnostics of `qrouter ARGS`.
fn said(args: &[&str]) -> String {
    let out = qrouter(args);
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A port on network `net` with `mac` (and `ip` if given), and a fake VM `ns` on its tap.
fn vm_on_port(ns: &str, port: &str, net: &str, mac: &str, ip: Option<&str>) -> String {
    let fixed = ip.map(|ip| format!("ip-address={ip}"));
    let mut args = vec![
        "port",
        "create",
        port,
        "--network",
        net,
        "--mac-address",
        mac,
    ];
    if let Some(f) = &fixed {
        args.extend(["--fixed-ip", f]);
    }
    let made = json(&args);
    let tap = made["device_name"].as_str().unwrap().to_string();
    fake_vm(ns, &tap, made["bridge"].as_str().unwrap(), mac);
    tap
}

#[test]
fn a_deleted_ports_device_is_unplugged_and_its_address_leased_to_the_next_port() {
    sandboxed(|| {
        tenant_network("red", "192.168.9.0/24");
        let tap_a = vm_on_port("vma", "a", "red", "fa:16:3e:00:00:0a", None);
        let (got, log) = udhcpc("vma");
        // The network's MTU, 1500 (its bridge's) where it sets none, comes with the lease.
        assert!(got && log.contains("bound ip=192.168.9.3/24"), "{log}");
        assert!(log.contains("mtu=1500 "), "{log}");
        sh_ok("ip netns exec vma ping -c 1 -W 1 192.168.9.2");

        // Deleted: its device leaves the bridge and goes down, and stays (not qrouter's).
        ok(&["port", "delete", "a"]);
        let link = sh_ok(&format!("ip -o link show {tap_a}"));
        assert!(!link.contains(" master "), "{link}");
        assert!(!link.contains(",UP"), "{link}");
        assert!(!sh("ip netns exec vma ping -c 1 -W 1 192.168.9.2").0);
        let sync = said(&["sync"]);
        println!("{sync}");
        assert!(
            sync.contains(&format!(
                "{tap_a}: no port of this store names it (a deleted port's device, unplugged"
            )),
            "{sync}"
        );
        assert!(
            sh(&format!("ip link show {tap_a}")).0,
            "{tap_a} was deleted"
        );

        // Its address, given to another MAC, is leased at once: the old lease was released.
        vm_on_port("vmb", "b", "red", "fa:16:3e:00:00:0b", Some("192.168.9.3"));
        let (got, log) = udhcpc("vmb");
        assert!(got && log.contains("bound ip=192.168.9.3/24"), "{log}");

        // The same when the port's MAC changes.
        ok(&["port", "set", "b", "--mac-address", "fa:16:3e:00:00:0c"]);
        sh_ok("ip -n vmb link set eth0 address fa:16:3e:00:00:0c");
        let (got, log) = udhcpc("vmb");
        assert!(got && log.contains("bound ip=192.168.9.3/24"), "{log}");
        let dry = ok(&["sync", "--dry-run"]);
        assert!(
            dry.ends_with("in sync: the kernel matches the store\n"),
            "{dry}"
        );
        sh_ok("ip netns del vma; ip netns del vmb");
        ok(&["port", "delete", "b"]);
        ok(&["network", "delete", "red"]);
    });
}

#[test]
fn the_networks_dns_answers_as_an_authority_and_across_its_router() {
    sandboxed(|| {
        seed_topology();
        ok(&["instance", "create", "vm100", "--network", "vlan100"]);
        let vm3 = namespace_of("instance", "cirros-vm3");
        let vm100 = namespace_of("instance", "vm100");
        let ask = |ns: &str, name: &str, qtype: u16| {
            dns_query(ns, "172.16.101.2", name, qtype)
                .unwrap_or_else(|| panic!("no DNS answer to {name} from {ns}"))
        };
        let known = ask(&vm3, "cirros-vm3.openstacklocal", 1);
        assert_eq!(
            (known.rcode, known.addresses),
            (0, vec!["172.16.101.3".parse().unwrap()])
        );
        // Unknown, bare or in the domain: NXDOMAIN, not REFUSED.
        for name in ["nope", "nope.openstacklocal"] {
            assert_eq!(ask(&vm3, name, 1).rcode, 3, "{name}");
        }
        // An IPv4 instance's AAAA: no such record, but the name exists.
        for name in ["cirros-vm3", "cirros-vm3.openstacklocal"] {
            let aaaa = ask(&vm3, name, 28);
            assert_eq!((aaaa.rcode, aaaa.answers), (0, 0), "{name}: {aaaa:?}");
        }

        // From the router's other subnet: the qdhcp namespace routes back through it.
        let net = value(&["network", "show", "vlan101"], "id");
        let routes = sh_ok(&format!("ip -n qdhcp-{net} route"));
        assert!(routes.contains("default via 172.16.101.1"), "{routes}");
        let across = ask(&vm100, "cirros-vm3.openstacklocal", 1);
        assert_eq!(
            across.addresses,
            ["172.16.101.3".parse::<std::net::Ipv4Addr>().unwrap()]
        );
        // No router on the subnet, no route.
        ok(&["router", "remove", "subnet", "router_100_101", "vlan101"]);
        let routes = sh_ok(&format!("ip -n qdhcp-{net} route"));
        assert!(!routes.contains("default"), "{routes}");
        assert!(dns_query(&vm100, "172.16.101.2", "cirros-vm3", 1).is_none());
        assert_eq!(
            ok(&["sync", "--dry-run"]).trim(),
            "in sync: the kernel matches the store"
        );
    });
}
