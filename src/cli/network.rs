//! `qrouter network ...`

use std::collections::HashMap;

use clap::{Args, Subcommand};

use super::args::{either, StateArgs, TagArgs, TagFilter, UntagArgs};
use super::{field, Ctx};
use crate::model::{Network, State};
use crate::ops::network;
use crate::output::{Listing, Record};

#[derive(Subcommand)]
#[command(defer = true)]
pub enum Cmd {
    /// Create a network (a Linux bridge).
    #[command(
        after_help = "Examples:\n  qrouter network create vlan101\n  qrouter network create ext_net --external --bridge br-ex"
    )]
    Create(CreateArgs),
    /// Set a network's name, description, external flag, state, sharing, default or tags;
    /// prints nothing.
    #[command(
        after_help = "Example:\n  qrouter network set vlan101 --description 'tenant A' --tag prod"
    )]
    Set {
        /// The network (name or id).
        network: String,
        /// Rename the network.
        #[arg(long, value_name = "NEW")]
        name: Option<String>,
        /// A new description.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        kind: ExternalArgs,
        #[command(flatten)]
        state: StateArgs,
        #[command(flatten)]
        share: ShareArgs,
        #[command(flatten)]
        default: DefaultArgs,
        #[command(flatten)]
        tags: TagArgs,
        /// The upstream router's link-local address on this external network: the IPv6
        /// default route of the routers whose gateway is here, where no IPv6 subnet of it
        /// names a gateway (Neutron's L3 agent option `ipv6_gateway`).
        #[arg(long, value_name = "LLA")]
        ipv6_gateway: Option<String>,
    },
    /// Remove tags or the IPv6 gateway from a network; prints nothing.
    #[command(after_help = "Example:\n  qrouter network unset vlan101 --all-tag")]
    Unset {
        /// The network (name or id).
        network: String,
        #[command(flatten)]
        tags: UntagArgs,
        /// Remove the upstream's link-local address (routers then learn their IPv6 default
        /// route from the upstream's router advertisements).
        #[arg(long)]
        ipv6_gateway: bool,
    },
    /// List networks.
    #[command(
        after_help = "Examples:\n  qrouter network list --long\n  qrouter network list --external -f value -c Name"
    )]
    List {
        /// More columns: status, state, shared, network type, router type, tags.
        #[arg(long)]
        long: bool,
        /// Only the network with this name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        kind: ExternalArgs,
        #[command(flatten)]
        state: StateArgs,
        #[command(flatten)]
        share: ShareFilter,
        #[command(flatten)]
        tags: TagFilter,
    },
    /// Show one network.
    Show {
        /// The network (name or id).
        network: String,
    },
    /// Delete networks and their subnets; refuses while ports use them. Deletes every one it
    /// can; prints nothing.
    Delete {
        /// The networks (names or ids).
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

// `--external`/`--internal`.
#[derive(Args, Clone, Debug, Default)]
pub struct ExternalArgs {
    /// External: routers set their gateway on it, floating IPs come from it.
    #[arg(long, conflicts_with = "internal")]
    pub external: bool,
    /// Internal (the default on create): tenant subnets for router interfaces.
    #[arg(long)]
    pub internal: bool,
}

impl ExternalArgs {
    fn external(&self) -> Option<bool> {
        either(self.external, self.internal)
    }
}

// `--share`/`--no-share`, as openstackclient spells them.
#[derive(Args, Clone, Debug, Default)]
pub struct ShareArgs {
    /// Shared between projects. Recorded and shown as Neutron does; qrouter has no
    /// projects, so every network is everyone's.
    #[arg(long, conflicts_with = "no_share")]
    pub share: bool,
    /// Not shared between projects (the default on create).
    #[arg(long)]
    pub no_share: bool,
}

// `list --share`/`--no-share`.
#[derive(Args, Clone, Debug, Default)]
pub struct ShareFilter {
    /// Only networks shared between projects.
    #[arg(long, conflicts_with = "no_share")]
    pub share: bool,
    /// Only networks not shared between projects.
    #[arg(long)]
    pub no_share: bool,
}

// `--default`/`--no-default`, as openstackclient spells them.
#[derive(Args, Clone, Debug, Default)]
pub struct DefaultArgs {
    /// The default external network (Neutron's, which its auto-allocation picks): an
    /// external network, at most one.
    #[arg(long, conflicts_with = "no_default")]
    pub default: bool,
    /// Not the default external network (the default on create).
    #[arg(long)]
    pub no_default: bool,
}

#[derive(Args)]
pub struct CreateArgs {
    /// The new network's name.
    pub name: String,
    #[command(flatten)]
    pub kind: ExternalArgs,
    /// Use this bridge (created if missing) instead of brq<id>.
    #[arg(long)]
    pub bridge: Option<String>,
    /// Enslave this host interface to the network's bridge.
    #[arg(long)]
    pub provider_interface: Option<String>,
    /// The MTU of the bridge and of every port on it: 1280 to 65535.
    #[arg(long, value_parser = mtu)]
    pub mtu: Option<u32>,
    /// A description of the network.
    #[arg(long)]
    pub description: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub share: ShareArgs,
    #[command(flatten)]
    pub default: DefaultArgs,
    #[command(flatten)]
    pub tags: TagArgs,
    /// flat (a bridge on one host) or vxlan (spans hosts). The default: flat, except for a
    /// tenant network with an etcd store (no --external, --bridge or --provider-interface):
    /// vxlan.
    #[arg(long, value_parser = ["flat", "vxlan", "vlan"])]
    pub provider_network_type: Option<String>,
    /// The VXLAN network identifier (VNI); else the lowest free one.
    #[arg(long)]
    pub provider_segment: Option<u32>,
    #[command(flatten)]
    pub port_security: super::args::PortSecurityArgs,
    /// The upstream router's link-local address (an external network): the IPv6 default
    /// route of routers whose gateway is here, where no IPv6 subnet of it names a gateway
    /// (Neutron's L3 agent option `ipv6_gateway`).
    #[arg(long, value_name = "LLA")]
    pub ipv6_gateway: Option<String>,
}

/// `--ipv6-gateway`'s address.
fn ipv6_gateway(network: &str, text: &str) -> anyhow::Result<std::net::Ipv6Addr> {
    let what = format!("network {network}: --ipv6-gateway");
    match crate::model::validate::addr(&what, text)? {
        std::net::IpAddr::V6(ip) => Ok(ip),
        std::net::IpAddr::V4(ip) => {
            crate::bail_invalid!("{what}: {ip} is not an IPv6 address")
        }
    }
}

/// The MTUs a bridge and its veths take with IPv6 on them: Linux removes IPv6 from a link
/// below 1280 (the IPv6 minimum), and qrouter turns IPv6 link-local addresses off on every
/// port, which then fails ("Address family not supported", os error 97). 65535 is the
/// most a bridge or veth takes. What a store holds is checked against the same range.
use crate::model::trust::MTUS;

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
            let gateway = args.ipv6_gateway.as_ref();
            let gateway = gateway.map(|g| ipv6_gateway(&args.name, g)).transpose()?;
            let args = network::Create {
                meta: super::args::new_meta(args.description, args.state.up(), &args.tags),
                name: args.name,
                external: args.kind.external,
                bridge: args.bridge,
                provider_interface: args.provider_interface,
                mtu: args.mtu,
                network_type: args.provider_network_type,
                segment: args.provider_segment,
                port_security: args.port_security.on().unwrap_or(true),
                shared: args.share.share,
                is_default: args.default.default,
                ipv6_gateway: gateway,
                ..Default::default()
            };
            let done = ctx.session.create_network(args).await?;
            let id = done.id.expect("a new network");
            let rec = shown(ctx, &done.state, done.state.network(&id)?)?;
            ctx.out.show(&rec)
        }
        Cmd::Set {
            network,
            name,
            description,
            kind,
            state,
            share,
            default,
            tags,
            ipv6_gateway: gateway,
        } => {
            let req = network::Set {
                ipv6_gateway: gateway
                    .map(|g| ipv6_gateway(&network, &g).map(Some))
                    .transpose()?,
                network,
                name,
                external: kind.external(),
                shared: either(share.share, share.no_share),
                is_default: either(default.default, default.no_default),
                meta: super::args::set_edit(description, state.up(), &tags),
            };
            ctx.session.change(|s| network::set(s, &req)).await?;
            Ok(())
        }
        Cmd::Unset {
            network,
            tags,
            ipv6_gateway,
        } => {
            let req = network::Set {
                ipv6_gateway: ipv6_gateway.then_some(None),
                network,
                meta: super::args::unset_edit(&tags),
                ..Default::default()
            };
            ctx.session.change(|s| network::set(s, &req)).await?;
            Ok(())
        }
        Cmd::List {
            long,
            name,
            kind,
            state: enabled,
            share,
            tags,
        } => {
            let state = ctx.session.load()?;
            let shared = either(share.share, share.no_share);
            let filter = |n: &Network| {
                name.as_ref().is_none_or(|x| &n.name == x)
                    && kind.external().is_none_or(|e| n.external == e)
                    && shared.is_none_or(|s| n.shared == s)
                    && enabled.up().is_none_or(|up| n.meta.admin_state_up == up)
                    && tags.matches(&n.meta.tags)
            };
            ctx.out.list(&listing(&state, long, filter))
        }
        Cmd::Show { network } => {
            let reads = crate::ops::reads_for_show::<Network>(&ctx.session.store, &network)?;
            let state = ctx.session.load_only(&reads)?;
            let rec = shown(ctx, &state, state.network(&network)?)?;
            ctx.out.show(&rec)
        }
        Cmd::Delete { networks } => {
            super::prompt::confirm_removal(ctx.ask, "network", &networks)?;
            let mut errors = Vec::new();
            for key in &networks {
                let keys = std::slice::from_ref(key);
                if let Err(e) = ctx.session.change(|s| network::delete(s, keys)).await {
                    errors.push(e);
                }
            }
            super::args::deletes_done("network", errors, networks.len())
        }
    }
}

