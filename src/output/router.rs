//! The live views of `router show`: Interfaces, Routes, NAT, Firewall and Drift, built from
//! one `Inspection` (plan, what the kernel holds, the steps between them). The last column
//! of each row says how it compares with the store: ok, MISSING (the store wants it, the
//! kernel lacks it), EXTRA (the kernel has it, the store does not), or what differs.

use serde_json::Value;

use super::{Listing, Section};
use crate::model::protocol::LiveView;
use crate::model::rules::Family;
use crate::model::rules_edit;
use crate::model::{naming, rules, PortRole, Router, State};
use crate::reconcile::diff::Step;
use crate::reconcile::Inspection;

/// A view as an agent sends it for `router show` on another host, and back.
impl From<Section> for LiveView {
    fn from(s: Section) -> LiveView {
        LiveView {
            title: s.title,
            key: s.key,
            headers: s.listing.headers,
            rows: s.listing.rows,
        }
    }
}

impl From<LiveView> for Section {
    fn from(v: LiveView) -> Section {
        Section {
            title: v.title,
            key: v.key,
            listing: Listing {
                headers: v.headers,
                rows: v.rows,
            },
        }
    }
}

fn rows(headers: &[&str]) -> Listing {
    Listing {
        headers: headers.iter().map(|h| h.to_string()).collect(),
        rows: vec![],
    }
}

/// The `kernel` field of the overview: every step of the diff counts.
pub fn summary(inspection: &Inspection) -> String {
    match inspection.steps.len() {
        0 => "in sync".to_string(),
        n => format!("{n} differences from the store (see Drift; 'qrouter sync' repairs them)"),
    }
}

pub fn kernel_views(state: &State, router: &Router, inspection: &Inspection) -> Vec<Section> {
    let mut sections = vec![
        Section {
            title: "Interfaces".into(),
            key: "interfaces_live".into(),
            listing: interfaces(state, router, inspection),
        },
        Section {
            title: "Routes".into(),
            key: "routes_live".into(),
            listing: routes(inspection),
        },
    ];
    for table in &inspection.plan.rules {
        let (title, key) = match (table.family, table.name) {
            (Family::V4, "nat") => ("NAT (iptables -t nat)", "nat"),
            (Family::V4, _) => ("Firewall (iptables -t filter)", "firewall"),
            // IPv6 has no NAT: its only table guards the tenant addresses.
            (Family::V6, _) => ("IPv6 firewall (ip6tables -t filter)", "firewall_ipv6"),
        };
        let empty = rules_edit::Saved::default();
        let saved = inspection.seen.rules.get(&table.key()).unwrap_or(&empty);
        let listing = rule_rows(table, saved);
        // A table where qrouter wants nothing and finds nothing of its own (an IPv4
        // router's IPv6 filter, raw) has nothing to show.
        if table.chains.is_empty() && listing.rows.is_empty() {
            continue;
        }
        sections.push(Section {
            title: title.into(),
            key: key.into(),
            listing,
        });
    }
    let mut drift = rows(&["Change 'qrouter sync' would make"]);
    drift.rows = inspection
        .drift()
        .into_iter()
        .map(|d| vec![d.into()])
        .collect();
    sections.push(Section {
        title: "Drift".into(),
        key: "drift".into(),
        listing: drift,
    });
    sections
}

fn interfaces(state: &State, router: &Router, inspection: &Inspection) -> Listing {
    let (plan, seen, steps) = (&inspection.plan, &inspection.seen, &inspection.steps);
    let mut out = rows(&[
        "Device",
        "Type",
        "Fixed IPs",
        "Network",
        "Subnet",
        "MAC",
        "Host Tap",
        "Bridge",
        "State",
        "Kernel",
    ]);
    let ports: Vec<_> = state.router_ports(router).collect();
    for dev in &plan.devices {
        let Some(port) = ports.iter().find(|p| naming::port_device(p) == dev.name) else {
            continue;
        };
        let network = state
            .network_by_id(&port.network_id)
            .map(|n| n.name.clone());
        let kind = match port.role {
            PortRole::RouterGateway => "external gateway",
            _ => "internal",
        };
        let about: Vec<&Step> = steps
            .iter()
            .filter(|s| s.device() == Some(dev.name.as_str()) || is_enslave_of(s, &dev.tap))
            .collect();
        let tap = seen.taps.get(&dev.tap).and_then(Option::as_ref);
        let bridge = match tap.and_then(|t| t.controller) {
            None => "none".to_string(),
            Some(i) if seen.bridges.get(&dev.bridge) == Some(&i) => dev.bridge.clone(),
            Some(i) => format!("another (index {i})"),
        };
        let (ips, mac, oper) = match seen.links.iter().find(|l| l.name == dev.name) {
            Some(l) => (
                seen.addresses
                    .iter()
                    .filter(|a| a.link_index == l.index)
                    .map(|a| a.net.to_string())
                    .collect::<Vec<_>>(),
                l.mac.clone(),
                l.oper_state.clone(),
            ),
            None => (
                dev.addresses.iter().map(|a| a.to_string()).collect(),
                dev.mac.clone(),
                "-".into(),
            ),
        };
        out.rows.push(vec![
            dev.name.clone().into(),
            kind.into(),
            ips.into(),
            network.into(),
            state.port_subnet_names(port).into(),
            mac.into(),
            dev.tap.clone().into(),
            bridge.into(),
            oper.into(),
            verdict(&about, dev).into(),
        ]);
    }
    for l in seen
        .links
        .iter()
        .filter(|l| l.name != "lo" && plan.device(&l.name).is_none())
    {
        let ips: Vec<String> = seen
            .addresses
            .iter()
            .filter(|a| a.link_index == l.index)
            .map(|a| a.net.to_string())
            .collect();
        out.rows.push(vec![
            l.name.clone().into(),
            "unknown".into(),
            ips.into(),
            Value::Null,
            Value::Null,
            l.mac.clone().into(),
            Value::Null,
            Value::Null,
            l.oper_state.clone().into(),
            "EXTRA".into(),
        ]);
    }
    out
}

