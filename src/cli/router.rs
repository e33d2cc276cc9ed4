//! `qrouter router ...`: routers, their interfaces, gateway, SNAT and extra routes.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::rc::Rc;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::{field, prompt, Ctx};
use crate::bail_invalid;
use crate::kernel::netns;
use crate::model::{
    naming, new_id, validate, ExtraRoute, Network, Object, PortRequest, PortRole, Router, State,
    Subnet,
};
use crate::output::{self, router::subnet_names, Listing, Record};
use crate::reconcile::{self, Touched};
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
    let shown = match cmd {
        Cmd::Create {
            name,
            gateway,
            disable_snat,
        } => {
            // Without a gateway, only a router of the same name can conflict with a new one.
            let reads = match gateway.external_gateway {
                None => Reads::Around(Around {
                    names: vec![(Router::KIND, name.clone())],
                    ..Default::default()
                }),
                Some(_) => Reads::All,
            };
            let state = ctx
                .change_only(reads, |s| create(s, &name, &gateway, !disable_snat))
                .await?;
            Some((state, name))
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
                let state = ctx.load()?;
                state.router(&router)?;
                let external = state
                    .networks
                    .iter()
                    .filter(|n| n.external)
                    .map(|n| (n.name.clone(), n.bridge.clone()))
                    .collect();
                gateway.external_gateway = Some(prompt::choose(
                    ctx.ask,
                    "router set",
                    "--external-gateway network",
                    external,
                )?);
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
                    around(ctx, &[&router], &[], network.as_slice())?
                }
                _ => Reads::All,
            };
            let mut id = String::new();
            let state = ctx
                .change_only(reads, |s| {
                    set(s, &router, &gateway, snat, name.as_deref(), &mut id)
                })
                .await?;
            Some((state, id))
        }
        Cmd::Unset { router, .. } => {
            let mut id = String::new();
            let reads = around(ctx, &[&router], &[], &[])?;
            let state = ctx
                .change_only(reads, |s| {
                    let r = s.router(&router)?.clone();
                    id = r.id.clone();
                    Ok(unset_gateway(s, &r.id))
                })
                .await?;
            Some((state, id))
        }
        Cmd::Add(AddCmd::Interface { router, subnet }) => {
            let subnet = match subnet {
                Some(subnet) => subnet,
                None => {
                    let state = ctx.load()?;
                    let r = state.router(&router)?;
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
                    prompt::choose(ctx.ask, "router add interface", "SUBNET", candidates)?
                }
            };
            let reads = around(ctx, &[&router], &[&subnet], &[])?;
            let state = ctx
                .change_only(reads, |s| add_interface(s, &router, &subnet))
                .await?;
            Some((state, router))
        }
        Cmd::Remove(RemoveCmd::Interface { router, subnet }) => {
            let reads = around(ctx, &[&router], &[&subnet], &[])?;
            let state = ctx
                .change_only(reads, |s| remove_interface(s, &router, &subnet))
                .await?;
            Some((state, router))
        }
        Cmd::Add(AddCmd::Route { router, route }) => {
            let reads = around(ctx, &[&router], &[], &[])?;
            let state = ctx
                .change_only(reads, |s| edit_routes(s, &router, &route, true))
                .await?;
            Some((state, router))
        }
        Cmd::Remove(RemoveCmd::Route { router, route }) => {
            let reads = around(ctx, &[&router], &[], &[])?;
            let state = ctx
                .change_only(reads, |s| edit_routes(s, &router, &route, false))
                .await?;
            Some((state, router))
        }
        Cmd::List => {
            let state = ctx.load()?;
            ctx.out.list(&listing(&state, ctx.collecting()))?;
            None
        }
        Cmd::Show { router } => {
            let reads = around(ctx, &[&router], &[], &[])?;
            let state = ctx.load_only(&reads)?;
            let r = state.router(&router)?;
            let owner = ctx.store.id().to_string();
            let inspection = reconcile::inspect(ctx.kernel()?, &state, r, &owner).await?;
            let mut record = record(&state, r, ctx.collecting());
            record.push(field("kernel", output::router::summary(&inspection)));
            let sections = output::router::kernel_views(&state, r, &inspection);
            ctx.out.show_with_sections(&record, &sections)?;
            None
        }
        Cmd::Delete { routers, force } => {
            prompt::confirm_removal(ctx.ask, "router", &routers)?;
            let keys: Vec<&str> = routers.iter().map(String::as_str).collect();
            let reads = around(ctx, &keys, &[], &[])?;
            ctx.change_only(reads, |s| delete(s, &routers, force))
                .await?;
            None
        }
    };
    // Mutating commands print the router's overview, as openstackclient does, from the
    // state they committed.
    if let Some((state, key)) = shown {
        ctx.out
            .show(&record(&state, state.router(&key)?, ctx.collecting()))?;
    }
    Ok(())
}

