//! `qrouter floating ip ...`: 1:1 NAT between an external address and an instance's fixed IP,
//! held on the router's `qg-` device with Neutron's DNAT/SNAT rules.

use std::rc::Rc;

use clap::{Args, Subcommand};

use super::{field, Ctx};
use crate::bail_invalid;
use crate::model::{
    naming, new_id, validate, FloatingIp, Instance, Network, Object, PortRequest, PortRole, State,
};
use crate::output::{Listing, Record};
use crate::reconcile::Touched;
use crate::store::{Around, Reads};

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
    let (key, state) = match cmd {
        IpCmd::Create {
            network,
            floating_ip_address,
            target,
        } => {
            let reads = reads_for_create(ctx, &network, &target)?;
            let mut id = String::new();
            let state = ctx
                .change_only(reads, |s| {
                    create(
                        s,
                        &network,
                        floating_ip_address.as_deref(),
                        &target,
                        &mut id,
                    )
                })
                .await?;
            (id, state)
        }
        IpCmd::Set {
            floating_ip,
            mut target,
        } => {
            if target.port.is_none() && target.instance.is_none() {
                let state = ctx.load()?;
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
                target.instance = Some(super::prompt::choose(
                    ctx.ask,
                    "floating ip set",
                    "--instance",
                    candidates,
                )?);
            }
            let reads = reads_for_set(ctx, &floating_ip, &target)?;
            let mut id = String::new();
            let state = ctx
                .change_only(reads, |s| associate(s, &floating_ip, &target, &mut id))
                .await?;
            (id, state)
        }
        IpCmd::Unset { floating_ip, .. } => {
            let reads = reads_for_change(ctx, std::slice::from_ref(&floating_ip))?;
            let state = ctx
                .change_only(reads, |s| disassociate(s, &floating_ip))
                .await?;
            (floating_ip, state)
        }
        IpCmd::List => {
            let state = ctx.load()?;
            let headers = [
                "ID",
                "Floating IP Address",
                "Fixed IP Address",
                "Port",
                "Floating Network",
                "Router",
                "Status",
            ];
            let rows = state.floating_ips.iter().map(|f| {
                let r = record(&state, f);
                [
                    "id",
                    "floating_ip_address",
                    "fixed_ip_address",
                    "port_id",
                    "floating_network",
                    "router",
                    "status",
                ]
                .iter()
                .map(|k| {
                    r.iter()
                        .find(|(name, _)| name == k)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                })
                .collect()
            });
            return ctx.out.list(&Listing {
                headers: headers.map(String::from).to_vec(),
                rows: rows.collect(),
            });
        }
        IpCmd::Show { floating_ip } => (floating_ip, ctx.load()?),
        IpCmd::Delete { floating_ips } => {
            super::prompt::confirm_removal(ctx.ask, "floating ip", &floating_ips)?;
            let reads = reads_for_change(ctx, &floating_ips)?;
            ctx.change_only(reads, |s| {
                let mut touched = Touched::default();
                for key in &floating_ips {
                    touched.routers.extend(disassociate(s, key)?.routers);
                    let fip = find(s, key)?.clone();
                    s.floating_ips.retain(|f| f.id != fip.id);
                }
                Ok(touched)
            })
            .await?;
            return Ok(());
        }
    };
    // The state a change returns is what it read and wrote, which holds all the record names.
    ctx.out.show(&record(&state, find(&state, &key)?))
}