fn subnet_names(state: &State, network: &Network) -> Vec<String> {
    state
        .subnets_of(&network.id)
        .map(|s| s.name.clone())
        .collect()
}

fn network_type(n: &Network) -> &'static str {
    if n.vni.is_some() {
        "vxlan"
    } else {
        "flat"
    }
}

fn status(n: &Network) -> &'static str {
    if n.meta.admin_state_up {
        "ACTIVE"
    } else {
        "DOWN"
    }
}

/// The fields openstackclient's `network show` prints (without Keystone's and the
/// extensions'), in its order; then qrouter's own.
pub fn record(state: &State, n: &Network) -> Record {
    let m = &n.meta;
    let subnets: Vec<&str> = state.subnets_of(&n.id).map(|s| s.id.as_str()).collect();
    let record = vec![
        field("admin_state_up", m.admin_state_up),
        field("created_at", super::router_view::nonempty(&m.created_at)),
        field("description", &m.description),
        field("id", &n.id),
        field("is_default", n.is_default),
        field("mtu", n.mtu.unwrap_or(1500)),
        field("name", &n.name),
        field("port_security_enabled", n.port_security),
        field("provider:network_type", network_type(n)),
        field("provider:physical_network", &n.provider_interface),
        field("provider:segmentation_id", n.vni),
        field("revision_number", m.revision_number),
        field("router:external", n.external),
        field("shared", n.shared),
        field("status", status(n)),
        field("subnets", subnets),
        field("tags", &m.tags),
        field("updated_at", super::router_view::nonempty(&m.updated_at)),
        field("bridge", &n.bridge),
        field("ipv6_gateway", n.ipv6_gateway.map(|g| g.to_string())),
        field("provider_interface", &n.provider_interface),
        field("subnet_names", subnet_names(state, n)),
    ];
    record
}

