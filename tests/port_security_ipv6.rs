//! Port security for IPv6 (issue 28), as Neutron's firewall has it: a VM may send IPv6 only
//! from its MAC with its own addresses and its link-local, may advertise only those as
//! neighbours, and is no router: a forged source does not reach the router, a forged
//! neighbour advertisement for the router's address, a rogue router advertisement and a
//! DHCPv6 server's reply do not reach another VM. Checked on the far side: a counter
//! in the router's ip6tables, the victim's neighbour table.

mod common;

use std::time::Duration;

use common::dual_stack::*;
use common::*;

/// Echo requests from `source` that reached the router's namespace `router` while
/// `traffic` ran (a counting rule in its raw table).
fn reached_router(router: &str, source: &str, traffic: impl FnOnce()) -> u64 {
    let rule =
        format!("PREROUTING -s {source}/128 -p ipv6-icmp --icmpv6-type echo-request -j ACCEPT");
    sh_ok(&format!(
        "ip netns exec {router} ip6tables -t raw -I {rule}"
    ));
    traffic();
    let counted = sh_ok(&format!(
        "ip netns exec {router} ip6tables -t raw -L PREROUTING 1 -v -x -n"
    ));
    sh_ok(&format!(
        "ip netns exec {router} ip6tables -t raw -D {rule}"
    ));
    counted.split_whitespace().next().unwrap().parse().unwrap()
}

/// One ping6 from `ns` to the router's 2001:db8:101::1, from `source` if given.
fn ping6_router(ns: &str, source: Option<&str>) -> bool {
    let from = source.map(|s| format!("-I {s} ")).unwrap_or_default();
    sh(&format!(
        "ip netns exec {ns} ping -6 -c 1 -W 1 {from}2001:db8:101::1"
    ))
    .0
}

/// The MAC `ns` holds for the router's 2001:db8:101::1.
fn router_mac_seen_by(ns: &str) -> String {
    let neigh = sh_ok(&format!("ip -n {ns} -6 neigh show 2001:db8:101::1"));
    let after = neigh.split("lladdr ").nth(1).unwrap_or("none");
    after.split_whitespace().next().unwrap_or("none").into()
}

/// From `attacker`'s link-local, an unsolicited neighbour advertisement (override flag) to
/// the victim's link-local `victim`: 2001:db8:101::1 is at the attacker's MAC.
fn forge_neighbour_advert(attacker: &str, victim: &str) {
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)\n\
         s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)\n\
         me = bytes.fromhex(open('/sys/class/net/eth0/address').read().strip().replace(':', ''))\n\
         target = socket.inet_pton(socket.AF_INET6, '2001:db8:101::1')\n\
         na = bytes([136, 0, 0, 0, 0xa0, 0, 0, 0]) + target + bytes([2, 1]) + me\n\
         s.sendto(na, ('{victim}', 0, 0, socket.if_nametoindex('eth0')))\n"
    );
    std::fs::write("/run/forge_na.py", script).unwrap();
    // /sys of the attacker's namespace: `ip netns exec` mounts it.
    sh_ok(&format!(
        "ip netns exec {attacker} python3 /run/forge_na.py"
    ));
}

/// From `attacker`, a router advertisement to all nodes (a default router for 30 min):
/// whether `victim` then routes by default through the attacker's link-local.
fn victim_takes_rogue_router(attacker: &str, victim: &str) -> bool {
    let script = "import socket, struct\n\
         s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)\n\
         s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)\n\
         i = socket.if_nametoindex('eth0')\n\
         s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, i)\n\
         me = bytes.fromhex(open('/sys/class/net/eth0/address').read().strip().replace(':', ''))\n\
         ra = struct.pack('!BBHBBHII', 134, 0, 0, 64, 0, 1800, 0, 0) + bytes([1, 1]) + me\n\
         s.sendto(ra, ('ff02::1', 0, 0, i))\n";
    std::fs::write("/run/forge_ra.py", script).unwrap();
    sh_ok(&format!(
        "ip netns exec {attacker} python3 /run/forge_ra.py"
    ));
    std::thread::sleep(Duration::from_millis(300));
    let rogue = format!("default via {} dev eth0", link_local(attacker, "eth0"));
    let routes = sh_ok(&format!("ip -n {victim} -6 route"));
    routes.contains(&rogue)
}

