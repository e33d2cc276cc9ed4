//! Port operations: ports for VMs and containers that other software runs.

use std::net::Ipv4Addr;
use std::rc::Rc;

use super::Outcome;
use crate::bail_invalid;
use crate::model::{dhcp, validate, PortRequest, PortRole, State};
use crate::reconcile::Touched;

/// `port create`.
#[derive(Debug)]
pub struct Create {
    pub name: String,
    pub network: String,
    pub subnet: Option<String>,
    pub ip: Option<Ipv4Addr>,
    /// Default: one in Neutron's fa:16:3e range.
    pub mac: Option<String>,
    /// With an etcd store, the host whose agent plugs its tap (Neutron's binding:host_id).
    pub host: Option<String>,
}

/// `port create`: a port for a workload other software runs.
pub fn create(state: &mut State, args: &Create) -> anyhow::Result<Outcome> {
    let name = &args.name;
    validate::name("port", name)?;
    if state.ports.iter().any(|p| &p.name == name) {
        bail_invalid!("port {name}: a port with that name exists");
    }
    let network = state.network(&args.network)?.clone();
    let (subnet, ip) = (&args.subnet, args.ip);
    let mac = args
        .mac
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
                other.display_name()
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
    port.host = args.host.clone();
    if let Some(mac) = mac {
        port.mac = mac;
    }
    let id = port.id.clone();
    state.ports.push(Rc::new(port));
    let touched = Touched {
        networks: [network.id].into(),
        ..Default::default()
    };
    Ok(Outcome::new(touched, &id))
}

/// `port delete`: only ports made by `port create`, and not while a floating IP holds one.
pub fn delete(state: &mut State, keys: &[String]) -> anyhow::Result<Outcome> {
    let mut touched = Touched::default();
    for key in keys {
        let port = state.port(key)?.clone();
        let shown = port.display_name();
        if port.role != PortRole::Workload {
            bail_invalid!(
                "port {shown}: in use by {} {}; it goes with its owner",
                port.role.owner_kind(),
                state.port_owner_name(&port)
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
    Ok(Outcome { touched, id: None })
}
