//! `qrouter agent` and `host list` / `host show`: the hosts of an etcd store.

use std::net::Ipv4Addr;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::{field, Ctx};
use crate::agent;
use crate::model::host::{HostInfo, Role};
use crate::model::{PortRole, Router, State};
use crate::output::{Listing, Record, Section};

#[derive(Args)]
pub struct AgentArgs {
    /// This host's name, as router/instance create --host name it.
    #[arg(long)]
    pub host: String,
    /// This host's address on the underlay: the source of its VXLAN tunnels.
    #[arg(long, value_name = "UNDERLAY_IP")]
    pub local_ip: Ipv4Addr,
    /// network: runs routers; compute: runs instances; all: both.
    #[arg(long, default_value = "all", value_parser = role_parser())]
    pub role: Role,
    /// Seconds without renewal after which the host counts as down.
    #[arg(long, default_value_t = 10, hide = true)]
    pub lease_ttl: i64,
    /// Move the routers and DHCP servers of a network host whose lease has expired to the
    /// live network hosts (Neutron's allow_automatic_l3agent_failover). Off by default: a
    /// host cut off from etcd but still forwarding would hold the same addresses.
    #[arg(long)]
    pub allow_automatic_failover: bool,
}

/// `--role`'s values, each with what it runs.
fn role_parser() -> impl TypedValueParser<Value = Role> {
    let help = [
        "Routers (their namespaces, gateways, NAT)",
        "Instances",
        "Both",
    ];
    let values =
        (Role::NAMES.iter().zip(help)).map(|(name, help)| PossibleValue::new(name).help(help));
    PossibleValuesParser::new(values).try_map(|s| s.parse::<Role>())
}

#[derive(Subcommand)]
#[command(after_help = "Example:\n  qrouter --store etcd://10.0.0.10:2379 host list")]
pub enum Cmd {
    /// List the hosts whose agents registered.
    #[command(after_help = "Example:\n  qrouter host list -f value -c Name -c Alive")]
    List,
    /// Show one host: role, liveness, underlay address, what runs there, and the status
    /// its agent reported for each.
    #[command(after_help = "Example:\n  qrouter host show network1 -f json")]
    Show {
        /// The host's name, as its agent registered it.
        host: String,
    },
}

pub async fn agent(store: Option<&str>, args: &AgentArgs) -> anyhow::Result<i32> {
    let Some(endpoints) = store.and_then(crate::ops::etcd_endpoints) else {
        crate::bail_invalid!("qrouter agent needs an etcd store: --store etcd://HOST:PORT[,...]");
    };
    let spec = format!("etcd://{endpoints}");
    let options = agent::Options {
        host: args.host.clone(),
        local_ip: args.local_ip,
        role: args.role,
        lease_ttl: args.lease_ttl.max(2),
        failover: args.allow_automatic_failover,
    };
    agent::run(&spec, options).await
}

pub fn run(ctx: &mut Ctx, cmd: Cmd) -> anyhow::Result<()> {
    let state = ctx.session.load()?;
    let Some(etcd) = ctx.session.store.etcd() else {
        crate::bail_invalid!(
            "hosts are an etcd store's (--store etcd://...); this store is one host"
        );
    };
    let hosts = etcd.hosts()?;
    match cmd {
        Cmd::List => {
            let rows = hosts
                .iter()
                .map(|h| record(&state, h).into_iter().map(|(_, v)| v).collect())
                .collect();
            ctx.out.list(&Listing {
                headers: [
                    "Name",
                    "Role",
                    "Alive",
                    "Local IP",
                    "Routers",
                    "Instances",
                    "DHCP Networks",
                    "Last Seen",
                ]
                .map(String::from)
                .to_vec(),
                rows,
            })
        }
        Cmd::Show { host } => {
            let Some(h) = hosts.iter().find(|h| h.name == host) else {
                crate::bail_invalid!("host {host}: no such host (no agent registered it)");
            };
            let mut rec = record(&state, h);
            let statuses = etcd.statuses(&h.name)?;
            let status: Vec<Value> = statuses
                .iter()
                .map(|((kind, id), v)| {
                    let name = match kind.as_str() {
                        "router" => state.router_by_id(id).map(|r| r.name.clone()),
                        "network" => state.network_by_id(id).map(|n| n.name.clone()),
                        _ => state.instance_by_id(id).map(|i| i.name.clone()),
                    };
                    let mut v = v.clone();
                    v["object"] = format!("{kind} {}", name.unwrap_or_else(|| id.clone())).into();
                    if !h.alive {
                        v["status"] = "DOWN".into();
                        v["reason"] = format!("host {} is down", h.name).into();
                    }
                    v
                })
                .collect();
            rec.push(field("status", status));
            ctx.out.show(&rec)
        }
    }
}

