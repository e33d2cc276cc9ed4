//! What `router show` and `router list` print of the desired state: openstackclient's
//! fields and columns, then qrouter's.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::field;
use crate::model::{naming, Network, Object, Port, PortRole, Router, State};
use crate::output::{Listing, Record};

fn gateway_info(state: &State, r: &Router) -> Option<(String, String)> {
    let port = state.port_by_id(r.gateway_port_id.as_deref()?)?;
    let network = state.network_by_id(&port.network_id)?;
    Some((network.name.clone(), addresses(port)))
}

/// A port's addresses as the router views print them: `10.10.10.3, 10.10.10.4`.
fn addresses(port: &crate::model::Port) -> String {
    let ips: Vec<String> = port.fixed_ips.iter().map(|f| f.ip.to_string()).collect();
    ips.join(", ")
}

/// `external_gateway_info` as Neutron gives it: null without a gateway.
fn gateway_json(state: &State, r: &Router, port: Option<&crate::model::Port>) -> Value {
    let Some(port) = port.or_else(|| state.port_by_id(r.gateway_port_id.as_deref()?)) else {
        return Value::Null;
    };
    json!({
        "network_id": port.network_id,
        "enable_snat": r.snat,
        "external_fixed_ips": fixed_ips_json(port),
    })
}

/// A port's `fixed_ips` as Neutron gives them: `[{"subnet_id", "ip_address"}]`.
pub fn fixed_ips_json(port: &crate::model::Port) -> Value {
    port.fixed_ips
        .iter()
        .map(|f| json!({"subnet_id": f.subnet_id, "ip_address": f.ip.to_string()}))
        .collect()
}

fn routes_json(r: &Router) -> Value {
    r.routes
        .iter()
        .map(
            |x| json!({"destination": x.destination.to_string(), "nexthop": x.nexthop.to_string()}),
        )
        .collect()
}

/// The fields openstackclient's `router show` prints (without Keystone's and the
/// extensions'), in its order; then qrouter's own. `status` comes from where the router runs
/// (`Session::router_statuses`).
pub fn record(state: &State, r: &Router, status: &str) -> Record {
    let gateway = gateway_info(state, r);
    let ports: Vec<&crate::model::Port> = state
        .router_ports(r)
        .filter(|p| p.role == PortRole::RouterInterface)
        .collect();
    let interfaces_info: Vec<Value> = ports
        .iter()
        .flat_map(|p| {
            p.fixed_ips.iter().map(|f| {
                json!({"port_id": p.id, "ip_address": f.ip.to_string(), "subnet_id": f.subnet_id})
            })
        })
        .collect();
    let interfaces: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "{} {} ({})",
                naming::port_device(p),
                addresses(p),
                state.port_subnet_names(p)
            )
        })
        .collect();
    let m = &r.meta;
    vec![
        field("admin_state_up", m.admin_state_up),
        field("created_at", nonempty(&m.created_at)),
        field("description", &m.description),
        field("external_gateway_info", gateway_json(state, r, None)),
        field("ha", r.ha.is_some()),
        field("id", &r.id),
        field("interfaces_info", interfaces_info),
        field("name", &r.name),
        field("revision_number", m.revision_number),
        field("routes", routes_json(r)),
        field("status", status),
        field("tags", &m.tags),
        field("updated_at", nonempty(&m.updated_at)),
        field("namespace", naming::router_namespace(&r.id)),
        field("external_gateway_network", gateway.as_ref().map(|g| &g.0)),
        field("external_gateway_ip", gateway.as_ref().map(|g| &g.1)),
        field("enable_snat", r.snat),
        field("interfaces", interfaces),
        field("ipv6_upstream_routes", upstream_routes(state, r)),
        field(
            "allow_inbound",
            r.inbound.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
        ),
        field(
            "inbound",
            if !m.admin_state_up {
                "disabled: the router forwards nothing"
            } else if gateway.is_some() {
                "new connections from the external network are dropped unless DNAT'ed to a floating IP (IPv6: unless allow_inbound opens them)"
            } else {
                "no external gateway"
            },
        ),
    ]
}

