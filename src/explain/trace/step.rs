//! One node's decision for a packet: what an instance, the outside or a router does with it
//! (a router's PREROUTING, route lookup, FORWARD and POSTROUTING, with the conntrack a reply
//! is translated back by). The walk in `trace.rs` only moves between the nodes these decide
//! for; the per-node rules are the bulk of the trace and read on their own.

use std::net::IpAddr;

use super::{Addrs, At, Hop, Node, Outcome, Translation, Walk, Wire};
use crate::explain::route::{gateway_device, lookup, Chosen};
use crate::explain::rulematch::{self, Packet};
use crate::model::{Instance, Network, Port, PortRole, Router, State};
use crate::reconcile::plan::{instance_plan, router_plan, Plan};

/// What the workload behind a port holds once its DHCP client has the port's lease: the
/// address, the subnet's gateway and host routes, as an instance that takes its address by
/// DHCP holds them. Its device is its NIC, shown by its MAC: qrouter does not know its name.
fn workload_plan(state: &State, port: &Port) -> Plan {
    let behind = Instance {
        id: port.id.clone(),
        name: port.display_name(),
        port_id: port.id.clone(),
        dhcp: true,
        host: None,
    };
    let mut plan = instance_plan(state, &behind).leased();
    for d in &mut plan.devices {
        d.name = format!("NIC {}", d.mac);
    }
    plan
}

impl<'a> Walk<'a> {
    fn ensure_plan(&mut self, router: &Router) {
        if !self.plans.contains_key(&router.id) {
            let plan = router_plan(self.state, router);
            self.plans.insert(router.id.clone(), plan);
        }
    }

    /// One node's decision for a packet.
    pub(super) fn step(&mut self, at: &At<'a>, pkt: Addrs, reply: bool, first: bool) -> Hop {
        match at {
            At::Instance(instance) => {
                let plan = instance_plan(self.state, instance).leased();
                let node = Node {
                    kind: "instance",
                    name: instance.name.clone(),
                    namespace: Some(plan.namespace.clone()),
                };
                self.host_step(node, &plan, &instance.port_id, pkt, first)
            }
            At::Port(port) => {
                let node = Node {
                    kind: "port",
                    name: port.display_name(),
                    namespace: None,
                };
                self.host_step(node, &workload_plan(self.state, port), &port.id, pkt, first)
            }
            At::Router(router, ingress) => self.router_step(router, ingress.as_deref(), pkt, reply),
            At::Outside(network) => self.outside_step(network, pkt),
        }
    }

    fn wire(&self, dev: &crate::reconcile::plan::Device) -> Wire {
        Wire {
            device: dev.name.clone(),
            tap: dev.tap.clone(),
            bridge: dev.bridge.clone(),
            network: self
                .state
                .networks
                .iter()
                .find(|n| n.bridge == dev.bridge)
                .map_or_else(String::new, |n| n.name.clone()),
        }
    }

    /// What an end host does with a packet: an instance (a namespace qrouter made) or the
    /// workload behind a port (`plan`, its device, on port `port_id`).
    fn host_step(&self, node: Node, plan: &Plan, port_id: &str, pkt: Addrs, first: bool) -> Hop {
        let who = format!("{} {}", node.kind, node.name);
        let mut hop = Self::blank(node, pkt);
        let dev = plan.devices.first();
        if !first {
            hop.ingress = dev.map(|d| self.wire(d));
            if plan
                .devices
                .iter()
                .flat_map(|d| &d.addresses)
                .any(|a| a.addr() == pkt.dst)
            {
                hop.outcome = Some(Outcome::Delivered);
                hop.notes.push(match hop.node.kind {
                    "port" => format!(
                        "delivered to {who} ({}): the VM or container plugged into its tap holds it",
                        pkt.dst
                    ),
                    _ => format!("delivered to {who} ({})", pkt.dst),
                });
            } else {
                hop.outcome = Some(Outcome::Dropped);
                hop.notes.push(match hop.node.kind {
                    "port" => format!(
                        "{who}: {} is not its address, and qrouter knows of no route through the workload behind it",
                        pkt.dst
                    ),
                    _ => format!(
                        "{who} is a test host and does not forward (net.ipv4.ip_forward=0): {} is not its address",
                        pkt.dst
                    ),
                });
            }
            return hop;
        }
        let external = self
            .state
            .port_by_id(port_id)
            .and_then(|p| self.state.network_by_id(&p.network_id))
            .filter(|n| n.external);
        match lookup(plan, pkt.dst) {
            Some(chosen) => self.forward(plan, &mut hop, chosen),
            None => match external {
                // The outside standing in for the upstream: it may route more than qrouter
                // made for it.
                Some(network) => {
                    let out = self.outside_step(network, pkt);
                    hop.route = out.route;
                    hop.egress = dev.map(|d| self.wire(d));
                    hop.next_hop = out.next_hop;
                    hop.outcome = out.outcome;
                    hop.notes = out.notes;
                    if hop.outcome.is_none() {
                        hop.notes.insert(
                            0,
                            format!(
                                "{who} has no route to {} of its own (qrouter made none)",
                                pkt.dst
                            ),
                        );
                    }
                }
                None => {
                    hop.outcome = Some(Outcome::NoRoute);
                    hop.notes.push(format!(
                        "{who} has no route to {}: its subnet has no gateway",
                        pkt.dst
                    ));
                }
            },
        }
        hop
    }