/// Whether a datagram from `from`'s port 547 (a DHCPv6 server's reply) reaches port 546 on
/// `to`'s link-local.
fn dhcpv6_reply_reaches(from: &str, to: &str) -> bool {
    use qrouter::kernel::netns::run_in;
    use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
    let listener = run_in(to, || UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 546)))
        .unwrap()
        .unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let lla: Ipv6Addr = link_local(to, "eth0").parse().unwrap();
    let index: u32 = sh_ok(&format!(
        "ip netns exec {from} cat /sys/class/net/eth0/ifindex"
    ))
    .trim()
    .parse()
    .unwrap();
    run_in(from, || -> std::io::Result<usize> {
        let sock = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 547))?;
        sock.send_to(b"ADVERTISE", SocketAddrV6::new(lla, 546, 0, index))
    })
    .unwrap()
    .unwrap();
    let mut buf = [0u8; 64];
    listener.recv(&mut buf).is_ok()
}

/// The victim's neighbour entry for the router after `attacker` forged an advertisement.
fn router_mac_after_forgery(attacker: &str, victim: &str) -> String {
    assert!(
        ping6_router(victim, None),
        "the victim cannot ping6 the router"
    );
    forge_neighbour_advert(attacker, &link_local(victim, "eth0"));
    std::thread::sleep(Duration::from_millis(200));
    router_mac_seen_by(victim)
}

#[test]
fn a_vm_cannot_forge_its_ipv6_source_or_a_neighbour_advertisement() {
    sandboxed(|| {
        dual_stack_seed();
        ok(&["instance", "create", "vm4", "--network", "vlan101"]);
        let (vm3, vm4) = (
            namespace_of("instance", "cirros-vm3"),
            namespace_of("instance", "vm4"),
        );
        let vm3_address = store_address("cirros-vm3", "2001:db8:101:");
        assert!(usable("cirros-vm3", &vm3_address));
        assert!(usable("vm4", &store_address("vm4", "2001:db8:101:")));
        let router = namespace_of("router", "router_100_101");
        let qr = router_device("router_100_101", "2001:db8:101::1");
        let link = sh_ok(&format!("ip -n {router} -o link show {qr}"));
        let router_mac = link.split("link/ether ").nth(1).unwrap();
        let router_mac = router_mac.split_whitespace().next().unwrap().to_string();

        // Its own address and its link-local pass.
        let own = reached_router(&router, &vm3_address, || {
            assert!(ping6_router(&vm3, None));
        });
        assert_eq!(own, 1, "vm3's own address did not reach the router");
        let qr_lla = link_local(&router, &qr);
        assert!(
            sh(&format!(
                "ip netns exec {vm3} ping -6 -c 1 -W 1 {qr_lla}%eth0"
            ))
            .0,
            "vm3's link-local did not reach the router's"
        );
        // Another source does not reach the router.
        sh_ok(&format!(
            "ip -n {vm3} addr add 2001:db8:101::77/64 dev eth0 nodad"
        ));
        let forged = reached_router(&router, "2001:db8:101::77", || {
            assert!(!ping6_router(&vm3, Some("2001:db8:101::77")));
        });
        assert_eq!(forged, 0, "a forged IPv6 source reached the router");
        sh_ok(&format!(
            "ip -n {vm3} addr del 2001:db8:101::77/64 dev eth0"
        ));

        // A forged advertisement for the router's address does not reach vm4.
        assert_eq!(router_mac_after_forgery(&vm3, &vm4), router_mac);
        let rules = sh_ok("nft list ruleset");
        assert!(
            rules.contains("icmpv6 type nd-neighbor-advert drop"),
            "{rules}"
        );

        // Nor does a rogue router advertisement.
        assert!(
            !victim_takes_rogue_router(&vm3, &vm4),
            "vm4 took vm3 for a router"
        );

        // Nor a DHCPv6 server's reply from a VM.
        assert!(
            !dhcpv6_reply_reaches(&vm3, &vm4),
            "a rogue DHCPv6 reply got through"
        );

        // Without port security the same forgeries take the router's traffic.
        let port = value(&["instance", "show", "cirros-vm3"], "port_id");
        ok(&["port", "set", &port, "--disable-port-security"]);
        assert_ne!(router_mac_after_forgery(&vm3, &vm4), router_mac);
        assert!(victim_takes_rogue_router(&vm3, &vm4));
        assert!(dhcpv6_reply_reaches(&vm3, &vm4));
    });
}
