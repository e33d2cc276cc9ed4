//! `qrouter instance ...`: namespaces that stand in for VMs, like cirros-vm3 in the seed.

use std::net::IpAddr;

use clap::Subcommand;

use super::{field, Ctx};
use crate::model::{naming, validate, Instance, State};
use crate::ops::instance;
use crate::output::{Listing, Record};

#[derive(Subcommand)]
#[command(defer = true)]
pub enum Cmd {
    /// Create a test instance: a namespace with eth0 on the network, its address and a
    /// default route via the subnet's gateway.
    #[command(
        after_help = "Examples:\n  qrouter instance create cirros-vm3 --network vlan101 --fixed-ip 172.16.101.3\n  \
        qrouter instance create cirros-vm3 --network vlan101 --fixed-ip 172.16.101.3 --dhcp\n  \
        qrouter instance create upstream --network ext_net --fixed-ip 10.10.10.1 --fixed-ip 2001:db8:10::1"
    )]
    Create {
        /// The new instance's name.
        name: String,
        /// The network its eth0 is on (name or id).
        #[arg(long)]
        network: String,
        /// Its address (repeatable: one IPv4, one IPv6); default the first free one of the
        /// network's first IPv4 subnet and of its first stateful IPv6 one. On a SLAAC or
        /// DHCPv6-stateless subnet it takes the EUI-64 address of its MAC by itself.
        #[arg(long, value_name = "IP")]
        fixed_ip: Vec<String>,
        /// Take the address, gateway and DNS server by DHCP from the network's dnsmasq (busybox
        /// udhcpc run once in the namespace, as a VM's client does; `dhclient -6` on a
        /// stateful IPv6 subnet, and on a DHCPv6-stateless one an information request for the
        /// DNS server, the address being SLAAC's); the port is still reserved.
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
                fixed_ips: fixed_ip
                    .iter()
                    .map(|ip| validate::addr(&format!("instance {name}: --fixed-ip"), ip))
                    .collect::<anyhow::Result<_>>()?,
                name,
                network,
                host,
            };
            let done = ctx.session.change(|s| instance::create(s, &req)).await?;
            let id = done.id.expect("a new instance");
            let rec = shown(ctx, &done.state, done.state.instance(&id)?)?;
            ctx.out.show(&rec)?;
        }
        Cmd::List => {
            let state = ctx.session.load()?;
            let rows = state.instances.iter().map(|i| {
                let r = record(&state, i, "", serde_json::Value::Null);
                FIELDS
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
                headers: HEADERS.map(String::from).to_vec(),
                rows: rows.collect(),
            })?;
        }
        Cmd::Show { instance } => {
            let reads = crate::ops::reads_for_show::<Instance>(&ctx.session.store, &instance)?;
            let state = ctx.session.load_only(&reads)?;
            let i = state.instance(&instance)?;
            let rec = shown(ctx, &state, i)?;
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
            return ctx.session.exec_in(instance, &command);
        }
    }
    Ok(0)
}

/// `instance list`'s columns, and the fields of the record they show.
pub(super) const HEADERS: [&str; 5] = ["ID", "Name", "Network", "Fixed IP", "Namespace"];
const FIELDS: [&str; 5] = ["id", "name", "network", "fixed_ip", "namespace"];

/// The instance's addresses, its first (IPv4 where it has one) first.
fn fixed_ips(state: &State, instance: &Instance) -> Vec<IpAddr> {
    let Some(port) = state.port_by_id(&instance.port_id) else {
        return vec![];
    };
    port.fixed_ips.iter().map(|f| f.ip).collect()
}

/// The instance's record; its `status` and `dhcp_lease` come from where it runs.
pub(super) fn record(
    state: &State,
    i: &Instance,
    status: &str,
    lease: serde_json::Value,
) -> Record {
    let port = state.port_by_id(&i.port_id);
    let network = port.and_then(|p| state.network_by_id(&p.network_id));
    vec![
        field("id", &i.id),
        field("name", &i.name),
        field("status", status),
        field("network", network.map(|n| n.name.as_str())),
        field(
            "fixed_ip",
            fixed_ips(state, i).first().map(|ip| ip.to_string()),
        ),
        field(
            "fixed_ips",
            fixed_ips(state, i)
                .iter()
                .map(|ip| ip.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        field("mac_address", port.map(|p| p.mac.as_str())),
        field("namespace", naming::instance_namespace(&i.id)),
        field("port_id", &i.port_id),
        field("host_device", port.map(naming::port_tap)),
        field("dhcp", i.dhcp),
        field("dhcp_lease", lease),
    ]
}

/// `instance show`: the record with its status, its lease and where it runs, from there.
fn shown(ctx: &mut Ctx, state: &State, i: &Instance) -> anyhow::Result<Record> {
    let status = ctx.session.instance_status(i)?;
    let lease = ctx.session.instance_lease(i)?;
    let mut rec = record(state, i, &status, lease);
    rec.extend(ctx.session.placement_fields(i.host.as_deref()));
    Ok(rec)
}
