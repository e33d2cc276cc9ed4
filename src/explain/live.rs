//! The live trace: the static hops checked against the kernel. In each namespace on the
//! path, the route the kernel picks for the hop's packet (`ip route get`'s question); in each
//! router's, the rule counters before and after, and a real probe from SRC's namespace traced
//! by netfilter (`-j TRACE` in a chain of the raw table, read with `xtables-monitor --trace`):
//! the rules the packet really hit, and the conntrack entry it made. What is asked of the
//! kernel is in kernel/probe.rs. Where the kernel differs from the store, that is drift, and
//! `sync` repairs it. The tracing chain and the monitors are removed whatever happens (Ctrl-C
//! waits for that); a killed trace's chain is removed by `sync`, whose plans want no chain in raw.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use serde::Serialize;

use super::compare::{self, LiveHop};
use super::trace::{Hop, Outcome, Place, Protocol, Request, Trace};
use crate::kernel::probe::{self, TraceMonitor};
use crate::kernel::{iptables, netns};
use crate::model::rules::{Table, PREFIX};
use crate::model::rules_edit;

/// The chain in the raw table that marks the probe for tracing.
pub const TRACE_CHAIN: &str = "qrouter-trace";

#[derive(Debug, Serialize)]
pub struct Live {
    /// Every hop agrees with the static trace.
    pub agrees: bool,
    pub differences: Vec<String>,
    /// What to do about them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
    pub hops: Vec<LiveHop>,
    #[serde(rename = "static")]
    pub static_trace: Trace,
}

#[derive(Debug, Serialize)]
pub struct Probe {
    pub from: String,
    pub what: String,
    /// `answered`, `refused` (it reached a host that does not listen), or `no answer`.
    pub result: String,
}

/// Check `traced` against the kernel.
pub fn check(req: &Request<'_>, traced: &Trace) -> anyhow::Result<Live> {
    let mut hops: Vec<LiveHop> = Vec::new();
    let mut differences = Vec::new();
    // The namespaces on the path, with the static hop each stands for.
    let on_path: Vec<&Hop> = traced
        .hops
        .iter()
        .filter(|h| h.node.namespace.is_some())
        .collect();
    for h in &on_path {
        let ns = h.node.namespace.clone().expect("filtered");
        let mut live = LiveHop {
            n: h.n,
            node: format!("{} {}", h.node.kind, h.node.name),
            namespace: ns.clone(),
            ..Default::default()
        };
        if !netns::exists(&ns) {
            live.differences
                .push(format!("namespace {ns} does not exist"));
        } else {
            if needs_route(h) {
                let iif = h.ingress.as_ref().map(|w| w.device.as_str());
                let got = probe::route_get(&ns, h.leaves.dst, h.arrives.src, iif)?;
                live.route_get = Some(got.line);
                live.device = got.device;
                live.via = got.via;
                compare::route(h, &mut live);
            }
            if let Some(device) = &h.down {
                let passes = probe::link_passes(&ns, device)?;
                compare::down(device, passes, &mut live);
            }
        }
        hops.push(live);
    }
    // The routers on the path: counters, tracing, the probe.
    let routers: Vec<(usize, String, &Hop)> = hops
        .iter()
        .enumerate()
        .filter(|(_, l)| l.node.starts_with("router ") && l.differences.is_empty())
        .map(|(i, l)| (i, l.namespace.clone(), on_path[i]))
        .collect();
    // The probe's family: its rules are iptables' or ip6tables'.
    let v6 = traced.hops[0].arrives.dst.is_ipv6();
    let before: Vec<BTreeMap<String, rules_edit::Saved>> = routers
        .iter()
        .map(|(_, ns, _)| save(ns, v6))
        .collect::<anyhow::Result<_>>()?;
    let sender = match &req.src {
        Place::Instance { instance, .. } => {
            Some(crate::model::naming::instance_namespace(&instance.id))
        }
        Place::Floating(_) => traced.hops.first().and_then(|h| h.node.namespace.clone()),
        _ => None,
    };
    let mut probe = None;
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    if let Some(from) = sender.filter(|ns| netns::exists(ns)) {
        let first = &traced.hops[0];
        let tracing = Tracing::start(
            routers
                .iter()
                .map(|(_, ns, h)| (ns.clone(), trace_rule(req.protocol, h)))
                .collect(),
            v6,
        )?;
        let (what, result) = send_probe(&from, req.protocol, first.arrives.dst, req.port)?;
        std::thread::sleep(Duration::from_millis(300));
        seen = tracing.finish()?;
        probe = Some(Probe { from, what, result });
    } else {
        differences.push(
            "no probe: SRC is not an instance qrouter made, so only routes and counters were checked"
                .to_string(),
        );
    }
    for ((i, ns, h), before) in routers.iter().zip(&before) {
        let after = save(ns, v6)?;
        let live = &mut hops[*i];
        live.counters = grown(before, &after);
        live.conntrack = probe::conntrack_entries(ns, h.arrives.src, h.arrives.dst);
        if probe.is_some() {
            live.traced = decided(seen.get(ns).map(String::as_str).unwrap_or(""));
            compare::rules(h, live, seen.get(ns).is_some_and(|s| !s.is_empty()));
        }
    }
    for live in &hops {
        for d in &live.differences {
            differences.push(format!("hop {} ({}): {d}", live.n, live.node));
        }
    }
    let drift = hops
        .iter()
        .any(|h| h.node.starts_with("router ") && !h.differences.is_empty())
        || hops.iter().any(|h| {
            h.differences
                .iter()
                .any(|d| d.contains("does not exist") || d.contains("route"))
                && !h.node.starts_with("router ")
                && !assumed(traced, h.n)
        });
    let agrees = hops.iter().all(|h| h.differences.is_empty());
    Ok(Live {
        agrees,
        advice: (!agrees).then(|| {
            if drift {
                "the kernel differs from the store (drift): 'qrouter sync --dry-run' lists it, 'qrouter sync' repairs it".to_string()
            } else {
                "the difference is outside qrouter's objects (the outside's own routes)".to_string()
            }
        }),
        differences,
        probe,
        hops,
        static_trace: traced.clone(),
    })
}