/// What creating a floating IP reads (see `store::around`): the external network whole, and
/// for an instance, the instance with its network and the router that serves it. That router
/// is found by a first read of the rest; should it differ when the change runs, the change
/// is refused (`Ctx::change_only`). A port, or a key that is not an exact name or id, reads
/// the whole store.
fn reads_for_create(
    ctx: &mut Ctx,
    network: &str,
    target: &Target,
) -> anyhow::Result<Reads<'static>> {
    let Some(network) = ctx.store.id_of(Network::KIND, network)? else {
        return Ok(Reads::All);
    };
    let mut around = Around {
        networks: vec![network.clone()],
        ..Default::default()
    };
    let instance = match (&target.instance, &target.port) {
        (None, None) => return Ok(Reads::Around(around)),
        (Some(key), None) => match ctx.store.id_of(Instance::KIND, key)? {
            Some(id) => id,
            None => return Ok(Reads::All),
        },
        _ => return Ok(Reads::All),
    };
    around.instances.push(instance.clone());
    let first = ctx.store.load_only(&Reads::Around(around))?;
    let serving = first
        .instance_by_id(&instance)
        .and_then(|i| router_for_port(&first, &network, &i.port_id));
    Ok(Reads::Around(Around {
        routers: serving.into_iter().collect(),
        networks: vec![network],
        instances: vec![instance],
        ..Default::default()
    }))
}

/// What associating a floating IP with an instance reads: both, and the router that would
/// serve it, found by a first read of the rest (see `reads_for_create`).
fn reads_for_set(ctx: &mut Ctx, key: &str, target: &Target) -> anyhow::Result<Reads<'static>> {
    let (Some(fip), Some(instance), None) = (
        ctx.store.floating_ip_id(key)?,
        target.instance.as_deref(),
        &target.port,
    ) else {
        return Ok(Reads::All);
    };
    let Some(instance) = ctx.store.id_of(Instance::KIND, instance)? else {
        return Ok(Reads::All);
    };
    let around = |routers: Vec<String>| Around {
        routers,
        floating_ips: vec![fip.clone()],
        instances: vec![instance.clone()],
        ..Default::default()
    };
    let first = ctx.store.load_only(&Reads::Around(around(vec![])))?;
    let read = first.floating_ips.iter().find(|f| f.id == fip);
    let serving = first
        .instance_by_id(&instance)
        .zip(read)
        .and_then(|(i, f)| router_for_port(&first, &f.network_id, &i.port_id));
    Ok(Reads::Around(around(serving.into_iter().collect())))
}

/// What unsetting or deleting floating IPs reads: each with its port's network, and the
/// routers that serve them, found by a first read of the rest (see `reads_for_create`). A key
/// that is not an exact address or id reads the whole store.
fn reads_for_change(ctx: &mut Ctx, keys: &[String]) -> anyhow::Result<Reads<'static>> {
    let mut ids = Vec::new();
    for key in keys {
        match ctx.store.floating_ip_id(key)? {
            Some(id) => ids.push(id),
            None => return Ok(Reads::All),
        }
    }
    let first = ctx.store.load_only(&Reads::Around(Around {
        floating_ips: ids.clone(),
        ..Default::default()
    }))?;
    let routers = first
        .floating_ips
        .iter()
        .filter(|f| ids.contains(&f.id))
        .filter_map(|f| serving_router(&first, f))
        .collect();
    Ok(Reads::Around(Around {
        routers,
        floating_ips: ids,
        ..Default::default()
    }))
}

/// A floating IP by its address or id.
fn find<'a>(state: &'a State, key: &str) -> anyhow::Result<&'a FloatingIp> {
    match state
        .floating_ips
        .iter()
        .find(|f| f.address.to_string() == key)
    {
        Some(f) => Ok(f),
        None => crate::model::find(&state.floating_ips, key),
    }
}

fn create(
    state: &mut State,
    net: &str,
    address: Option<&str>,
    target: &Target,
    id: &mut String,
) -> anyhow::Result<Touched> {
    let network = state.network(net)?.clone();
    if !network.external {
        bail_invalid!("network {}: not an external network; floating IPs come from one created with --external", network.name);
    }
    let ip = address
        .map(|a| validate::ip("--floating-ip-address", a))
        .transpose()?;
    // Allocate like a port would, so an address is never handed out twice.
    let port = state.new_port(PortRequest {
        network: &network,
        role: PortRole::Instance,
        device_id: "",
        subnet: None,
        ip,
        may_take_gateway: false,
    })?;
    let fixed = &port.fixed_ips[0];
    *id = new_id();
    state.floating_ips.push(Rc::new(FloatingIp {
        id: id.clone(),
        network_id: network.id,
        subnet_id: fixed.subnet_id.clone(),
        address: fixed.ip,
        port_id: None,
    }));
    if target.port.is_some() || target.instance.is_some() {
        return associate(state, &id.clone(), target, id);
    }
    Ok(Touched::default())
}

