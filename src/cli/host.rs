//! `qrouter agent` and `host list` / `host show`: the hosts of an etcd store.

use std::net::Ipv4Addr;
use std::rc::Rc;
use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::{field, Ctx};
use crate::agent;
use crate::model::host::{HostInfo, Role};
use crate::model::protocol::{Condition, Kind, ObjectRef, Quarantined, Reply, Request};
use crate::model::{PortRole, Router, State};
use crate::ops::ask;
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
    /// Move the routers and DHCP servers of a network host confirmed dead to the live
    /// network hosts (Neutron's allow_automatic_l3agent_failover). Off by default: a host
    /// cut off from etcd but still forwarding would hold the same addresses until it is back.
    #[arg(long)]
    pub allow_automatic_failover: bool,
    /// With --allow-automatic-failover: how long a network host's lease must have been gone
    /// while etcd was healthy before it counts as dead (default: three lease periods).
    #[arg(long, value_name = "SECONDS")]
    pub failover_grace: Option<u64>,
    /// How often the agent checks the whole host against its part and repairs any drift
    /// (namespaces, devices, addresses, routes, rules, dnsmasq, VXLAN), besides what the
    /// watch and the kernel's events bring.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub resync_interval: u64,
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
    /// Remove a host whose agent is stopped: the other hosts forget it (its VXLAN entries go
    /// from their devices). Refused while objects are placed on it, unless --force.
    #[command(after_help = "Example:\n  qrouter host delete compute3")]
    Delete {
        /// The host's name, as its agent registered it.
        host: String,
        /// Unplace what is placed on it: the live network hosts take its routers and DHCP
        /// servers; its instances wait to be placed again.
        #[arg(long)]
        force: bool,
    },
}

pub async fn agent(store: Option<&str>, args: &AgentArgs) -> anyhow::Result<i32> {
    let Some(endpoints) = store.and_then(crate::ops::etcd_endpoints) else {
        crate::bail_invalid!("qrouter agent needs an etcd store: --store etcd://HOST:PORT[,...]");
    };
    let spec = format!("etcd://{endpoints}");
    if args.failover_grace.is_some() && !args.allow_automatic_failover {
        crate::bail_invalid!("--failover-grace needs --allow-automatic-failover");
    }
    let lease_ttl = args.lease_ttl.max(2);
    let grace = args.failover_grace.unwrap_or(3 * lease_ttl as u64);
    let options = agent::Options {
        host: args.host.clone(),
        local_ip: args.local_ip,
        role: args.role,
        lease_ttl,
        failover_grace: (args.allow_automatic_failover).then_some(Duration::from_secs(grace)),
        resync_interval: Duration::from_secs(args.resync_interval),
    };
    agent::run(&spec, options).await
}

pub fn run(ctx: &mut Ctx, cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::List => list(ctx),
        Cmd::Show { host } => show(ctx, &host),
        Cmd::Delete { host, force } => {
            for what in crate::ops::host::delete(&mut ctx.session, &host, force)? {
                log::warn!("{what}: unplaced from host {host}");
            }
            Ok(())
        }
    }
}

/// The state, the hosts, and what the read set aside (the state's keys and the hosts').
fn read(ctx: &mut Ctx) -> anyhow::Result<(Rc<State>, Vec<HostInfo>, Vec<Quarantined>)> {
    let state = ctx.session.load()?;
    let Some(etcd) = ctx.session.store.etcd() else {
        crate::bail_invalid!(
            "hosts are an etcd store's (--store etcd://...); this store is one host"
        );
    };
    let mut quarantined = etcd.quarantined.clone();
    let hosts = etcd.hosts()?;
    quarantined.extend(etcd.quarantined.iter().cloned());
    Ok((state, hosts, quarantined))
}

