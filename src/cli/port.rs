//! `qrouter port ...`: the ports routers, instances and DHCP servers hold, and ports for VMs
//! and containers that other software runs. A workload plugs a tap named `tap` + port
//! id[:11] (Neutron's convention) into the network's bridge with the port's MAC; the
//! network's dnsmasq gives it the port's address.

use anyhow::Context;
use clap::{Args, Subcommand};

use super::args::{PortSecurityArgs, StateArgs, TagArgs, UntagArgs};
use super::port_list::{self, ListArgs};
use super::{field, Ctx};
use crate::model::{naming, validate, Port, PortRole, State};
use crate::ops::{port, PortStatus};
use crate::output::Record;

#[derive(Subcommand)]
#[command(defer = true)]
pub enum Cmd {
    /// List ports.
    #[command(
        after_help = "Examples:\n  qrouter port list --router router_100_101\n  qrouter port list --network ext_net --long -f json"
    )]
    List(ListArgs),
    /// Show one port.
    Show {
        /// The port (its name, id, or a unique id prefix).
        port: String,
    },
    /// Reserve a port for a VM or container that other software runs: it prints the MAC,
    /// the address, the bridge to join and the tap name to use.
    #[command(
        after_help = "Examples:\n  qrouter port create web1 --network vlan101\n  \
        qrouter port create web2 --network vlan101 --fixed-ip ip-address=172.16.101.20 --mac-address fa:16:3e:00:00:20\n  \
        qrouter port show web1 -f value -c libvirt_interface"
    )]
    Create(CreateArgs),
    /// Set a port's name, description, state, tags and port security, and the MAC and fixed
    /// IPs of one made by 'port create'; prints nothing. A disabled port's device is set down.
    #[command(
        after_help = "Examples:\n  qrouter port set web1 --description 'web server' --tag prod\n  \
        qrouter port set web1 --no-fixed-ip --fixed-ip ip-address=172.16.101.30\n  \
        qrouter port set web1 --allowed-address ip-address=172.16.101.200\n  \
        qrouter port set web1 --disable"
    )]
    Set(SetArgs),
    /// Remove fixed IPs, allowed address pairs or tags from a port; prints nothing.
    #[command(after_help = "Example:\n  qrouter port unset web1 --tag prod")]
    Unset {
        /// The port (name or id).
        port: String,
        /// Remove the fixed IP that matches: subnet=S, ip-address=IP, or both (repeatable).
        #[arg(long, value_name = "subnet=S,ip-address=IP")]
        fixed_ip: Vec<String>,
        /// Remove the allowed address pair that matches (repeatable).
        #[arg(long, value_name = "ip-address=IP[,mac-address=MAC]")]
        allowed_address: Vec<String>,
        #[command(flatten)]
        tags: UntagArgs,
    },
    /// Delete ports made by 'port create'; a port in use (a router's, an instance's, one with a
    /// floating IP) is refused with its owner named. The workload's device is unplugged (off
    /// the bridge, down) and left in place. Deletes every one it can; prints nothing.
    #[command(after_help = "Example:\n  qrouter port delete web1")]
    Delete {
        /// The ports (names or ids).
        #[arg(required = true)]
        ports: Vec<String>,
    },
}

pub async fn run(ctx: &mut Ctx, cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Create(args) => create(ctx, args).await,
        Cmd::Set(args) => set(ctx, args).await,
        Cmd::Unset {
            port,
            fixed_ip,
            allowed_address,
            tags,
        } => {
            let req = port::Set {
                port,
                remove_fixed_ips: fixed_ips(&fixed_ip)?,
                remove_allowed_addresses: allowed_address,
                meta: super::args::unset_edit(&tags),
                ..Default::default()
            };
            ctx.session.change(|s| port::set(s, &req)).await?;
            Ok(())
        }
        Cmd::Delete { ports } => delete(ctx, &ports).await,
        Cmd::Show { port } => show(ctx, &port).await,
        Cmd::List(args) => port_list::list(ctx, args).await,
    }
}

/// `--fixed-ip subnet=S,ip-address=IP` options, checked.
fn fixed_ips(specs: &[String]) -> anyhow::Result<Vec<port::FixedIpSpec>> {
    specs.iter().map(|s| validate::fixed_ip(s)).collect()
}

