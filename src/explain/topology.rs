//! Horizon's Network Topology for a terminal: networks as lines, routers and instances
//! attached with their devices and addresses, the gateway and floating IPs. Built from the
//! store as data (`build`), with what the kernel lacks marked (`Drift`, read by the caller);
//! drawn as text (Unicode box drawing or ASCII), Graphviz dot, a self-contained SVG, or JSON.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::model::{naming, PortRole, Router, State};

mod svg;
pub use svg::{svg, text_width};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    pub networks: Vec<NetworkView>,
    pub routers: Vec<RouterView>,
    pub instances: Vec<InstanceView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkView {
    pub name: String,
    pub id: String,
    pub external: bool,
    pub bridge: String,
    pub subnets: Vec<String>,
    /// The store has it, the kernel lacks it.
    pub missing: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouterView {
    pub name: String,
    pub id: String,
    pub namespace: String,
    pub snat: bool,
    pub interfaces: Vec<Attachment>,
    pub floating_ips: Vec<FloatingView>,
    pub routes: Vec<String>,
    pub missing: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceView {
    pub name: String,
    pub id: String,
    pub namespace: String,
    pub interface: Option<Attachment>,
    pub missing: bool,
}

/// A device on a network: `qr-`/`qg-` in a router, `eth0` in an instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub network: String,
    pub device: String,
    pub tap: String,
    pub addresses: Vec<String>,
    /// `internal`, `gateway` or `instance`.
    pub role: String,
    pub missing: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FloatingView {
    pub address: String,
    pub fixed_ip: String,
    pub instance: Option<String>,
}

/// What the kernel lacks, as the caller found it.
#[derive(Debug, Default)]
pub struct Drift {
    pub bridges: BTreeSet<String>,
    pub namespaces: BTreeSet<String>,
    /// (namespace, device)
    pub devices: BTreeSet<(String, String)>,
}

/// Narrow the picture to one network or one router.
#[derive(Debug, Default)]
pub struct Filter {
    pub network: Option<String>,
    pub router: Option<String>,
}

/// The topology of `state`, narrowed by `filter` (ids), with `drift` marked.
pub fn build(state: &State, filter: &Filter, drift: &Drift) -> Topology {
    let router_nets = |r: &Router| -> BTreeSet<String> {
        state
            .router_ports(r)
            .map(|p| p.network_id.clone())
            .collect()
    };
    let networks: BTreeSet<String> = match (&filter.network, &filter.router) {
        (Some(n), _) => [n.clone()].into(),
        (None, Some(r)) => state.router_by_id(r).map(router_nets).unwrap_or_default(),
        (None, None) => state.networks.iter().map(|n| n.id.clone()).collect(),
    };
    let routers = state.routers.iter().filter(|r| match &filter.router {
        Some(id) => &r.id == id,
        None => !router_nets(r).is_disjoint(&networks) || filter.network.is_none(),
    });
    let routers = routers
        .map(|r| {
            let ns = naming::router_namespace(&r.id);
            let interfaces = state
                .router_ports(r)
                .map(|p| {
                    let device = naming::port_device(p);
                    Attachment {
                        network: net_name(state, &p.network_id),
                        tap: naming::port_tap(p),
                        addresses: p.fixed_ips.iter().map(|f| f.ip.to_string()).collect(),
                        role: match p.role {
                            PortRole::RouterGateway => "gateway",
                            _ => "internal",
                        }
                        .into(),
                        missing: drift.devices.contains(&(ns.clone(), device.clone())),
                        device,
                    }
                })
                .collect();
            let floating_ips = state
                .router_floating_ips(r)
                .into_iter()
                .map(|(f, fixed)| FloatingView {
                    address: f.address.to_string(),
                    fixed_ip: fixed.to_string(),
                    instance: f
                        .port_id
                        .as_deref()
                        .and_then(|p| state.instances.iter().find(|i| i.port_id == p))
                        .map(|i| i.name.clone()),
                })
                .collect();
            RouterView {
                name: r.name.clone(),
                id: r.id.clone(),
                missing: drift.namespaces.contains(&ns),
                namespace: ns,
                snat: r.snat,
                interfaces,
                floating_ips,
                routes: r
                    .routes
                    .iter()
                    .map(|x| format!("{} via {}", x.destination, x.nexthop))
                    .collect(),
            }
        })
        .collect();
    let instances = state
        .instances
        .iter()
        .filter_map(|i| {
            let port = state.port_by_id(&i.port_id)?;
            networks.contains(&port.network_id).then_some(())?;
            let ns = naming::instance_namespace(&i.id);
            Some(InstanceView {
                name: i.name.clone(),
                id: i.id.clone(),
                missing: drift.namespaces.contains(&ns),
                interface: Some(Attachment {
                    network: net_name(state, &port.network_id),
                    device: naming::port_device(port),
                    tap: naming::port_tap(port),
                    addresses: port.fixed_ips.iter().map(|f| f.ip.to_string()).collect(),
                    role: "instance".into(),
                    missing: drift
                        .devices
                        .contains(&(ns.clone(), naming::port_device(port))),
                }),
                namespace: ns,
            })
        })
        .collect();
    // External networks first, as Horizon draws them at the top.
    let mut nets: Vec<NetworkView> = state
        .networks
        .iter()
        .filter(|n| networks.contains(&n.id))
        .map(|n| NetworkView {
            name: n.name.clone(),
            id: n.id.clone(),
            external: n.external,
            bridge: n.bridge.clone(),
            subnets: state
                .subnets_of(&n.id)
                .map(|s| s.cidr.to_string())
                .collect(),
            missing: drift.bridges.contains(&n.bridge),
        })
        .collect();
    nets.sort_by_key(|n| !n.external);
    Topology {
        networks: nets,
        routers,
        instances,
    }
}

fn net_name(state: &State, id: &str) -> String {
    state
        .network_by_id(id)
        .map_or_else(|| id.to_string(), |n| n.name.clone())
}

/// Whether the terminal's locale can show Unicode box drawing (LC_ALL, LC_CTYPE, LANG).
pub fn utf8_locale(var: impl Fn(&str) -> Option<String>) -> bool {
    ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .find_map(|k| var(k).filter(|v| !v.is_empty()))
        .is_some_and(|v| {
            let v = v.to_ascii_lowercase();
            v.contains("utf-8") || v.contains("utf8")
        })
}

struct Glyphs {
    line: &'static str,
    tee: &'static str,
    last: &'static str,
    bar: &'static str,
    arrow: &'static str,
    missing: &'static str,
}

const UNICODE: Glyphs = Glyphs {
    line: "━",
    tee: "├── ",
    last: "└── ",
    bar: "│   ",
    arrow: "→",
    missing: "✗ MISSING in the kernel",
};
const ASCII: Glyphs = Glyphs {
    line: "=",
    tee: "+-- ",
    last: "`-- ",
    bar: "|   ",
    arrow: "->",
    missing: "[MISSING in the kernel]",
};

/// Networks as lines, what is attached hanging from them.
pub fn text(t: &Topology, unicode: bool) -> String {
    let g = if unicode { &UNICODE } else { &ASCII };
    let mut out = String::new();
    let mark = |missing: bool| match missing {
        true => format!("  {}", g.missing),
        false => String::new(),
    };
    for n in &t.networks {
        let head = format!(
            "{}{} {} [{}]{}",
            n.name,
            if n.external { " (external)" } else { "" },
            n.subnets.join(", "),
            n.bridge,
            mark(n.missing)
        );
        out += &format!("{head}\n{}\n", g.line.repeat(head.chars().count().max(40)));
        let mut rows: Vec<(String, Vec<String>)> = Vec::new();
        for r in &t.routers {
            for a in r.interfaces.iter().filter(|a| a.network == n.name) {
                let what = match a.role.as_str() {
                    "gateway" => format!("  gateway, SNAT {}", if r.snat { "on" } else { "off" }),
                    _ => String::new(),
                };
                let mut sub = Vec::new();
                if a.role == "gateway" {
                    for f in &r.floating_ips {
                        sub.push(format!(
                            "floating IP {} {} {}{}",
                            f.address,
                            g.arrow,
                            f.fixed_ip,
                            f.instance
                                .as_ref()
                                .map(|i| format!(" ({i})"))
                                .unwrap_or_default()
                        ));
                    }
                    for x in &r.routes {
                        sub.push(format!("route {x}"));
                    }
                }
                rows.push((
                    format!(
                        "router {}  {}  {}{what}{}{}",
                        r.name,
                        a.device,
                        a.addresses.join(", "),
                        mark(r.missing),
                        mark(a.missing && !r.missing)
                    ),
                    sub,
                ));
            }
        }
        for i in &t.instances {
            if let Some(a) = i.interface.as_ref().filter(|a| a.network == n.name) {
                rows.push((
                    format!(
                        "instance {}  {}  {}{}{}",
                        i.name,
                        a.device,
                        a.addresses.join(", "),
                        mark(i.missing),
                        mark(a.missing && !i.missing)
                    ),
                    vec![],
                ));
            }
        }
        if rows.is_empty() {
            out += "  (nothing attached)\n";
        }
        let count = rows.len();
        for (k, (row, sub)) in rows.into_iter().enumerate() {
            let lastrow = k + 1 == count;
            out += &format!("  {}{row}\n", if lastrow { g.last } else { g.tee });
            let cont = if lastrow { "    " } else { g.bar };
            let subs = sub.len();
            for (j, s) in sub.into_iter().enumerate() {
                let l = if j + 1 == subs { g.last } else { g.tee };
                out += &format!("  {cont}{l}{s}\n");
            }
        }
        out += "\n";
    }
    out
}

fn dot_id(kind: &str, id: &str) -> String {
    format!("\"{kind}:{}\"", id.replace('"', "\\\""))
}

fn dot_label(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz: networks as boxes, routers and instances as nodes, devices on the edges.
pub fn dot(t: &Topology) -> String {
    let mut out = String::from("graph qrouter {\n  rankdir=LR;\n  node [fontname=\"sans-serif\"];\n  edge [fontname=\"sans-serif\", fontsize=10];\n");
    let red = |missing: bool| {
        if missing {
            ", color=red, fontcolor=red, style=dashed"
        } else {
            ""
        }
    };
    for n in &t.networks {
        out += &format!(
            "  {} [shape=box, style=filled, fillcolor=\"{}\", label=\"{}\\n{}\"{}];\n",
            dot_id("net", &n.name),
            if n.external { "#f5d0a9" } else { "#c6e2ff" },
            dot_label(&n.name),
            dot_label(&n.subnets.join(", ")),
            red(n.missing)
        );
    }
    let known: BTreeSet<&str> = t.networks.iter().map(|n| n.name.as_str()).collect();
    for r in &t.routers {
        out += &format!(
            "  {} [shape=ellipse, label=\"router {}\"{}];\n",
            dot_id("router", &r.id),
            dot_label(&r.name),
            red(r.missing)
        );
        for a in r
            .interfaces
            .iter()
            .filter(|a| known.contains(a.network.as_str()))
        {
            out += &format!(
                "  {} -- {} [label=\"{} {}\"{}];\n",
                dot_id("router", &r.id),
                dot_id("net", &a.network),
                dot_label(&a.device),
                dot_label(&a.addresses.join(", ")),
                red(a.missing)
            );
        }
        for f in &r.floating_ips {
            out += &format!(
                "  {} [shape=note, label=\"floating IP {}\\n-> {}\"];\n  {} -- {} [style=dotted];\n",
                dot_id("fip", &f.address),
                f.address,
                f.fixed_ip,
                dot_id("router", &r.id),
                dot_id("fip", &f.address)
            );
        }
    }
    for i in &t.instances {
        out += &format!(
            "  {} [shape=component, label=\"{}\"{}];\n",
            dot_id("instance", &i.id),
            dot_label(&i.name),
            red(i.missing)
        );
        if let Some(a) = &i.interface {
            out += &format!(
                "  {} -- {} [label=\"{} {}\"{}];\n",
                dot_id("instance", &i.id),
                dot_id("net", &a.network),
                dot_label(&a.device),
                dot_label(&a.addresses.join(", ")),
                red(a.missing)
            );
        }
    }
    out + "}\n"
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
