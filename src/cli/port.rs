//! `qrouter port ...`: the ports routers, instances and DHCP servers hold, and ports for VMs
//! and containers that other software runs. A workload plugs a tap named `tap` + port
//! id[:11] (Neutron's convention) into the network's bridge with the port's MAC; the
//! network's dnsmasq gives it the port's address.

use anyhow::Context;
use clap::{Args, Subcommand};

use super::{field, Ctx};
use crate::kernel::link;
use crate::model::{naming, validate, Port, PortRole, State};
use crate::ops::port;
use crate::output::{Listing, Record};

#[derive(Subcommand)]
pub enum Cmd {
    /// List ports.
    #[command(
        after_help = "Examples:\n  qrouter port list --router router_100_101\n  qrouter port list --network ext_net -f json"
    )]
    List {
        /// Only ports of this router.
        #[arg(long)]
        router: Option<String>,
        /// Only ports on this network.
        #[arg(long)]
        network: Option<String>,
        #[command(flatten)]
        filter: ListFilter,
    },
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
    /// Delete ports made by 'port create'; a port in use (a router's, an instance's, one with a
    /// floating IP) is refused with its owner named.
    #[command(after_help = "Example:\n  qrouter port delete web1")]
    Delete {
        /// The ports (names or ids).
        #[arg(required = true)]
        ports: Vec<String>,
    },
}

pub async fn run(ctx: &mut Ctx, cmd: Cmd) -> anyhow::Result<()> {
    let cmd = match cmd {
        Cmd::Create(args) => return create(ctx, args).await,
        Cmd::Delete { ports } => return delete(ctx, &ports).await,
        Cmd::Show { port } => return show(ctx, &port).await,
        cmd => cmd,
    };
    let state = ctx.session.load()?;
    match cmd {
        Cmd::List {
            router,
            network,
            filter,
        } => {
            if let Some(spec) = &filter.fixed_ip {
                validate::fixed_ip(spec)?;
            }
            let router = router
                .map(|r| state.router(&r).map(|r| r.id.clone()))
                .transpose()?;
            let network = network
                .map(|n| state.network(&n).map(|n| n.id.clone()))
                .transpose()?;
            let ports = state.ports.iter().filter(|p| {
                router
                    .as_ref()
                    .is_none_or(|r| &p.device_id == r && p.role != PortRole::Instance)
                    && network.as_ref().is_none_or(|n| &p.network_id == n)
                    && filter.matches(&state, p)
            });
            ctx.out.list(&Listing {
                headers: [
                    "ID",
                    "Name",
                    "MAC Address",
                    "Fixed IP Addresses",
                    "Device Owner",
                    "Device",
                    "Device Name",
                ]
                .map(String::from)
                .to_vec(),
                // Name is the port's own, as Neutron's (router ports have none), so
                // `port show NAME` takes it; the kernel's device is a column of its own.
                rows: ports
                    .map(|p| {
                        vec![
                            p.id.clone().into(),
                            p.name.clone().into(),
                            p.mac.clone().into(),
                            fixed_ips(&state, p),
                            p.role.device_owner().into(),
                            state.port_owner_name(p).into(),
                            naming::port_device(p).into(),
                        ]
                    })
                    .collect(),
            })
        }
        _ => unreachable!("handled above"),
    }
}

/// Fixed IPs as Neutron gives them: `[{"subnet_id", "ip_address"}]`.
pub fn fixed_ips(_state: &State, port: &Port) -> serde_json::Value {
    super::router::fixed_ips_json(port)
}

pub fn record(state: &State, p: &Port) -> Record {
    let network = state.network_by_id(&p.network_id);
    vec![
        field("id", &p.id),
        field("name", &p.name),
        field("network_id", &p.network_id),
        field("network", network.map(|n| n.name.as_str())),
        field("mac_address", &p.mac),
        field("fixed_ips", fixed_ips(state, p)),
        field("device_owner", p.role.device_owner()),
        field("device_id", &p.device_id),
        field("device", state.port_owner_name(p)),
        field("host_device", naming::port_tap(p)),
        field("bridge", network.map(|n| n.bridge.as_str())),
        field("binding_host_id", &p.host),
    ]
}

/// openstackclient's `port list` filters.
#[derive(Args)]
pub struct ListFilter {
    /// Only ports with this device owner (network:router_interface, compute:none, ...).
    #[arg(long, value_name = "OWNER")]
    device_owner: Option<String>,
    /// Only ports of this device (a router's or instance's id).
    #[arg(long, value_name = "ID")]
    device_id: Option<String>,
    /// Only the port with this MAC address.
    #[arg(long, value_name = "MAC")]
    mac_address: Option<String>,
    /// Only ports with this fixed IP: subnet=S, ip-address=IP, or both.
    #[arg(long, value_name = "subnet=S,ip-address=IP")]
    fixed_ip: Option<String>,
}