/// No NAT66: the tenant IPv6 prefixes the upstream must route to this router, through its
/// qg-'s global IPv6 address (or its link-local, where qg- has none).
fn upstream_routes(state: &State, r: &Router) -> Vec<String> {
    let Some(qg) = state
        .router_ports(r)
        .find(|p| p.role == PortRole::RouterGateway)
    else {
        return vec![];
    };
    let global = qg
        .fixed_ips
        .iter()
        .find(|f| f.ip.is_ipv6())
        .map(|f| f.ip.to_string());
    let Some(next_hop) = global.or_else(|| {
        let lla = crate::model::ipv6::link_local(&qg.mac)?;
        Some(format!(
            "{} ({}'s link-local)",
            lla.addr(),
            naming::port_device(qg)
        ))
    }) else {
        return vec![];
    };
    state
        .router_ports(r)
        .filter(|p| p.role == PortRole::RouterInterface)
        .flat_map(|p| &p.fixed_ips)
        .filter(|f| f.ip.is_ipv6())
        .filter_map(|f| state.subnet_by_id(&f.subnet_id))
        .map(|s| format!("{} via {next_hop}", s.cidr))
        .collect()
}

/// A time stamp; null where a store from before time stamps has none.
pub fn nonempty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// What `listing` reads.
pub const LISTED: &[&str] = &[Router::KIND, Port::KIND, Network::KIND];

/// openstackclient's columns (ID, Name, Status, State; with --long Routes, External gateway
/// info, Tags), then qrouter's.
pub fn listing(
    state: &State,
    statuses: &HashMap<String, String>,
    long: bool,
    filter: impl Fn(&Router) -> bool,
) -> Listing {
    // One pass over ports and networks, not one per router: lists of thousands stay linear.
    let ports: HashMap<&str, &crate::model::Port> = state
        .ports
        .iter()
        .map(|p| (p.id.as_str(), p.as_ref()))
        .collect();
    let networks: HashMap<&str, &str> = state
        .networks
        .iter()
        .map(|n| (n.id.as_str(), n.name.as_str()))
        .collect();
    let mut interfaces: HashMap<&str, usize> = HashMap::new();
    for p in state
        .ports
        .iter()
        .filter(|p| p.role == PortRole::RouterInterface)
    {
        *interfaces.entry(p.device_id.as_str()).or_default() += 1;
    }
    let mut headers = vec!["ID", "Name", "Status", "State"];
    if long {
        headers.extend(["Routes", "External gateway info", "Tags", "Description"]);
    }
    headers.extend(["External Gateway", "Gateway IP", "SNAT", "Interfaces"]);
    Listing {
        headers: headers.into_iter().map(String::from).collect(),
        rows: state
            .routers
            .iter()
            .filter(|r| filter(r))
            .map(|r| {
                let gateway = r.gateway_port_id.as_deref().and_then(|id| ports.get(id));
                let mut row: Vec<Value> = vec![
                    r.id.clone().into(),
                    r.name.clone().into(),
                    statuses.get(&r.id).cloned().unwrap_or_default().into(),
                    if r.meta.admin_state_up { "UP" } else { "DOWN" }.into(),
                ];
                if long {
                    row.extend([
                        routes_json(r),
                        gateway_json(state, r, gateway.copied()),
                        r.meta.tags.clone().into(),
                        r.meta.description.clone().into(),
                    ]);
                }
                row.extend([
                    gateway
                        .and_then(|p| networks.get(p.network_id.as_str()))
                        .map(|n| n.to_string())
                        .into(),
                    gateway.map(|p| addresses(p)).into(),
                    r.snat.into(),
                    interfaces.get(r.id.as_str()).copied().unwrap_or(0).into(),
                ]);
                row
            })
            .collect(),
    }
}
