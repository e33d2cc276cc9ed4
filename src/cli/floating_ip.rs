//! `qrouter floating ip ...`: 1:1 NAT between an external address and an instance's fixed IP,
//! held on the router's `qg-` device with Neutron's DNAT/SNAT rules.

use clap::{Args, Subcommand};

use super::args::{TagArgs, TagFilter, UntagArgs};
use super::{field, Ctx};
use crate::model::{validate, FloatingIp, State};
use crate::ops::floating_ip;
use crate::ops::Reads;
use crate::output::{Listing, Record};

#[derive(Subcommand)]
#[command(defer = true)]
pub enum Cmd {
    /// Floating IPs.
    #[command(subcommand)]
    Ip(IpCmd),
}

#[derive(Subcommand)]
#[command(defer = true)]
pub enum IpCmd {
    /// Allocate a floating IP on an external network, optionally associating it.
    #[command(
        after_help = "Examples:\n  qrouter floating ip create ext_net --instance cirros-vm3\n  \
        qrouter floating ip create ext_net --floating-ip-address 10.10.10.3"
    )]
    Create {
        /// The external network (name or id).
        network: String,
        /// The address to allocate; default the first free one in the pools.
        #[arg(long, value_name = "IP")]
        floating_ip_address: Option<String>,
        /// The external subnet to allocate from (name or id).
        #[arg(long)]
        subnet: Option<String>,
        #[command(flatten)]
        target: Target,
        /// With --port or --instance: the fixed address to map to (the port's own).
        #[arg(long, value_name = "IP", requires = "target")]
        fixed_ip_address: Option<String>,
        /// A description of the floating IP.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        tags: TagArgs,
    },
    /// Associate a floating IP with a port or instance, or set its description or tags;
    /// prints nothing.
    #[command(after_help = "Example:\n  qrouter floating ip set 10.10.10.3 --instance cirros-vm3")]
    Set {
        /// The floating IP (address or id).
        floating_ip: String,
        #[command(flatten)]
        target: Target,
        /// With --port or --instance: the fixed address to map to (the port's own).
        #[arg(long, value_name = "IP", requires = "target")]
        fixed_ip_address: Option<String>,
        /// A new description.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        tags: TagArgs,
    },
    /// Disassociate a floating IP from its port, or remove tags; prints nothing.
    Unset {
        /// The floating IP (address or id).
        floating_ip: String,
        /// Disassociate it from its port.
        #[arg(long)]
        port: bool,
        #[command(flatten)]
        tags: UntagArgs,
    },
    /// List floating IPs.
    #[command(
        after_help = "Examples:\n  qrouter floating ip list --long\n  qrouter floating ip list --status DOWN -f value -c 'Floating IP Address'"
    )]
    List {
        /// More columns: description, tags.
        #[arg(long)]
        long: bool,
        /// Only floating IPs of this external network (name or id).
        #[arg(long)]
        network: Option<String>,
        /// Only the floating IP on this port (id).
        #[arg(long)]
        port: Option<String>,
        /// Only the floating IP of this fixed address.
        #[arg(long, value_name = "IP")]
        fixed_ip_address: Option<String>,
        /// Only the floating IP with this address.
        #[arg(long, value_name = "IP")]
        floating_ip_address: Option<String>,
        /// Only floating IPs served by this router (name or id).
        #[arg(long)]
        router: Option<String>,
        /// Only floating IPs in this status.
        #[arg(long, value_parser = ["ACTIVE", "DOWN"])]
        status: Option<String>,
        #[command(flatten)]
        tags: TagFilter,
    },
    /// Show one floating IP (by address or id).
    Show {
        /// The floating IP (address or id).
        floating_ip: String,
    },
    /// Release floating IPs. Deletes every one it can; prints nothing.
    Delete {
        /// The floating IPs (addresses or ids).
        #[arg(required = true)]
        floating_ips: Vec<String>,
    },
}