/// What a command on `routers`, attaching `subnets` or `networks`, reads: their surroundings
/// (see `store::Around`) where every key names exactly one object, else the whole store,
/// against which an id prefix resolves or a typo gets its suggestion.
fn around(
    ctx: &Ctx,
    routers: &[&str],
    subnets: &[&str],
    networks: &[&str],
) -> anyhow::Result<Reads<'static>> {
    let ids = |kind: &str, keys: &[&str]| -> anyhow::Result<Option<Vec<String>>> {
        let found: Vec<Option<String>> = keys
            .iter()
            .map(|key| ctx.store.id_of(kind, key))
            .collect::<anyhow::Result<_>>()?;
        Ok(found.into_iter().collect())
    };
    let (Some(routers), Some(subnets), Some(networks)) = (
        ids(Router::KIND, routers)?,
        ids(Subnet::KIND, subnets)?,
        ids(Network::KIND, networks)?,
    ) else {
        return Ok(Reads::All);
    };
    Ok(Reads::Around(Around {
        routers,
        subnets,
        networks,
        ..Default::default()
    }))
}

fn touched(router_id: &str, state: &State) -> Touched {
    let router = state.router_by_id(router_id);
    Touched {
        networks: router
            .map(|r| {
                state
                    .router_ports(r)
                    .map(|p| p.network_id.clone())
                    .collect()
            })
            .unwrap_or_default(),
        routers: [router_id.to_string()].into(),
        ..Default::default()
    }
}

fn create(
    state: &mut State,
    name: &str,
    gateway: &GatewayArgs,
    snat: bool,
) -> anyhow::Result<Touched> {
    validate::name("router", name)?;
    if state.routers.iter().any(|r| r.name == name) {
        bail_invalid!("router {name}: a router with that name exists");
    }
    let id = new_id();
    state.routers.push(Rc::new(Router {
        id: id.clone(),
        name: name.to_string(),
        gateway_port_id: None,
        snat,
        routes: vec![],
    }));
    if let Some(net) = &gateway.external_gateway {
        set_gateway(state, &id, net, gateway.fixed_ip.as_deref())?;
    }
    Ok(touched(&id, state))
}

fn set(
    state: &mut State,
    key: &str,
    gateway: &GatewayArgs,
    snat: Option<bool>,
    new_name: Option<&str>,
    id: &mut String,
) -> anyhow::Result<Touched> {
    let router = state.router(key)?.clone();
    *id = router.id.clone();
    let mut before = touched(&router.id, state);
    if let Some(net) = &gateway.external_gateway {
        set_gateway(state, &router.id, net, gateway.fixed_ip.as_deref())?;
    }
    let r = state.router_mut(&router.id);
    if let Some(snat) = snat {
        r.snat = snat;
    }
    if let Some(new_name) = new_name {
        validate::name("router", new_name)?;
        if state
            .routers
            .iter()
            .any(|o| o.name == new_name && o.id != router.id)
        {
            bail_invalid!(
                "router {}: cannot rename to {new_name}: a router with that name exists",
                router.name
            );
        }
        state.router_mut(&router.id).name = new_name.to_string();
    }
    before.networks.extend(touched(&router.id, state).networks);
    Ok(before)
}

