//! `qrouter router ...`: routers, their interfaces, gateway, SNAT and extra routes.

use anyhow::Context;
use clap::{Args, Subcommand};

use super::args::{self, StateArgs, TagArgs, TagFilter, UntagArgs};
use super::router_view::{listing, record, LISTED};
use super::{prompt, Ctx};
use crate::bail_invalid;
use crate::model::ha::DEFAULT_COPIES;
use crate::model::rules::Inbound;
use crate::model::{validate, ExtraRoute, Router, State};
use crate::ops::Reads;
use crate::ops::{router, Done};

#[derive(Subcommand)]
#[command(defer = true)]
pub enum Cmd {
    /// Create a router: a qrouter-<id> namespace with Neutron's sysctls.
    #[command(after_help = "Examples:\n  qrouter router create router_100_101\n  \
        qrouter router create r1 --external-gateway ext_net --fixed-ip subnet=ext,ip-address=10.10.10.9")]
    Create {
        /// The new router's name.
        name: String,
        #[command(flatten)]
        gateway: GatewayArgs,
        /// SNAT tenant traffic leaving through the gateway (the default).
        #[arg(long, conflicts_with = "disable_snat")]
        enable_snat: bool,
        /// Do not SNAT tenant traffic leaving through the gateway.
        #[arg(long)]
        disable_snat: bool,
        /// A description of the router.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        state: StateArgs,
        #[command(flatten)]
        tags: TagArgs,
        /// The network host to run it on (etcd store); else the live one with fewest routers.
        #[arg(long, conflicts_with = "ha")]
        host: Option<String>,
        #[command(flatten)]
        ha: HaArgs,
    },
    /// Set the external gateway, SNAT, extra routes, name, description, state or tags of a
    /// router; prints nothing.
    #[command(
        after_help = "Examples:\n  qrouter router set router_100_101 --external-gateway ext_net\n  \
        qrouter router set router_100_101 --disable-snat\n  \
        qrouter router set r1 --no-route --route destination=192.168.50.0/24,gateway=172.16.101.254"
    )]
    Set {
        /// The router (name or id).
        router: String,
        #[command(flatten)]
        gateway: GatewayArgs,
        /// SNAT tenant traffic to the gateway address (the default).
        #[arg(long, conflicts_with = "disable_snat")]
        enable_snat: bool,
        /// Do not SNAT tenant traffic leaving through the gateway.
        #[arg(long)]
        disable_snat: bool,
        /// Rename the router.
        #[arg(long, value_name = "NEW")]
        name: Option<String>,
        /// A new description.
        #[arg(long)]
        description: Option<String>,
        /// Add an extra route (repeatable); with --no-route, replace them all.
        #[arg(long, value_name = "destination=CIDR,gateway=IP")]
        route: Vec<String>,
        /// Clear the extra routes (before adding any --route).
        #[arg(long)]
        no_route: bool,
        /// Let new IPv6 connections from outside in to these tenant addresses (repeatable;
        /// protocol tcp, udp or icmp, a port with tcp or udp); IPv4 is opened by floating IPs.
        #[arg(long, value_name = "destination=CIDR[,protocol=P][,port=N]")]
        allow_inbound: Vec<String>,
        /// Close every IPv6 opening (before adding any --allow-inbound).
        #[arg(long)]
        no_allow_inbound: bool,
        #[command(flatten)]
        state: StateArgs,
        #[command(flatten)]
        tags: TagArgs,
        /// Move it to this network host (etcd store): its namespace goes from the old host
        /// and is made on the new one.
        #[arg(long)]
        host: Option<String>,
        #[command(flatten)]
        ha: HaArgs,
    },
    /// Remove the external gateway, extra routes or tags of a router; prints nothing.
    #[command(
        after_help = "Examples:\n  qrouter router unset router_100_101 --external-gateway\n  \
        qrouter router unset r1 --route destination=192.168.50.0/24,gateway=172.16.101.254"
    )]
    Unset {
        /// The router (name or id).
        router: String,
        /// Remove the external gateway (its qg- device, SNAT and default route).
        #[arg(long)]
        external_gateway: bool,
        /// Remove this extra route (repeatable); one the router does not have is no error.
        #[arg(long, value_name = "destination=CIDR,gateway=IP")]
        route: Vec<String>,
        /// Close this IPv6 opening (repeatable); one the router does not have is no error.
        #[arg(long, value_name = "destination=CIDR[,protocol=P][,port=N]")]
        allow_inbound: Vec<String>,
        #[command(flatten)]
        tags: UntagArgs,
    },
    /// Add an interface (subnet or port) or an extra route to a router.
    #[command(subcommand)]
    Add(AddCmd),
    /// Remove an interface (subnet or port) or an extra route from a router.
    #[command(subcommand)]
    Remove(RemoveCmd),
    /// List routers.
    #[command(
        after_help = "Examples:\n  qrouter router list --long\n  qrouter router list --disable -f value -c Name"
    )]
    List {
        /// More columns: routes, external gateway info, tags, description.
        #[arg(long)]
        long: bool,
        /// Only the router with this name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        state: StateArgs,
        #[command(flatten)]
        tags: TagFilter,
    },
    /// Show a router with the live interfaces, routes and NAT rules of its namespace.
    #[command(
        after_help = "Examples:\n  qrouter router show router_100_101\n  qrouter router show router_100_101 -f json"
    )]
    Show {
        /// The router (name or id).
        router: String,
    },
    /// Delete routers; refuses while they have interfaces unless --force. Deletes every one
    /// it can; prints nothing.
    Delete {
        /// The routers (names or ids).
        #[arg(required = true)]
        routers: Vec<String>,
        /// Also remove the router's interfaces and gateway.
        #[arg(long)]
        force: bool,
    },
}