#[derive(Args)]
#[group(id = "target", multiple = false)]
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
    match cmd {
        IpCmd::Create {
            network,
            floating_ip_address,
            subnet,
            target,
            fixed_ip_address,
            description,
            tags,
        } => {
            let fixed = fixed_ip(fixed_ip_address)?;
            let req = floating_ip::Create {
                network,
                address: floating_ip_address
                    .map(|a| validate::ip("--floating-ip-address", &a))
                    .transpose()?,
                subnet,
                target: target.request(),
                meta: super::args::new_meta(description, None, &tags),
            };
            let reads = match req.subnet {
                Some(_) => Reads::All,
                None => floating_ip::reads_for_create(store, &req.network, req.target.as_ref())?,
            };
            let change = |s: &mut State| {
                if let (Some(ip), Some(target)) = (fixed, &req.target) {
                    floating_ip::check_fixed_ip(s, target, ip)?;
                }
                floating_ip::create(s, &req)
            };
            let done = ctx.session.change_only(reads, change).await?;
            // The state a change returns is what it read and wrote, which holds all the
            // record names.
            let id = done.id.expect("a floating IP change names its floating IP");
            ctx.out
                .show(&record(&done.state, floating_ip::find(&done.state, &id)?))
        }
        IpCmd::Set {
            floating_ip,
            target,
            fixed_ip_address,
            description,
            tags,
        } => {
            let fixed = fixed_ip(fixed_ip_address)?;
            let meta = super::args::set_edit(description, None, &tags);
            let target = match target.request() {
                Some(target) => Some(target),
                None if meta.is_empty() => Some(floating_ip::Target::Instance(ask_instance(ctx)?)),
                None => None,
            };
            if let Some(target) = target {
                let reads =
                    floating_ip::reads_for_set(&mut ctx.session.store, &floating_ip, &target)?;
                let change = |s: &mut State| {
                    if let Some(ip) = fixed {
                        floating_ip::check_fixed_ip(s, &target, ip)?;
                    }
                    floating_ip::associate(s, &floating_ip, &target)
                };
                ctx.session.change_only(reads, change).await?;
            }
            if !meta.is_empty() {
                let change = |s: &mut State| floating_ip::edit(s, &floating_ip, &meta);
                ctx.session.change(change).await?;
            }
            Ok(())
        }
        IpCmd::Unset {
            floating_ip,
            port,
            tags,
        } => {
            if port {
                let reads =
                    floating_ip::reads_for_change(store, std::slice::from_ref(&floating_ip))?;
                let change = |s: &mut State| floating_ip::disassociate(s, &floating_ip);
                ctx.session.change_only(reads, change).await?;
            }
            let meta = super::args::unset_edit(&tags);
            if !meta.is_empty() {
                let change = |s: &mut State| floating_ip::edit(s, &floating_ip, &meta);
                ctx.session.change(change).await?;
            }
            Ok(())
        }
        IpCmd::List {
            long,
            network,
            port,
            fixed_ip_address,
            floating_ip_address,
            router,
            status,
            tags,
        } => {
            let state = ctx.session.load()?;
            let network = network
                .map(|n| state.network(&n).map(|n| n.id.clone()))
                .transpose()?;
            let port = port
                .map(|p| state.port(&p).map(|p| p.id.clone()))
                .transpose()?;
            let router = router
                .map(|r| state.router(&r).map(|r| r.id.clone()))
                .transpose()?;
            let filter = |f: &FloatingIp| {
                let fixed = f
                    .port_id
                    .as_deref()
                    .and_then(|id| state.port_by_id(id))
                    .and_then(|p| p.fixed_ips.first())
                    .map(|x| x.ip.to_string());
                network.as_ref().is_none_or(|n| &f.network_id == n)
                    && port.as_ref().is_none_or(|p| f.port_id.as_ref() == Some(p))
                    && fixed_ip_address
                        .as_ref()
                        .is_none_or(|ip| fixed.as_ref() == Some(ip))
                    && floating_ip_address
                        .as_ref()
                        .is_none_or(|ip| &f.address.to_string() == ip)
                    && router
                        .as_deref()
                        .is_none_or(|r| state.floating_ip_router(f) == Some(r))
                    && status.as_deref().is_none_or(|s| s == fip_status(f))
                    && tags.matches(&f.meta.tags)
            };
            ctx.out.list(&listing(&state, long, filter))
        }
        IpCmd::Show { floating_ip } => {
            let reads = crate::ops::reads_for_show::<FloatingIp>(&ctx.session.store, &floating_ip)?;
            let state = ctx.session.load_only(&reads)?;
            ctx.out
                .show(&record(&state, floating_ip::find(&state, &floating_ip)?))
        }
        IpCmd::Delete { floating_ips } => {
            super::prompt::confirm_removal(ctx.ask, "floating ip", &floating_ips)?;
            let mut errors = Vec::new();
            for key in &floating_ips {
                let keys = std::slice::from_ref(key);
                let reads = floating_ip::reads_for_change(&mut ctx.session.store, keys)?;
                let change = |s: &mut State| floating_ip::delete(s, keys);
                if let Err(e) = ctx.session.change_only(reads, change).await {
                    errors.push(e);
                }
            }
            super::args::deletes_done("floating ip", errors, floating_ips.len())
        }
    }
}

