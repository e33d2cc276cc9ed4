//! What a trace is made of: the hops a packet takes, with the decisions at each, and how
//! they print.

use std::net::IpAddr;

use serde::Serialize;

use super::rulematch::RuleHit;

/// What is sent, for the probe and the display; qrouter's rules do not look at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Icmp,
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Icmp => "icmp",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One trace: the hops out, and the reply's hops back when the packet was delivered.
#[derive(Clone, Debug, Serialize)]
pub struct Trace {
    pub src: String,
    pub dst: String,
    pub protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub outcome: Outcome,
    /// The final hop's reason, in words.
    pub summary: String,
    pub hops: Vec<Hop>,
    pub reply: Vec<Hop>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Reached the destination.
    Delivered,
    /// A rule, or a host that does not forward, dropped it.
    Dropped,
    /// A namespace on the path has no route to the destination.
    NoRoute,
    /// The next hop is an address nobody holds on its network.
    Unreachable,
    /// Handed to a next hop outside everything qrouter knows (the upstream network).
    LeftQrouter,
    /// More hops than any path qrouter builds: a routing loop.
    Loop,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Dropped => "dropped",
            Outcome::NoRoute => "no route",
            Outcome::Unreachable => "unreachable",
            Outcome::LeftQrouter => "left qrouter",
            Outcome::Loop => "loop",
        }
    }
}

/// Where a hop happens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Node {
    /// `instance`, `router` or `outside`.
    pub kind: &'static str,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A device in a namespace and the host end that carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Wire {
    pub device: String,
    pub tap: String,
    pub bridge: String,
    pub network: String,
}

/// The addresses of the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Addrs {
    pub src: IpAddr,
    pub dst: IpAddr,
}

#[derive(Clone, Debug, Serialize)]
pub struct Hop {
    pub n: usize,
    pub node: Node,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Wire>,
    /// The packet as it arrives (or is sent, at the first hop).
    pub arrives: Addrs,
    /// The routing table entry chosen, as `ip route` prints it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The rules that decided (DNAT in PREROUTING, the FORWARD verdict, NAT in POSTROUTING).
    pub rules: Vec<RuleHit>,
    /// Address rewrites in words: by a rule, or by conntrack for a reply.
    pub nat: Vec<String>,
    /// The packet as it leaves.
    pub leaves: Addrs,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress: Option<Wire>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<IpAddr>,
    /// Other next hops of a multipath route; the kernel picks one per flow.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub multipath: Vec<IpAddr>,
    /// Set on the last hop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Why, in words.
    pub notes: Vec<String>,
    /// The device (in this namespace) the packet was dropped at because it is down as the
    /// store wants it: a disabled router's, or one whose host end is down (a disabled port
    /// or network). `--live` checks the kernel has it down too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down: Option<String>,
}

/// The trace as ovn-trace prints one: numbered hops, each with its decisions.
pub fn render_text(t: &Trace) -> String {
    let mut out = format!(
        "trace {}{} from {} to {}\n",
        t.protocol.name(),
        t.port.map(|p| format!(" port {p}")).unwrap_or_default(),
        t.src,
        t.dst
    );
    render_hops(&mut out, &t.hops, "");
    out += &format!("\nresult: {}: {}\n", t.outcome.as_str(), t.summary);
    if !t.reply.is_empty() {
        out += "\nreply (conntrack knows the connection and reverses its NAT):\n";
        render_hops(&mut out, &t.reply, "r");
    }
    out
}

fn render_hops(out: &mut String, hops: &[Hop], prefix: &str) {
    for h in hops {
        let ns = h
            .node
            .namespace
            .as_ref()
            .map(|n| format!(" [{n}]"))
            .unwrap_or_default();
        *out += &format!("\n{prefix}{}. {} {}{ns}\n", h.n, h.node.kind, h.node.name);
        if let Some(w) = &h.ingress {
            *out += &format!("     in      {}\n", wire_text(w));
        }
        *out += &format!("     packet  {} > {}\n", h.arrives.src, h.arrives.dst);
        // In the order the kernel takes them: DNAT, the route, FORWARD, SNAT.
        let (pre, post): (Vec<&RuleHit>, Vec<&RuleHit>) = h
            .rules
            .iter()
            .partition(|r| r.chain.ends_with("PREROUTING"));
        for r in pre {
            *out += &format!("     rule    [{}] {}\n", r.table, r.rule);
        }
        if let Some(r) = &h.route {
            *out += &format!("     route   {r}\n");
        }
        for r in post {
            *out += &format!("     rule    [{}] {}\n", r.table, r.rule);
        }
        for n in &h.nat {
            *out += &format!("     nat     {n}\n");
        }
        if h.leaves != h.arrives && h.outcome.is_none() {
            *out += &format!("     now     {} > {}\n", h.leaves.src, h.leaves.dst);
        }
        if let Some(w) = h.egress.as_ref().filter(|_| h.outcome.is_none()) {
            let via = h
                .next_hop
                .map(|n| format!(", next hop {n}"))
                .unwrap_or_default();
            *out += &format!("     out     {}{via}\n", wire_text(w));
        }
        for n in &h.notes {
            *out += &format!("     why     {n}\n");
        }
        if let Some(o) = h.outcome {
            *out += &format!("     =>      {}\n", o.as_str().to_uppercase());
        }
    }
}

fn wire_text(w: &Wire) -> String {
    match w.tap.is_empty() {
        true => format!("{} ({})", w.device, w.network),
        false => format!("{} -- {} on {} ({})", w.device, w.tap, w.bridge, w.network),
    }
}
