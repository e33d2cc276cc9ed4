//! The router's rules as data: Neutron's legacy router's NAT and qrouter's inbound
//! protection for IPv4, the same inbound protection without NAT for IPv6, and the host's
//! FORWARD chain where its policy drops bridged frames.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::rules::{chain, CtStates, Family, IfName, Inbound, Proto, Rule, Table, Target};

/// What the rules of one router depend on.
#[derive(Debug, Default)]
pub struct RouterNat {
    /// The `qg-` device and the router's address on the external subnet.
    pub gateway: Option<(IfName, Ipv4Addr)>,
    pub snat: bool,
    /// The router's tenant subnets, for hairpin NAT to floating IPs.
    pub internal: Vec<ipnet::Ipv4Net>,
    /// (floating IP, fixed IP) pairs.
    pub floating: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// The `qg-` device where the router routes IPv6 through its gateway: its ip6tables
    /// filter guards the tenant addresses, routed as they are (no NAT66).
    pub ipv6_uplink: Option<IfName>,
    /// What the operator opens to new IPv6 connections from outside (`--allow-inbound`).
    pub inbound: Vec<Inbound>,
}

pub fn build(r: &RouterNat) -> Vec<Table> {
    let mut tables = build_ipv4(r);
    tables.push(ipv6_filter(r));
    tables
}

fn build_ipv4(r: &RouterNat) -> Vec<Table> {
    // Without a gateway there is nothing to translate or protect: no chains, no jumps.
    let Some((qg, gw_ip)) = &r.gateway else {
        return ["nat", "filter"].map(Table::empty).into();
    };
    let (mut pre, mut out, mut post) = (Vec::new(), Vec::new(), Vec::new());
    let (mut snat, mut float_snat, mut forward) = (Vec::new(), Vec::new(), Vec::new());
    let snat_to = |to: Ipv4Addr| Target::Snat {
        to,
        random_fully: true,
    };
    let host = |ip: Ipv4Addr| IpNet::from(IpAddr::V4(ip));
    for (fip, fixed) in &r.floating {
        let dnat = Rule::to(Target::Dnat { to: *fixed }).dst(host(*fip));
        pre.push(dnat.clone());
        out.push(dnat);
        float_snat.push(Rule::to(snat_to(*fip)).src(host(*fixed)));
    }
    // Traffic between tenant networks keeps its addresses.
    post.push(
        Rule::to(Target::Accept)
            .oif(true, qg)
            .ctstate(true, CtStates::DNAT),
    );
    post.push(Rule::jump(&chain("snat")));
    snat.push(Rule::jump(&chain("float-snat")));
    // Hairpin: a tenant reaching a floating IP behind this router gets the reply back through it.
    for net in &r.internal {
        snat.push(
            Rule::to(snat_to(*gw_ip))
                .src(IpNet::V4(*net))
                .ctstate(false, CtStates::DNAT),
        );
    }
    if r.snat {
        snat.push(Rule::to(snat_to(*gw_ip)).oif(false, qg));
    }
    // Inbound protection: from outside only replies and connections to floating IPs.
    let established = CtStates::RELATED | CtStates::ESTABLISHED;
    forward.push(Rule::to(Target::Accept).iif(qg).ctstate(false, established));
    forward.push(
        Rule::to(Target::Accept)
            .iif(qg)
            .ctstate(false, CtStates::DNAT),
    );
    forward.push(Rule::to(Target::Drop).iif(qg));
    let own = |name: &str, rules: Vec<Rule>| (chain(name), rules);
    vec![
        Table {
            name: "nat",
            family: Family::V4,
            chains: vec![
                own("PREROUTING", pre),
                own("OUTPUT", out),
                own("POSTROUTING", post),
                own("snat", snat),
                own("float-snat", float_snat),
            ],
            jumps: vec![
                ("PREROUTING", chain("PREROUTING")),
                ("OUTPUT", chain("OUTPUT")),
                ("POSTROUTING", chain("POSTROUTING")),
            ],
        },
        Table {
            name: "filter",
            family: Family::V4,
            chains: vec![own("FORWARD", forward)],
            jumps: vec![("FORWARD", chain("FORWARD"))],
        },
    ]
}

/// ICMPv6 errors about a flow (destination unreachable, packet too big, time exceeded,
/// parameter problem): conntrack relates those of the flows it knows (ESTABLISHED,RELATED
/// lets them in); these let in those of flows it no longer has, so path MTU discovery
/// never breaks.
const ICMPV6_ERRORS: [u8; 4] = [1, 2, 3, 4];

/// IPv6's side: no NAT66 (tenant addresses are routed as they are), and the inbound
/// protection IPv4 has, in ip6tables' filter table: from outside only replies, ICMPv6
/// errors and what the operator opened. Neighbour discovery never crosses FORWARD (it is to and from the router).
fn ipv6_filter(r: &RouterNat) -> Table {
    let Some(qg) = &r.ipv6_uplink else {
        return Table::empty_of(Family::V6, "filter");
    };
    let established = CtStates::RELATED | CtStates::ESTABLISHED;
    let mut forward = vec![Rule::to(Target::Accept).iif(qg).ctstate(false, established)];
    forward.extend(ICMPV6_ERRORS.map(|t| Rule {
        proto: Some(Proto::Icmp),
        icmpv6_type: Some(t),
        ..Rule::to(Target::Accept).iif(qg)
    }));
    forward.extend(r.inbound.iter().map(|i| i.rule(qg)));
    forward.push(Rule::to(Target::Drop).iif(qg));
    Table {
        name: "filter",
        family: Family::V6,
        chains: vec![(chain("FORWARD"), forward)],
        jumps: vec![("FORWARD", chain("FORWARD"))],
    }
}

/// The host's side: bridged frames cross the host's FORWARD chain of `family` when bridge
/// netfilter is on. Where its policy is DROP (Docker sets that), qrouter accepts the frames
/// that stay within each of its bridges, and nothing else; with no need, or no networks, no
/// chain.
pub fn host_forward(bridges: &[IfName], policy_drops: bool, family: Family) -> Table {
    if !policy_drops || bridges.is_empty() {
        return Table::empty("filter");
    }
    let accept = bridges
        .iter()
        .map(|b| Rule::to(Target::Accept).iif(b).oif(false, b))
        .collect();
    Table {
        name: "filter",
        family,
        chains: vec![(chain("FORWARD"), accept)],
        jumps: vec![("FORWARD", chain("FORWARD"))],
    }
}