fn is_enslave_of(step: &Step, tap: &str) -> bool {
    match step {
        Step::Enslave { tap: t, .. } => t.name == tap,
        Step::SetTap { tap: t, .. } => t == tap,
        _ => false,
    }
}

/// How one planned device differs, in words, from the steps about it.
fn verdict(about: &[&Step], dev: &crate::reconcile::plan::Device) -> String {
    if about.iter().any(|s| matches!(s, Step::CreateVeth { .. })) {
        return "MISSING".into();
    }
    let mut differ = Vec::new();
    if about
        .iter()
        .any(|s| matches!(s, Step::AddAddress { .. } | Step::DeleteAddress { .. }))
    {
        let want: Vec<String> = dev.addresses.iter().map(|a| a.to_string()).collect();
        differ.push(format!("addresses differ; store: {}", want.join(", ")));
    }
    if about.iter().any(|s| matches!(s, Step::SetUp { .. })) {
        differ.push("down".into());
    }
    if about.iter().any(|s| matches!(s, Step::Enslave { .. })) {
        differ.push(format!("tap not on {}", dev.bridge));
    }
    if let Some(Step::SetTap { up, .. }) = about.iter().find(|s| matches!(s, Step::SetTap { .. })) {
        differ.push(match up {
            true => "tap down".to_string(),
            false => format!("tap up ({})", dev.why_down.as_deref().unwrap_or("disabled")),
        });
    }
    match differ.is_empty() {
        true => "ok".into(),
        false => differ.join("; "),
    }
}

fn routes(inspection: &Inspection) -> Listing {
    let (seen, steps) = (&inspection.seen, &inspection.steps);
    let mut out = rows(&["Destination", "Gateway", "Device", "Scope", "Kernel"]);
    let dev_name = |oif: Option<u32>| {
        seen.links
            .iter()
            .find(|l| Some(l.index) == oif)
            .map(|l| l.name.clone())
    };
    // The loopback's own route (IPv6's ::1) says nothing of the router.
    let lo = seen.links.iter().find(|l| l.name == "lo").map(|l| l.index);
    for kr in seen
        .routes
        .iter()
        .filter(|r| r.oif.is_none() || r.oif != lo)
    {
        let extra = steps.iter().any(|s| *s == Step::DeleteRoute(kr.clone()));
        let gateways: Vec<String> = kr.gateways.iter().map(|g| g.to_string()).collect();
        out.rows.push(vec![
            destination(kr.destination).into(),
            Some(gateways.join(", ")).filter(|g| !g.is_empty()).into(),
            dev_name(kr.oif).into(),
            kr.scope.into(),
            if extra { "EXTRA" } else { "ok" }.into(),
        ]);
    }
    for step in steps {
        if let Step::AddRoute(r) = step {
            let via: Vec<String> = r.via.iter().map(|g| g.to_string()).collect();
            out.rows.push(vec![
                destination(r.destination).into(),
                Some(via.join(", ")).filter(|g| !g.is_empty()).into(),
                r.device.clone().into(),
                if r.device.is_some() { "link" } else { "global" }.into(),
                "MISSING".into(),
            ]);
        }
    }
    out
}

fn destination(net: ipnet::IpNet) -> String {
    if net.prefix_len() == 0 {
        "default".to_string()
    } else {
        net.to_string()
    }
}

/// Rules in iptables-save order: jumps into our chains, then our chains' rules.
fn rule_rows(table: &rules::Table, saved: &rules_edit::Saved) -> Listing {
    let mut out = rows(&["Rule", "Packets", "Bytes", "Kernel"]);
    let wanted: Vec<(String, String)> = table
        .rules()
        .map(|(chain, rule)| (chain.to_string(), rule.to_string()))
        .collect();
    for (chain, rules) in &saved.chains {
        for rule in rules.iter().filter(|r| {
            chain.starts_with(rules::PREFIX) || r.spec.starts_with(&format!("-j {}", rules::PREFIX))
        }) {
            let ok = wanted.iter().any(|(c, s)| c == chain && *s == rule.spec);
            let (packets, bytes) = rule.counters.unwrap_or_default();
            out.rows.push(vec![
                format!("-A {chain} {}", rule.spec).into(),
                packets.into(),
                bytes.into(),
                if ok { "ok" } else { "EXTRA" }.into(),
            ]);
        }
    }
    for (chain, spec) in &wanted {
        if !saved
            .chains
            .get(chain)
            .is_some_and(|rules| rules.iter().any(|r| &r.spec == spec))
        {
            out.rows.push(vec![
                format!("-A {chain} {spec}").into(),
                Value::Null,
                Value::Null,
                "MISSING".into(),
            ]);
        }
    }
    out
}