    /// The outside on `network` sends: on-link to its subnets, and (as a host with a route to
    /// the router's tenant subnets would) through a router's gateway.
    fn outside_step(&self, network: &Network, pkt: Addrs) -> Hop {
        let state = self.state;
        let mut hop = Self::blank(
            Node {
                kind: "outside",
                name: network.name.clone(),
                namespace: None,
            },
            pkt,
        );
        let wire = |device: String| Wire {
            device,
            tap: String::new(),
            bridge: network.bridge.clone(),
            network: network.name.clone(),
        };
        if let Some(s) = state
            .subnets_of(&network.id)
            .find(|s| s.cidr.contains(&pkt.dst))
        {
            hop.route = Some(format!("{} dev {} scope link", s.cidr, network.bridge));
            hop.egress = Some(wire(network.bridge.clone()));
            hop.next_hop = Some(pkt.dst);
            return hop;
        }
        // A router with a gateway on this network and an interface on the destination's subnet.
        for router in &state.routers {
            let Some(gw) = router
                .gateway_port_id
                .as_deref()
                .and_then(|p| state.port_by_id(p))
                .filter(|p| p.network_id == network.id)
            else {
                continue;
            };
            let subnet = state
                .router_ports(router)
                .filter(|p| p.role == PortRole::RouterInterface)
                .flat_map(|p| &p.fixed_ips)
                .filter_map(|f| state.subnet_by_id(&f.subnet_id))
                .find(|s| s.cidr.contains(&pkt.dst));
            let gw_ip = gw
                .fixed_ips
                .iter()
                .map(|f| f.ip)
                .find(|ip| ip.is_ipv4() == pkt.dst.is_ipv4());
            if let (Some(subnet), Some(gw_ip)) = (subnet, gw_ip) {
                hop.route = Some(format!("{} via {gw_ip}", subnet.cidr));
                hop.egress = Some(wire(network.bridge.clone()));
                hop.next_hop = Some(gw_ip);
                hop.notes.push(format!(
                    "assumed: the outside routes {} via router {}'s gateway {gw_ip} (qrouter announces no routes; without one the outside cannot even send this)",
                    subnet.cidr, router.name
                ));
                return hop;
            }
        }
        hop.outcome = Some(Outcome::NoRoute);
        hop.notes.push(format!(
            "the outside on {} has no path qrouter knows to {}",
            network.name, pkt.dst
        ));
        hop
    }