/// With an etcd store: the host an object is placed on, and its status as that host's agent
/// reported it (the local kernel is not where it runs): DOWN with the host down, PENDING
/// before its agent reported, BUILD for an object placed nowhere.
pub fn placed(
    ctx: &mut Ctx,
    rec: &mut Record,
    kind: &str,
    host: Option<&str>,
) -> anyhow::Result<()> {
    if ctx.session.store.etcd().is_none() {
        return Ok(());
    }
    let id = rec
        .iter()
        .find(|(k, _)| k == "id")
        .and_then(|(_, v)| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let status = reported(ctx, kind, &id, host)?;
    match rec.iter_mut().find(|(k, _)| k == "status") {
        Some((_, v)) => *v = status.into(),
        None => rec.push(field("status", status)),
    }
    rec.push(field("host", host));
    Ok(())
}

/// The status of one object placed on `host`, as its agent reported it: DOWN with the host
/// down, PENDING before its agent reported, BUILD when placed nowhere. One read of two keys:
/// this runs after every instance create.
pub fn reported(ctx: &mut Ctx, kind: &str, id: &str, host: Option<&str>) -> anyhow::Result<String> {
    let Some(etcd) = ctx.session.store.etcd() else {
        return Ok(String::new());
    };
    let Some(h) = host else {
        return Ok("BUILD".to_string());
    };
    Ok(match etcd.reported(h, kind, id)? {
        (false, _) => "DOWN".to_string(),
        (true, Some(s)) => s["status"].as_str().unwrap_or("?").to_string(),
        (true, None) => "PENDING".to_string(),
    })
}

fn record(state: &State, h: &HostInfo) -> Record {
    let routers: Vec<&str> = state
        .routers
        .iter()
        .filter(|r| r.host.as_deref() == Some(&h.name))
        .map(|r| r.name.as_str())
        .collect();
    let instances: Vec<&str> = state
        .instances
        .iter()
        .filter(|i| i.host.as_deref() == Some(&h.name))
        .map(|i| i.name.as_str())
        .collect();
    let dhcp: Vec<&str> = state
        .ports
        .iter()
        .filter(|p| p.role == PortRole::Dhcp && p.host.as_deref() == Some(&h.name))
        .filter_map(|p| state.network_by_id(&p.network_id))
        .map(|n| n.name.as_str())
        .collect();
    vec![
        field("name", &h.name),
        field("role", h.role),
        field("alive", h.alive),
        field("local_ip", h.local_ip),
        field("routers", routers),
        field("instances", instances),
        field("dhcp_networks", dhcp),
        field("last_seen", h.last_seen),
    ]
}

/// How long `router show` waits for the router's agent to send its live views.
const SHOW_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// With an etcd store: `router show`'s `kernel` field and live views, asked of the agent of
/// the router's host; where none comes (no host, the host down, no answer in time), the
/// field says which host holds them and why they are missing.
pub fn router_views(ctx: &mut Ctx, r: &Router) -> anyhow::Result<(String, Vec<Section>)> {
    let Some(etcd) = ctx.session.store.etcd() else {
        return Ok((String::new(), vec![]));
    };
    let Some(host) = r.host.as_deref() else {
        return Ok(("placed on no host: it runs nowhere".into(), vec![]));
    };
    if !etcd.alive(host)? {
        let why = format!("on host {host}, which is down: its live views are unavailable");
        return Ok((why, vec![]));
    }
    let request = serde_json::json!({"what": "router show", "router": r.id});
    let Some(answer) = crate::ops::ask::ask(etcd, host, request, SHOW_WAIT)? else {
        let why = format!(
            "on host {host}: its agent did not answer within {} s; the live views are there",
            SHOW_WAIT.as_secs()
        );
        return Ok((why, vec![]));
    };
    if let Some(e) = answer["error"].as_str() {
        return Ok((format!("on host {host}: {e}"), vec![]));
    }
    let summary = answer["summary"].as_str().unwrap_or("?");
    let sections = serde_json::from_value(answer["sections"].clone())?;
    Ok((format!("on host {host}: {summary}"), sections))
}

/// With an etcd store: `instance show`'s `dhcp_lease` for an instance that takes its address
/// by DHCP, asked of the agent of its host (the lease file is there); where none comes, why.
pub fn instance_lease(ctx: &mut Ctx, i: &crate::model::Instance) -> anyhow::Result<Value> {
    let Some(etcd) = ctx.session.store.etcd() else {
        return Ok(Value::Null);
    };
    let Some(host) = i.host.as_deref().filter(|_| i.dhcp) else {
        return Ok(Value::Null);
    };
    if !etcd.alive(host)? {
        return Ok(format!("on host {host}, which is down").into());
    }
    let request = serde_json::json!({"what": "instance lease", "instance": i.id});
    let answer = crate::ops::ask::ask(etcd, host, request, SHOW_WAIT)?;
    Ok(match answer {
        None => format!(
            "on host {host}: its agent did not answer within {} s",
            SHOW_WAIT.as_secs()
        )
        .into(),
        Some(a) if a["lease"].as_object().is_some_and(|m| !m.is_empty()) => a["lease"].clone(),
        Some(_) => format!("none yet on host {host} (its agent runs the DHCP client)").into(),
    })
}
