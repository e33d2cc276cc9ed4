//! IPv6 across hosts (issue 28): a router with an IPv6 tenant subnet, placed on a network
//! host by its agent, advertises the prefix over VXLAN to an instance on a compute host,
//! which forms its SLAAC address and is routed to the upstream without NAT66.

mod common;
mod etcd;
mod hosts;

use common::dual_stack::{make_dual_stack, store_address};
use common::*;
use hosts::*;

#[test]
fn a_slaac_instance_on_a_compute_host_reaches_the_upstream_through_a_network_host() {
    sandboxed(|| {
        let rig = MultiHost::started(
            &[
                ("network1", "192.168.50.11", "all"),
                ("compute1", "192.168.50.12", "compute"),
            ],
            &[],
        );
        let (network1, compute1) = (rig.host("network1"), rig.host("compute1"));
        for step in testbed::seed_across_hosts() {
            ok(&step);
        }
        // The seed made dual-stack, the upstream on network1.
        make_dual_stack(&["--host", "network1"]);
        assert_eq!(
            value(&["router", "show", "router_100_101"], "host"),
            "network1"
        );
        let router = value(&["router", "show", "router_100_101"], "id");
        // radvd runs on network1, in the router's namespace; compute1 has no router.
        wait_for("radvd in the router's namespace on network1", || {
            network1
                .sh(&format!(
                    "ip netns pids qrouter-{router} | xargs -r ps -o comm= -p"
                ))
                .1
                .contains("radvd")
        });
        assert!(!namespaces(compute1)
            .iter()
            .any(|n| n.starts_with("qrouter-")));

        ok(&[
            "instance",
            "create",
            "vm6",
            "--network",
            "vlan101",
            "--host",
            "compute1",
        ]);
        let vm6 = value(&["instance", "show", "vm6"], "id");
        let eui64 = store_address("vm6", "2001:db8:101:");
        let in_vm6 = |cmd: &str| compute1.sh_ok(&format!("ip netns exec qinstance-{vm6} {cmd}"));
        // The address from the advertisement that crossed the VXLAN, and the default route
        // through the router's link-local.
        wait_for("vm6's SLAAC address and default route", || {
            let addrs = in_vm6("ip -6 -o addr show dev eth0 scope global");
            let usable = addrs.contains(&format!("{eui64}/64")) && !addrs.contains("tentative");
            usable && in_vm6("ip -6 route").contains("default via fe80::")
        });

        // ping6 to the upstream on network1, which counts echo requests from vm6's own
        // address (no NAT66).
        let upstream = value(&["instance", "show", "upstream"], "id");
        let in_upstream =
            |cmd: &str| network1.sh_ok(&format!("ip netns exec qinstance-{upstream} {cmd}"));
        in_upstream("ip -6 route replace 2001:db8:101::/64 via 2001:db8:10::2");
        let rule = format!(
            "PREROUTING -s {eui64}/128 -d 2001:db8:10::1/128 -p ipv6-icmp --icmpv6-type echo-request -j ACCEPT"
        );
        in_upstream(&format!("ip6tables -t raw -I {rule}"));
        assert!(
            pings(compute1, &vm6, "2001:db8:10::1"),
            "vm6 cannot ping6 the upstream"
        );
        let counted = in_upstream("ip6tables -t raw -L PREROUTING 1 -v -x -n");
        let packets: u64 = counted.split_whitespace().next().unwrap().parse().unwrap();
        assert_eq!(packets, 1, "echo requests from {eui64} at the upstream");
        rig.finish();
    });
}
