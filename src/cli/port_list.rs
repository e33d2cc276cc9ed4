//! `qrouter port list`: openstackclient's columns and filters, and each port's status as
//! the kernel shows it.

use std::collections::HashMap;

use clap::Args;

use super::args::TagFilter;
use super::Ctx;
use crate::kernel::link::{self, Link};
use crate::model::protocol::{Kind, ObjectRef, Status};
use crate::model::{naming, validate, Port, PortRole, State};
use crate::output::Listing;
use crate::store::etcd::Etcd;

/// `port list`'s options: openstackclient's filters.
#[derive(Args)]
pub struct ListArgs {
    /// More columns: security groups, device owner, tags.
    #[arg(long)]
    long: bool,
    /// Only ports of this router.
    #[arg(long)]
    router: Option<String>,
    /// Only ports on this network.
    #[arg(long)]
    network: Option<String>,
    /// Only the port with this name.
    #[arg(long)]
    name: Option<String>,
    /// Only ports with this status.
    #[arg(long, value_parser = ["ACTIVE", "BUILD", "DOWN", "ERROR"])]
    status: Option<String>,
    /// Only ports with this device owner (network:router_interface, compute:none, ...).
    #[arg(long, value_name = "OWNER")]
    device_owner: Option<String>,
    /// Only ports of this device (a router's or instance's id).
    #[arg(long, value_name = "ID")]
    device_id: Option<String>,
    /// Only the port with this MAC address.
    #[arg(long, value_name = "MAC")]
    mac_address: Option<String>,
    /// Only ports with this fixed IP: subnet=S, ip-address=IP, or both.
    #[arg(long, value_name = "subnet=S,ip-address=IP")]
    fixed_ip: Option<String>,
    #[command(flatten)]
    tags: TagFilter,
}

impl ListArgs {
    /// Whether `p` passes every filter but the status (which needs the kernel).
    fn matches(
        &self,
        state: &State,
        p: &Port,
        router: Option<&str>,
        network: Option<&str>,
    ) -> bool {
        let fixed_ok = match self.fixed_ip.as_deref().map(validate::fixed_ip) {
            None => true,
            Some(Err(_)) => false, // refused before listing
            Some(Ok((subnet, ip))) => p.fixed_ips.iter().any(|f| {
                ip.is_none_or(|ip| f.ip == ip)
                    && subnet
                        .as_deref()
                        .is_none_or(|s| state.subnet(s).is_ok_and(|s| s.id == f.subnet_id))
            }),
        };
        fixed_ok
            && router.is_none_or(|r| p.device_id == r && p.role != PortRole::Instance)
            && network.is_none_or(|n| p.network_id == n)
            && self.name.as_ref().is_none_or(|n| &p.name == n)
            && self
                .device_owner
                .as_deref()
                .is_none_or(|o| p.role.device_owner() == o)
            && self.device_id.as_deref().is_none_or(|d| p.device_id == d)
            && self
                .mac_address
                .as_deref()
                .is_none_or(|m| p.mac.eq_ignore_ascii_case(m))
            && self.tags.matches(&p.meta.tags)
    }
}

/// A port's status (Neutron's ACTIVE or DOWN) and, in words, the state of its device.
pub fn status(
    state: &State,
    port: &Port,
    tap: Option<&Link>,
    bridge: Option<&Link>,
) -> (&'static str, String) {
    let name = naming::port_tap(port);
    if let Some(why) = state.port_down_because(port) {
        let set = match tap {
            Some(t) if t.up => format!("; {name} is still up ('qrouter sync' sets it down)"),
            _ => String::new(),
        };
        return ("DOWN", format!("{why}{set}"));
    }
    match (tap, bridge) {
        (Some(t), Some(b)) if t.controller == Some(b.index) && t.up => {
            ("ACTIVE", format!("{name} up on {}", b.name))
        }
        (Some(t), Some(b)) if t.controller == Some(b.index) => (
            "DOWN",
            format!("{name} is down ('qrouter sync' sets it up)"),
        ),
        (Some(_), _) => {
            let bridge = state
                .network_by_id(&port.network_id)
                .map(|n| n.bridge.as_str());
            let bridge = bridge.unwrap_or("?");
            (
                "DOWN",
                format!("{name} is not on bridge {bridge} ('qrouter sync' plugs it)"),
            )
        }
        (None, _) => ("DOWN", format!("no device {name}")),
    }
}

/// What each host's agent reported, by host; None for a host whose agent is away.
pub type Reports = HashMap<String, Option<HashMap<ObjectRef, Status>>>;