impl ListFilter {
    fn matches(&self, state: &State, p: &Port) -> bool {
        let fixed = self.fixed_ip.as_deref().map(validate::fixed_ip);
        let fixed_ok = match fixed {
            None => true,
            Some(Err(_)) => false, // refused before listing
            Some(Ok((subnet, ip))) => p.fixed_ips.iter().any(|f| {
                ip.is_none_or(|ip| f.ip == ip)
                    && subnet
                        .as_deref()
                        .is_none_or(|s| state.subnet(s).is_ok_and(|s| s.id == f.subnet_id))
            }),
        };
        fixed_ok
            && self
                .device_owner
                .as_deref()
                .is_none_or(|o| p.role.device_owner() == o)
            && self.device_id.as_deref().is_none_or(|d| p.device_id == d)
            && self
                .mac_address
                .as_deref()
                .is_none_or(|m| p.mac.eq_ignore_ascii_case(m))
    }
}

/// `port create`'s arguments.
#[derive(Args)]
pub struct CreateArgs {
    /// The port's name (what `port list` shows and `port show` takes).
    pub name: String,
    /// The network the workload joins.
    #[arg(long)]
    pub network: String,
    /// The address: subnet=S, ip-address=IP or both; default the first free pool address.
    #[arg(long, value_name = "subnet=S,ip-address=IP")]
    pub fixed_ip: Option<String>,
    /// The workload's MAC (unicast); default one in Neutron's fa:16:3e range.
    #[arg(long, value_name = "MAC")]
    pub mac_address: Option<String>,
    /// The host the workload runs on (etcd store): its agent brings the network there and
    /// plugs the tap (Neutron's binding:host_id).
    #[arg(long)]
    pub host: Option<String>,
}

async fn create(ctx: &mut Ctx, args: CreateArgs) -> anyhow::Result<()> {
    let (subnet, ip) = match &args.fixed_ip {
        Some(text) => validate::fixed_ip(text).with_context(|| format!("port {}", args.name))?,
        None => (None, None),
    };
    let req = port::Create {
        name: args.name,
        network: args.network,
        subnet,
        ip,
        mac: args.mac_address,
        host: args.host,
    };
    let done = ctx.session.change(|s| port::create(s, &req)).await?;
    let id = done.id.expect("a new port");
    let made = done.state.port(&id)?.clone();
    let shown = with_status(ctx, &done.state, &made).await?;
    ctx.out.show(&shown)
}

async fn delete(ctx: &mut Ctx, keys: &[String]) -> anyhow::Result<()> {
    super::prompt::confirm_removal(ctx.ask, "port", keys)?;
    ctx.session.change(|s| port::delete(s, keys)).await?;
    Ok(())
}

async fn show(ctx: &mut Ctx, key: &str) -> anyhow::Result<()> {
    let state = ctx.session.load()?;
    let port = state.port(key)?.clone();
    let shown = with_status(ctx, &state, &port).await?;
    ctx.out.show(&shown)
}

/// ACTIVE when the tap exists on this host and is on the network's bridge, else why not.
async fn local_status(ctx: &mut Ctx, tap: &str, bridge: &str) -> anyhow::Result<String> {
    let host = ctx.session.kernel()?.host().clone();
    let (found, on) = (
        link::get(&host, tap).await?,
        link::get(&host, bridge).await?,
    );
    Ok(match (&found, &on) {
        (Some(t), Some(b)) if t.controller == Some(b.index) => "ACTIVE".to_string(),
        (Some(_), _) => format!("DOWN ({tap} is not on bridge {bridge}; 'qrouter sync' plugs it)"),
        (None, _) => format!("DOWN (no device {tap})"),
    })
}

/// The port's record with what a workload needs and what the kernel holds: the status is
/// ACTIVE when its tap exists and is on its network's bridge (Neutron's port status).
async fn with_status(
    ctx: &mut Ctx,
    state: &State,
    port: &Port,
) -> anyhow::Result<crate::output::Record> {
    let network = state.network_by_id(&port.network_id);
    let tap = naming::port_tap(port);
    let bridge = network.map(|n| n.bridge.clone()).unwrap_or_default();
    let status = match ctx.session.store.etcd().is_some() {
        // The tap is on the port's host, not here.
        true => match &port.host {
            Some(h) => format!("on host {h} (its agent plugs {tap}; 'qrouter sync --host {h}')"),
            None => "DOWN (bound to no host: its tap is plugged nowhere)".to_string(),
        },
        false => local_status(ctx, &tap, &bridge).await?,
    };
    let gateway = port
        .fixed_ips
        .first()
        .and_then(|f| state.subnet_by_id(&f.subnet_id))
        .and_then(|s| s.gateway)
        .map(|g| g.to_string());
    let mut r = vec![field("status", status)];
    r.extend(record(state, port));
    if port.role == PortRole::Workload {
        if let Some(f) = r.iter_mut().find(|(k, _)| k == "name") {
            f.1 = port.name.clone().into();
        }
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