// `--ha`, `--no-ha`, `--ha-hosts` (openstackclient's; `router set` takes them on a
// disabled router only, as Neutron does).
#[derive(Args)]
pub struct HaArgs {
    /// Highly available (etcd store): a copy on each of --ha-hosts network hosts,
    /// keepalived (VRRP) choosing the one that forwards.
    #[arg(long, conflicts_with = "no_ha")]
    ha: bool,
    /// A legacy router, one copy (the default); on the host of its first copy, or --host.
    #[arg(long)]
    no_ha: bool,
    /// How many copies an HA router runs, on as many network hosts (default 2).
    #[arg(long, value_name = "N", requires = "ha")]
    ha_hosts: Option<u8>,
}

impl HaArgs {
    /// None: not asked; Some(None): --no-ha; Some(Some(n)): --ha with n copies.
    fn request(&self) -> Option<Option<u8>> {
        match (self.ha, self.no_ha) {
            (true, _) => Some(Some(self.ha_hosts.unwrap_or(DEFAULT_COPIES))),
            (_, true) => Some(None),
            _ => None,
        }
    }
}

#[derive(Args)]
pub struct GatewayArgs {
    /// The external network to set the gateway on.
    #[arg(long, value_name = "NET")]
    pub external_gateway: Option<String>,
    /// The gateway's subnet and/or address on the external network.
    #[arg(
        long,
        requires = "external_gateway",
        value_name = "subnet=S,ip-address=IP"
    )]
    pub fixed_ip: Option<String>,
}

#[derive(Subcommand)]
#[command(defer = true)]
pub enum AddCmd {
    /// Attach a subnet: a qr- device holding the subnet's gateway IP.
    #[command(
        alias = "subnet",
        after_help = "Example:\n  qrouter router add interface router_100_101 vlan101\n\n\
            Without SUBNET, on a terminal, qrouter asks which subnet (those not attached yet)."
    )]
    Interface {
        /// The router (name or id).
        router: String,
        /// The subnet (name or id).
        subnet: Option<String>,
    },
    /// Attach a port that nothing holds yet: a qr- device with the port's address.
    #[command(after_help = "Example:\n  qrouter router add port router_100_101 PORT_ID")]
    Port {
        /// The router (name or id).
        router: String,
        /// The port (name or id).
        port: String,
    },
    /// Add extra routes; a next hop must be on a subnet the router is connected to. Prints
    /// the router.
    #[command(
        after_help = "Example:\n  qrouter router add route r1 --route destination=192.168.50.0/24,gateway=172.16.101.254"
    )]
    Route {
        /// The router (name or id).
        router: String,
        /// An extra route (repeatable).
        #[arg(long, required = true, value_name = "destination=CIDR,gateway=IP")]
        route: Vec<String>,
    },
}

