//! What the trace tests (tests/trace*.rs) check of `qrouter trace`: the live trace agrees
//! with the static one hop by hop, and tracing leaves nothing behind.

use serde_json::Value;

use super::*;

/// `trace SRC DST ARGS --live -f json`: the live result, which must agree with the static trace.
pub fn agree(src: &str, dst: &str, args: &[&str]) -> Value {
    let mut all = vec!["trace", src, dst, "--live"];
    all.extend(args);
    let live = json(&all);
    assert_eq!(live["agrees"], true, "{src} -> {dst}: {live:#}");
    // Hop by hop: every namespace of the static path was checked, with the same rules hit.
    let statics: Vec<&Value> = live["static"]["hops"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["node"]["namespace"].is_string())
        .collect();
    let hops = live["hops"].as_array().unwrap();
    assert_eq!(statics.len(), hops.len(), "{live:#}");
    for (s, l) in statics.iter().zip(hops) {
        assert_eq!(s["n"], l["n"]);
        assert_eq!(s["node"]["namespace"], l["namespace"]);
        if s["node"]["kind"] == "router" {
            let rules: Vec<&Value> = s["rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| &r["rule"])
                .collect();
            let traced: Vec<&Value> = l["traced"].as_array().unwrap().iter().collect();
            assert_eq!(rules, traced, "{src} -> {dst}, hop {}: {live:#}", s["n"]);
        }
    }
    // The static trace alone says the same.
    let mut alone = vec!["trace", src, dst];
    alone.extend(args);
    let static_only = json(&alone);
    assert_eq!(static_only["hops"], live["static"]["hops"]);
    live
}

pub fn router_hop(live: &Value, router: &str) -> Value {
    live["static"]["hops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["node"]["name"] == router)
        .unwrap_or_else(|| panic!("no hop through {router}: {live:#}"))
        .clone()
}

pub fn rules_of(hop: &Value) -> Vec<String> {
    hop["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap().to_string())
        .collect()
}

/// No tracing chain in any namespace, and no monitor still running.
pub fn nothing_left_behind() {
    let raw = sh_ok(
        "for n in $(ip netns list | cut -d' ' -f1); do ip netns exec $n iptables-save -t raw; \
         ip netns exec $n ip6tables-save -t raw; done",
    );
    assert!(
        !raw.contains("qrouter-trace") && !raw.contains("TRACE"),
        "{raw}"
    );
    // Look only at processes inside this sandbox's namespaces, where nothing of the trace's
    // may keep running.
    let pids = sh_ok("for n in $(ip netns list | cut -d' ' -f1); do ip netns pids $n; done");
    // The networks' DHCP servers (dnsmasq in qdhcp- namespaces) belong there, the routers'
    // radvd too, and so do the routers' gratuitous ARP senders (in a namespace for a moment
    // per round, gone after 1.1 s).
    // A process that ended meanwhile has no cmdline to read: it is not left.
    let left: Vec<String> = pids
        .split_whitespace()
        .filter(|p| sh(&format!("cat /proc/{p}/comm")).1.trim() != "qrouter-garp")
        .map(|p| sh(&format!("cat /proc/{p}/cmdline | tr '\\0' ' '")).1)
        .filter(|cmd| {
            !cmd.is_empty()
                && !cmd.starts_with("/usr/sbin/dnsmasq ")
                && !cmd.starts_with("/usr/sbin/radvd ")
        })
        .collect();
    assert!(
        left.is_empty(),
        "processes left in the namespaces: {left:?}"
    );
}

/// `qrouter topology ARGS` as text in locale `lc_all`.
pub fn topology_text(args: &[&str], lc_all: &str) -> String {
    let out = command(&[&["topology"][..], args].concat())
        .env("LC_ALL", lc_all)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}
