//! One comparison of a plan with what the kernel holds, as a list of steps in the order the
//! kernel needs them. `router show` marks them, `sync --dry-run` lists them, `sync` and every
//! command apply them: the three cannot disagree. Pure: no kernel access.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::plan::{Kind, Plan, Route};
use crate::kernel::{addr::Address, keepalived, link::Link, radvd, route};
use crate::model::naming;
use crate::model::rules_edit::{self, Saved};

/// What the kernel holds for one namespace, as far as it was read.
#[derive(Debug, Default)]
pub struct Observed {
    /// Whether the namespace exists; without it everything below is empty.
    pub exists: bool,
    pub links: Vec<Link>,
    pub addresses: Vec<Address>,
    pub routes: Vec<route::Route>,
    /// qrouter's chains per table, as iptables-save shows them: read from nf_tables (with
    /// each rule's handle), from `iptables-save`, or, where a command trusts the state being
    /// left on a host with iptables-legacy, as that state put them.
    pub rules: BTreeMap<String, Saved>,
    /// Sysctls whose value differs from the plan's (when they were read).
    pub sysctls: Vec<String>,
    /// The host end of planned devices that were looked at: the tap's link, if any.
    pub taps: HashMap<String, Option<Link>>,
    /// Taps of missing devices whose veth's other end is in a namespace being destroyed.
    pub peer_gone: HashSet<String>,
    /// The host's bridges by name, with their index, as far as they exist.
    pub bridges: HashMap<String, u32>,
    /// A router's radvd and the configuration it was given, where they were read.
    pub radvd: Option<(radvd::State, Option<String>)>,
    /// A router copy's keepalived, where one is wanted or has files here.
    pub keepalived: Option<keepalived::Seen>,
    /// Whether an instance that asks for DHCPv6 options (`Lease::options6`) holds them
    /// (read only for such an instance).
    pub dhcpv6_options: bool,
}

/// One change to the kernel.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    CreateNamespace,
    SetSysctls(Vec<String>),
    /// A host-side tap left without its peer holds the name a device needs.
    DeleteOrphanTap(Link),
    /// A tap that is not this store's holds the name a device needs, but its veth's other
    /// end is in a namespace being destroyed: the kernel removes it shortly.
    AwaitTapRemoval(String),
    CreateVeth {
        device: String,
    },
    /// A device's host end set up or down: down while its port or network is disabled.
    SetTap {
        tap: String,
        up: bool,
    },
    /// A device's tap is on no bridge, or on another one than its network's.
    Enslave {
        tap: Link,
        bridge: String,
    },
    DeleteAddress {
        device: String,
        address: Address,
    },
    DeleteRoute(route::Route),
    /// qrouter's chains of one table edited to match.
    UpdateRules(rules_edit::Change),
    DeleteDevice(Link),
    /// Connections to an address the router no longer holds (a floating IP), forgotten once
    /// its rules are gone, as Neutron does.
    FlushConntrack(Ipv4Addr),
    AddAddress {
        device: String,
        address: IpNet,
    },
    SetUp {
        device: String,
    },
    /// A disabled router's device.
    SetDown {
        device: String,
    },
    AddRoute(Route),
    /// The router's radvd: stopped (it advertises nothing any more), before its devices
    /// and addresses go, so its last advertisement (router lifetime 0) still leaves.
    StopRadvd,
    /// Its configuration written, then radvd started (`stale`: one of ours that serves
    /// nothing, left in a namespace deleted behind qrouter's back, stopped first) or told
    /// to reread it.
    WriteRadvdConfig,
    StartRadvd {
        stale: Option<i32>,
    },
    ReloadRadvd {
        pid: i32,
    },
    /// An instance that takes its address by DHCP lacks its lease's address of a family:
    /// its DHCP client (DHCPv6's with `v6`) runs once, in the foreground, and exits once
    /// bound.
    RunDhcpClient {
        device: String,
        v6: bool,
    },
    /// An instance on a DHCPv6-stateless subnet that asks by DHCP holds no DHCPv6 options
    /// yet: its DHCPv6 client sends an information request once (`dhclient -6 -S`).
    RequestDhcpv6Options {
        device: String,
    },
    /// An HA router copy's conntrackd is not running, or its configuration differs:
    /// (re)started with the store's, before keepalived (whose notify script talks to it).
    StartConntrackd,
    /// An HA router copy's keepalived is not running: its configuration written, started.
    StartKeepalived,
    /// Its configuration differs from the store's: rewritten, and the process (this pid)
    /// reloads it.
    ReloadKeepalived(i32),
    /// A keepalived (or its files) where the router is no HA copy, or is disabled.
    StopKeepalived,
}

