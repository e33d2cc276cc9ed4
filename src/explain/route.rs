//! The routing decision in a router's or instance's namespace, from its plan: longest
//! prefix over the connected routes and the plan's routes, as `ip route` prints them.

use std::net::IpAddr;

use crate::reconcile::plan::Plan;

pub(super) fn gateway_device(plan: &Plan) -> Option<&str> {
    plan.devices
        .iter()
        .map(|d| d.name.as_str())
        .find(|d| d.starts_with("qg-"))
}

/// The routing table entry the kernel would choose in `plan`'s namespace.
pub(super) struct Chosen {
    /// As `ip route` prints it.
    pub text: String,
    pub device: String,
    pub via: Vec<IpAddr>,
}

/// Longest prefix match over the connected routes (from the addresses of the devices that
/// are up: the kernel holds no route through one that is down, a disabled router's) and
/// the plan's routes, printed as `ip route` prints them.
pub(super) fn lookup(plan: &Plan, dst: IpAddr) -> Option<Chosen> {
    let mut best: Option<(u8, Chosen)> = None;
    let mut consider = |prefix: u8, chosen: Chosen| {
        if best.as_ref().is_none_or(|(p, _)| prefix > *p) {
            best = Some((prefix, chosen));
        }
    };
    let up = || plan.devices.iter().filter(|d| d.up);
    let connected = |ip: IpAddr| {
        up().find_map(|d| {
            d.addresses
                .iter()
                .find(|a| !host_route(a) && a.trunc().contains(&ip))
                .map(|_| d.name.clone())
        })
    };
    for d in up() {
        for a in d.addresses.iter().filter(|a| !host_route(a)) {
            if a.trunc().contains(&dst) {
                consider(
                    a.prefix_len(),
                    Chosen {
                        text: format!(
                            "{} dev {} proto kernel scope link src {}",
                            a.trunc(),
                            d.name,
                            a.addr()
                        ),
                        device: d.name.clone(),
                        via: vec![],
                    },
                );
            }
        }
    }
    let routes =
        (plan.routes.iter().map(|r| (r, "static"))).chain(plan.ra_routes.iter().map(|r| (r, "ra")));
    for (r, proto) in routes {
        if !r.destination.contains(&dst) {
            continue;
        }
        let dest = match r.destination.prefix_len() {
            0 => "default".to_string(),
            _ => r.destination.to_string(),
        };
        let chosen = match (&r.device, r.via.as_slice()) {
            (Some(dev), []) => Chosen {
                text: format!("{dest} dev {dev} proto {proto} scope link"),
                device: dev.clone(),
                via: vec![],
            },
            // Through a link-local next hop (IPv6), which only the device names.
            (Some(dev), via) => Chosen {
                text: format!(
                    "{dest} via {} dev {dev} proto {proto}",
                    via.iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                device: dev.clone(),
                via: via.to_vec(),
            },
            (None, [one]) => {
                let Some(dev) = connected(*one) else { continue };
                Chosen {
                    text: format!("{dest} via {one} dev {dev} proto {proto}"),
                    device: dev,
                    via: vec![*one],
                }
            }
            (None, many) => {
                let devs: Vec<(IpAddr, String)> = many
                    .iter()
                    .filter_map(|v| Some((*v, connected(*v)?)))
                    .collect();
                let Some((_, dev)) = devs.first().cloned() else {
                    continue;
                };
                let hops: Vec<String> = devs
                    .iter()
                    .map(|(v, d)| format!("nexthop via {v} dev {d} weight 1"))
                    .collect();
                Chosen {
                    text: format!("{dest} proto {proto} {}", hops.join(" ")),
                    device: dev,
                    via: devs.into_iter().map(|(v, _)| v).collect(),
                }
            }
        };
        consider(r.destination.prefix_len(), chosen);
    }
    best.map(|(_, c)| c)
}

/// An address without a connected route: a host's own /32 (IPv4) or /128 (IPv6, as a
/// DHCPv6 client sets it).
fn host_route(a: &ipnet::IpNet) -> bool {
    a.prefix_len() == a.max_prefix_len()
}