fn list(ctx: &mut Ctx) -> anyhow::Result<()> {
    let (state, hosts, _) = read(ctx)?;
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

/// One host, the status its agent reported for each object, and what it and this command
/// set aside of what they read.
fn show(ctx: &mut Ctx, host: &str) -> anyhow::Result<()> {
    let (state, hosts, mut quarantined) = read(ctx)?;
    let Some(h) = hosts.iter().find(|h| h.name == host) else {
        crate::bail_invalid!("host {host}: no such host (no agent registered it)");
    };
    let etcd = ctx.session.store.etcd().expect("read checked it is etcd");
    let mut rec = record(&state, h);
    let mut statuses: Vec<_> = etcd.statuses(&h.name)?.into_iter().collect();
    statuses.sort_by(|a, b| a.0.cmp(&b.0));
    let status: Vec<Value> = statuses
        .into_iter()
        .map(|(object, mut s)| {
            let id = &object.id;
            let name = match object.kind {
                Kind::Router => state.router_by_id(id).map(|r| r.name.clone()),
                Kind::Network => state.network_by_id(id).map(|n| n.name.clone()),
                Kind::Instance => state.instance_by_id(id).map(|i| i.name.clone()),
            };
            if !h.alive {
                s.state = Condition::Down;
                s.reason = format!("host {} is down", h.name);
            }
            let mut v = serde_json::to_value(&s).unwrap_or_default();
            let name = name.unwrap_or_else(|| id.clone());
            v["object"] = format!("{} {name}", object.kind).into();
            v
        })
        .collect();
    rec.push(field("status", status));
    // A key anyone may have written, named with the reason.
    let report = etcd.agent_report(&h.name)?.unwrap_or_default();
    for q in report.quarantined {
        if !quarantined.contains(&q) {
            quarantined.push(q);
        }
    }
    let quarantined: Vec<String> = quarantined.iter().map(|q| q.to_string()).collect();
    rec.push(field("quarantined", quarantined));
    ctx.out.show(&rec)
}

/// With an etcd store: the host an object is placed on, and its status as that host's agent
/// reported it (the local kernel is not where it runs): DOWN with the host down, PENDING
/// before its agent reported, BUILD for an object placed nowhere.
pub fn placed(
    ctx: &mut Ctx,
    rec: &mut Record,
    kind: Kind,
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
pub fn reported(ctx: &mut Ctx, kind: Kind, id: &str, host: Option<&str>) -> anyhow::Result<String> {
    let Some(etcd) = ctx.session.store.etcd() else {
        return Ok(String::new());
    };
    let Some(h) = host else {
        return Ok(Condition::Build.to_string());
    };
    let condition = match etcd.reported(h, &ObjectRef::new(kind, id))? {
        (false, _) => Condition::Down,
        (true, Some(s)) => s.state,
        (true, None) => Condition::Pending,
    };
    Ok(condition.to_string())
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
    let request = Request::RouterShow {
        router: r.id.clone(),
    };
    let Some(answer) = ask::ask(etcd, host, request, SHOW_WAIT)? else {
        let why = format!(
            "on host {host}: its agent did not answer within {} s; the live views are there",
            SHOW_WAIT.as_secs()
        );
        return Ok((why, vec![]));
    };
    Ok(match answer {
        Reply::RouterShow { summary, views } => (
            format!("on host {host}: {summary}"),
            views.into_iter().map(Section::from).collect(),
        ),
        Reply::Failed { error } => (format!("on host {host}: {error}"), vec![]),
        other => (
            format!("on host {host}: its agent answered another question: {other:?}"),
            vec![],
        ),
    })
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
    let request = Request::InstanceLease {
        instance: i.id.clone(),
    };
    Ok(match ask::ask(etcd, host, request, SHOW_WAIT)? {
        None => format!(
            "on host {host}: its agent did not answer within {} s",
            SHOW_WAIT.as_secs()
        )
        .into(),
        Some(Reply::InstanceLease { lease }) if !lease.is_empty() => {
            serde_json::to_value(lease).unwrap_or_default()
        }
        Some(Reply::Failed { error }) => format!("on host {host}: {error}").into(),
        Some(_) => format!("none yet on host {host} (its agent runs the DHCP client)").into(),
    })
}
