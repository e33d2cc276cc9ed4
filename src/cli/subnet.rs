//! `qrouter subnet ...`

use anyhow::Context;
use clap::{Args, Subcommand};

use serde_json::{json, Value};

use super::args::{TagArgs, TagFilter, UntagArgs};
use super::{field, Ctx};
use crate::model::{ipv6, validate, State, Subnet};
use crate::ops::subnet;
use crate::output::{Listing, Record};

#[derive(Subcommand)]
#[command(defer = true)]
pub enum Cmd {
    /// Create a subnet on a network.
    #[command(
        after_help = "Examples:\n  qrouter subnet create vlan101 --network vlan101 --subnet-range 172.16.101.0/24\n  \
        qrouter subnet create ext --network ext_net --subnet-range 10.10.10.0/24 --gateway 10.10.10.1\n  \
        qrouter subnet create vlan101-v6 --network vlan101 --ip-version 6 --subnet-range 2001:db8:101::/64 --ipv6-ra-mode slaac --ipv6-address-mode slaac"
    )]
    Create(CreateArgs),
    /// Set a subnet's name, description, gateway, allocation pools, DHCP, DNS servers, host
    /// routes or tags; prints nothing.
    #[command(
        after_help = "Examples:\n  qrouter subnet set vlan101 --description 'tenant A'\n  \
        qrouter subnet set vlan300 --gateway 172.16.30.254 --no-allocation-pool --allocation-pool start=172.16.30.10,end=172.16.30.99\n  \
        qrouter subnet set vlan101 --dns-nameserver 9.9.9.9 --host-route destination=10.9.0.0/16,gateway=172.16.101.254\n  \
        qrouter subnet set vlan100 --no-dhcp"
    )]
    Set {
        /// The subnet (name or id).
        subnet: String,
        /// Rename the subnet.
        #[arg(long, value_name = "NEW")]
        name: Option<String>,
        /// A new description.
        #[arg(long)]
        description: Option<String>,
        /// The gateway: an IP, or 'none'. Refused while a router interface holds the old one.
        #[arg(long, value_name = "IP|none")]
        gateway: Option<String>,
        /// Add an allocation pool (repeatable).
        #[arg(long, value_name = "start=IP,end=IP")]
        allocation_pool: Vec<String>,
        /// Clear the allocation pools (before adding any --allocation-pool).
        #[arg(long)]
        no_allocation_pool: bool,
        /// Serve DHCP and DNS on it: the network's dnsmasq starts, or is reconfigured.
        #[arg(long, conflicts_with = "no_dhcp")]
        dhcp: bool,
        /// No DHCP on it: the network's dnsmasq is reconfigured, or stopped with its last
        /// DHCP subnet. Refused while an instance takes its address from it.
        #[arg(long)]
        no_dhcp: bool,
        /// Add a DNS server handed out by DHCP (repeatable).
        #[arg(long, value_name = "IP")]
        dns_nameserver: Vec<String>,
        /// Clear the DNS servers (before adding any --dns-nameserver): DHCP hands out the
        /// network's DHCP port again.
        #[arg(long)]
        no_dns_nameservers: bool,
        /// Add a route handed out by DHCP (repeatable).
        #[arg(long, value_name = "destination=CIDR,gateway=IP")]
        host_route: Vec<String>,
        /// Clear the host routes (before adding any --host-route).
        #[arg(long)]
        no_host_route: bool,
        #[command(flatten)]
        tags: TagArgs,
    },
    /// Remove a subnet's gateway, allocation pools, DNS servers, host routes or tags; prints
    /// nothing.
    #[command(
        after_help = "Examples:\n  qrouter subnet unset vlan300 --gateway\n  qrouter subnet unset vlan101 --dns-nameserver 9.9.9.9"
    )]
    Unset {
        /// The subnet (name or id).
        subnet: String,
        /// Remove the gateway (refused while a router interface holds it).
        #[arg(long)]
        gateway: bool,
        /// Remove this allocation pool (repeatable).
        #[arg(long, value_name = "start=IP,end=IP")]
        allocation_pool: Vec<String>,
        /// Remove this DNS server (repeatable).
        #[arg(long, value_name = "IP")]
        dns_nameserver: Vec<String>,
        /// Remove this host route (repeatable).
        #[arg(long, value_name = "destination=CIDR,gateway=IP")]
        host_route: Vec<String>,
        #[command(flatten)]
        tags: UntagArgs,
    },
    /// List subnets.
    #[command(
        after_help = "Examples:\n  qrouter subnet list --long\n  qrouter subnet list --network vlan101 -f value -c Subnet"
    )]
    List {
        /// Only subnets of this network.
        #[arg(long)]
        network: Option<String>,
        /// More columns: DHCP, name servers, allocation pools, host routes, IP version,
        /// gateway, tags.
        #[arg(long)]
        long: bool,
        /// Only subnets that serve DHCP.
        #[arg(long, conflicts_with = "no_dhcp")]
        dhcp: bool,
        /// Only subnets that do not serve DHCP.
        #[arg(long)]
        no_dhcp: bool,
        /// Only the subnet with this name.
        #[arg(long)]
        name: Option<String>,
        /// Only subnets with this gateway.
        #[arg(long, value_name = "IP")]
        gateway: Option<String>,
        /// Only the subnets with this range.
        #[arg(long, value_name = "CIDR")]
        subnet_range: Option<String>,
        /// Only subnets of this IP version.
        #[arg(long, value_parser = ["4", "6"])]
        ip_version: Option<String>,
        #[command(flatten)]
        tags: TagFilter,
    },
    /// Show one subnet.
    Show {
        /// The subnet (name or id).
        subnet: String,
    },
    /// Delete subnets; refuses while ports use them. Deletes every one it can; prints
    /// nothing.
    Delete {
        /// The subnets (names or ids).
        #[arg(required = true)]
        subnets: Vec<String>,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    /// The new subnet's name.
    pub name: String,
    /// The network it is on (name or id).
    #[arg(long)]
    pub network: String,
    /// The subnet's range, e.g. 172.16.101.0/24 or 2001:db8:101::/64.
    #[arg(long, value_name = "CIDR")]
    pub subnet_range: String,
    /// The IP version of the range (default: the range's).
    #[arg(long, value_parser = ["4", "6"])]
    pub ip_version: Option<String>,
    /// IPv6: what the router advertises: slaac (hosts form their addresses),
    /// dhcpv6-stateful (addresses from DHCPv6), dhcpv6-stateless (addresses by SLAAC,
    /// options from DHCPv6).
    #[arg(long, value_parser = ["dhcpv6-stateful", "dhcpv6-stateless", "slaac"])]
    pub ipv6_ra_mode: Option<String>,
    /// IPv6: how hosts get their addresses (the same values; both modes, where given,
    /// must be the same).
    #[arg(long, value_parser = ["dhcpv6-stateful", "dhcpv6-stateless", "slaac"])]
    pub ipv6_address_mode: Option<String>,
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
    /// A description of the subnet.
    #[arg(long)]
    pub description: Option<String>,
    #[command(flatten)]
    pub tags: TagArgs,
}

