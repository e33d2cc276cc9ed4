//! `qrouter network ...`

use std::collections::HashMap;
use std::rc::Rc;

use clap::{Args, Subcommand};

use super::{field, Ctx};
use crate::bail_invalid;
use crate::kernel::{self, link};
use crate::model::{naming, new_id, validate, Network, Object, PortRole, State};
use crate::output::{Listing, Record};
use crate::reconcile::{self, Touched};
use crate::store::{Around, Reads};

#[derive(Subcommand)]
pub enum Cmd {
    /// Create a network (a Linux bridge).
    #[command(
        after_help = "Examples:\n  qrouter network create vlan101\n  qrouter network create ext_net --external --bridge br-ex"
    )]
    Create(CreateArgs),
    /// List networks.
    List,
    /// Show one network.
    Show { network: String },
    /// Delete networks and their subnets; refuses while ports use them.
    Delete {
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    pub name: String,
    /// An external network: routers set their gateway on it.
    #[arg(long)]
    pub external: bool,
    /// Use this bridge (created if missing) instead of brq<id>.
    #[arg(long)]
    pub bridge: Option<String>,
    /// Enslave this host interface to the network's bridge.
    #[arg(long)]
    pub provider_interface: Option<String>,
    /// The MTU of the bridge and of every port on it: 1280 to 65535.
    #[arg(long, value_parser = mtu)]
    pub mtu: Option<u32>,
}

/// The MTUs a bridge and its veths take with IPv6 on them: Linux removes IPv6 from a link
/// below 1280 (the IPv6 minimum), and qrouter turns IPv6 link-local addresses off on every
/// port, which then fails ("Address family not supported", os error 97). 65535 is the
/// most a bridge or veth takes.
const MTUS: std::ops::RangeInclusive<u32> = 1280..=65535;

fn mtu(text: &str) -> Result<u32, String> {
    let mtu: u32 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number"))?;
    if !MTUS.contains(&mtu) {
        return Err(format!(
            "{mtu} is not in {}..={}: a bridge and its veth ports take an MTU from {} (the IPv6 minimum) to {}",
            MTUS.start(),
            MTUS.end(),
            MTUS.start(),
            MTUS.end()
        ));
    }
    Ok(mtu)
}

pub async fn run(ctx: &mut Ctx, cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Create(args) => {
            let checked = check_devices(ctx, &args).await?;
            let mut id = String::new();
            // Only a network of the same name, or on the bridge given, can conflict with a
            // new one. Where the host's FORWARD chain needs qrouter's rules, which name every
            // network's bridge, all networks are read.
            let reads = match &args.bridge {
                _ if ctx.collecting() => Reads::All,
                // A provider interface is checked against every network's.
                None if args.provider_interface.is_none() && reconcile::host_forward_idle() => {
                    Reads::Around(Around {
                        names: vec![(Network::KIND, args.name.clone())],
                        ..Default::default()
                    })
                }
                _ => Reads::Kinds(&[Network::KIND]),
            };
            let state = ctx
                .change_only(reads, |s| create(s, args, &checked, &mut id))
                .await?;
            ctx.out.show(&record(&state, state.network(&id)?))
        }
        Cmd::List => {
            let state = ctx.load()?;
            ctx.out.list(&listing(&state))
        }
        Cmd::Show { network } => {
            let state = ctx.load()?;
            ctx.out.show(&record(&state, state.network(&network)?))
        }
        Cmd::Delete { networks } => {
            super::prompt::confirm_removal(ctx.ask, "network", &networks)?;
            ctx.change(|s| delete(s, &networks)).await?;
            Ok(())
        }
    }
}

/// What the host holds of the devices a new network names.
#[derive(Default)]
struct Devices {
    /// `--bridge` names a bridge that exists already: it is the operator's, and qrouter
    /// will never delete it.
    bridge_exists: bool,
    /// The bridge (or bond, ...) the provider interface is enslaved to, other than the
    /// network's own bridge.
    provider_controller: Option<String>,
}

/// `--bridge` must name a bridge, if it exists; `--provider-interface` a device that exists
/// and can be enslaved to one: not lo, not a bridge. Both are read from the kernel before
/// anything changes, and refused with exit 2 and the device's kind.
async fn check_devices(ctx: &mut Ctx, args: &CreateArgs) -> anyhow::Result<Devices> {
    let mut devices = Devices::default();
    if args.bridge.is_none() && args.provider_interface.is_none() {
        return Ok(devices);
    }
    let name = &args.name;
    if let Some(bridge) = &args.bridge {
        validate::interface_name("--bridge", bridge)?;
    }
    if let Some(iface) = &args.provider_interface {
        validate::interface_name("--provider-interface", iface)?;
    }
    kernel::preflight()?;
    let host = ctx.kernel()?.host().clone();
    if let Some(bridge) = &args.bridge {
        devices.bridge_exists = match link::get_with_kind(&host, bridge).await? {
            Some((_, kind)) if kind == "bridge" => true,
            Some((_, kind)) => {
                bail_invalid!("network {name}: --bridge {bridge} is a {kind} device, not a bridge")
            }
            None => false,
        };
    }
    let Some(iface) = &args.provider_interface else {
        return Ok(devices);
    };
    let Some((port, kind)) = link::get_with_kind(&host, iface).await? else {
        bail_invalid!("network {name}: provider interface {iface} does not exist");
    };
    match kind.as_str() {
        "loopback" => bail_invalid!(
            "network {name}: provider interface {iface} is the loopback device; it cannot be enslaved to a bridge"
        ),
        "bridge" => bail_invalid!(
            "network {name}: provider interface {iface} is a bridge, which cannot be enslaved to another bridge; use --bridge {iface} to carry the network on it"
        ),
        _ => {}
    }
    if let Some(index) = port.controller {
        let controller = link::get_by_index(&host, index)
            .await?
            .map_or_else(|| format!("link {index}"), |l| l.name);
        if args.bridge.as_ref() != Some(&controller) {
            devices.provider_controller = Some(controller);
        }
    }
    Ok(devices)
}