/// Put the router's gateway port on an external network; replaces a gateway it already has.
fn set_gateway(
    state: &mut State,
    router_id: &str,
    net_key: &str,
    fixed_ip: Option<&str>,
) -> anyhow::Result<()> {
    let router = state
        .router_by_id(router_id)
        .expect("router exists")
        .clone();
    let network = state.network(net_key)?.clone();
    if !network.external {
        bail_invalid!("network {}: not an external network; a router gateway needs one created with --external", network.name);
    }
    let (subnet, ip) = fixed_ip
        .map(validate::fixed_ip)
        .transpose()
        .with_context(|| format!("router {}: external gateway", router.name))?
        .unwrap_or_default();
    let current = router
        .gateway_port_id
        .as_deref()
        .and_then(|id| state.port_by_id(id))
        .cloned();
    if let Some(port) = &current {
        let same_ip = ip.is_none_or(|ip| port.fixed_ips.iter().any(|f| f.ip == ip));
        let same_subnet = subnet.as_ref().is_none_or(|s| {
            state
                .subnet(s)
                .is_ok_and(|s| port.fixed_ips.iter().any(|f| f.subnet_id == s.id))
        });
        if port.network_id == network.id && same_ip && same_subnet {
            return Ok(());
        }
        unset_gateway(state, router_id);
    }
    let port = state
        .new_port(PortRequest {
            network: &network,
            role: PortRole::RouterGateway,
            device_id: router_id,
            subnet: subnet.as_deref(),
            ip,
            may_take_gateway: false,
        })
        .map_err(|e| e.context(format!("router {}: external gateway", router.name)))?;
    let gw_subnet = state
        .subnet_by_id(&port.fixed_ips[0].subnet_id)
        .expect("port subnet exists")
        .clone();
    check_overlap(state, &router, &gw_subnet)?;
    state.router_mut(router_id).gateway_port_id = Some(port.id.clone());
    state.ports.push(Rc::new(port));
    Ok(())
}

fn unset_gateway(state: &mut State, router_id: &str) -> Touched {
    let mut t = touched(router_id, state);
    let router = state.router_mut(router_id);
    if let Some(port_id) = router.gateway_port_id.take() {
        state.ports.retain(|p| p.id != port_id);
    }
    t.networks.extend(touched(router_id, state).networks);
    t
}

/// A subnet joining a router must not overlap any subnet the router is already on.
fn check_overlap(
    state: &State,
    router: &Router,
    subnet: &crate::model::Subnet,
) -> anyhow::Result<()> {
    for port in state.router_ports(router) {
        for other in port
            .fixed_ips
            .iter()
            .filter_map(|f| state.subnet_by_id(&f.subnet_id))
        {
            if other.id != subnet.id
                && (other.cidr.contains(&subnet.cidr) || subnet.cidr.contains(&other.cidr))
            {
                bail_invalid!(
                    "subnet {}: {} overlaps subnet {} ({}) on router {}",
                    subnet.name,
                    subnet.cidr,
                    other.name,
                    other.cidr,
                    router.name
                );
            }
        }
    }
    Ok(())
}

fn add_interface(state: &mut State, router_key: &str, subnet_key: &str) -> anyhow::Result<Touched> {
    let router = state.router(router_key)?.clone();
    let subnet = state.subnet(subnet_key)?.clone();
    let network = state
        .network_by_id(&subnet.network_id)
        .expect("subnet's network exists")
        .clone();
    if network.external {
        bail_invalid!(
            "subnet {}: it is on external network {}; use 'qrouter router set {} --external-gateway {}'",
            subnet.name,
            network.name,
            router.name,
            network.name
        );
    }
    let Some(gateway) = subnet.gateway else {
        bail_invalid!("subnet {}: it has no gateway IP for the router interface (created with --gateway none)", subnet.name);
    };
    let on_subnet = |p: &crate::model::Port| p.fixed_ips.iter().any(|f| f.subnet_id == subnet.id);
    if state.router_ports(&router).any(on_subnet) {
        bail_invalid!(
            "router {}: it already has an interface on subnet {}",
            router.name,
            subnet.name
        );
    }
    if let Some(holder) = state.ports.iter().find(|p| {
        p.fixed_ips
            .iter()
            .any(|f| f.subnet_id == subnet.id && f.ip == gateway)
    }) {
        bail_invalid!(
            "subnet {}: its gateway {gateway} is already used by {} {}",
            subnet.name,
            super::port::owner_kind(holder.role),
            super::port::owner_name(state, holder)
        );
    }
    check_overlap(state, &router, &subnet)?;
    let port = crate::model::Port {
        id: new_id(),
        name: String::new(),
        network_id: network.id.clone(),
        role: PortRole::RouterInterface,
        device_id: router.id.clone(),
        mac: crate::model::new_mac(),
        fixed_ips: vec![crate::model::FixedIp {
            subnet_id: subnet.id.clone(),
            ip: gateway,
        }],
    };
    state.ports.push(Rc::new(port));
    Ok(touched(&router.id, state))
}