/// Allowed address pairs as Neutron gives them: `[{"ip_address", "mac_address"}]`, the
/// port's own MAC where the pair names none.
fn allowed_address_pairs_json(port: &Port) -> serde_json::Value {
    let pairs = port.security.allowed_address_pairs.iter().map(|a| {
        let ip = match a.ip.prefix_len() {
            32 => a.ip.addr().to_string(),
            _ => a.ip.to_string(),
        };
        serde_json::json!({"ip_address": ip, "mac_address": a.mac.as_ref().unwrap_or(&port.mac)})
    });
    pairs.collect()
}

/// The fields openstackclient's `port show` prints (without Keystone's and the extensions'),
/// in its order; then qrouter's own.
pub fn record(state: &State, p: &Port, status: &str) -> Record {
    let network = state.network_by_id(&p.network_id);
    let m = &p.meta;
    vec![
        field("admin_state_up", m.admin_state_up),
        field("allowed_address_pairs", allowed_address_pairs_json(p)),
        field("created_at", super::router_view::nonempty(&m.created_at)),
        field("description", &m.description),
        field("device_id", &p.device_id),
        field("device_owner", p.role.device_owner()),
        field("fixed_ips", super::router_view::fixed_ips_json(p)),
        field("id", &p.id),
        field("mac_address", &p.mac),
        field("name", &p.name),
        field("network_id", &p.network_id),
        field("port_security_enabled", p.security.enabled),
        field("revision_number", m.revision_number),
        // qrouter has no security groups: none, as Neutron shows a port without them.
        field("security_group_ids", Vec::<String>::new()),
        field("status", status),
        field("tags", &m.tags),
        field("updated_at", super::router_view::nonempty(&m.updated_at)),
        field("network", network.map(|n| n.name.as_str())),
        field("device", state.port_owner_name(p)),
        field("host_device", naming::port_tap(p)),
        field("bridge", network.map(|n| n.bridge.as_str())),
        field("binding_host_id", &p.host),
    ]
}

// `port set`'s arguments.
#[derive(Args)]
pub struct SetArgs {
    /// The port (name or id).
    pub port: String,
    /// Rename the port.
    #[arg(long, value_name = "NEW")]
    pub name: Option<String>,
    /// A new description.
    #[arg(long)]
    pub description: Option<String>,
    /// A new MAC (unicast; only a port made by 'port create').
    #[arg(long, value_name = "MAC")]
    pub mac_address: Option<String>,
    /// Add a fixed IP: subnet=S, ip-address=IP or both (repeatable; only a port made by
    /// 'port create').
    #[arg(long, value_name = "subnet=S,ip-address=IP")]
    pub fixed_ip: Vec<String>,
    /// Drop the fixed IPs first (then add any --fixed-ip).
    #[arg(long)]
    pub no_fixed_ip: bool,
    #[command(flatten)]
    pub port_security: PortSecurityArgs,
    /// Another address (or prefix) the port may send from, with its MAC or the one given
    /// (repeatable; needs port security on).
    #[arg(long, value_name = "ip-address=IP[,mac-address=MAC]")]
    pub allowed_address: Vec<String>,
    /// Drop the allowed address pairs first (then add any --allowed-address).
    #[arg(long)]
    pub no_allowed_address: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub tags: TagArgs,
}

async fn set(ctx: &mut Ctx, args: SetArgs) -> anyhow::Result<()> {
    let req = port::Set {
        add_fixed_ips: fixed_ips(&args.fixed_ip).with_context(|| format!("port {}", args.port))?,
        port: args.port,
        name: args.name,
        mac: args.mac_address,
        no_fixed_ip: args.no_fixed_ip,
        remove_fixed_ips: vec![],
        meta: super::args::set_edit(args.description, args.state.up(), &args.tags),
        port_security: args.port_security.on(),
        no_allowed_address: args.no_allowed_address,
        remove_allowed_addresses: vec![],
        add_allowed_addresses: args.allowed_address,
    };
    ctx.session.change(|s| port::set(s, &req)).await?;
    Ok(())
}