/// Whether the static hop rests on an assumption about the outside's routes.
fn assumed(t: &Trace, n: usize) -> bool {
    t.hops
        .iter()
        .any(|h| h.n == n && h.notes.iter().any(|x| x.starts_with("assumed:")))
}

/// A hop whose namespace makes a routing decision: it sends or forwards.
fn needs_route(h: &Hop) -> bool {
    h.route.is_some() || h.outcome == Some(Outcome::NoRoute)
}

/// The rule in raw that marks the probe as it arrives at this router (in ip6tables' raw
/// for an IPv6 probe, whose ICMP is `ipv6-icmp`).
fn trace_rule(protocol: Protocol, h: &Hop) -> String {
    let (host, protocol) = match (h.arrives.dst.is_ipv6(), protocol) {
        (false, p) => (32, p.name()),
        (true, Protocol::Icmp) => (128, "ipv6-icmp"),
        (true, p) => (128, p.name()),
    };
    format!(
        "-s {}/{host} -d {}/{host} -p {protocol} -j TRACE",
        h.arrives.src, h.arrives.dst,
    )
}

/// The tables of `ns` with counters: ip6tables' with `v6`.
fn save(ns: &str, v6: bool) -> anyhow::Result<BTreeMap<String, rules_edit::Saved>> {
    Ok(rules_edit::parse_save_tables(&iptables::save(
        Some(ns),
        v6,
        true,
    )?))
}