impl Step {
    /// The line `sync --dry-run` prints and `-v` reports.
    pub fn describe(&self, plan: &Plan) -> String {
        let ns = &plan.namespace;
        match self {
            Step::CreateNamespace => format!("{ns}: create namespace"),
            Step::SetSysctls(keys) => format!("{ns}: set sysctl {}", keys.join(", ")),
            Step::DeleteOrphanTap(tap) => format!("host: delete orphan {}", tap.name),
            Step::AwaitTapRemoval(tap) => format!(
                "host: wait for the kernel to remove {tap} (its peer's namespace is being destroyed)"
            ),
            Step::CreateVeth { device } => {
                let dev = plan.device(device);
                format!(
                    "{ns}: create veth {device} (host end {} on {})",
                    dev.map_or("?", |d| &d.tap),
                    dev.map_or("?", |d| &d.bridge)
                )
            }
            Step::Enslave { tap, bridge } => format!("host: enslave {} to {bridge}", tap.name),
            Step::SetTap { tap, up: true } => format!("host: set {tap} up"),
            Step::SetTap { tap, up: false } => {
                let why = plan.devices.iter().find(|d| &d.tap == tap);
                let why = why.and_then(|d| d.why_down.as_deref());
                format!("host: set {tap} down ({})", why.unwrap_or("disabled"))
            }
            Step::DeleteAddress { device, address } => {
                format!("{ns}: delete address {} from {device}", address.net)
            }
            Step::DeleteRoute(r) => {
                let via: Vec<String> = r.gateways.iter().map(|g| g.to_string()).collect();
                match via.is_empty() {
                    true => format!("{ns}: delete route {}", r.destination),
                    false => format!(
                        "{ns}: delete route {} via {}",
                        r.destination,
                        via.join(", ")
                    ),
                }
            }
            Step::UpdateRules(change) => {
                format!("{ns}: update qrouter chains of table {}", change.table)
            }
            Step::DeleteDevice(link) => format!("{ns}: delete stale device {}", link.name),
            Step::FlushConntrack(ip) => format!("{ns}: flush conntrack entries of {ip}"),
            Step::AddAddress { device, address } => {
                format!("{ns}: add address {address} to {device}")
            }
            Step::SetUp { device } => format!("{ns}: set {device} up"),
            Step::SetDown { device } => format!("{ns}: set {device} down (router disabled)"),
            Step::AddRoute(route) => format!("{ns}: add route {route}"),
            Step::StartKeepalived => format!(
                "{ns}: start keepalived (VRRP router id {})",
                plan.vrrp.as_ref().map_or(0, |v| v.vrid)
            ),
            Step::ReloadKeepalived(pid) => {
                format!("{ns}: rewrite keepalived.conf and reload keepalived (pid {pid})")
            }
            Step::StopKeepalived => format!("{ns}: stop keepalived"),
            Step::StartConntrackd => format!("{ns}: start conntrackd (connection sync)"),
            Step::StopRadvd => format!("{ns}: stop radvd"),
            Step::WriteRadvdConfig => format!("{ns}: write radvd's configuration"),
            Step::StartRadvd { stale: None } => format!("{ns}: start radvd"),
            Step::StartRadvd { stale: Some(pid) } => {
                format!("{ns}: start radvd (pid {pid} of its pid file is dead or serves no namespace)")
            }
            Step::ReloadRadvd { pid } => format!("{ns}: reload radvd (pid {pid}, SIGHUP)"),
            Step::RunDhcpClient { device, v6 } => format!(
                "{ns}: run {} on {device} (lease {} from the network's dnsmasq)",
                if *v6 { "dhclient -6" } else { "udhcpc" },
                plan.lease
                    .iter()
                    .flat_map(|l| &l.addresses)
                    .find(|a| a.addr().is_ipv6() == *v6)
                    .map_or("?".into(), |a| a.to_string())
            ),
            Step::RequestDhcpv6Options { device } => format!(
                "{ns}: run dhclient -6 -S on {device} (DNS server and domain from the network's dnsmasq)"
            ),
        }
    }

