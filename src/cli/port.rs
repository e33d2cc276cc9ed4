//! `qrouter port ...`: the ports routers and instances hold (read-only).

use clap::Subcommand;

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
    Show {
        /// The port (id, or a unique id prefix).
        port: String,
    },
}

pub fn run(ctx: &mut Ctx, cmd: Cmd) -> anyhow::Result<()> {
    let state = ctx.session.load()?;
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
                            naming::port_device(p).into(),
                            p.mac.clone().into(),
                            fixed_ips(&state, p),
                            p.role.device_owner().into(),
                            state.port_owner_name(p).into(),
                        ]
                    })
                    .collect(),
            })
        }
        Cmd::Show { port } => {
            let p = state.port(&port)?;
            ctx.out.show(&record(&state, p))
        }
    }
}

/// Fixed IPs as Neutron gives them: `[{"subnet_id", "ip_address"}]`.
pub fn fixed_ips(_state: &State, port: &Port) -> serde_json::Value {
    super::router::fixed_ips_json(port)
}

fn record(state: &State, p: &Port) -> Record {
    let network = state.network_by_id(&p.network_id);
    vec![
        field("id", &p.id),
        field("name", naming::port_device(p)),
        field("network_id", &p.network_id),
        field("status", "ACTIVE"),
        field("network", network.map(|n| n.name.as_str())),
        field("mac_address", &p.mac),
        field("fixed_ips", fixed_ips(state, p)),
        field("device_owner", p.role.device_owner()),
        field("device_id", &p.device_id),
        field("device", state.port_owner_name(p)),
        field("host_device", naming::port_tap(p)),
        field("bridge", network.map(|n| n.bridge.as_str())),
    ]
}