pub async fn run(ctx: &mut Ctx, cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Create(args) => {
            let reads = subnet::reads_for_create(&ctx.session.store, &args.network, &args.name)?;
            let req = args.request()?;
            let done = ctx
                .session
                .change_only(reads, |s| subnet::create(s, &req))
                .await?;
            let id = done.id.expect("a new subnet");
            ctx.out.show(&record(&done.state, done.state.subnet(&id)?))
        }
        Cmd::Set {
            subnet,
            name,
            description,
            gateway,
            allocation_pool,
            no_allocation_pool,
            dhcp,
            no_dhcp,
            dns_nameserver,
            no_dns_nameservers,
            host_route,
            no_host_route,
            tags,
        } => {
            let what = format!("subnet {subnet}");
            let gateway = match gateway.as_deref() {
                None => None,
                Some("none") => Some(None),
                Some(ip) => Some(Some(validate::addr(&format!("{what}: --gateway"), ip)?)),
            };
            let req = subnet::Set {
                gateway,
                add_pools: pools(&what, &allocation_pool)?,
                clear_pools: no_allocation_pool,
                dhcp: (dhcp || no_dhcp).then_some(dhcp),
                add_dns: dns_nameserver,
                clear_dns: no_dns_nameservers,
                add_host_routes: host_route,
                clear_host_routes: no_host_route,
                name,
                meta: super::args::set_edit(description, None, &tags),
                subnet,
                ..Default::default()
            };
            ctx.session.change(|s| subnet::set(s, &req)).await?;
            Ok(())
        }
        Cmd::Unset {
            subnet,
            gateway,
            allocation_pool,
            dns_nameserver,
            host_route,
            tags,
        } => {
            let req = subnet::Set {
                gateway: gateway.then_some(None),
                remove_dns: dns_nameserver,
                remove_host_routes: host_route,
                remove_pools: pools(&format!("subnet {subnet}"), &allocation_pool)?,
                meta: super::args::unset_edit(&tags),
                subnet,
                ..Default::default()
            };
            ctx.session.change(|s| subnet::set(s, &req)).await?;
            Ok(())
        }
        Cmd::List {
            network,
            long,
            dhcp,
            no_dhcp,
            name,
            gateway,
            subnet_range,
            ip_version,
            tags,
        } => {
            let state = ctx.session.load()?;
            let only = network
                .map(|n| state.network(&n).map(|n| n.id.clone()))
                .transpose()?;
            let gateway = gateway
                .map(|g| validate::addr("--gateway", &g))
                .transpose()?;
            let range = subnet_range
                .map(|r| validate::net("--subnet-range", &r))
                .transpose()?;
            let subnets = state.subnets.iter().filter(|s| {
                only.as_ref().is_none_or(|id| &s.network_id == id)
                    && name.as_ref().is_none_or(|n| &s.name == n)
                    && gateway.is_none_or(|g| s.gateway == Some(g))
                    && range.is_none_or(|r| s.cidr == r)
                    && ip_version
                        .as_ref()
                        .is_none_or(|v| *v == s.ip_version().to_string())
                    && (!dhcp || s.dhcp.enabled)
                    && (!no_dhcp || !s.dhcp.enabled)
                    && tags.matches(&s.meta.tags)
            });
            let headers = headers(long);
            // One map, not a scan of every network per subnet: lists of thousands stay linear.
            let networks: std::collections::HashMap<&str, &str> = state
                .networks
                .iter()
                .map(|n| (n.id.as_str(), n.name.as_str()))
                .collect();
            ctx.out.list(&Listing {
                headers: headers.into_iter().map(String::from).collect(),
                rows: subnets
                    .map(|s| {
                        let gateway: Value = s.gateway.map(|g| g.to_string()).into();
                        let mut row: Vec<Value> = vec![
                            s.id.clone().into(),
                            s.name.clone().into(),
                            s.network_id.clone().into(),
                            s.cidr.to_string().into(),
                        ];
                        if long {
                            row.extend([
                                s.dhcp.enabled.into(),
                                name_servers_json(s),
                                pools_json(s),
                                host_routes_json(s),
                                s.ip_version().into(),
                                gateway,
                                s.meta.tags.clone().into(),
                                s.meta.description.clone().into(),
                            ]);
                        } else {
                            row.push(gateway);
                        }
                        row.push(networks.get(s.network_id.as_str()).copied().into());
                        row
                    })
                    .collect(),
            })
        }
        Cmd::Show { subnet } => {
            let reads = crate::ops::reads_for_show::<Subnet>(&ctx.session.store, &subnet)?;
            let state = ctx.session.load_only(&reads)?;
            ctx.out.show(&record(&state, state.subnet(&subnet)?))
        }
        Cmd::Delete { subnets } => {
            super::prompt::confirm_removal(ctx.ask, "subnet", &subnets)?;
            let mut errors = Vec::new();
            for key in &subnets {
                let keys = std::slice::from_ref(key);
                if let Err(e) = ctx.session.change(|s| subnet::delete(s, keys)).await {
                    errors.push(e);
                }
            }
            super::args::deletes_done("subnet", errors, subnets.len())
        }
    }
}

