//! `qrouter router ...`: routers, their interfaces, gateway, SNAT and extra routes.

use std::collections::HashMap;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::{field, prompt, Ctx};
use crate::bail_invalid;
use crate::kernel::netns;
use crate::model::{naming, validate, ExtraRoute, Object, PortRole, Router, State};
use crate::ops::{router, Done};
use crate::output::{self, Listing, Record};
use crate::reconcile;
use crate::store::{Around, Reads};

#[derive(Subcommand)]
pub enum Cmd {
    /// Create a router: a qrouter-<id> namespace with Neutron's sysctls.
    #[command(after_help = "Examples:\n  qrouter router create router_100_101\n  \
        qrouter router create r1 --external-gateway ext_net --fixed-ip subnet=ext,ip-address=10.10.10.9")]
    Create {
        name: String,
        #[command(flatten)]
        gateway: GatewayArgs,
        /// Do not SNAT tenant traffic leaving through the gateway.
        #[arg(long)]
        disable_snat: bool,
        /// The network host to run it on (etcd store); else the live one with fewest routers.
        #[arg(long)]
        host: Option<String>,
    },
    /// Set the external gateway, SNAT or name of a router.
    #[command(
        after_help = "Examples:\n  qrouter router set router_100_101 --external-gateway ext_net\n  \
        qrouter router set router_100_101 --disable-snat"
    )]
    Set {
        router: String,
        #[command(flatten)]
        gateway: GatewayArgs,
        /// SNAT tenant traffic to the gateway address (the default).
        #[arg(long, conflicts_with = "disable_snat")]
        enable_snat: bool,
        #[arg(long)]
        disable_snat: bool,
        /// Rename the router.
        #[arg(long, value_name = "NEW")]
        name: Option<String>,
    },
    /// Remove the external gateway of a router.
    #[command(after_help = "Example:\n  qrouter router unset router_100_101 --external-gateway")]
    Unset {
        router: String,
        #[arg(long, required = true)]
        external_gateway: bool,
    },
    /// Add an interface or an extra route to a router.
    #[command(subcommand)]
    Add(AddCmd),
    /// Remove an interface or an extra route from a router.
    #[command(subcommand)]
    Remove(RemoveCmd),
    /// List routers.
    List,
    /// Show a router with the live interfaces, routes and NAT rules of its namespace.
    #[command(
        after_help = "Examples:\n  qrouter router show router_100_101\n  qrouter router show router_100_101 -f json"
    )]
    Show { router: String },
    /// Delete routers; refuses while they have interfaces unless --force.
    Delete {
        #[arg(required = true)]
        routers: Vec<String>,
        /// Also remove the router's interfaces and gateway.
        #[arg(long)]
        force: bool,
    },
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
pub enum AddCmd {
    /// Attach a subnet: a qr- device holding the subnet's gateway IP.
    #[command(
        alias = "subnet",
        after_help = "Example:\n  qrouter router add interface router_100_101 vlan101\n\n\
            Without SUBNET, on a terminal, qrouter asks which subnet (those not attached yet)."
    )]
    Interface {
        router: String,
        subnet: Option<String>,
    },
    /// Add an extra route; its next hop must be on a subnet the router is connected to.
    #[command(
        after_help = "Example:\n  qrouter router add route r1 --route destination=192.168.50.0/24,gateway=172.16.101.254"
    )]
    Route {
        router: String,
        #[arg(long, required = true, value_name = "destination=CIDR,gateway=IP")]
        route: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum RemoveCmd {
    /// Detach a subnet from a router.
    #[command(
        alias = "subnet",
        after_help = "Example:\n  qrouter router remove interface router_100_101 vlan101"
    )]
    Interface { router: String, subnet: String },
    /// Remove an extra route.
    Route {
        router: String,
        #[arg(long, required = true, value_name = "destination=CIDR,gateway=IP")]
        route: Vec<String>,
    },
}

