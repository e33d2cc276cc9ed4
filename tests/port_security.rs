//! Port security, Neutron's, on by default: a VM (an instance's namespace) that forges its
//! source address, its MAC, an ARP reply for the router's address or a DHCP server's reply
//! gets nothing through its tap; its own traffic does; an allowed address pair lets another
//! address through; `--disable-port-security` lets everything through. Checked on the far
//! side: a capture on the router, the victim's neighbour table, a socket on the victim.

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use common::*;

/// Ping the router's 172.16.101.1 from `ns`, from `source` if given; whether it answered.
fn pings_router(ns: &str, source: Option<&str>) -> bool {
    let from = source.map(|s| format!("-I {s} ")).unwrap_or_default();
    sh(&format!(
        "ip netns exec {ns} ping -c 1 -W 1 {from}172.16.101.1"
    ))
    .0
}

/// The MAC of `dev` in `ns`.
fn mac_of(ns: &str, dev: &str) -> String {
    let link = sh_ok(&format!("ip -n {ns} -o link show {dev}"));
    let after = link
        .split("link/ether ")
        .nth(1)
        .expect("an Ethernet device");
    after.split_whitespace().next().unwrap().to_string()
}

/// The MAC `ns` holds for 172.16.101.1 in its neighbour table.
fn router_mac_seen_by(ns: &str) -> String {
    let neigh = sh_ok(&format!("ip -n {ns} neigh show 172.16.101.1"));
    let after = neigh.split("lladdr ").nth(1).unwrap_or("none");
    after
        .split_whitespace()
        .next()
        .unwrap_or("none")
        .to_string()
}

/// From `attacker`, an ARP reply to `victim` (MAC, address) saying that 172.16.101.1 is at
/// the attacker's MAC: the forgery that would take the router's traffic.
fn forge_arp_reply(attacker: &str, victim_mac: &str, victim_ip: &str) {
    let script = format!(
        "import socket, struct\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
         s.bind(('eth0', 0))\n\
         me = s.getsockname()[4]\n\
         you = bytes.fromhex('{}')\n\
         arp = struct.pack('!HHBBH6s4s6s4s', 1, 0x0800, 6, 4, 2, me, socket.inet_aton('172.16.101.1'), you, socket.inet_aton('{victim_ip}'))\n\
         s.send(you + me + b'\\x08\\x06' + arp)\n",
        victim_mac.replace(':', "")
    );
    std::fs::write("/run/forge.py", script).unwrap();
    sh_ok(&format!("ip netns exec {attacker} python3 /run/forge.py"));
}

/// The victim's ARP entry for the router after `attacker` forged a reply: it is refreshed
/// first, and the forgery comes after the kernel's one-second lock on it.
fn router_mac_after_forgery(attacker: &str, victim: &str) -> String {
    assert!(pings_router(victim, None));
    let learned = router_mac_seen_by(victim);
    // The victim ignores a reply within a second (`locktime`) of its entry's last update,
    // which the router's own ARP traffic may renew: up to three forgeries, each after that.
    let mut seen = learned.clone();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1200));
        forge_arp_reply(attacker, &mac_of(victim, "eth0"), "172.16.101.4");
        std::thread::sleep(Duration::from_millis(200));
        seen = router_mac_seen_by(victim);
        if seen != learned {
            break;
        }
    }
    seen
}

/// Whether a datagram from `from`'s port 67 (a DHCP server's reply) reaches port 68 on
/// 172.16.101.4 in `to`.
fn dhcp_reply_reaches(from: &str, to: &str) -> bool {
    use qrouter::kernel::netns::run_in;
    let listener = run_in(to, || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 68)))
        .unwrap()
        .unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    run_in(from, || -> std::io::Result<usize> {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 67))?;
        sock.send_to(b"DHCPOFFER", ("172.16.101.4", 68))
    })
    .unwrap()
    .unwrap();
    let mut buf = [0u8; 64];
    listener.recv(&mut buf).is_ok()
}

