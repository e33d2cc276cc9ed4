//! The static trace: a packet walked through the desired state, hop by hop, as the kernel
//! would forward it once it matches the store. Pure functions over `State` and the plans
//! `reconcile::plan` builds (the same devices, routes and rule text the kernel is given);
//! no kernel access. The live trace (`live.rs`) checks these hops against the kernel.
//! This file walks from node to node; what each node does with the packet is `trace/step.rs`.

use std::collections::HashMap;

use crate::error::invalid;
use crate::model::{naming, Instance, Network, Port, Router, State};
use crate::reconcile::plan::Plan;

pub use super::hop::*;
use super::place::wire_down;
pub use super::place::{locate, resolve, same_family, Place};

mod ends;
mod step;

/// What one trace asks.
pub struct Request<'a> {
    pub src: Place<'a>,
    pub dst: Place<'a>,
    /// The external network an outside source comes from (`--from-network`).
    pub from_network: Option<&'a Network>,
    pub protocol: Protocol,
    pub port: Option<u16>,
}

/// Trace `req` through the desired state.
pub fn trace(state: &State, req: &Request) -> anyhow::Result<Trace> {
    let mut walk = Walk {
        state,
        plans: HashMap::new(),
        conntrack: Vec::new(),
        protocol: req.protocol,
    };
    let dst_ip = req.dst.ip();
    let (start, src_ip, mut notes) = walk.sender(&req.src, req.from_network)?;
    let mut hops = Vec::new();
    let outcome = walk.run(
        start,
        Addrs {
            src: src_ip,
            dst: dst_ip,
        },
        false,
        &mut hops,
        std::mem::take(&mut notes),
    );
    let mut reply = Vec::new();
    if outcome == Outcome::Delivered {
        let last = hops.last().expect("a delivered trace has hops");
        let back = Addrs {
            src: last.arrives.dst,
            dst: last.arrives.src,
        };
        let start = walk.receiver_as_sender(last);
        if let Some(start) = start {
            walk.run(start, back, true, &mut reply, vec![]);
        }
    }
    let last = hops.last().expect("every trace has a hop");
    Ok(Trace {
        src: req.src.describe(),
        dst: req.dst.describe(),
        protocol: req.protocol,
        port: req.port,
        outcome,
        summary: last.notes.last().cloned().unwrap_or_default(),
        hops,
        reply,
    })
}