#[derive(Subcommand)]
#[command(defer = true)]
pub enum RemoveCmd {
    /// Detach a subnet from a router.
    #[command(
        alias = "subnet",
        after_help = "Example:\n  qrouter router remove interface router_100_101 vlan101"
    )]
    Interface {
        /// The router (name or id).
        router: String,
        /// The subnet (name or id).
        subnet: String,
    },
    /// Detach the interface that is this port (see 'qrouter port list --router R').
    #[command(
        after_help = "Example:\n  qrouter router remove port router_100_101 $(qrouter port list --router router_100_101 -f value -c ID | head -1)"
    )]
    Port {
        /// The router (name or id).
        router: String,
        /// The port (id).
        port: String,
    },
    /// Remove extra routes; one the router does not have is no error. Prints the router.
    Route {
        /// The router (name or id).
        router: String,
        /// An extra route (repeatable).
        #[arg(long, required = true, value_name = "destination=CIDR,gateway=IP")]
        route: Vec<String>,
    },
}

pub async fn run(ctx: &mut Ctx, cmd: Cmd) -> anyhow::Result<()> {
    let store = &ctx.session.store;
    // Create, add route and remove route print the router, as openstackclient does; the
    // other changes print nothing.
    let done = match cmd {
        Cmd::Create {
            name,
            gateway,
            enable_snat: _,
            disable_snat,
            description,
            state,
            tags,
            host,
            ha,
        } => {
            let req = router::Create {
                gateway: gateway.request(&name)?,
                name,
                snat: !disable_snat,
                meta: args::new_meta(description, state.up(), &tags),
                host,
                ha: ha.request().flatten(),
            };
            let change = |s: &mut State| router::create(s, &req);
            Some(
                ctx.session
                    .change_only(router::reads_for_create(&req), change)
                    .await?,
            )
        }
        Cmd::Set {
            router,
            mut gateway,
            enable_snat,
            disable_snat,
            name,
            description,
            route,
            no_route,
            allow_inbound,
            no_allow_inbound,
            state,
            tags,
            host,
            ha,
        } => {
            let meta = args::set_edit(description, state.up(), &tags);
            let ha = ha.request();
            if gateway.external_gateway.is_none()
                && !enable_snat
                && !disable_snat
                && name.is_none()
                && route.is_empty()
                && !no_route
                && allow_inbound.is_empty()
                && !no_allow_inbound
                && meta.is_empty()
                && host.is_none()
                && ha.is_none()
            {
                gateway.external_gateway = Some(ask_external_network(ctx, &router)?);
            }
            let snat = if enable_snat {
                Some(true)
            } else {
                disable_snat.then_some(false)
            };
            // A new name is checked against every router, a subnet given by name against
            // every subnet; the rest stays around the router and its new network.
            let reads = match (&name, &gateway.fixed_ip, ha) {
                (None, None, None) => {
                    let network = gateway.external_gateway.as_deref();
                    let store = &ctx.session.store;
                    router::reads(store, &[&router], &[], network.as_slice())?
                }
                _ => Reads::All,
            };
            let req = router::Set {
                gateway: gateway.request(&router)?,
                add_routes: parse_routes(&router, &route)?,
                clear_routes: no_route,
                add_inbound: parse_inbound(&router, &allow_inbound)?,
                clear_inbound: no_allow_inbound,
                router,
                snat,
                name,
                meta,
                host,
                ha,
            };
            let change = |s: &mut State| router::set(s, &req);
            ctx.session.change_only(reads, change).await?;
            None
        }
        Cmd::Unset {
            router,
            external_gateway,
            route,
            allow_inbound,
            tags,
        } => {
            let reads = router::reads(store, &[&router], &[], &[])?;
            let req = router::Unset {
                routes: parse_routes(&router, &route)?,
                inbound: parse_inbound(&router, &allow_inbound)?,
                router,
                external_gateway,
                meta: args::unset_edit(&tags),
            };
            let change = |s: &mut State| router::unset_fields(s, &req);
            ctx.session.change_only(reads, change).await?;
            None
        }
        Cmd::Add(AddCmd::Interface { router, subnet }) => {
            let subnet = match subnet {
                Some(subnet) => subnet,
                None => ask_subnet(ctx, &router)?,
            };
            let reads = router::reads(&ctx.session.store, &[&router], &[&subnet], &[])?;
            let change = |s: &mut State| router::add_interface(s, &router, &subnet);
            ctx.session.change_only(reads, change).await?;
            None
        }
        Cmd::Remove(RemoveCmd::Interface { router, subnet }) => {
            let reads = router::reads(store, &[&router], &[&subnet], &[])?;
            let change = |s: &mut State| router::remove_interface(s, &router, &subnet);
            ctx.session.change_only(reads, change).await?;
            None
        }
        Cmd::Add(AddCmd::Port { router, port }) => {
            let change = |s: &mut State| router::add_port(s, &router, &port);
            ctx.session.change_only(Reads::All, change).await?;
            None
        }
        Cmd::Remove(RemoveCmd::Port { router, port }) => {
            let change = |s: &mut State| router::remove_port(s, &router, &port);
            ctx.session.change_only(Reads::All, change).await?;
            None
        }
        Cmd::Add(AddCmd::Route { router, route }) => {
            let routes = parse_routes(&router, &route)?;
            let reads = router::reads(store, &[&router], &[], &[])?;
            let change = |s: &mut State| router::edit_routes(s, &router, &routes, true);
            Some(ctx.session.change_only(reads, change).await?)
        }
        Cmd::Remove(RemoveCmd::Route { router, route }) => {
            let routes = parse_routes(&router, &route)?;
            let reads = router::reads(store, &[&router], &[], &[])?;
            let change = |s: &mut State| router::edit_routes(s, &router, &routes, false);
            Some(ctx.session.change_only(reads, change).await?)
        }
        Cmd::List {
            long,
            name,
            state: enabled,
            tags,
        } => {
            // A listing shows routers with their ports and networks' names: the subnets,
            // instances and floating IPs, half the store, are not read.
            let state = ctx.session.load_only(&Reads::Kinds(LISTED))?;
            let filter = |r: &Router| {
                name.as_ref().is_none_or(|n| &r.name == n)
                    && enabled.up().is_none_or(|up| r.meta.admin_state_up == up)
                    && tags.matches(&r.meta.tags)
            };
            let statuses = ctx
                .session
                .router_statuses(state.routers.iter().map(|r| &**r))?;
            ctx.out.list(&listing(&state, &statuses, long, filter))?;
            None
        }
        Cmd::Show { router } => {
            let reads = router::reads(store, &[&router], &[], &[])?;
            let state = ctx.session.load_only(&reads)?;
            let r = state.router(&router)?;
            let live = ctx.session.router_live(&state, r).await?;
            let mut record = record(&state, r, "");
            super::merge_fields(&mut record, live.fields);
            ctx.out.show_with_sections(&record, &live.sections)?;
            None
        }
        Cmd::Delete { routers, force } => {
            prompt::confirm_removal(ctx.ask, "router", &routers)?;
            // All in one change where all can go: one converge removes every namespace
            // together. Else each on its own, as openstackclient does. (In an atomic batch a
            // failed line fails the batch anyway.)
            if routers.len() > 1 && !ctx.session.collecting() {
                let keys: Vec<&str> = routers.iter().map(String::as_str).collect();
                let reads = router::reads(&ctx.session.store, &keys, &[], &[])?;
                let change = |s: &mut State| router::delete(s, &routers, force);
                if ctx.session.change_only(reads, change).await.is_ok() {
                    return Ok(());
                }
            }
            let mut errors = Vec::new();
            for key in &routers {
                let reads = router::reads(&ctx.session.store, &[key], &[], &[])?;
                let keys = std::slice::from_ref(key);
                let change = |s: &mut State| router::delete(s, keys, force);
                if let Err(e) = ctx.session.change_only(reads, change).await {
                    errors.push(e);
                }
            }
            args::deletes_done("router", errors, routers.len())?;
            None
        }
    };
    if let Some(Done {
        state,
        id: Some(id),
    }) = done
    {
        let r = state.router(&id)?;
        let status = ctx
            .session
            .router_statuses(std::iter::once(r))?
            .remove(&r.id);
        ctx.out
            .show(&record(&state, r, &status.unwrap_or_default()))?;
    }
    Ok(())
}