fn dry_run() -> (bool, String) {
    let out = qrouter(&["sync", "--dry-run"]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_vm_cannot_forge_its_source_its_mac_the_routers_arp_or_dhcp_replies() {
    sandboxed(|| {
        seed_topology();
        ok(&[
            "instance",
            "create",
            "vm4",
            "--network",
            "vlan101",
            "--fixed-ip",
            "172.16.101.4",
        ]);
        let (vm3, vm4) = (
            namespace_of("instance", "cirros-vm3"),
            namespace_of("instance", "vm4"),
        );
        let router = namespace_of("router", "router_100_101");
        let qr = router_device("router_100_101", "172.16.101.1");
        let port = value(&["instance", "show", "cirros-vm3"], "port_id");
        let shown = json(&["port", "show", &port]);
        assert_eq!(shown["port_security_enabled"], true, "{shown}");
        assert_eq!(shown["allowed_address_pairs"], serde_json::json!([]));

        // Its own address passes; another one does not reach the router.
        let seen = capture_icmp(&router, &qr, || assert!(pings_router(&vm3, None)));
        assert!(seen.contains("172.16.101.3 > 172.16.101.1"), "{seen}");
        sh_ok(&format!("ip -n {vm3} addr add 172.16.101.77/24 dev eth0"));
        let seen = capture_icmp(&router, &qr, || {
            pings_router(&vm3, Some("172.16.101.77"));
        });
        assert!(seen.starts_with("(nothing captured"), "{seen}");

        // Another MAC: nothing passes.
        let own_mac = mac_of(&vm3, "eth0");
        sh_ok(&format!(
            "ip -n {vm3} link set eth0 address fa:16:3e:66:66:66"
        ));
        assert!(!pings_router(&vm3, None), "a forged MAC got through");
        sh_ok(&format!("ip -n {vm3} link set eth0 address {own_mac}"));

        // A forged ARP reply for the router's address does not reach vm4.
        let router_mac = mac_of(&router, &qr);
        assert_eq!(router_mac_after_forgery(&vm3, &vm4), router_mac);
        // Nor does a DHCP server's reply from a VM.
        assert!(
            !dhcp_reply_reaches(&vm3, &vm4),
            "a rogue DHCP reply got through"
        );

        // An allowed address pair lets that address through, both ways.
        ok(&[
            "port",
            "set",
            &port,
            "--allowed-address",
            "ip-address=172.16.101.77",
        ]);
        let pairs = json(&["port", "show", &port])["allowed_address_pairs"].clone();
        assert_eq!(
            pairs,
            serde_json::json!([{"ip_address": "172.16.101.77", "mac_address": own_mac}])
        );
        assert!(pings_router(&vm3, Some("172.16.101.77")));
        sh_ok(&format!("ip -n {vm3} addr del 172.16.101.77/24 dev eth0"));
        // Pairs need port security on (Neutron's rule): refused, nothing changed.
        let out = qrouter(&["port", "set", &port, "--disable-port-security"]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("port security must be enabled"), "{err}");

        // Drift: a rule deleted behind qrouter's back is listed, and sync puts it back.
        let table = sh_ok("nft list tables bridge");
        let table = table.split_whitespace().last().unwrap().to_string();
        let tap = value(&["instance", "show", "cirros-vm3"], "host_device");
        let rules = |p: &str| value(&["port", "show", p], "port_security_rules");
        assert_eq!(rules(&port), "in place");
        sh_ok(&format!("nft flush chain bridge {table} {tap}"));
        assert!(rules(&port).starts_with("MISSING"), "{}", rules(&port));
        let (clean, dry) = dry_run();
        println!("{dry}");
        assert!(!clean, "drift not reported: {dry}");
        assert!(
            dry.contains(&format!("port security of {tap}"))
                && dry.contains("missing `ether type ip drop`"),
            "{dry}"
        );
        ok(&["sync"]);
        assert_eq!(
            dry_run(),
            (true, "in sync: the kernel matches the store\n".into())
        );
        // The address is drift of its own (qrouter sets the instance's), so it goes again
        // before each check that the kernel matches the store.
        let extra = |add: bool| {
            let verb = if add { "add" } else { "del" };
            sh_ok(&format!(
                "ip -n {vm3} addr {verb} 172.16.101.78/24 dev eth0"
            ));
        };
        extra(true);
        assert!(!pings_router(&vm3, Some("172.16.101.78")));
        extra(false);

        // Off: everything passes again.
        ok(&[
            "port",
            "unset",
            &port,
            "--allowed-address",
            "ip-address=172.16.101.77",
        ]);
        ok(&["port", "set", &port, "--disable-port-security"]);
        assert_eq!(
            value(&["port", "show", &port], "port_security_enabled"),
            "false"
        );
        extra(true);
        assert!(pings_router(&vm3, Some("172.16.101.78")));
        extra(false);
        assert_ne!(router_mac_after_forgery(&vm3, &vm4), router_mac);
        assert!(dhcp_reply_reaches(&vm3, &vm4));
        assert!(dry_run().0, "{}", dry_run().1);

        // The table goes with the last guarded port; another's table stays.
        sh_ok("nft add table bridge someone_else");
        ok(&["instance", "delete", "cirros-vm3", "vm4", "upstream"]);
        assert_eq!(
            sh_ok("nft list tables bridge"),
            "table bridge someone_else\n"
        );
    });
}

#[test]
fn a_network_made_without_port_security_gives_its_ports_none() {
    sandboxed(|| {
        ok(&["network", "create", "open", "--disable-port-security"]);
        assert_eq!(
            value(&["network", "show", "open"], "port_security_enabled"),
            "false"
        );
        ok(&[
            "subnet",
            "create",
            "open",
            "--network",
            "open",
            "--subnet-range",
            "192.168.5.0/24",
        ]);
        let port = json(&["port", "create", "p1", "--network", "open"]);
        assert_eq!(port["port_security_enabled"], false, "{port}");
        let on = json(&[
            "port",
            "create",
            "p2",
            "--network",
            "open",
            "--enable-port-security",
            "--allowed-address",
            "ip-address=10.9.0.0/16,mac-address=fa:16:3e:00:00:99",
        ]);
        assert_eq!(on["port_security_enabled"], true, "{on}");
        assert_eq!(
            on["allowed_address_pairs"],
            serde_json::json!([{"ip_address": "10.9.0.0/16", "mac_address": "fa:16:3e:00:00:99"}])
        );
        // Only p2 is guarded; its chain lets its pair's MAC and prefix through.
        let rules = sh_ok("nft list ruleset");
        let p1_tap = value(&["port", "show", "p1"], "device_name");
        let p2_tap = value(&["port", "show", "p2"], "device_name");
        assert!(!rules.contains(&p1_tap), "{rules}");
        assert!(rules.contains("fa:16:3e:00:00:99 . 10.9.0.0/16"), "{rules}");
        assert!(rules.contains(&p2_tap), "{rules}");
        // Bad pairs: exit 2, named, nothing changed.
        for bad in ["ip-address=10.0.0.1/8", "mac-address=fa:16:3e:00:00:01"] {
            let out = qrouter(&["port", "set", "p2", "--allowed-address", bad]);
            assert_eq!(out.status.code(), Some(2), "{bad}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("port p2: --allowed-address"), "{err}");
        }
        let out = qrouter(&[
            "port",
            "create",
            "p3",
            "--network",
            "open",
            "--allowed-address",
            "ip-address=10.0.0.1",
        ]);
        assert_eq!(out.status.code(), Some(2));
        ok(&["port", "delete", "p1", "p2"]);
        assert_eq!(sh_ok("nft list tables bridge"), "");
    });
}