pub async fn run(ctx: &mut Ctx, cmd: Cmd) -> anyhow::Result<()> {
    let store = &ctx.session.store;
    let done = match cmd {
        Cmd::Create {
            name,
            gateway,
            disable_snat,
            host,
        } => {
            // Without a gateway, only a router of the same name can conflict with a new one.
            let reads = match gateway.external_gateway {
                None => Reads::Around(Around {
                    names: vec![(Router::KIND, name.clone())],
                    ..Default::default()
                }),
                Some(_) => Reads::All,
            };
            let req = router::Create {
                gateway: gateway.request(&name)?,
                name,
                snat: !disable_snat,
                host,
            };
            let change = |s: &mut State| router::create(s, &req);
            Some(ctx.session.change_only(reads, change).await?)
        }
        Cmd::Set {
            router,
            mut gateway,
            enable_snat,
            disable_snat,
            name,
        } => {
            if gateway.external_gateway.is_none() && !enable_snat && !disable_snat && name.is_none()
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
            let reads = match (&name, &gateway.fixed_ip) {
                (None, None) => {
                    let network = gateway.external_gateway.as_deref();
                    let store = &ctx.session.store;
                    router::reads(store, &[&router], &[], network.as_slice())?
                }
                _ => Reads::All,
            };
            let req = router::Set {
                gateway: gateway.request(&router)?,
                router,
                snat,
                name,
            };
            let change = |s: &mut State| router::set(s, &req);
            Some(ctx.session.change_only(reads, change).await?)
        }
        Cmd::Unset { router, .. } => {
            let reads = router::reads(store, &[&router], &[], &[])?;
            let change = |s: &mut State| router::unset(s, &router);
            Some(ctx.session.change_only(reads, change).await?)
        }
        Cmd::Add(AddCmd::Interface { router, subnet }) => {
            let subnet = match subnet {
                Some(subnet) => subnet,
                None => ask_subnet(ctx, &router)?,
            };
            let reads = router::reads(&ctx.session.store, &[&router], &[&subnet], &[])?;
            let change = |s: &mut State| router::add_interface(s, &router, &subnet);
            Some(ctx.session.change_only(reads, change).await?)
        }
        Cmd::Remove(RemoveCmd::Interface { router, subnet }) => {
            let reads = router::reads(store, &[&router], &[&subnet], &[])?;
            let change = |s: &mut State| router::remove_interface(s, &router, &subnet);
            Some(ctx.session.change_only(reads, change).await?)
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
        Cmd::List => {
            let state = ctx.session.load()?;
            ctx.out.list(&listing(&state, ctx.session.collecting()))?;
            None
        }
        Cmd::Show { router } => {
            let reads = router::reads(store, &[&router], &[], &[])?;
            let state = ctx.session.load_only(&reads)?;
            let r = state.router(&router)?;
            if ctx.session.store.etcd().is_some() {
                // The router runs on its host, not here: its agent's status, not this
                // host's kernel.
                let mut record = record(&state, r, false);
                super::host::placed(ctx, &mut record, "router", r.host.as_deref())?;
                ctx.out.show(&record)?;
                return Ok(());
            }
            let owner = ctx.session.store.id().to_string();
            let inspection = reconcile::inspect(ctx.session.kernel()?, &state, r, &owner).await?;
            let mut record = record(&state, r, ctx.session.collecting());
            record.push(field("kernel", output::router::summary(&inspection)));
            let sections = output::router::kernel_views(&state, r, &inspection);
            ctx.out.show_with_sections(&record, &sections)?;
            None
        }
        Cmd::Delete { routers, force } => {
            prompt::confirm_removal(ctx.ask, "router", &routers)?;
            let keys: Vec<&str> = routers.iter().map(String::as_str).collect();
            let reads = router::reads(store, &keys, &[], &[])?;
            let change = |s: &mut State| router::delete(s, &routers, force);
            ctx.session.change_only(reads, change).await?;
            None
        }
    };
    // Mutating commands print the router's overview, as openstackclient does, from the
    // state they committed.
    if let Some(Done {
        state,
        id: Some(id),
    }) = done
    {
        let r = state.router(&id)?;
        ctx.out.show(&record(&state, r, ctx.session.collecting()))?;
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

/// On a terminal, `router add interface R` alone asks which subnet: those not attached yet.
fn ask_subnet(ctx: &mut Ctx, router: &str) -> anyhow::Result<String> {
    let state = ctx.session.load()?;
    let r = state.router(router)?;
    let attached: Vec<&str> = state
        .router_ports(r)
        .flat_map(|p| p.fixed_ips.iter().map(|f| f.subnet_id.as_str()))
        .collect();
    let candidates = state
        .subnets
        .iter()
        .filter(|s| s.gateway.is_some() && !attached.contains(&s.id.as_str()))
        .filter(|s| {
            state
                .network_by_id(&s.network_id)
                .is_some_and(|n| !n.external)
        })
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

/// `destination=CIDR,gateway=IP`, as openstackclient's --route takes it.
fn parse_route(spec: &str) -> anyhow::Result<ExtraRoute> {
    let pairs = validate::key_values("--route", spec, &["destination", "gateway"])?;
    let get = |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let (Some(dst), Some(via)) = (get("destination"), get("gateway")) else {
        bail_invalid!("--route: '{spec}' needs destination=CIDR,gateway=IP");
    };
    Ok(ExtraRoute {
        destination: validate::cidr("--route destination", dst)?,
        nexthop: validate::ip("--route gateway", via)?,
    })
}

fn gateway_info(state: &State, r: &Router) -> Option<(String, String)> {
    let port = state.port_by_id(r.gateway_port_id.as_deref()?)?;
    let network = state.network_by_id(&port.network_id)?;
    Some((network.name.clone(), addresses(port)))
}

/// A port's addresses as the router views print them: `10.10.10.3, 10.10.10.4`.
fn addresses(port: &crate::model::Port) -> String {
    let ips: Vec<String> = port.fixed_ips.iter().map(|f| f.ip.to_string()).collect();
    ips.join(", ")
}

/// ACTIVE when the router's namespace is there. `building`: an atomic batch is collecting its
/// lines and makes its routers only after the last one, so a router not made yet is being
/// built, not down.
fn status(r: &Router, building: bool) -> &'static str {
    if netns::exists(&naming::router_namespace(&r.id)) {
        "ACTIVE"
    } else if building {
        "BUILD"
    } else {
        "DOWN"
    }
}

pub fn record(state: &State, r: &Router, building: bool) -> Record {
    let gateway = gateway_info(state, r);
    let interfaces: Vec<String> = state
        .router_ports(r)
        .filter(|p| p.role == PortRole::RouterInterface)
        .map(|p| {
            format!(
                "{} {} ({})",
                naming::port_device(p),
                addresses(p),
                state.port_subnet_names(p)
            )
        })
        .collect();
    let routes: Vec<String> = r
        .routes
        .iter()
        .map(|x| format!("destination='{}', gateway='{}'", x.destination, x.nexthop))
        .collect();
    vec![
        field("id", &r.id),
        field("name", &r.name),
        field("status", status(r, building)),
        field("namespace", naming::router_namespace(&r.id)),
        field("external_gateway_network", gateway.as_ref().map(|g| &g.0)),
        field("external_gateway_ip", gateway.as_ref().map(|g| &g.1)),
        field("enable_snat", r.snat),
        field("interfaces", interfaces),
        field("routes", routes),
        field(
            "inbound",
            if gateway.is_some() {
                "new connections from the external network are dropped unless DNAT'ed to a floating IP"
            } else {
                "no external gateway"
            },
        ),
    ]
}

fn listing(state: &State, building: bool) -> Listing {
    // One pass over ports and networks, not one per router: lists of thousands stay linear.
    let ports: HashMap<&str, &crate::model::Port> = state
        .ports
        .iter()
        .map(|p| (p.id.as_str(), p.as_ref()))
        .collect();
    let networks: HashMap<&str, &str> = state
        .networks
        .iter()
        .map(|n| (n.id.as_str(), n.name.as_str()))
        .collect();
    let mut interfaces: HashMap<&str, usize> = HashMap::new();
    for p in state
        .ports
        .iter()
        .filter(|p| p.role == PortRole::RouterInterface)
    {
        *interfaces.entry(p.device_id.as_str()).or_default() += 1;
    }
    Listing {
        headers: [
            "ID",
            "Name",
            "Status",
            "External Gateway",
            "Gateway IP",
            "SNAT",
            "Interfaces",
        ]
        .map(String::from)
        .to_vec(),
        rows: state
            .routers
            .iter()
            .map(|r| {
                let gateway = r.gateway_port_id.as_deref().and_then(|id| ports.get(id));
                vec![
                    r.id.clone().into(),
                    r.name.clone().into(),
                    status(r, building).into(),
                    gateway
                        .and_then(|p| networks.get(p.network_id.as_str()))
                        .map(|n| n.to_string())
                        .into(),
                    gateway.map(|p| addresses(p)).into(),
                    r.snat.into(),
                    interfaces.get(r.id.as_str()).copied().unwrap_or(0).into(),
                ]
            })
            .collect(),
    }
}