/// A port's status with an etcd store, where its device is on the host its owner is placed
/// on, not here: DOWN while it or its network is disabled, else the status its owner's agent
/// reported (BUILD while the owner is placed nowhere, DOWN while that host's agent is away).
/// No agent reports on DHCP and workload ports: N/A, Neutron's word for a status nobody
/// tracks.
pub fn placed_status(
    etcd: &mut Etcd,
    reports: &mut Reports,
    state: &State,
    port: &Port,
) -> anyhow::Result<(String, String)> {
    if let Some(why) = state.port_down_because(port) {
        return Ok(("DOWN".into(), why));
    }
    let (kind, host) = match port.role {
        PortRole::RouterInterface | PortRole::RouterGateway => (
            Kind::Router,
            state.router_by_id(&port.device_id).map(|r| r.host.clone()),
        ),
        PortRole::Instance => (
            Kind::Instance,
            state
                .instance_by_id(&port.device_id)
                .map(|i| i.host.clone()),
        ),
        // Bound to a host (a network host's dnsmasq, a workload's `--host`), whose agent
        // plugs the tap but reports no status of its own for it.
        PortRole::Dhcp | PortRole::Workload => {
            let tap = crate::model::naming::port_tap(port);
            let where_ = match &port.host {
                Some(h) => {
                    format!("on host {h}, whose agent plugs {tap} ('qrouter sync --host {h}')")
                }
                None => "bound to no host: its tap is plugged nowhere".to_string(),
            };
            return Ok(("N/A".into(), where_));
        }
    };
    let Some(host) = host.flatten() else {
        return Ok((
            "BUILD".into(),
            format!("its {kind} is placed on no host yet"),
        ));
    };
    if !reports.contains_key(&host) {
        let seen = match etcd.alive(&host)? {
            true => Some(etcd.statuses(&host)?),
            false => None,
        };
        reports.insert(host.clone(), seen);
    }
    let Some(seen) = &reports[&host] else {
        return Ok(("DOWN".into(), format!("the agent of host {host} is away")));
    };
    let reported = seen.get(&ObjectRef::new(kind, port.device_id.clone()));
    Ok(match reported {
        Some(s) => (
            s.state.to_string(),
            format!("as its {kind}'s agent on {host} reported"),
        ),
        None => (
            "BUILD".into(),
            format!("the agent on {host} has not reported its {kind}"),
        ),
    })
}

/// openstackclient's columns (ID, Name, MAC Address, Fixed IP Addresses, Status; with
/// --long Security Groups, Device Owner, Tags), then qrouter's (Device Owner where --long
/// has not shown it, the owning device, the kernel's device name).
pub async fn list(ctx: &mut Ctx, args: ListArgs) -> anyhow::Result<()> {
    let state = ctx.session.load()?;
    if let Some(spec) = &args.fixed_ip {
        validate::fixed_ip(spec)?;
    }
    let router = args
        .router
        .as_ref()
        .map(|r| state.router(r).map(|r| r.id.clone()))
        .transpose()?;
    let network = args
        .network
        .as_ref()
        .map(|n| state.network(n).map(|n| n.id.clone()))
        .transpose()?;
    let ports: Vec<&Port> = state
        .ports
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| args.matches(&state, p, router.as_deref(), network.as_deref()))
        .collect();
    // One dump of the host's links serves every port's status; with an etcd store, the
    // agents' reports do.
    let remote = ctx.session.store.etcd().is_some();
    let mut reports = Reports::new();
    let links: HashMap<String, Link> = match ports.is_empty() || remote {
        true => HashMap::new(),
        false => {
            let host = ctx.session.kernel()?.host().clone();
            let links = link::list(&host).await?;
            links.into_iter().map(|l| (l.name.clone(), l)).collect()
        }
    };
    let mut headers = vec!["ID", "Name", "MAC Address", "Fixed IP Addresses", "Status"];
    match args.long {
        true => headers.extend(["Security Groups", "Device Owner", "Tags"]),
        false => headers.push("Device Owner"),
    }
    headers.extend(["Device", "Device Name"]);
    let mut rows = Vec::new();
    for p in ports {
        let bridge = state
            .network_by_id(&p.network_id)
            .and_then(|n| links.get(&n.bridge));
        let status = match ctx.session.store.etcd() {
            Some(etcd) => placed_status(etcd, &mut reports, &state, p)?.0,
            None => status(&state, p, links.get(&naming::port_tap(p)), bridge)
                .0
                .to_string(),
        };
        if args.status.as_deref().is_some_and(|s| s != status) {
            continue;
        }
        let mut row: Vec<serde_json::Value> = vec![
            p.id.clone().into(),
            p.name.clone().into(),
            p.mac.clone().into(),
            super::router_view::fixed_ips_json(p),
            status.into(),
        ];
        if args.long {
            row.push(serde_json::json!([]));
        }
        row.push(p.role.device_owner().into());
        if args.long {
            row.push(p.meta.tags.clone().into());
        }
        row.extend([
            state.port_owner_name(p).into(),
            naming::port_device(p).into(),
        ]);
        rows.push(row);
    }
    ctx.out.list(&Listing {
        headers: headers.into_iter().map(String::from).collect(),
        rows,
    })
}