fn remove_interface(
    state: &mut State,
    router_key: &str,
    subnet_key: &str,
) -> anyhow::Result<Touched> {
    let router = state.router(router_key)?.clone();
    let subnet = state.subnet(subnet_key)?.clone();
    let Some(port) = state
        .router_ports(&router)
        .find(|p| {
            p.role == PortRole::RouterInterface
                && p.fixed_ips.iter().any(|f| f.subnet_id == subnet.id)
        })
        .cloned()
    else {
        bail_invalid!(
            "router {}: it has no interface on subnet {}",
            router.name,
            subnet.name
        );
    };
    if let Some(r) = router
        .routes
        .iter()
        .find(|r| subnet.cidr.contains(&r.nexthop))
    {
        bail_invalid!(
            "router {}: interface on subnet {} is the next hop of route {} via {}; remove the route first",
            router.name,
            subnet.name,
            r.destination,
            r.nexthop
        );
    }
    let t = touched(&router.id, state);
    state.ports.retain(|p| p.id != port.id);
    Ok(t)
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

fn edit_routes(
    state: &mut State,
    router_key: &str,
    specs: &[String],
    add: bool,
) -> anyhow::Result<Touched> {
    let router = state.router(router_key)?.clone();
    let mut routes = router.routes.clone();
    for spec in specs {
        let route = parse_route(spec).with_context(|| format!("router {}", router.name))?;
        if add {
            check_destination(state, &router, route.destination)?;
            check_nexthop(state, &router, route.nexthop)?;
            if !routes.contains(&route) {
                routes.push(route);
            }
        } else if !routes.contains(&route) {
            bail_invalid!(
                "router {}: it has no route to {} via {}",
                router.name,
                route.destination,
                route.nexthop
            );
        } else {
            routes.retain(|r| r != &route);
        }
    }
    state.router_mut(&router.id).routes = routes;
    Ok(touched(&router.id, state))
}

/// An extra route's destination is one the kernel takes besides the routes the router has
/// already: not the default route (the external gateway's), not a subnet the router is
/// connected to (the kernel's own route), nothing a router cannot forward to.
fn check_destination(
    state: &State,
    router: &Router,
    destination: ipnet::Ipv4Net,
) -> anyhow::Result<()> {
    if destination.prefix_len() == 0 {
        bail_invalid!(
            "router {}: --route destination {destination} is the default route; it follows the external gateway ('qrouter router set {} --external-gateway NET')",
            router.name,
            router.name
        );
    }
    if let Some(what) = validate::unroutable_destination(destination) {
        bail_invalid!(
            "router {}: --route destination {destination} is in the {what} range, which a router cannot forward to",
            router.name
        );
    }
    if let Some(subnet) = state
        .router_ports(router)
        .flat_map(|p| &p.fixed_ips)
        .filter_map(|f| state.subnet_by_id(&f.subnet_id))
        .find(|s| s.cidr == destination)
    {
        bail_invalid!(
            "router {}: --route destination {destination} is subnet {}, which the router is connected to",
            router.name,
            subnet.name
        );
    }
    Ok(())
}

/// A next hop must be a neighbour on one of the router's subnets, and not the router itself.
fn check_nexthop(state: &State, router: &Router, nexthop: Ipv4Addr) -> anyhow::Result<()> {
    let fixed: Vec<_> = state
        .router_ports(router)
        .flat_map(|p| &p.fixed_ips)
        .collect();
    if fixed.iter().any(|f| f.ip == nexthop) {
        bail_invalid!(
            "router {}: next hop {nexthop} is the router's own address",
            router.name
        );
    }
    if !fixed
        .iter()
        .filter_map(|f| state.subnet_by_id(&f.subnet_id))
        .any(|s| s.cidr.contains(&nexthop))
    {
        bail_invalid!(
            "router {}: next hop {nexthop} is not on any subnet the router is connected to",
            router.name
        );
    }
    Ok(())
}

fn delete(state: &mut State, keys: &[String], force: bool) -> anyhow::Result<Touched> {
    let mut t = Touched::default();
    for key in keys {
        let router = state.router(key)?.clone();
        let interfaces: Vec<String> = state
            .router_ports(&router)
            .filter(|p| p.role == PortRole::RouterInterface)
            .map(|p| format!("{} ({})", naming::port_device(p), subnet_names(state, p)))
            .collect();
        if !interfaces.is_empty() && !force {
            bail_invalid!(
                "router {}: it still has interfaces {}; remove them first or use --force",
                router.name,
                interfaces.join(", ")
            );
        }
        let done = touched(&router.id, state);
        t.networks.extend(done.networks);
        t.routers.extend(done.routers);
        state
            .ports
            .retain(|p| p.role == PortRole::Instance || p.device_id != router.id);
        state.routers.retain(|r| r.id != router.id);
    }
    Ok(t)
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
                subnet_names(state, p)
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
