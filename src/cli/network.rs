//! `qrouter network ...`

use std::collections::HashMap;

use clap::{Args, Subcommand};

use super::{field, Ctx};
use crate::model::{Network, Object, State};
use crate::ops::network;
use crate::output::{Listing, Record};
use crate::reconcile;
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
    /// flat (a bridge on this host, the default) or vxlan (spans hosts; etcd store).
    #[arg(long, value_parser = ["flat", "vxlan", "vlan"])]
    pub provider_network_type: Option<String>,
    /// The VXLAN network identifier (VNI); else the lowest free one.
    #[arg(long)]
    pub provider_segment: Option<u32>,
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
            let args = network::Create {
                name: args.name,
                external: args.external,
                bridge: args.bridge,
                provider_interface: args.provider_interface,
                mtu: args.mtu,
                network_type: args.provider_network_type,
                segment: args.provider_segment,
            };
            let checked = network::check_devices(&mut ctx.session, &args).await?;
            // Only a network of the same name, or on the bridge given, can conflict with a
            // new one. Where the host's FORWARD chain needs qrouter's rules, which name every
            // network's bridge, all networks are read.
            let reads = match &args.bridge {
                _ if ctx.session.collecting() || args.network_type.is_some() => Reads::All,
                // A provider interface is checked against every network's.
                None if args.provider_interface.is_none() && reconcile::host_forward_idle() => {
                    Reads::Around(Around {
                        names: vec![(Network::KIND, args.name.clone())],
                        ..Default::default()
                    })
                }
                _ => Reads::Kinds(&[Network::KIND]),
            };
            let change = |s: &mut State| network::create(s, &args, &checked);
            let done = ctx.session.change_only(reads, change).await?;
            let id = done.id.expect("a new network");
            ctx.out.show(&record(&done.state, done.state.network(&id)?))
        }
        Cmd::List => {
            let state = ctx.session.load()?;
            ctx.out.list(&listing(&state))
        }
        Cmd::Show { network } => {
            let state = ctx.session.load()?;
            ctx.out.show(&record(&state, state.network(&network)?))
        }
        Cmd::Delete { networks } => {
            super::prompt::confirm_removal(ctx.ask, "network", &networks)?;
            ctx.session
                .change(|s| network::delete(s, &networks))
                .await?;
            Ok(())
        }
    }
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
    if let Some(vni) = n.vni {
        record.push(field("provider:network_type", "vxlan"));
        record.push(field("provider:segmentation_id", vni));
    }
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