fn fixed_ip(text: Option<String>) -> anyhow::Result<Option<std::net::Ipv4Addr>> {
    text.map(|a| validate::ip("--fixed-ip-address", &a))
        .transpose()
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

fn fip_status(f: &FloatingIp) -> &'static str {
    if f.port_id.is_some() {
        "ACTIVE"
    } else {
        "DOWN"
    }
}

/// openstackclient's columns (with --long Router, Status, Description, Tags; Router and
/// Status are always shown here), then qrouter's.
pub(super) fn listing(state: &State, long: bool, filter: impl Fn(&FloatingIp) -> bool) -> Listing {
    let mut keys = vec![
        ("ID", "id"),
        ("Floating IP Address", "floating_ip_address"),
        ("Fixed IP Address", "fixed_ip_address"),
        ("Port", "port_id"),
        ("Floating Network", "floating_network_id"),
        ("Router", "router_id"),
        ("Status", "status"),
    ];
    if long {
        keys.extend([("Description", "description"), ("Tags", "tags")]);
    }
    keys.extend([("Instance", "instance"), ("Router Name", "router")]);
    let rows = state.floating_ips.iter().filter(|f| filter(f)).map(|f| {
        let r = record(state, f);
        keys.iter()
            .map(|(_, k)| {
                r.iter()
                    .find(|(name, _)| name == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            })
            .collect()
    });
    Listing {
        headers: keys.iter().map(|(h, _)| h.to_string()).collect(),
        rows: rows.collect(),
    }
}

/// The fields openstackclient's `floating ip show` prints (without Keystone's and the
/// extensions'), in its order; then qrouter's own.
pub(super) fn record(state: &State, f: &FloatingIp) -> Record {
    let port = f.port_id.as_deref().and_then(|id| state.port_by_id(id));
    let router_id = state.floating_ip_router(f);
    let router = router_id.and_then(|id| state.router_by_id(id).map(|r| r.name.clone()));
    let port_details = port.map(|p| {
        // The status by the admin states alone: the kernel is not read for a floating IP.
        let status = match state.port_down_because(p) {
            Some(_) => "DOWN",
            None => "ACTIVE",
        };
        serde_json::json!({
            "name": p.name,
            "network_id": p.network_id,
            "mac_address": p.mac,
            "admin_state_up": p.meta.admin_state_up,
            "status": status,
            "device_id": p.device_id,
            "device_owner": p.role.device_owner(),
        })
    });
    let m = &f.meta;
    vec![
        field("created_at", super::router_view::nonempty(&m.created_at)),
        field("description", &m.description),
        field(
            "fixed_ip_address",
            port.and_then(|p| p.fixed_ips.first())
                .map(|x| x.ip.to_string()),
        ),
        field("floating_ip_address", f.address.to_string()),
        field("floating_network_id", &f.network_id),
        field("id", &f.id),
        field("port_details", port_details),
        field("port_id", &f.port_id),
        field("revision_number", m.revision_number),
        field("router_id", router_id),
        field("status", fip_status(f)),
        field("tags", &m.tags),
        field("updated_at", super::router_view::nonempty(&m.updated_at)),
        field("instance", port.map(|p| state.port_owner_name(p))),
        field(
            "floating_network",
            state.network_by_id(&f.network_id).map(|n| n.name.as_str()),
        ),
        field("router", router),
    ]
}