/// openstackclient's columns (ID, Name, Subnets; with --long ID, Name, Status, State,
/// Shared, Subnets, Network Type, Router Type, Tags, leaving out Project and Availability
/// Zones, which need Keystone and extensions), then qrouter's.
pub(super) fn listing(state: &State, long: bool, filter: impl Fn(&Network) -> bool) -> Listing {
    // Subnets grouped in one pass, not a scan of every subnet per network.
    let mut subnets: HashMap<&str, Vec<String>> = HashMap::new();
    for s in &state.subnets {
        subnets
            .entry(s.network_id.as_str())
            .or_default()
            .push(s.id.clone());
    }
    let mut headers = vec!["ID", "Name"];
    match long {
        true => headers.extend([
            "Status",
            "State",
            "Shared",
            "Subnets",
            "Network Type",
            "Router Type",
            "Tags",
            "Description",
        ]),
        false => headers.push("Subnets"),
    }
    headers.extend(["External", "Bridge"]);
    Listing {
        headers: headers.into_iter().map(String::from).collect(),
        rows: state
            .networks
            .iter()
            .filter(|n| filter(n))
            .map(|n| {
                let subnets = subnets.remove(n.id.as_str()).unwrap_or_default().into();
                let mut row: Vec<serde_json::Value> =
                    vec![n.id.clone().into(), n.name.clone().into()];
                if !long {
                    row.push(subnets);
                } else {
                    row.extend([
                        status(n).into(),
                        if n.meta.admin_state_up { "UP" } else { "DOWN" }.into(),
                        n.shared.into(),
                        subnets,
                        network_type(n).into(),
                        if n.external { "External" } else { "Internal" }.into(),
                        n.meta.tags.clone().into(),
                        n.meta.description.clone().into(),
                    ]);
                }
                row.extend([n.external.into(), n.bridge.clone().into()]);
                row
            })
            .collect(),
    }
}

/// `record` with the network's DHCP server, from where it runs.
fn shown(ctx: &mut Ctx, state: &State, n: &Network) -> anyhow::Result<Record> {
    let mut rec = record(state, n);
    rec.extend(ctx.session.network_dhcp(state, n)?);
    Ok(rec)
}