/// The rules of qrouter's chains whose packet counters grew.
fn grown(
    before: &BTreeMap<String, rules_edit::Saved>,
    after: &BTreeMap<String, rules_edit::Saved>,
) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for (table, saved) in after {
        if table == "raw" {
            continue;
        }
        for (chain, list) in saved.chains.iter().filter(|(c, _)| c.starts_with(PREFIX)) {
            for r in list {
                let was = before
                    .get(table)
                    .and_then(|s| s.chains.get(chain))
                    .and_then(|l| l.iter().find(|x| x.spec == r.spec))
                    .and_then(|x| x.counters)
                    .map_or(0, |c| c.0);
                let now = r.counters.map_or(0, |c| c.0);
                if now > was {
                    out.push((format!("-A {chain} {}", r.spec), now - was));
                }
            }
        }
    }
    out
}

/// The rules of qrouter's chains that decided for the first traced packet, from
/// `xtables-monitor --trace` output: ` TRACE: 2 ID table:chain:rule:0xH:VERDICT  -4 -t T -A …`.
pub fn decided(monitor: &str) -> Vec<String> {
    let mut first: Option<&str> = None;
    let mut out = Vec::new();
    for line in monitor.lines() {
        let Some(rest) = line.trim_start().strip_prefix("TRACE: ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (_family, id) = (words.next(), words.next().unwrap_or_default());
        if *first.get_or_insert(id) != id {
            continue;
        }
        let Some(at) = rest.find(" -A ") else {
            continue;
        };
        let rule = rest[at + 1..].trim();
        let verdict = words.next().unwrap_or_default();
        let jumps_to_ours = verdict.contains(&format!("JUMP:{PREFIX}"));
        if rule.starts_with(&format!("-A {PREFIX}")) && !jumps_to_ours && !rule.contains("-j TRACE")
        {
            out.push(rule.to_string());
        }
    }
    out
}

/// Send one probe from namespace `ns`.
fn send_probe(
    ns: &str,
    protocol: Protocol,
    dst: IpAddr,
    port: Option<u16>,
) -> anyhow::Result<(String, String)> {
    match protocol {
        Protocol::Icmp => probe::ping(ns, dst),
        Protocol::Tcp => probe::tcp_connect(ns, SocketAddr::from((dst, port.unwrap_or(22)))),
        Protocol::Udp => probe::udp_send(ns, SocketAddr::from((dst, port.unwrap_or(53)))),
    }
}

/// Tracing in some namespaces: the raw chain and one monitor each. Dropped, it kills the
/// monitors it started and removes the chains; SIGINT, SIGTERM and SIGHUP wait until then.
struct Tracing {
    spaces: Vec<String>,
    monitors: Vec<(String, TraceMonitor)>,
    mask: SigSet,
}

impl Tracing {
    /// Trace with `wanted`'s (namespace, raw rule), in ip6tables with `v6`.
    fn start(wanted: Vec<(String, String)>, v6: bool) -> anyhow::Result<Tracing> {
        let mut blocked = SigSet::empty();
        [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP]
            .into_iter()
            .for_each(|s| blocked.add(s));
        let mut mask = SigSet::empty();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), Some(&mut mask))?;
        let mut tracing = Tracing {
            spaces: vec![],
            monitors: vec![],
            mask,
        };
        for (ns, rule) in wanted {
            remove_chain(&ns)?;
            tracing
                .monitors
                .push((ns.clone(), TraceMonitor::start(&ns)?));
            tracing.spaces.push(ns.clone());
            let batch = format!(
                "*raw\n:{TRACE_CHAIN} - [0:0]\n-A PREROUTING -j {TRACE_CHAIN}\n-A {TRACE_CHAIN} {rule}\nCOMMIT\n"
            );
            iptables::restore(Some(&ns), v6, &batch)?;
        }
        // The monitors subscribe as they start.
        std::thread::sleep(Duration::from_millis(150));
        Ok(tracing)
    }

    /// Stop tracing; what each namespace's monitor printed.
    fn finish(mut self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut seen = BTreeMap::new();
        for (ns, monitor) in std::mem::take(&mut self.monitors) {
            seen.insert(ns, monitor.finish());
        }
        Ok(seen)
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        // The monitors stop as they are dropped.
        self.monitors.clear();
        for ns in &self.spaces {
            if let Err(e) = remove_chain(ns) {
                log::warn!(
                    "{ns}: cannot remove the tracing chain {TRACE_CHAIN}: {e:#}; 'qrouter sync' removes it"
                );
            }
        }
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.mask), None);
    }
}

