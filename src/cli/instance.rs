//! `qrouter instance ...`: namespaces that stand in for VMs, like cirros-vm3 in the seed.

use std::net::Ipv4Addr;

use clap::Subcommand;

use super::{field, Ctx};
use crate::bail_invalid;
use crate::kernel::netns;
use crate::model::protocol::Kind;
use crate::model::{naming, validate, Instance, State};
use crate::ops::instance;
use crate::output::{Listing, Record};

#[derive(Subcommand)]
pub enum Cmd {
    /// Create a test instance: a namespace with eth0 on the network, its address and a
    /// default route via the subnet's gateway.
    #[command(
        after_help = "Examples:\n  qrouter instance create cirros-vm3 --network vlan101 --fixed-ip 172.16.101.3\n  \
        qrouter instance create cirros-vm3 --network vlan101 --fixed-ip 172.16.101.3 --dhcp"
    )]
    Create {
        /// The new instance's name.
        name: String,
        /// The network its eth0 is on (name or id).
        #[arg(long)]
        network: String,
        /// Its address; default the first free one in the subnet's pools.
        #[arg(long, value_name = "IP")]
        fixed_ip: Option<String>,
        /// Take the address, gateway and DNS server by DHCP from the network's dnsmasq (busybox
        /// udhcpc run once in the namespace, as a VM's client does); the port is still reserved.
        #[arg(long)]
        dhcp: bool,
        /// The compute host to run it on (etcd store); else the live one with fewest instances.
        #[arg(long)]
        host: Option<String>,
    },
    /// List instances.
    List,
    /// Show one instance.
    Show {
        /// The instance (name or id).
        instance: String,
    },
    /// Delete instances.
    Delete {
        /// The instances (names or ids).
        #[arg(required = true)]
        instances: Vec<String>,
    },
    /// Run a command inside an instance; exits with the command's exit code.
    #[command(
        after_help = "Examples:\n  qrouter instance exec cirros-vm3 -- ping -c 3 10.10.10.1\n  \
        qrouter instance exec cirros-vm3 -- traceroute -n 10.10.10.1"
    )]
    Exec {
        /// The instance (name or id).
        instance: String,
        /// The command and its arguments, after `--`.
        #[arg(required = true, last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

pub async fn run(ctx: &mut Ctx, cmd: Cmd) -> anyhow::Result<i32> {
    match cmd {
        Cmd::Create {
            name,
            network,
            fixed_ip,
            dhcp,
            host,
        } => {
            let req = instance::Create {
                dhcp,
                fixed_ip: fixed_ip
                    .map(|ip| validate::ip(&format!("instance {name}: --fixed-ip"), &ip))
                    .transpose()?,
                name,
                network,
                host,
            };
            let done = ctx.session.change(|s| instance::create(s, &req)).await?;
            let id = done.id.expect("a new instance");
            let mut rec = record(&done.state, done.state.instance(&id)?);
            super::host::placed(
                ctx,
                &mut rec,
                Kind::Instance,
                done.state.instance(&id)?.host.as_deref(),
            )?;
            remote_lease(ctx, &mut rec, done.state.instance(&id)?)?;
            ctx.out.show(&rec)?;
        }
        Cmd::List => {
            let state = ctx.session.load()?;
            let rows = state.instances.iter().map(|i| {
                let r = record(&state, i);
                ["id", "name", "network", "fixed_ip", "namespace"]
                    .iter()
                    .map(|k| {
                        r.iter()
                            .find(|(f, _)| f == k)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default()
                    })
                    .collect()
            });
            ctx.out.list(&Listing {
                headers: ["ID", "Name", "Network", "Fixed IP", "Namespace"]
                    .map(String::from)
                    .to_vec(),
                rows: rows.collect(),
            })?;
        }
        Cmd::Show { instance } => {
            let reads = crate::ops::reads_for_show::<Instance>(&ctx.session.store, &instance)?;
            let state = ctx.session.load_only(&reads)?;
            let i = state.instance(&instance)?;
            let mut rec = record(&state, i);
            super::host::placed(ctx, &mut rec, Kind::Instance, i.host.as_deref())?;
            remote_lease(ctx, &mut rec, i)?;
            ctx.out.show(&rec)?;
        }
        Cmd::Delete { instances } => {
            super::prompt::confirm_removal(ctx.ask, "instance", &instances)?;
            ctx.session
                .change(|s| instance::delete(s, &instances))
                .await?;
        }
        Cmd::Exec { instance, command } => {
            let state = ctx.session.load()?;
            let instance = state.instance(&instance)?;
            let ns = naming::instance_namespace(&instance.id);
            if !netns::exists(&ns) {
                bail_invalid!(
                    "instance {}: its namespace {ns} does not exist; run 'qrouter sync'",
                    instance.name
                );
            }
            let file = netns::open(&ns)?;
            let mut cmd = netns::command(&file, &command[0]);
            if crate::NO_LIB_BACKTRACE.load(std::sync::atomic::Ordering::Relaxed) {
                cmd.env_remove("RUST_LIB_BACKTRACE");
            }
            let status = cmd.args(&command[1..]).status().map_err(|e| {
                anyhow::anyhow!("instance {}: cannot run {}: {e}", instance.name, command[0])
            })?;
            return Ok(status.code().unwrap_or(1));
        }
    }
    Ok(0)
}

fn fixed_ip(state: &State, instance: &Instance) -> Option<Ipv4Addr> {
    state
        .port_by_id(&instance.port_id)?
        .fixed_ips
        .first()
        .map(|f| f.ip)
}

fn record(state: &State, i: &Instance) -> Record {
    let port = state.port_by_id(&i.port_id);
    let network = port.and_then(|p| state.network_by_id(&p.network_id));
    let ns = naming::instance_namespace(&i.id);
    vec![
        field("id", &i.id),
        field("name", &i.name),
        field("status", if netns::exists(&ns) { "ACTIVE" } else { "DOWN" }),
        field("network", network.map(|n| n.name.as_str())),
        field("fixed_ip", fixed_ip(state, i).map(|ip| ip.to_string())),
        field("mac_address", port.map(|p| p.mac.as_str())),
        field("namespace", ns),
        field("port_id", &i.port_id),
        field("host_device", port.map(naming::port_tap)),
        field("dhcp", i.dhcp),
        field("dhcp_lease", lease(i)),
    ]
}

/// What the instance's DHCP client last got, from its lease file; null for an instance
/// whose address qrouter sets.
fn lease(i: &Instance) -> serde_json::Value {
    if !i.dhcp {
        return serde_json::Value::Null;
    }
    let got = crate::kernel::udhcpc::read_lease(&i.id);
    if got.is_empty() {
        return "none yet ('qrouter sync' runs its DHCP client)".into();
    }
    got.into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k, serde_json::Value::from(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// With an etcd store the lease file is on the instance's host: its agent's answer.
fn remote_lease(ctx: &mut Ctx, rec: &mut Record, i: &Instance) -> anyhow::Result<()> {
    if ctx.session.store.etcd().is_none() {
        return Ok(());
    }
    let lease = super::host::instance_lease(ctx, i)?;
    if let Some((_, v)) = rec.iter_mut().find(|(k, _)| k == "dhcp_lease") {
        *v = lease;
    }
    Ok(())
}
