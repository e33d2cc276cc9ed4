//! `qrouter floating ip ...`: 1:1 NAT between an external address and an instance's fixed IP,
//! held on the router's `qg-` device with Neutron's DNAT/SNAT rules.

use clap::{Args, Subcommand};

use super::{field, Ctx};
use crate::model::{validate, FloatingIp, State};
use crate::ops::floating_ip;
use crate::output::{Listing, Record};

#[derive(Subcommand)]
pub enum Cmd {
    /// Floating IPs.
    #[command(subcommand)]
    Ip(IpCmd),
}

#[derive(Subcommand)]
pub enum IpCmd {
    /// Allocate a floating IP on an external network, optionally associating it.
    #[command(
        after_help = "Examples:\n  qrouter floating ip create ext_net --instance cirros-vm3\n  \
        qrouter floating ip create ext_net --floating-ip-address 10.10.10.3"
    )]
    Create {
        /// The external network.
        network: String,
        #[arg(long, value_name = "IP")]
        floating_ip_address: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Associate a floating IP with a port or instance.
    #[command(after_help = "Example:\n  qrouter floating ip set 10.10.10.3 --instance cirros-vm3")]
    Set {
        floating_ip: String,
        #[command(flatten)]
        target: Target,
    },
    /// Disassociate a floating IP from its port.
    Unset {
        floating_ip: String,
        #[arg(long, required = true)]
        port: bool,
    },
    /// List floating IPs.
    List,
    /// Show one floating IP (by address or id).
    Show { floating_ip: String },
    /// Release floating IPs.
    Delete {
        #[arg(required = true)]
        floating_ips: Vec<String>,
    },
}

#[derive(Args)]
#[group(multiple = false)]
pub struct Target {
    /// The port to associate with (its first fixed IP).
    #[arg(long)]
    pub port: Option<String>,
    /// The instance to associate with.
    #[arg(long)]
    pub instance: Option<String>,
}

pub async fn run(ctx: &mut Ctx, Cmd::Ip(cmd): Cmd) -> anyhow::Result<()> {
    let store = &mut ctx.session.store;
    let done = match cmd {
        IpCmd::Create {
            network,
            floating_ip_address,
            target,
        } => {
            let req = floating_ip::Create {
                network,
                address: floating_ip_address
                    .map(|a| validate::ip("--floating-ip-address", &a))
                    .transpose()?,
                target: target.request(),
            };
            let reads = floating_ip::reads_for_create(store, &req.network, req.target.as_ref())?;
            let change = |s: &mut State| floating_ip::create(s, &req);
            ctx.session.change_only(reads, change).await?
        }
        IpCmd::Set {
            floating_ip,
            target,
        } => {
            let target = match target.request() {
                Some(target) => target,
                None => floating_ip::Target::Instance(ask_instance(ctx)?),
            };
            let reads = floating_ip::reads_for_set(&mut ctx.session.store, &floating_ip, &target)?;
            let change = |s: &mut State| floating_ip::associate(s, &floating_ip, &target);
            ctx.session.change_only(reads, change).await?
        }
        IpCmd::Unset { floating_ip, .. } => {
            let reads = floating_ip::reads_for_change(store, std::slice::from_ref(&floating_ip))?;
            let change = |s: &mut State| floating_ip::disassociate(s, &floating_ip);
            ctx.session.change_only(reads, change).await?
        }
        IpCmd::List => {
            let state = ctx.session.load()?;
            return ctx.out.list(&listing(&state));
        }
        IpCmd::Show { floating_ip } => {
            let state = ctx.session.load()?;
            return ctx
                .out
                .show(&record(&state, floating_ip::find(&state, &floating_ip)?));
        }
        IpCmd::Delete { floating_ips } => {
            super::prompt::confirm_removal(ctx.ask, "floating ip", &floating_ips)?;
            let reads = floating_ip::reads_for_change(store, &floating_ips)?;
            let change = |s: &mut State| floating_ip::delete(s, &floating_ips);
            ctx.session.change_only(reads, change).await?;
            return Ok(());
        }
    };
    // The state a change returns is what it read and wrote, which holds all the record names.
    let id = done.id.expect("a floating IP change names its floating IP");
    ctx.out
        .show(&record(&done.state, floating_ip::find(&done.state, &id)?))
}

impl Target {
    fn request(&self) -> Option<floating_ip::Target> {
        match (&self.port, &self.instance) {
            (Some(port), _) => Some(floating_ip::Target::Port(port.clone())),
            (_, Some(instance)) => Some(floating_ip::Target::Instance(instance.clone())),
            _ => None,
        }
    }
}

/// On a terminal, `floating ip set FIP` alone asks which instance: those without one.
fn ask_instance(ctx: &mut Ctx) -> anyhow::Result<String> {
    let state = ctx.session.load()?;
    let taken: Vec<&str> = state
        .floating_ips
        .iter()
        .filter_map(|f| f.port_id.as_deref())
        .collect();
    let candidates = state
        .instances
        .iter()
        .filter(|i| !taken.contains(&i.port_id.as_str()))
        .map(|i| {
            let ip = state
                .port_by_id(&i.port_id)
                .and_then(|p| p.fixed_ips.first());
            (
                i.name.clone(),
                ip.map(|f| f.ip.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    super::prompt::choose(ctx.ask, "floating ip set", "--instance", candidates)
}

fn listing(state: &State) -> Listing {
    let headers = [
        "ID",
        "Floating IP Address",
        "Fixed IP Address",
        "Port",
        "Floating Network",
        "Router",
        "Status",
    ];
    let keys = [
        "id",
        "floating_ip_address",
        "fixed_ip_address",
        "port_id",
        "floating_network",
        "router",
        "status",
    ];
    let rows = state.floating_ips.iter().map(|f| {
        let r = record(state, f);
        keys.iter()
            .map(|k| {
                r.iter()
                    .find(|(name, _)| name == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            })
            .collect()
    });
    Listing {
        headers: headers.map(String::from).to_vec(),
        rows: rows.collect(),
    }
}

fn record(state: &State, f: &FloatingIp) -> Record {
    let port = f.port_id.as_deref().and_then(|id| state.port_by_id(id));
    let router = state
        .floating_ip_router(f)
        .and_then(|id| state.router_by_id(id).map(|r| r.name.clone()));
    vec![
        field("id", &f.id),
        field("floating_ip_address", f.address.to_string()),
        field(
            "fixed_ip_address",
            port.and_then(|p| p.fixed_ips.first())
                .map(|x| x.ip.to_string()),
        ),
        field("port_id", &f.port_id),
        field("instance", port.map(|p| state.port_owner_name(p))),
        field(
            "floating_network",
            state.network_by_id(&f.network_id).map(|n| n.name.as_str()),
        ),
        field("router", router),
        field("status", if port.is_some() { "ACTIVE" } else { "DOWN" }),
    ]
}