fn create(
    state: &mut State,
    args: CreateArgs,
    devices: &Devices,
    id: &mut String,
) -> anyhow::Result<Touched> {
    validate::name("network", &args.name)?;
    if state.networks.iter().any(|n| n.name == args.name) {
        bail_invalid!("network {}: a network with that name exists", args.name);
    }
    *id = new_id();
    let (bridge, owns_bridge) = match &args.bridge {
        Some(bridge) => {
            validate::interface_name("--bridge", bridge)?;
            if let Some(other) = state.networks.iter().find(|n| &n.bridge == bridge) {
                bail_invalid!(
                    "network {}: bridge {bridge} already carries network {}",
                    args.name,
                    other.name
                );
            }
            (bridge.clone(), !devices.bridge_exists)
        }
        None => (naming::network_bridge(id), true),
    };
    if let Some(iface) = &args.provider_interface {
        validate::interface_name("--provider-interface", iface)?;
        // Two networks on one interface would take it from each other at every sync.
        if let Some(other) = state
            .networks
            .iter()
            .find(|n| n.provider_interface.as_ref() == Some(iface))
        {
            bail_invalid!(
                "network {}: provider interface {iface} is already used by network {}",
                args.name,
                other.name
            );
        }
        if let Some(controller) = &devices.provider_controller {
            if let Some(owner) = state.networks.iter().find(|n| &n.bridge == controller) {
                bail_invalid!(
                    "network {}: provider interface {iface} is enslaved to {controller}, the bridge of network {}",
                    args.name,
                    owner.name
                );
            }
            bail_invalid!(
                "network {}: provider interface {iface} is enslaved to {controller}; release it first ('ip link set {iface} nomaster')",
                args.name
            );
        }
    }
    state.networks.push(Rc::new(Network {
        id: id.clone(),
        name: args.name,
        external: args.external,
        bridge,
        owns_bridge,
        provider_interface: args.provider_interface,
        mtu: args.mtu,
    }));
    Ok(Touched {
        networks: [id.clone()].into(),
        ..Default::default()
    })
}

fn delete(state: &mut State, keys: &[String]) -> anyhow::Result<Touched> {
    let mut touched = Touched::default();
    for key in keys {
        let network = state.network(key)?.clone();
        if let Some(port) = state
            .ports
            .iter()
            .find(|p| p.network_id == network.id && p.role != PortRole::Dhcp)
        {
            bail_invalid!(
                "network {}: in use by {} {}; remove it first",
                network.name,
                super::port::owner_kind(port.role),
                super::port::owner_name(state, port)
            );
        }
        if state
            .floating_ips
            .iter()
            .any(|f| f.network_id == network.id)
        {
            bail_invalid!(
                "network {}: floating IPs are allocated from it; delete them first",
                network.name
            );
        }
        state.subnets.retain(|s| s.network_id != network.id);
        state.networks.retain(|n| n.id != network.id);
        crate::model::dhcp::fit_dhcp_port(state, &network.id)?;
        touched.networks.insert(network.id);
    }
    Ok(touched)
}

fn subnet_names(state: &State, network: &Network) -> Vec<String> {
    state
        .subnets_of(&network.id)
        .map(|s| s.name.clone())
        .collect()
}

pub fn record(state: &State, n: &Network) -> Record {
    let mut record = vec![
        field("id", &n.id),
        field("name", &n.name),
        field(
            "router:external",
            if n.external { "External" } else { "Internal" },
        ),
        field("bridge", &n.bridge),
        field("provider_interface", &n.provider_interface),
        field("mtu", n.mtu),
        field("subnets", subnet_names(state, n)),
    ];
    record.extend(crate::reconcile::dhcp::fields(state, n));
    record
}

fn listing(state: &State) -> Listing {
    // Subnets grouped in one pass, not a scan of every subnet per network.
    let mut subnets: HashMap<&str, Vec<String>> = HashMap::new();
    for s in &state.subnets {
        subnets
            .entry(s.network_id.as_str())
            .or_default()
            .push(s.name.clone());
    }
    Listing {
        headers: ["ID", "Name", "Subnets", "External", "Bridge"]
            .map(String::from)
            .to_vec(),
        rows: state
            .networks
            .iter()
            .map(|n| {
                vec![
                    n.id.clone().into(),
                    n.name.clone().into(),
                    subnets.remove(n.id.as_str()).unwrap_or_default().into(),
                    n.external.into(),
                    n.bridge.clone().into(),
                ]
            })
            .collect(),
    }
}