    /// The device inside the namespace a step is about, if any: the views mark its row.
    pub fn device(&self) -> Option<&str> {
        match self {
            Step::CreateVeth { device }
            | Step::DeleteAddress { device, .. }
            | Step::AddAddress { device, .. }
            | Step::SetUp { device }
            | Step::SetDown { device }
            | Step::RunDhcpClient { device, .. }
            | Step::RequestDhcpv6Options { device } => Some(device),
            Step::DeleteDevice(link) => Some(&link.name),
            _ => None,
        }
    }
}

impl Plan {
    pub fn device(&self, name: &str) -> Option<&super::plan::Device> {
        self.devices.iter().find(|d| d.name == name)
    }
}

/// The steps that make the kernel as `seen` match `plan`, in kernel order: removals go
/// address, then rules; additions rules, then address (a floating IP is announced only once
/// its DNAT is in place); routes last, once their devices and addresses are there. `owner`
/// is the store's id: a tap in the way is deleted only if it carries its mark.
pub fn diff(plan: &Plan, seen: &Observed, owner: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    if !seen.exists {
        steps.push(Step::CreateNamespace);
    } else if !seen.sysctls.is_empty() {
        steps.push(Step::SetSysctls(seen.sysctls.clone()));
    }
    let link = |name: &str| seen.links.iter().find(|l| l.name == name);
    let wanted = |name: &str| name == "lo" || plan.device(name).is_some();
    let running = seen.keepalived.as_ref();
    let leftover =
        |k: &keepalived::Seen| k.pid.is_some() || k.config.is_some() || k.conntrackd.is_some();
    if plan.vrrp.is_none() && running.is_some_and(leftover) {
        steps.push(Step::StopKeepalived);
    }
    // On an HA router's copy the router's addresses and routes are keepalived's: held by
    // the master, none by a backup. The agent never adds nor removes them.
    let vips = |dev: &str, a: &IpNet| {
        plan.vrrp.as_ref().is_some_and(|v| {
            (v.interface == dev && *a == IpNet::V4(crate::model::ha::primary_vip(v.vrid)))
                || v.addresses.iter().any(|(x, d)| x == a && d == dev)
        })
    };
    let vroute = |r: &route::Route| {
        (plan.vrrp.as_ref())
            .is_some_and(|v| v.routes.iter().any(|x| x.destination == r.destination))
    };

    for dev in &plan.devices {
        let tap = seen.taps.get(&dev.tap).and_then(Option::as_ref);
        match link(&dev.name) {
            None => {
                // A tap left by a namespace deleted behind qrouter's back (`ip netns del`),
                // which the kernel destroys lazily: deleted where it is ours, waited for
                // where it is not but goes with that namespace.
                if let Some(tap) = tap {
                    if naming::marked_by(tap.alias.as_deref(), owner) {
                        steps.push(Step::DeleteOrphanTap(tap.clone()));
                    } else if seen.peer_gone.contains(&tap.name) {
                        steps.push(Step::AwaitTapRemoval(tap.name.clone()));
                    }
                }
                steps.push(Step::CreateVeth {
                    device: dev.name.clone(),
                });
                // A veth is made with its tap up.
                if !dev.tap_up {
                    steps.push(Step::SetTap {
                        tap: dev.tap.clone(),
                        up: false,
                    });
                }
            }
            Some(_) => {
                if let Some(tap) = tap.filter(|t| t.up != dev.tap_up) {
                    steps.push(Step::SetTap {
                        tap: tap.name.clone(),
                        up: dev.tap_up,
                    });
                }
                if let Some(tap) = tap {
                    if tap.controller.is_none()
                        || tap.controller != seen.bridges.get(&dev.bridge).copied()
                    {
                        steps.push(Step::Enslave {
                            tap: tap.clone(),
                            bridge: dev.bridge.clone(),
                        });
                    }
                }
            }
        }
    }

    let (stop_radvd, start_radvd) = radvd_steps(plan, seen);
    steps.extend(stop_radvd);
    // The addresses qrouter manages: not those the kernel forms from router advertisements
    // (SLAAC), nor, outside routers (whose devices form none), the link-local ones the
    // kernel gives every device.
    let managed_address = |a: &&crate::kernel::addr::Address| {
        a.permanent
            && (plan.kind == Kind::Router
                || !matches!(a.net.addr(), IpAddr::V6(ip) if crate::model::ipv6::is_link_local(ip)))
    };
    let on = move |index: u32| {
        seen.addresses
            .iter()
            .filter(move |a| a.link_index == index)
            .filter(managed_address)
    };
    let mut released: Vec<Ipv4Addr> = Vec::new();
    // The address a DHCP client got is the lease's, not an extra one.
    let leased = |dev: &str, a: &IpNet| {
        plan.lease
            .as_ref()
            .is_some_and(|l| l.device == dev && l.addresses.contains(a))
    };
    for dev in &plan.devices {
        let Some(l) = link(&dev.name) else { continue };
        for extra in on(l.index).filter(|a| {
            !dev.addresses.contains(&a.net)
                && !leased(&dev.name, &a.net)
                && !vips(&dev.name, &a.net)
        }) {
            steps.push(Step::DeleteAddress {
                device: dev.name.clone(),
                address: extra.clone(),
            });
            if let (Kind::Router, IpNet::V4(net)) = (plan.kind, extra.net) {
                if net.prefix_len() == 32 {
                    released.push(net.addr());
                }
            }
        }
    }

    let stale: Vec<&Link> = seen.links.iter().filter(|l| !wanted(&l.name)).collect();
    // A route lasts only while its device does, and a next hop only while an address of the
    // device covers it: the kernel drops the others with the device or the address.
    let lasts = |r: &route::Route| {
        let Some(dev) = seen.links.iter().find(|l| Some(l.index) == r.oif) else {
            return false;
        };
        let Some(planned) = plan.device(&dev.name) else {
            return false;
        };
        r.gateways
            .iter()
            .all(|gw| planned.addresses.iter().any(|a| a.contains(gw)))
    };
    let matches = |k: &route::Route, r: &Route| {
        k.destination == r.destination
            && k.gateways == r.via
            && r.device
                .as_ref()
                .is_none_or(|d| link(d).map(|l| l.index) == k.oif)
    };
    let managed: Vec<&route::Route> = seen.routes.iter().filter(|r| r.is_static()).collect();
    for extra in managed
        .iter()
        .filter(|k| !plan.routes.iter().any(|r| matches(k, r)))
        .filter(|k| lasts(k) && !vroute(k))
    {
        steps.push(Step::DeleteRoute((*extra).clone()));
    }

    let empty = Saved::default();
    for table in &plan.rules {
        let saved = seen.rules.get(&table.key()).unwrap_or(&empty);
        if let Some(change) = rules_edit::change(table, saved) {
            steps.push(Step::UpdateRules(change));
        }
    }
    for l in &stale {
        steps.push(Step::DeleteDevice((*l).clone()));
    }
    steps.extend(released.into_iter().map(Step::FlushConntrack));

    for dev in &plan.devices {
        let current: Vec<IpNet> = link(&dev.name)
            .map(|l| on(l.index).map(|a| a.net).collect())
            .unwrap_or_default();
        for missing in dev.addresses.iter().filter(|a| !current.contains(a)) {
            steps.push(Step::AddAddress {
                device: dev.name.clone(),
                address: *missing,
            });
        }
    }
    if link("lo").is_none_or(|l| !l.up) {
        steps.push(Step::SetUp {
            device: "lo".into(),
        });
    }
    for dev in &plan.devices {
        let up = link(&dev.name).is_some_and(|l| l.up);
        if dev.up && !up {
            steps.push(Step::SetUp {
                device: dev.name.clone(),
            });
        } else if !dev.up && link(&dev.name).is_some_and(|l| l.up) {
            steps.push(Step::SetDown {
                device: dev.name.clone(),
            });
        }
    }
    for route in &plan.routes {
        if !managed.iter().any(|k| matches(k, route) && lasts(k)) {
            steps.push(Step::AddRoute(route.clone()));
        }
    }
    steps.extend(start_radvd);
    if let Some(vrrp) = &plan.vrrp {
        let conntrackd = vrrp.render_conntrackd(&keepalived::dir(&plan.id).to_string_lossy());
        let ct_config = running.and_then(|k| k.conntrackd_config.as_ref());
        if running.and_then(|k| k.conntrackd).is_none() || ct_config != Some(&conntrackd) {
            steps.push(Step::StartConntrackd);
        }
        let config = vrrp.render(&keepalived::notify_command(&plan.id));
        match running.and_then(|k| k.pid) {
            None => steps.push(Step::StartKeepalived),
            Some(pid) if running.and_then(|k| k.config.as_ref()) != Some(&config) => {
                steps.push(Step::ReloadKeepalived(pid))
            }
            Some(_) => {}
        }
    }
    if let Some(lease) = &plan.lease {
        // Behind a tap that is down the client would get no answer: it runs once the port
        // or network is enabled again.
        let carrier = plan.device(&lease.device).is_none_or(|d| d.tap_up);
        for v6 in [false, true] {
            let Some(address) = lease.addresses.iter().find(|a| a.addr().is_ipv6() == v6) else {
                continue;
            };
            let holds = link(&lease.device).is_some_and(|l| on(l.index).any(|a| a.net == *address));
            if !holds && carrier {
                steps.push(Step::RunDhcpClient {
                    device: lease.device.clone(),
                    v6,
                });
            }
        }
        // A DHCPv6 address's client brings the options with it.
        let by_address = lease.addresses.iter().any(|a| a.addr().is_ipv6());
        if lease.options6 && !by_address && !seen.dhcpv6_options && carrier {
            steps.push(Step::RequestDhcpv6Options {
                device: lease.device.clone(),
            });
        }
    }
    steps
}

/// The router's radvd: the step that stops it, before anything goes; those that write its
/// configuration and start or reload it, once its devices and addresses are in place.
fn radvd_steps(plan: &Plan, seen: &Observed) -> (Option<Step>, Vec<Step>) {
    let Some((state, have)) = &seen.radvd else {
        return (None, vec![]);
    };
    let Some(want) = &plan.radvd else {
        let any = *state != radvd::State::Absent || have.is_some();
        return (any.then_some(Step::StopRadvd), vec![]);
    };
    let changed = have.as_ref() != Some(want);
    let mut steps: Vec<Step> = changed
        .then_some(Step::WriteRadvdConfig)
        .into_iter()
        .collect();
    match state {
        // A namespace made anew: the radvd of the old one serves nothing.
        radvd::State::Running(p) if !seen.exists => {
            steps.push(Step::StartRadvd { stale: Some(p.pid) })
        }
        radvd::State::Running(p) if changed => steps.push(Step::ReloadRadvd { pid: p.pid }),
        radvd::State::Running(_) => {}
        radvd::State::Dead(pid) => steps.push(Step::StartRadvd { stale: Some(*pid) }),
        radvd::State::Absent => steps.push(Step::StartRadvd { stale: None }),
    }
    (None, steps)
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