impl GatewayArgs {
    /// The gateway asked for on `router`, with `--fixed-ip` parsed.
    fn request(&self, router: &str) -> anyhow::Result<Option<router::Gateway>> {
        let Some(network) = self.external_gateway.clone() else {
            return Ok(None);
        };
        let (subnet, ip) = self
            .fixed_ip
            .as_deref()
            .map(validate::fixed_ip)
            .transpose()
            .with_context(|| format!("router {router}: external gateway"))?
            .unwrap_or_default();
        Ok(Some(router::Gateway {
            network,
            subnet,
            ip,
        }))
    }
}

/// On a terminal, `router set R` alone asks which external network to set the gateway on.
fn ask_external_network(ctx: &mut Ctx, router: &str) -> anyhow::Result<String> {
    let state = ctx.session.load()?;
    state.router(router)?;
    let external = state
        .networks
        .iter()
        .filter(|n| n.external)
        .map(|n| (n.name.clone(), n.bridge.clone()))
        .collect();
    prompt::choose(
        ctx.ask,
        "router set",
        "--external-gateway network",
        external,
    )
}

/// On a terminal, `router add interface R` alone asks which subnet: those it would take.
fn ask_subnet(ctx: &mut Ctx, router: &str) -> anyhow::Result<String> {
    let state = ctx.session.load()?;
    let r = state.router(router)?;
    let candidates = state
        .subnets
        .iter()
        .filter(|s| router::check_add_interface(&state, Some(r), s).is_ok())
        .map(|s| (s.name.clone(), s.cidr.to_string()))
        .collect();
    prompt::choose(ctx.ask, "router add interface", "SUBNET", candidates)
}

/// Each `--route` of a command on `router`.
fn parse_routes(router: &str, specs: &[String]) -> anyhow::Result<Vec<ExtraRoute>> {
    specs
        .iter()
        .map(|s| parse_route(s).with_context(|| format!("router {router}")))
        .collect()
}

fn parse_inbound(router: &str, specs: &[String]) -> anyhow::Result<Vec<Inbound>> {
    specs
        .iter()
        .map(|s| match Inbound::parse(s) {
            Ok(opening) => Ok(opening),
            Err(e) => bail_invalid!("router {router}: --allow-inbound '{s}': {e}"),
        })
        .collect()
}

/// `destination=CIDR,gateway=IP`, as openstackclient's --route takes it.
fn parse_route(spec: &str) -> anyhow::Result<ExtraRoute> {
    let pairs = validate::key_values("--route", spec, &["destination", "gateway"])?;
    let get = |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let (Some(dst), Some(via)) = (get("destination"), get("gateway")) else {
        bail_invalid!("--route: '{spec}' needs destination=CIDR,gateway=IP");
    };
    Ok(ExtraRoute {
        destination: validate::net("--route destination", dst)?,
        nexthop: validate::addr("--route gateway", via)?,
    })
}