    /// Fill the egress of `hop` from a route chosen in `plan`.
    fn forward(&self, plan: &Plan, hop: &mut Hop, chosen: Chosen) {
        hop.route = Some(chosen.text);
        hop.egress = plan
            .devices
            .iter()
            .find(|d| d.name == chosen.device)
            .map(|d| self.wire(d));
        hop.next_hop = Some(chosen.via.first().copied().unwrap_or(hop.leaves.dst));
        if chosen.via.len() > 1 {
            hop.multipath = chosen.via[1..].to_vec();
            hop.notes.push(format!(
                "multipath route: the kernel picks one of {} per flow by hash; shown: the first",
                chosen
                    .via
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }

    fn router_step(
        &mut self,
        router: &Router,
        ingress: Option<&str>,
        pkt: Addrs,
        reply: bool,
    ) -> Hop {
        let protocol = self.protocol.name();
        let router_id = router.id.clone();
        self.ensure_plan(router);
        let (node, wire_in, local_addrs) = {
            let plan = &self.plans[&router.id];
            let node = Node {
                kind: "router",
                name: router.name.clone(),
                namespace: Some(plan.namespace.clone()),
            };
            let wire_in = ingress.and_then(|i| plan.devices.iter().find(|d| d.name == i));
            let local: Vec<IpAddr> = plan
                .devices
                .iter()
                .flat_map(|d| &d.addresses)
                .map(|a| a.addr())
                .collect();
            (node, wire_in.map(|d| self.wire(d)), local)
        };
        let mut hop = Self::blank(node, pkt);
        hop.ingress = wire_in;
        let mut cur = pkt;
        let mut dnat = false;
        let mut undo_dnat = None;
        // PREROUTING: a reply is translated back by conntrack; a new connection meets the
        // DNAT rules of floating IPs.
        if reply {
            if let Some(t) = self
                .conntrack
                .iter()
                .find(|t| t.router == router_id && t.after.dst == cur.src && t.after.src == cur.dst)
            {
                if t.before.src != cur.dst {
                    hop.nat.push(format!(
                        "conntrack reverses the SNAT: destination {} -> {}",
                        cur.dst, t.before.src
                    ));
                    cur.dst = t.before.src;
                }
                if t.before.dst != cur.src {
                    undo_dnat = Some(t.before.dst);
                }
            }
        } else if ingress.is_some() {
            let p = Packet {
                src: cur.src,
                dst: cur.dst,
                protocol,
                iif: ingress,
                oif: None,
                established: false,
                dnat: false,
            };
            let plan = &self.plans[&router.id];
            if let Some(hit) = rulematch::decide(&plan.rules, "nat", "qrouter-PREROUTING", &p) {
                if let (Some(to), "DNAT") = (hit.to, hit.target.as_str()) {
                    hop.nat.push(format!(
                        "destination {} -> {to}: {}",
                        cur.dst,
                        rulematch::words(&hit)
                    ));
                    cur.dst = to;
                    dnat = true;
                }
                hop.rules.push(hit);
            }
        }
        // Local delivery: an address of the router itself.
        if local_addrs.contains(&cur.dst) {
            hop.leaves = cur;
            hop.outcome = Some(Outcome::Delivered);
            hop.notes.push(format!(
                "delivered to router {} itself ({})",
                router.name, cur.dst
            ));
            return hop;
        }
        let plan = &self.plans[&router.id];
        let Some(chosen) = lookup(plan, cur.dst) else {
            hop.leaves = cur;
            hop.outcome = Some(Outcome::NoRoute);
            let has_gateway = router.gateway_port_id.is_some();
            hop.notes.push(if has_gateway {
                format!(
                    "no route to {} in router {}: no interface on its subnet and no route covers it",
                    cur.dst, router.name
                )
            } else {
                format!(
                    "no route to {} in router {}: it has no external gateway, so no default route (qrouter router set {} --external-gateway NET)",
                    cur.dst, router.name, router.name
                )
            });
            return hop;
        };
        let oif = chosen.device.clone();
        // FORWARD.
        // The packet as FORWARD and POSTROUTING see it, leaving by `oif`.
        let leaving = |src, dst, established, dnat| Packet {
            src,
            dst,
            protocol,
            iif: ingress,
            oif: Some(&oif),
            established,
            dnat,
        };
        if ingress.is_some() {
            let p = leaving(cur.src, cur.dst, reply, dnat);
            match rulematch::decide(&plan.rules, "filter", "qrouter-FORWARD", &p) {
                Some(hit) if hit.target == "DROP" => {
                    hop.leaves = cur;
                    // Where it would have gone: the route is chosen before FORWARD judges.
                    self.forward(plan, &mut hop, chosen);
                    hop.outcome = Some(Outcome::Dropped);
                    hop.notes.push(format!(
                        "dropped by `{}`: {}",
                        hit.rule,
                        rulematch::words(&hit)
                    ));
                    hop.rules.push(hit);
                    return hop;
                }
                Some(hit) => {
                    hop.notes.push(format!("FORWARD: {}", rulematch::words(&hit)));
                    hop.rules.push(hit);
                }
                None => hop.notes.push(
                    "FORWARD: no qrouter-FORWARD rule matches (they only judge what enters through the gateway): accepted"
                        .into(),
                ),
            }
        }
        // POSTROUTING.
        if reply {
            if let Some(orig) = undo_dnat {
                hop.nat.push(format!(
                    "conntrack reverses the DNAT: source {} -> {orig}",
                    cur.src
                ));
                cur.src = orig;
            }
        } else {
            let p = leaving(cur.src, cur.dst, false, dnat);
            match rulematch::decide(&plan.rules, "nat", "qrouter-POSTROUTING", &p) {
                Some(hit) => {
                    if let (Some(to), "SNAT") = (hit.to, hit.target.as_str()) {
                        hop.nat
                            .push(format!("source {} -> {to}: {}", cur.src, rulematch::words(&hit)));
                        cur.src = to;
                    } else {
                        hop.notes.push(format!("NAT: {}", rulematch::words(&hit)));
                    }
                    hop.rules.push(hit);
                }
                None if router.gateway_port_id.is_some() && !router.snat && Some(oif.as_str()) == gateway_device(plan) => {
                    hop.notes.push(format!(
                        "no NAT rule matches: SNAT is disabled on router {}, the packet leaves with its own source {}",
                        router.name, cur.src
                    ))
                }
                None => hop.notes.push("no NAT rule matches: addresses unchanged".into()),
            }
            if cur != pkt {
                self.conntrack.push(Translation {
                    router: router_id,
                    before: pkt,
                    after: cur,
                });
            }
        }
        hop.leaves = cur;
        let plan = self.plans.get(&router.id).expect("planned above");
        self.forward(plan, &mut hop, chosen);
        hop
    }
}
