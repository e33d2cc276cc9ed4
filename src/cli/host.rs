//! `qrouter agent` and `host list` / `host show`: the hosts of an etcd store.

use std::net::Ipv4Addr;
use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::{field, Ctx};
use crate::agent;
use crate::model::host::{HostInfo, Role};
use crate::model::protocol::{Condition, Kind};
use crate::model::{PortRole, State};
use crate::ops;
use crate::output::{Listing, Record};

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
#[command(defer = true)]
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
            for line in crate::ops::host::delete(&mut ctx.session, &host, force)? {
                log::warn!("{line}");
            }
            Ok(())
        }
    }
}

fn list(ctx: &mut Ctx) -> anyhow::Result<()> {
    let (state, hosts, _) = ops::host::hosts(&mut ctx.session)?;
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
    let (state, hosts, mut quarantined) = ops::host::hosts(&mut ctx.session)?;
    let Some(h) = hosts.iter().find(|h| h.name == host) else {
        crate::bail_invalid!("host {host}: no such host (no agent registered it)");
    };
    let mut rec = record(&state, h);
    let (statuses, report) = ops::host::reports(&mut ctx.session, &h.name)?;
    let mut statuses: Vec<_> = statuses.into_iter().collect();
    statuses.sort_by(|a, b| a.0.cmp(&b.0));
    // Its copies of HA routers, with what keepalived made of each (as its agent reported).
    let ha_routers: Vec<String> = (state.routers.iter())
        .filter(|r| r.ha.is_some() && r.runs_on(&h.name))
        .map(|r| {
            let reported = statuses
                .iter()
                .find(|(o, _)| o.kind == Kind::Router && o.id == r.id);
            let ha = reported.and_then(|(_, s)| s.ha).filter(|_| h.alive);
            format!("{} {}", r.name, ha.map_or("unknown", |s| s.as_str()))
        })
        .collect();
    rec.push(field("ha_routers", ha_routers));
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
    for q in report.quarantined {
        if !quarantined.contains(&q) {
            quarantined.push(q);
        }
    }
    let quarantined: Vec<String> = quarantined.iter().map(|q| q.to_string()).collect();
    rec.push(field("quarantined", quarantined));
    ctx.out.show(&rec)
}

fn record(state: &State, h: &HostInfo) -> Record {
    let routers: Vec<&str> = state
        .routers
        .iter()
        .filter(|r| r.runs_on(&h.name))
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
