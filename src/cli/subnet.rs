//! `qrouter subnet ...`

use anyhow::Context;
use clap::{Args, Subcommand};

use super::{field, Ctx};
use crate::model::{validate, Network, Object, State, Subnet};
use crate::ops::subnet;
use crate::output::{Listing, Record};
use crate::store::{Around, Reads};

#[derive(Subcommand)]
pub enum Cmd {
    /// Create a subnet on a network.
    #[command(
        after_help = "Examples:\n  qrouter subnet create vlan101 --network vlan101 --subnet-range 172.16.101.0/24\n  \
        qrouter subnet create ext --network ext_net --subnet-range 10.10.10.0/24 --gateway 10.10.10.1"
    )]
    Create(CreateArgs),
    /// List subnets.
    List {
        /// Only subnets of this network.
        #[arg(long)]
        network: Option<String>,
    },
    /// Show one subnet.
    Show { subnet: String },
    /// Delete subnets; refuses while ports use them.
    Delete {
        #[arg(required = true)]
        subnets: Vec<String>,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    pub name: String,
    #[arg(long)]
    pub network: String,
    /// The subnet's range, e.g. 172.16.101.0/24.
    #[arg(long, value_name = "CIDR")]
    pub subnet_range: String,
    /// The gateway: an IP, 'auto' (the first host address) or 'none'.
    #[arg(long, default_value = "auto", value_name = "IP|auto|none")]
    pub gateway: String,
    /// An allocation pool (repeatable); default: every host address but the gateway.
    #[arg(long, value_name = "start=IP,end=IP")]
    pub allocation_pool: Vec<String>,
    /// Serve DHCP and DNS on it (the default on tenant networks): a dnsmasq in qdhcp-<network id>.
    #[arg(long, overrides_with = "no_dhcp")]
    pub dhcp: bool,
    /// No DHCP (the default on external networks).
    #[arg(long)]
    pub no_dhcp: bool,
    /// A DNS server handed out by DHCP (repeatable); default: the network's DHCP port.
    #[arg(long, value_name = "IP")]
    pub dns_nameserver: Vec<String>,
    /// A route handed out by DHCP (repeatable).
    #[arg(long, value_name = "destination=CIDR,gateway=IP")]
    pub host_route: Vec<String>,
}

pub async fn run(ctx: &mut Ctx, cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Create(args) => {
            // A new subnet is checked against its network's subnets and any subnet of the
            // same name; a network given by id prefix is looked up among all networks.
            let reads = match ctx.session.store.id_of(Network::KIND, &args.network)? {
                Some(network) => Reads::Around(Around {
                    networks: vec![network],
                    names: vec![(Subnet::KIND, args.name.clone())],
                    ..Default::default()
                }),
                None => Reads::Kinds(&[Network::KIND, Subnet::KIND]),
            };
            let req = args.request()?;
            let done = ctx
                .session
                .change_only(reads, |s| subnet::create(s, &req))
                .await?;
            let id = done.id.expect("a new subnet");
            ctx.out.show(&record(&done.state, done.state.subnet(&id)?))
        }
        Cmd::List { network } => {
            let state = ctx.session.load()?;
            let only = network
                .map(|n| state.network(&n).map(|n| n.id.clone()))
                .transpose()?;
            let subnets = state
                .subnets
                .iter()
                .filter(|s| only.as_ref().is_none_or(|id| &s.network_id == id));
            // One map, not a scan of every network per subnet: lists of thousands stay linear.
            let networks: std::collections::HashMap<&str, &str> = state
                .networks
                .iter()
                .map(|n| (n.id.as_str(), n.name.as_str()))
                .collect();
            ctx.out.list(&Listing {
                headers: ["ID", "Name", "Network", "Subnet", "Gateway"]
                    .map(String::from)
                    .to_vec(),
                rows: subnets
                    .map(|s| {
                        vec![
                            s.id.clone().into(),
                            s.name.clone().into(),
                            networks.get(s.network_id.as_str()).copied().into(),
                            s.cidr.to_string().into(),
                            s.gateway.map(|g| g.to_string()).into(),
                        ]
                    })
                    .collect(),
            })
        }
        Cmd::Show { subnet } => {
            let state = ctx.session.load()?;
            ctx.out.show(&record(&state, state.subnet(&subnet)?))
        }
        Cmd::Delete { subnets } => {
            super::prompt::confirm_removal(ctx.ask, "subnet", &subnets)?;
            ctx.session.change(|s| subnet::delete(s, &subnets)).await?;
            Ok(())
        }
    }
}

impl CreateArgs {
    /// The request, with the range, gateway and pools parsed.
    fn request(self) -> anyhow::Result<subnet::Create> {
        let what = format!("subnet {}", self.name);
        let cidr = validate::cidr(&what, &self.subnet_range)?;
        let gateway = match self.gateway.as_str() {
            "auto" => subnet::Gateway::Auto,
            "none" => subnet::Gateway::None,
            ip => subnet::Gateway::Ip(validate::ip(&format!("{what}: --gateway"), ip)?),
        };
        let pools = self
            .allocation_pool
            .iter()
            .map(|p| validate::pool(p))
            .collect::<anyhow::Result<_>>()
            .with_context(|| what.clone())?;
        Ok(subnet::Create {
            name: self.name,
            network: self.network,
            cidr,
            gateway,
            pools,
            dhcp: (self.dhcp || self.no_dhcp).then_some(self.dhcp),
            dns_nameservers: self.dns_nameserver,
            host_routes: self.host_route,
        })
    }
}

fn network_name(state: &State, s: &Subnet) -> String {
    state
        .network_by_id(&s.network_id)
        .map(|n| n.name.clone())
        .unwrap_or_default()
}

pub fn record(state: &State, s: &Subnet) -> Record {
    let pools: Vec<String> = s
        .pools
        .iter()
        .map(|p| format!("{}-{}", p.start, p.end))
        .collect();
    vec![
        field("id", &s.id),
        field("name", &s.name),
        field("network", network_name(state, s)),
        field("network_id", &s.network_id),
        field("cidr", s.cidr.to_string()),
        field("gateway_ip", s.gateway.map(|g| g.to_string())),
        field("allocation_pools", pools),
        field("ip_version", 4),
        field("enable_dhcp", s.dhcp.enabled),
        field(
            "dns_nameservers",
            s.dhcp
                .dns_nameservers
                .iter()
                .map(|ip| ip.to_string())
                .collect::<Vec<_>>(),
        ),
        field(
            "host_routes",
            s.dhcp
                .host_routes
                .iter()
                .map(|r| format!("destination='{}', gateway='{}'", r.destination, r.nexthop))
                .collect::<Vec<_>>(),
        ),
    ]
}
