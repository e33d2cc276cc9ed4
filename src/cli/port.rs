//! `qrouter port ...`: the ports routers and instances hold (read-only).

use clap::Subcommand;

#[path = "port_workload.rs"]
mod workload;

use super::{field, Ctx};
use crate::model::{naming, Port, PortRole, State};
use crate::output::{Listing, Record};

#[derive(Subcommand)]
pub enum Cmd {
    /// List ports.
    #[command(
        after_help = "Examples:\n  qrouter port list --router router_100_101\n  qrouter port list --network ext_net -f json"
    )]
    List {
        /// Only ports of this router.
        #[arg(long)]
        router: Option<String>,
        /// Only ports on this network.
        #[arg(long)]
        network: Option<String>,
    },
    /// Show one port.
    Show { port: String },
    /// Reserve a port for a VM or container that other software runs: it prints the MAC,
    /// the address, the bridge to join and the tap name to use.
    #[command(
        after_help = "Examples:\n  qrouter port create web1 --network vlan101\n  \
        qrouter port create web2 --network vlan101 --fixed-ip ip-address=172.16.101.20 --mac-address fa:16:3e:00:00:20\n  \
        qrouter port show web1 -f value -c libvirt_interface"
    )]
    Create(workload::CreateArgs),
    /// Delete ports made by 'port create'; a port in use (a router's, an instance's, one with a
    /// floating IP) is refused with its owner named.
    #[command(after_help = "Example:\n  qrouter port delete web1")]
    Delete {
        #[arg(required = true)]
        ports: Vec<String>,
    },
}

pub async fn run(ctx: &mut Ctx, cmd: Cmd) -> anyhow::Result<()> {
    let cmd = match cmd {
        Cmd::Create(args) => return workload::create(ctx, args).await,
        Cmd::Delete { ports } => return workload::delete(ctx, &ports).await,
        Cmd::Show { port } => return workload::show(ctx, &port).await,
        cmd => cmd,
    };
    let state = ctx.load()?;
    match cmd {
        Cmd::List { router, network } => {
            let router = router
                .map(|r| state.router(&r).map(|r| r.id.clone()))
                .transpose()?;
            let network = network
                .map(|n| state.network(&n).map(|n| n.id.clone()))
                .transpose()?;
            let ports = state.ports.iter().filter(|p| {
                router
                    .as_ref()
                    .is_none_or(|r| &p.device_id == r && p.role != PortRole::Instance)
                    && network.as_ref().is_none_or(|n| &p.network_id == n)
            });
            ctx.out.list(&Listing {
                headers: [
                    "ID",
                    "Name",
                    "MAC Address",
                    "Fixed IP Addresses",
                    "Device Owner",
                    "Device",
                ]
                .map(String::from)
                .to_vec(),
                rows: ports
                    .map(|p| {
                        vec![
                            p.id.clone().into(),
                            workload::list_name(p).into(),
                            p.mac.clone().into(),
                            fixed_ips(&state, p).into(),
                            device_owner(p.role).into(),
                            owner_name(&state, p).into(),
                        ]
                    })
                    .collect(),
            })
        }
        _ => unreachable!("handled above"),
    }
}

/// Fixed IPs as openstackclient prints them.
pub fn fixed_ips(state: &State, port: &Port) -> Vec<String> {
    port.fixed_ips
        .iter()
        .map(|f| {
            let subnet = state
                .subnet_by_id(&f.subnet_id)
                .map(|s| s.name.as_str())
                .unwrap_or("?");
            format!("ip_address='{}', subnet='{subnet}'", f.ip)
        })
        .collect()
}

/// Neutron's device_owner values.
pub fn device_owner(role: PortRole) -> &'static str {
    match role {
        PortRole::RouterInterface => "network:router_interface",
        PortRole::RouterGateway => "network:router_gateway",
        PortRole::Instance => "compute:none",
        PortRole::Dhcp => "network:dhcp",
        PortRole::Workload => "",
    }
}

pub fn owner_kind(role: PortRole) -> &'static str {
    match role {
        PortRole::Instance => "instance",
        PortRole::Dhcp => "the DHCP server of network",
        PortRole::Workload => "port",
        _ => "router",
    }
}

pub fn owner_name(state: &State, port: &Port) -> String {
    let name = match port.role {
        PortRole::Instance => state
            .instance_by_id(&port.device_id)
            .map(|i| i.name.clone()),
        PortRole::Dhcp => state
            .network_by_id(&port.network_id)
            .map(|n| n.name.clone()),
        PortRole::Workload => Some(port.name.clone()).filter(|n| !n.is_empty()),
        _ => state.router_by_id(&port.device_id).map(|r| r.name.clone()),
    };
    name.unwrap_or_else(|| port.device_id.clone())
}

pub fn record(state: &State, p: &Port) -> Record {
    let network = state.network_by_id(&p.network_id);
    vec![
        field("id", &p.id),
        field("name", naming::port_device(p)),
        field("network", network.map(|n| n.name.as_str())),
        field("mac_address", &p.mac),
        field("fixed_ips", fixed_ips(state, p)),
        field("device_owner", device_owner(p.role)),
        field("device_id", &p.device_id),
        field("device", owner_name(state, p)),
        field("host_device", naming::port_tap(p)),
        field("bridge", network.map(|n| n.bridge.as_str())),
    ]
}