/// Remove qrouter's chains from the raw table of `ns` (a trace's, or one left behind).
/// Both families: a trace of either may have left one.
pub fn remove_chain(ns: &str) -> anyhow::Result<()> {
    for v6 in [false, true] {
        let tables = rules_edit::parse_save_tables(&iptables::save(Some(ns), v6, false)?);
        let Some(raw) = tables.get("raw") else {
            continue;
        };
        let none = Table::empty("raw");
        if let Some(batch) = rules_edit::restore_batch(&none, raw) {
            iptables::restore(Some(ns), v6, &batch)?;
        }
    }
    Ok(())
}

/// The live trace as text: the static hops, then what the kernel said at each.
pub fn render_text(l: &Live) -> String {
    let mut out = super::trace::render_text(&l.static_trace);
    out += "\nlive:\n";
    if let Some(p) = &l.probe {
        out += &format!("  probe   {} from {}: {}\n", p.what, p.from, p.result);
    }
    for h in &l.hops {
        out += &format!("\n{}. {} [{}]\n", h.n, h.node, h.namespace);
        if let Some(r) = &h.route_get {
            out += &format!("     route   {r}\n");
        }
        for t in &h.traced {
            out += &format!("     traced  {t}\n");
        }
        for (r, n) in &h.counters {
            out += &format!("     counter +{n} {r}\n");
        }
        for c in &h.conntrack {
            out += &format!("     conntrack {c}\n");
        }
        match h.differences.is_empty() {
            true => out += "     agrees with the static trace\n",
            false => {
                for d in &h.differences {
                    out += &format!("     DIFFERS {d}\n");
                }
            }
        }
    }
    out += &match l.agrees {
        true => "\nresult: the live path agrees with the static trace hop by hop\n".to_string(),
        false => format!(
            "\nresult: the live path differs from the static trace: {}\n",
            l.advice.as_deref().unwrap_or_default()
        ),
    };
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn decided_keeps_the_first_packets_terminal_rules_in_our_chains() {
        let monitor = "PACKET: 2 74dc4064 IN=r1 SRC=10.0.0.1 DST=10.1.0.1\n \
            TRACE: 2 74dc4064 raw:PREROUTING:rule:0x2:JUMP:qrouter-trace  -4 -t raw -A PREROUTING -j qrouter-trace\n \
            TRACE: 2 74dc4064 raw:qrouter-trace:rule:0x3:CONTINUE  -4 -t raw -A qrouter-trace -s 10.0.0.1/32 -j TRACE\n \
            TRACE: 2 74dc4064 filter:FORWARD:rule:0x3:JUMP:qrouter-FORWARD  -4 -t filter -A FORWARD -j qrouter-FORWARD\n \
            TRACE: 2 74dc4064 filter:FORWARD:policy:ACCEPT \n \
            TRACE: 2 74dc4064 nat:POSTROUTING:rule:0x3:JUMP:qrouter-POSTROUTING  -4 -t nat -A POSTROUTING -j qrouter-POSTROUTING\n \
            TRACE: 2 74dc4064 nat:qrouter-POSTROUTING:rule:0x5:JUMP:qrouter-snat  -4 -t nat -A qrouter-POSTROUTING -j qrouter-snat\n \
            TRACE: 2 74dc4064 nat:qrouter-snat:rule:0x4:ACCEPT  -4 -t nat -A qrouter-snat -o qg-x -j SNAT --to-source 10.10.10.2 --random-fully\n \
            TRACE: 2 99999999 filter:qrouter-FORWARD:rule:0x9:ACCEPT  -4 -t filter -A qrouter-FORWARD -i qg-x -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n";
        assert_eq!(
            super::decided(monitor),
            ["-A qrouter-snat -o qg-x -j SNAT --to-source 10.10.10.2 --random-fully"]
        );
    }
}