impl CreateArgs {
    /// The request, with the range, gateway and pools parsed.
    fn request(self) -> anyhow::Result<subnet::Create> {
        let what = format!("subnet {}", self.name);
        let cidr = validate::net(&what, &self.subnet_range)?;
        let gateway = match self.gateway.as_str() {
            "auto" => subnet::Gateway::Auto,
            "none" => subnet::Gateway::None,
            ip => subnet::Gateway::Ip(validate::addr(&format!("{what}: --gateway"), ip)?),
        };
        let mode = |flag: &str, m: &Option<String>| {
            m.as_deref()
                .map(|m| ipv6::Mode::parse(&format!("{what}: {flag}"), m))
                .transpose()
        };
        let pools = self
            .allocation_pool
            .iter()
            .map(|p| validate::pool(p))
            .collect::<anyhow::Result<_>>()
            .with_context(|| what.clone())?;
        Ok(subnet::Create {
            meta: super::args::new_meta(self.description, None, &self.tags),
            name: self.name,
            network: self.network,
            cidr,
            ip_version: self
                .ip_version
                .as_deref()
                .map(|v| if v == "6" { 6 } else { 4 }),
            ipv6_ra_mode: mode("--ipv6-ra-mode", &self.ipv6_ra_mode)?,
            ipv6_address_mode: mode("--ipv6-address-mode", &self.ipv6_address_mode)?,
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

/// Each `--allocation-pool` of a command on `what`.
fn pools(what: &str, specs: &[String]) -> anyhow::Result<Vec<crate::model::Pool>> {
    specs
        .iter()
        .map(|p| validate::pool(p))
        .collect::<anyhow::Result<_>>()
        .with_context(|| what.to_string())
}

/// `allocation_pools` as Neutron gives them: `[{"start", "end"}]`.
fn pools_json(s: &Subnet) -> Value {
    s.pools
        .iter()
        .map(|p| json!({"start": p.start.to_string(), "end": p.end.to_string()}))
        .collect()
}

/// The fields openstackclient's `subnet show` prints (without Keystone's and the
/// extensions'), in its order; then qrouter's own.
fn name_servers_json(s: &Subnet) -> Value {
    let servers = s.dhcp.dns_nameservers.iter().map(|ip| ip.to_string());
    servers.collect::<Vec<_>>().into()
}

/// Host routes as Neutron gives them: `[{"destination", "nexthop"}]`.
fn host_routes_json(s: &Subnet) -> Value {
    let routes = s.dhcp.host_routes.iter().map(
        |r| json!({"destination": r.destination.to_string(), "nexthop": r.nexthop.to_string()}),
    );
    routes.collect::<Vec<_>>().into()
}

/// openstackclient's columns (`--long`: DHCP and the rest), then qrouter's.
pub(super) fn headers(long: bool) -> Vec<&'static str> {
    let mut headers = vec!["ID", "Name", "Network", "Subnet"];
    if long {
        headers.extend([
            "DHCP",
            "Name Servers",
            "Allocation Pools",
            "Host Routes",
            "IP Version",
            "Gateway",
            "Tags",
            "Description",
        ]);
    } else {
        headers.push("Gateway");
    }
    headers.push("Network Name");
    headers
}

pub fn record(state: &State, s: &Subnet) -> Record {
    let m = &s.meta;
    vec![
        field("allocation_pools", pools_json(s)),
        field("cidr", s.cidr.to_string()),
        field("created_at", super::router_view::nonempty(&m.created_at)),
        field("description", &m.description),
        field("dns_nameservers", name_servers_json(s)),
        field("enable_dhcp", s.dhcp.enabled),
        field("gateway_ip", s.gateway.map(|g| g.to_string())),
        field("host_routes", host_routes_json(s)),
        field("id", &s.id),
        field("ip_version", s.ip_version()),
        field("ipv6_address_mode", s.ipv6_address_mode.map(|m| m.as_str())),
        field("ipv6_ra_mode", s.ipv6_ra_mode.map(|m| m.as_str())),
        field("name", &s.name),
        field("network_id", &s.network_id),
        field("revision_number", m.revision_number),
        field("tags", &m.tags),
        field("updated_at", super::router_view::nonempty(&m.updated_at)),
        field("network", network_name(state, s)),
    ]
}