fn associate(
    state: &mut State,
    key: &str,
    target: &Target,
    id: &mut String,
) -> anyhow::Result<Touched> {
    let fip = find(state, key)?.clone();
    *id = fip.id.clone();
    let port = match (&target.port, &target.instance) {
        (Some(p), _) => state.port(p)?.clone(),
        (_, Some(i)) => {
            let instance = state.instance(i)?;
            state
                .port_by_id(&instance.port_id)
                .expect("instance port exists")
                .clone()
        }
        _ => bail_invalid!(
            "floating ip {}: say which --port or --instance to associate it with",
            fip.address
        ),
    };
    let owner = super::port::owner_name(state, &port);
    if fip.port_id.as_deref() == Some(port.id.as_str()) {
        return Ok(Touched::default());
    }
    if let Some(current) = &fip.port_id {
        let holder = state
            .port_by_id(current)
            .map(|p| super::port::owner_name(state, p))
            .unwrap_or_default();
        bail_invalid!(
            "floating ip {}: already associated with {holder}; unset it first",
            fip.address
        );
    }
    if !matches!(port.role, PortRole::Instance | PortRole::Workload) {
        bail_invalid!(
            "port {}: a router port cannot hold a floating IP",
            naming::port_device(&port)
        );
    }
    if let Some(other) = state
        .floating_ips
        .iter()
        .find(|f| f.port_id.as_deref() == Some(port.id.as_str()))
    {
        bail_invalid!(
            "instance {owner}: it already has floating IP {}",
            other.address
        );
    }
    let subnet = &port.fixed_ips[0].subnet_id;
    let Some(router) = state
        .router_for_floating_ip(&fip.network_id, subnet)
        .map(str::to_string)
    else {
        let net = state
            .network_by_id(&fip.network_id)
            .map(|n| n.name.clone())
            .unwrap_or_default();
        bail_invalid!(
            "instance {owner}: its subnet is not attached to a router with a gateway on {net}; \
             add it with 'qrouter router add interface ROUTER SUBNET'"
        );
    };
    state.floating_ip_mut(&fip.id).port_id = Some(port.id);
    Ok(Touched {
        routers: [router].into(),
        ..Default::default()
    })
}

fn disassociate(state: &mut State, key: &str) -> anyhow::Result<Touched> {
    let fip = find(state, key)?.clone();
    let Some(router) = serving_router(state, &fip) else {
        return Ok(Touched::default());
    };
    state.floating_ip_mut(&fip.id).port_id = None;
    Ok(Touched {
        routers: [router].into(),
        ..Default::default()
    })
}

fn serving_router(state: &State, fip: &FloatingIp) -> Option<String> {
    router_for_port(state, &fip.network_id, fip.port_id.as_deref()?)
}

/// The router that serves a floating IP on `network` for the port with id `port`.
fn router_for_port(state: &State, network: &str, port: &str) -> Option<String> {
    let port = state.port_by_id(port)?;
    state
        .router_for_floating_ip(network, &port.fixed_ips.first()?.subnet_id)
        .map(str::to_string)
}

fn record(state: &State, f: &FloatingIp) -> Record {
    let port = f.port_id.as_deref().and_then(|id| state.port_by_id(id));
    let router =
        serving_router(state, f).and_then(|id| state.router_by_id(&id).map(|r| r.name.clone()));
    vec![
        field("id", &f.id),
        field("floating_ip_address", f.address.to_string()),
        field(
            "fixed_ip_address",
            port.and_then(|p| p.fixed_ips.first())
                .map(|x| x.ip.to_string()),
        ),
        field("port_id", &f.port_id),
        field("instance", port.map(|p| super::port::owner_name(state, p))),
        field(
            "floating_network",
            state.network_by_id(&f.network_id).map(|n| n.name.as_str()),
        ),
        field("router", router),
        field("status", if port.is_some() { "ACTIVE" } else { "DOWN" }),
    ]
}
