//! Port security for IPv6 (issue 28), as Neutron's firewall has it: a VM may send IPv6 only
//! from its MAC with its own addresses and its link-local, and may advertise only those as
//! neighbours: a forged source does not reach the router, a forged neighbour advertisement
//! for the router's address does not reach another VM. Checked on the far side: a counter
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

        // Without port security the same forgery takes the router's traffic.
        let port = value(&["instance", "show", "cirros-vm3"], "port_id");
        ok(&["port", "set", &port, "--disable-port-security"]);
        assert_ne!(router_mac_after_forgery(&vm3, &vm4), router_mac);
    });
}