// `port create`'s arguments.
#[derive(Args)]
pub struct CreateArgs {
    /// The port's name (what `port list` shows and `port show` takes).
    pub name: String,
    /// The network the workload joins.
    #[arg(long)]
    pub network: String,
    /// An address: subnet=S, ip-address=IP or both (repeatable: an IPv4 and an IPv6 one);
    /// default the first free pool address of the network's first IPv4 subnet and of its
    /// first stateful IPv6 one. On a SLAAC or DHCPv6-stateless subnet a port holds the
    /// EUI-64 address of its MAC by itself.
    #[arg(long, value_name = "subnet=S,ip-address=IP")]
    pub fixed_ip: Vec<String>,
    /// The workload's MAC (unicast); default one in Neutron's fa:16:3e range.
    #[arg(long, value_name = "MAC")]
    pub mac_address: Option<String>,
    /// A description of the port.
    #[arg(long)]
    pub description: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub tags: TagArgs,
    /// The host the workload runs on (etcd store): its agent brings the network there and
    /// plugs the tap (Neutron's binding:host_id).
    #[arg(long)]
    pub host: Option<String>,
    #[command(flatten)]
    pub port_security: PortSecurityArgs,
    /// Another address (or prefix) the port may send from, with its MAC or the one given
    /// (repeatable; needs port security on).
    #[arg(long, value_name = "ip-address=IP[,mac-address=MAC]")]
    pub allowed_address: Vec<String>,
}

async fn create(ctx: &mut Ctx, args: CreateArgs) -> anyhow::Result<()> {
    let fixed_ips = fixed_ips(&args.fixed_ip).with_context(|| format!("port {}", args.name))?;
    let req = port::Create {
        name: args.name,
        network: args.network,
        fixed_ips,
        mac: args.mac_address,
        meta: super::args::new_meta(args.description, args.state.up(), &args.tags),
        host: args.host,
        port_security: args.port_security.on(),
        allowed_addresses: args.allowed_address,
    };
    let done = ctx.session.change(|s| port::create(s, &req)).await?;
    let id = done.id.expect("a new port");
    let made = done.state.port(&id)?.clone();
    let shown = with_status(ctx, &done.state, &made).await?;
    ctx.out.show(&shown)
}

async fn delete(ctx: &mut Ctx, keys: &[String]) -> anyhow::Result<()> {
    super::prompt::confirm_removal(ctx.ask, "port", keys)?;
    let mut errors = Vec::new();
    for key in keys {
        let keys = std::slice::from_ref(key);
        if let Err(e) = ctx.session.change(|s| port::delete(s, keys)).await {
            errors.push(e);
        }
    }
    super::args::deletes_done("port", errors, keys.len())
}

async fn show(ctx: &mut Ctx, key: &str) -> anyhow::Result<()> {
    let state = ctx.session.load()?;
    let port = state.port(key)?.clone();
    let shown = with_status(ctx, &state, &port).await?;
    ctx.out.show(&shown)
}

/// The port's record with what a workload needs and what the kernel holds: the status is
/// ACTIVE when its tap exists, is up and is on its network's bridge (Neutron's port
/// status); DOWN otherwise, and always while the port or its network is disabled.
async fn with_status(
    ctx: &mut Ctx,
    state: &State,
    port: &Port,
) -> anyhow::Result<crate::output::Record> {
    let network = state.network_by_id(&port.network_id);
    let tap = naming::port_tap(port);
    let bridge = network.map(|n| n.bridge.clone()).unwrap_or_default();
    let found = ctx.session.port_statuses(state, &[port]).await?.pop();
    let PortStatus {
        status,
        device_state,
    } = found.expect("one status a port");
    let gateway = port
        .fixed_ips
        .first()
        .and_then(|f| state.subnet_by_id(&f.subnet_id))
        .and_then(|s| s.gateway)
        .map(|g| g.to_string());
    let mut r = record(state, port, &status);
    r.push(field("device_state", device_state));
    if let Some(rules) = ctx.session.port_security_rules(state, port) {
        r.push(field("port_security_rules", rules));
    }
    if port.role == PortRole::Workload {
        r.push(field("device_name", &tap));
    }
    r.push(field("gateway_ip", gateway));
    r.push(field(
        "libvirt_interface",
        format!(
            "<interface type='bridge'><source bridge='{bridge}'/><target dev='{tap}'/><mac address='{}'/><model type='virtio'/></interface>",
            port.mac
        ),
    ));
    Ok(r)
}
