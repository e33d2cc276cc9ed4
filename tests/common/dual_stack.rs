//! The dual-stack seed and what the IPv6 tests read of the kernel (tests/ipv6*.rs).

use std::time::{Duration, Instant};

use super::*;

/// The dual-stack seed (research/ipv6.md 7): the seed, made dual-stack.
pub fn dual_stack_seed() {
    seed_topology();
    make_dual_stack(&[]);
}

/// The seed made dual-stack: vlan101 gains 2001:db8:101::/64 (SLAAC), ext_net
/// 2001:db8:10::/64 with the upstream at 2001:db8:10::1 (`upstream_options` added to its
/// `instance create`); the router's gateway is set after both exist, so `qg-` takes an
/// address of each.
pub fn make_dual_stack(upstream_options: &[&str]) {
    ok(&[
        "subnet",
        "create",
        "ext6",
        "--network",
        "ext_net",
        "--subnet-range",
        "2001:db8:10::/64",
        "--gateway",
        "2001:db8:10::1",
    ]);
    slaac_subnet("v6a", "2001:db8:101::/64");
    // The upstream switch answers on its IPv6 address too.
    ok(&["instance", "delete", "upstream"]);
    let upstream = [
        "instance",
        "create",
        "upstream",
        "--network",
        "ext_net",
        "--fixed-ip",
        "10.10.10.1",
        "--fixed-ip",
        "2001:db8:10::1",
    ];
    ok(&[&upstream[..], upstream_options].concat());
    set_gateway();
    ok(&["router", "add", "subnet", "router_100_101", "v6a"]);
}

pub fn slaac_subnet(name: &str, cidr: &str) {
    v6_subnet(name, "vlan101", cidr, "slaac");
}

/// `ip ARGS` in namespace `ns`.
pub fn ip_in(ns: &str, args: &str) -> String {
    sh_ok(&format!("ip netns exec {ns} ip {args}"))
}

pub fn sysctl_in(ns: &str, key: &str) -> String {
    sh_ok(&format!(
        "ip netns exec {ns} cat /proc/sys/net/ipv6/conf/{key}"
    ))
    .trim()
    .to_string()
}

/// The router's radvd: its pid (from its pid file, alive) and its configuration.
pub fn radvd(router: &str) -> Option<(String, String)> {
    let id = value(&["router", "show", router], "id");
    let pid = std::fs::read_to_string(format!("{STATE_DIR}/ra/{id}.pid")).ok()?;
    let pid = pid.trim().to_string();
    assert!(alive(&pid), "radvd {pid} of router {router} is not running");
    let conf = std::fs::read_to_string(format!("{STATE_DIR}/ra/{id}.radvd.conf")).unwrap();
    Some((pid, conf))
}

/// Whether process `pid` runs (a zombie does not: the test, pid 1 of its sandbox, reaps no
/// orphan).
pub fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|s| !s.trim_start().starts_with('Z'))
    })
}

/// `ip6tables-save` of `ns` without its comments, with counters.
pub fn ip6tables(ns: &str) -> String {
    sh_ok(&format!(
        "ip netns exec {ns} ip6tables-save -c | sed '/^#/d'"
    ))
}

/// The link-local address of device `dev` in `ns`.
pub fn link_local(ns: &str, dev: &str) -> String {
    let out = ip_in(ns, &format!("-6 -o addr show dev {dev} scope link"));
    let word = out.split_whitespace().nth(3).expect("a link-local address");
    word.split('/').next().unwrap().to_string()
}

/// `ip6tables-save` of `ns` without comments or counters.
pub fn ip6tables_plain(ns: &str) -> String {
    sh_ok(&format!("ip netns exec {ns} ip6tables-save | sed '/^#/d'"))
}

/// Address of `instance` in the store on the subnet whose addresses start with `prefix`.
pub fn store_address(instance: &str, prefix: &str) -> String {
    let fixed = value(&["instance", "show", instance], "fixed_ips");
    fixed
        .split(", ")
        .find(|a| a.starts_with(prefix))
        .unwrap_or_else(|| panic!("{instance} has no address in {prefix}: {fixed}"))
        .to_string()
}

/// Wait up to 10 s until `instance`'s eth0 holds `address` out of DAD; whether it did.
pub fn usable(instance: &str, address: &str) -> bool {
    let ns = namespace_of("instance", instance);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let addrs = ip_in(&ns, "-6 -o addr show dev eth0 scope global");
        if addrs.contains(&format!("{address}/")) && !addrs.contains("tentative") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The upstream (namespace `upstream`) routes tenant prefix `cidr` to the seed router's
/// `qg-` (2001:db8:10::2), as research/ipv6.md 4 has the operator do.
pub fn upstream_routes_to_router(upstream: &str, cidr: &str) {
    ip_in(
        upstream,
        &format!("-6 route replace {cidr} via 2001:db8:10::2"),
    );
}

/// `instance` reaches the upstream's IPv6 address 2001:db8:10::1.
pub fn pings6_upstream(instance: &str) {
    exec_pings(instance, "2001:db8:10::1");
}

/// An IPv6 subnet `name` on `network` whose ra and address modes are both `mode`.
pub fn v6_subnet(name: &str, network: &str, cidr: &str, mode: &str) {
    ok(&[
        "subnet",
        "create",
        name,
        "--network",
        network,
        "--subnet-range",
        cidr,
        "--ipv6-ra-mode",
        mode,
        "--ipv6-address-mode",
        mode,
    ]);
}
