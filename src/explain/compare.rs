//! The live trace's comparisons: each static hop against what the kernel showed for it
//! (`live.rs` reads the kernel). The static hops come from the plans `sync` converges to,
//! so a difference here is one `sync --dry-run` lists too.

use std::net::IpAddr;

use serde::Serialize;

use super::trace::Hop;

/// One namespace on the path as the kernel showed it, and how it differs from its static hop.
#[derive(Debug, Default, Serialize)]
pub struct LiveHop {
    pub n: usize,
    pub node: String,
    pub namespace: String,
    /// `ip route get …` and what it printed (or the error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_get: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<IpAddr>,
    /// The rules of qrouter's chains that decided for the probe, as netfilter traced them.
    pub traced: Vec<String>,
    /// Rules of qrouter's chains whose packet counter went up during the probe: (rule, packets).
    pub counters: Vec<(String, u64)>,
    pub conntrack: Vec<String>,
    pub differences: Vec<String>,
}

/// The route the kernel chose (`ip route get`, in `live`) against the hop's: the same
/// device and one of its next hops, or no route on both sides.
pub(super) fn route(h: &Hop, live: &mut LiveHop) {
    let statically = match (&h.egress, h.next_hop) {
        (Some(w), Some(next)) => Some((w.device.as_str(), next)),
        _ => None,
    };
    let said = |d: &Option<String>, v: Option<IpAddr>| match d {
        Some(d) => format!(
            "dev {d}{}",
            v.map(|v| format!(" via {v}")).unwrap_or_default()
        ),
        None => "no route".into(),
    };
    match (statically, &live.device) {
        (None, None) => {}
        (Some((dev, next)), Some(kdev)) => {
            let knext = live.via.unwrap_or(h.leaves.dst);
            let nexts: Vec<IpAddr> = std::iter::once(next).chain(h.multipath.clone()).collect();
            // A sender on the external network stands for the outside, on-link to the bridge.
            let same_dev = dev == kdev || h.node.kind == "instance" && kdev == "eth0";
            if !same_dev || !nexts.contains(&knext) {
                live.differences.push(format!(
                    "route: the store says dev {dev} next hop {next}, the kernel {}",
                    said(&live.device, live.via)
                ));
            }
        }
        (Some((dev, next)), None) => live.differences.push(format!(
            "route: the store says dev {dev} next hop {next}, the kernel has no route ({})",
            live.route_get.as_deref().unwrap_or_default()
        )),
        (None, Some(_)) => live.differences.push(format!(
            "route: the store has no route, the kernel {}",
            said(&live.device, live.via)
        )),
    }
}

/// The device the static trace drops the packet at because the store wants it down (a
/// disabled router's, or one whose host end is down): the kernel must pass nothing there
/// either, as `sync` leaves it (DOWN, or LOWERLAYERDOWN behind its tap); `passes`: the
/// kernel has it UP.
pub(super) fn down(device: &str, passes: bool, live: &mut LiveHop) {
    if passes {
        live.differences.push(format!(
            "device {device}: the store has it down, the kernel has it up and passing traffic"
        ));
    }
}

/// The rules of qrouter's chains that netfilter traced for the probe (`live.traced`)
/// against those that decide in the hop; `reached`: the probe was traced in this router.
pub(super) fn rules(h: &Hop, live: &mut LiveHop, reached: bool) {
    let statically: Vec<&str> = h.rules.iter().map(|r| r.rule.as_str()).collect();
    // Dropped as it arrives at a device that is down: no rule of the router sees it.
    let arrives_at = h.ingress.as_ref().map(|w| w.device.as_str());
    if let Some(down) = h.down.as_deref().filter(|d| Some(*d) == arrives_at) {
        if reached {
            live.differences.push(format!(
                "the probe entered it, though the store has {down} down"
            ));
        }
        return;
    }
    if !reached {
        live.differences.push(format!(
            "the probe never reached it{}",
            if statically.is_empty() {
                String::new()
            } else {
                format!(" (the store expects {})", statically.join("; "))
            }
        ));
        return;
    }
    for s in &statically {
        if !live.traced.iter().any(|t| t == s) {
            live.differences.push(format!(
                "the store expects `{s}` to decide; the kernel's packet did not hit it{}",
                match live.traced.is_empty() {
                    true => " (it hit no rule of qrouter's chains)".to_string(),
                    false => format!(" (it hit {})", live.traced.join("; ")),
                }
            ));
        }
    }
    for t in &live.traced {
        if !statically.contains(&t.as_str()) {
            live.differences.push(format!(
                "the kernel's packet hit `{t}`, which the store does not expect"
            ));
        }
    }
}