/// Where the walk is.
#[derive(Clone)]
enum At<'a> {
    Instance(&'a Instance),
    /// The workload behind a port made by `port create`.
    Port(&'a Port),
    /// A router, entered through a device (None: the router sends it itself).
    Router(&'a Router, Option<String>),
    /// The outside on an external network, sending from `ip`.
    Outside(&'a Network),
}

/// A connection a router translated: the addresses as it arrived and as it left.
struct Translation {
    router: String,
    before: Addrs,
    after: Addrs,
}

struct Walk<'a> {
    state: &'a State,
    plans: HashMap<String, Plan>,
    conntrack: Vec<Translation>,
    protocol: Protocol,
}

const MAX_HOPS: usize = 16;

/// Nobody on `network` answers ARP for the packet's next hop: it ends there, for `why`.
fn unanswered(network: &Network, why: String) -> (Outcome, Node, String) {
    let node = Node {
        kind: "outside",
        name: network.name.clone(),
        namespace: None,
    };
    (Outcome::Unreachable, node, why)
}

impl<'a> Walk<'a> {
    fn run(
        &mut self,
        mut at: At<'a>,
        mut pkt: Addrs,
        reply: bool,
        hops: &mut Vec<Hop>,
        mut notes: Vec<String>,
    ) -> Outcome {
        loop {
            if hops.len() >= MAX_HOPS {
                if let Some(h) = hops.last_mut() {
                    h.outcome = Some(Outcome::Loop);
                    h.notes
                        .push(format!("more than {MAX_HOPS} hops: a routing loop"));
                }
                return Outcome::Loop;
            }
            let translations = self.conntrack.len();
            let mut hop = self.step(&at, pkt, reply, hops.is_empty());
            hop.n = hops.len() + 1;
            // A device that is down takes nothing in, so the namespace decides nothing for
            // the packet (it has no route through a device that is down either, as the
            // kernel has none); and it sends nothing out.
            let down = |w: &Option<Wire>| {
                let w = w.as_ref()?;
                Some((w.device.clone(), wire_down(self.state, w)?))
            };
            let forwards = hop.outcome.is_none();
            if let Some((device, why)) = down(&hop.ingress) {
                self.conntrack.truncate(translations);
                let mut dropped = Self::blank(hop.node, hop.arrives);
                (dropped.n, dropped.ingress) = (hop.n, hop.ingress);
                hop = dropped;
                hop.outcome = Some(Outcome::Dropped);
                (hop.down, hop.notes) = (Some(device), vec![why]);
            } else if let Some((device, why)) = down(&hop.egress).filter(|_| forwards) {
                hop.outcome = Some(Outcome::Dropped);
                hop.down = Some(device);
                hop.notes.push(why);
            }
            notes.append(&mut hop.notes);
            hop.notes = std::mem::take(&mut notes);
            let next = match hop.outcome {
                Some(o) => {
                    hops.push(hop);
                    return o;
                }
                None => self.arrive(&hop),
            };
            pkt = hop.leaves;
            hops.push(hop);
            match next {
                Ok(next) => at = next,
                Err((outcome, node, why)) => {
                    let mut last = Self::blank(node, pkt);
                    (last.n, last.outcome, last.notes) = (hops.len() + 1, Some(outcome), vec![why]);
                    hops.push(last);
                    return outcome;
                }
            }
        }
    }

    /// Who on the egress network takes the packet from `hop`.
    fn arrive(&self, hop: &Hop) -> Result<At<'a>, (Outcome, Node, String)> {
        let state = self.state;
        let wire = hop.egress.as_ref().expect("a forwarded hop has an egress");
        let next = hop.next_hop.expect("a forwarded hop has a next hop");
        let network = state
            .networks
            .iter()
            .find(|n| n.bridge == wire.bridge)
            .map(AsRef::as_ref);
        let outside = |why: String| {
            (
                Outcome::LeftQrouter,
                Node {
                    kind: "outside",
                    name: network.map_or(wire.bridge.clone(), |n| n.name.clone()),
                    namespace: None,
                },
                why,
            )
        };
        let Some(network) = network else {
            return Err(outside(format!("{next} is beyond bridge {}", wire.bridge)));
        };
        match locate(state, next, Some(network)) {
            Place::Instance { instance, .. } => Ok(At::Instance(instance)),
            Place::Port { port, .. } => Ok(At::Port(port)),
            Place::Router { router, port, .. } => {
                Ok(At::Router(router, Some(naming::port_device(port))))
            }
            Place::Floating(f) => {
                let holder = state.routers.iter().find(|r| {
                    state
                        .router_floating_ips(r)
                        .iter()
                        .any(|(x, _)| x.id == f.id)
                });
                match holder {
                    Some(r) => {
                        let gw = r.gateway_port_id.as_deref().and_then(|p| state.port_by_id(p));
                        Ok(At::Router(r, gw.map(naming::port_device)))
                    }
                    None => Err(unanswered(
                        network,
                        format!(
                            "floating IP {next} is associated with no instance (or no router serves it): no device holds it on {}, ARP for it goes unanswered",
                            network.name
                        ),
                    )),
                }
            }
            Place::Outside { network, ip } => {
                let gateway = state.subnets_of(&network.id).any(|s| s.gateway == Some(ip));
                let role = if gateway { "the upstream gateway " } else { "" };
                Err(outside(if hop.leaves.dst == ip {
                    format!(
                        "handed to {role}{ip} on {}, outside qrouter: delivered there if a host holds it",
                        network.name
                    )
                } else {
                    format!(
                        "handed to {role}{ip} on {}, outside qrouter: what happens to {} beyond it is the upstream network's business",
                        network.name, hop.leaves.dst
                    )
                }))
            }
            Place::Unused { network, ip } => Err(unanswered(
                network,
                format!(
                    "no instance or router port holds {ip} on {}: ARP for it goes unanswered",
                    network.name
                ),
            )),
            Place::Beyond(ip) => Err(outside(format!("{ip} is beyond {}", network.name))),
        }
    }

    fn blank(node: Node, pkt: Addrs) -> Hop {
        Hop {
            n: 0,
            node,
            ingress: None,
            arrives: pkt,
            route: None,
            rules: vec![],
            nat: vec![],
            leaves: pkt,
            egress: None,
            next_hop: None,
            multipath: vec![],
            outcome: None,
            notes: vec![],
            down: None,
        }
    }
}
