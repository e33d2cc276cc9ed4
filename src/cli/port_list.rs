//! `qrouter port list`: openstackclient's columns and filters, and each port's status as
//! the kernel shows it.

use clap::Args;

use super::args::TagFilter;
use super::Ctx;
use crate::model::{naming, validate, Port, PortRole, State};
use crate::ops::PortStatus;
use crate::output::Listing;

// `port list`'s options: openstackclient's filters.
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
    // One read serves every port's status (a dump of this host's links, or each agent's
    // reports).
    let statuses = ctx.session.port_statuses(&state, &ports).await?;
    let headers = headers(args.long);
    let mut rows = Vec::new();
    for (p, PortStatus { status, .. }) in ports.into_iter().zip(statuses) {
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

/// openstackclient's columns (with `--long` its security groups and tags), then qrouter's.
pub(super) fn headers(long: bool) -> Vec<&'static str> {
    let mut headers = vec!["ID", "Name", "MAC Address", "Fixed IP Addresses", "Status"];
    match long {
        true => headers.extend(["Security Groups", "Device Owner", "Tags"]),
        false => headers.push("Device Owner"),
    }
    headers.extend(["Device", "Device Name"]);
    headers
}
