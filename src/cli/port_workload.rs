//! `port create|delete|show`: ports for VMs and containers that other software runs. The
//! workload plugs a tap named `tap` + port id[:11] (Neutron's convention) into the network's
//! bridge with the port's MAC; the network's dnsmasq gives it the port's address.

use std::rc::Rc;

use clap::Args;

use super::{field, record, Ctx};
use crate::bail_invalid;
use crate::kernel::link;
use crate::model::{dhcp, naming, validate, Port, PortRequest, PortRole, State};
use crate::reconcile::Touched;

#[derive(Args)]
pub struct CreateArgs {
    pub name: String,
    #[arg(long)]
    pub network: String,
    /// The address: subnet=S, ip-address=IP or both; default the first free pool address.
    #[arg(long, value_name = "subnet=S,ip-address=IP")]
    pub fixed_ip: Option<String>,
    /// The workload's MAC (unicast); default one in Neutron's fa:16:3e range.
    #[arg(long, value_name = "MAC")]
    pub mac_address: Option<String>,
}

/// The name `port list` shows: a workload port's own, else its device in the kernel.
pub fn list_name(p: &Port) -> String {
    match p.role {
        PortRole::Workload => p.name.clone(),
        _ => naming::port_device(p),
    }
}

pub async fn create(ctx: &mut Ctx, args: CreateArgs) -> anyhow::Result<()> {
    let mut id = String::new();
    let state = ctx.change(|s| add(s, &args, &mut id)).await?;
    let port = state.port(&id)?.clone();
    let shown = with_status(ctx, &state, &port).await?;
    ctx.out.show(&shown)
}

fn add(state: &mut State, args: &CreateArgs, id: &mut String) -> anyhow::Result<Touched> {
    let name = &args.name;
    validate::name("port", name)?;
    if state.ports.iter().any(|p| &p.name == name) {
        bail_invalid!("port {name}: a port with that name exists");
    }
    let network = state.network(&args.network)?.clone();
    let (subnet, ip) = match &args.fixed_ip {
        Some(text) => validate::fixed_ip(text).map_err(|e| e.context(format!("port {name}")))?,
        None => (None, None),
    };
    let mac = args
        .mac_address
        .as_deref()
        .map(|m| dhcp::unicast_mac(&format!("port {name}: --mac-address"), m))
        .transpose()?;
    if let Some(mac) = &mac {
        if let Some(other) = state
            .ports
            .iter()
            .find(|p| p.network_id == network.id && &p.mac == mac)
        {
            bail_invalid!(
                "port {name}: MAC {mac} is already used on network {} by port {}",
                network.name,
                list_name(other)
            );
        }
    }
    let mut port = state
        .new_port(PortRequest {
            network: &network,
            role: PortRole::Workload,
            device_id: "",
            subnet: subnet.as_deref(),
            ip,
            may_take_gateway: false,
        })
        .map_err(|e| e.context(format!("port {name}")))?;
    port.name = name.clone();
    if let Some(mac) = mac {
        port.mac = mac;
    }
    *id = port.id.clone();
    state.ports.push(Rc::new(port));
    Ok(Touched {
        networks: [network.id].into(),
        ..Default::default()
    })
}

pub async fn delete(ctx: &mut Ctx, keys: &[String]) -> anyhow::Result<()> {
    super::super::prompt::confirm_removal(ctx.ask, "port", keys)?;
    ctx.change(|s| remove(s, keys)).await?;
    Ok(())
}

fn remove(state: &mut State, keys: &[String]) -> anyhow::Result<Touched> {
    let mut touched = Touched::default();
    for key in keys {
        let port = state.port(key)?.clone();
        let shown = list_name(&port);
        if port.role != PortRole::Workload {
            bail_invalid!(
                "port {shown}: in use by {} {}; it goes with its owner",
                super::owner_kind(port.role),
                super::owner_name(state, &port)
            );
        }
        if let Some(fip) = state
            .floating_ips
            .iter()
            .find(|f| f.port_id.as_deref() == Some(port.id.as_str()))
        {
            bail_invalid!(
                "port {shown}: in use by floating IP {}; unset it first ('qrouter floating ip unset {} --port')",
                fip.address,
                fip.address
            );
        }
        state.ports.retain(|p| p.id != port.id);
        touched.networks.insert(port.network_id.clone());
    }
    Ok(touched)
}

pub async fn show(ctx: &mut Ctx, key: &str) -> anyhow::Result<()> {
    let state = ctx.load()?;
    let port = state.port(key)?.clone();
    let shown = with_status(ctx, &state, &port).await?;
    ctx.out.show(&shown)
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
    let host = ctx.kernel()?.host().clone();
    let (found, on) = (
        link::get(&host, &tap).await?,
        link::get(&host, &bridge).await?,
    );
    let status = match (&found, &on) {
        (Some(t), Some(b)) if t.controller == Some(b.index) => "ACTIVE".to_string(),
        (Some(_), _) => format!("DOWN ({tap} is not on bridge {bridge}; 'qrouter sync' plugs it)"),
        (None, _) => format!("DOWN (no device {tap})"),
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
