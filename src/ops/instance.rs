//! Instance operations: test hosts in namespaces of their own, standing in for VMs.

use std::rc::Rc;

use super::Outcome;
use crate::bail_invalid;
use crate::model::{check_new_name, new_id, Instance, Network, Port, PortRequest, PortRole, State};
use crate::reconcile::Touched;

/// `instance create`.
#[derive(Debug)]
pub struct Create {
    pub name: String,
    pub network: String,
    /// `--fixed-ip` (repeatable: an IPv4 and an IPv6 address); none: Neutron's choice.
    pub fixed_ips: Vec<std::net::IpAddr>,
    /// Its address comes from the network's DHCP server: a client runs in its namespace.
    pub dhcp: bool,
    /// The compute host to run it on (etcd store); else scheduled.
    pub host: Option<String>,
}

pub fn create(state: &mut State, req: &Create) -> anyhow::Result<Outcome> {
    let name = req.name.as_str();
    check_new_name(&state.instances, name, None)?;
    let network = state.network(&req.network)?.clone();
    crate::model::ha::refuse_ha_network(&network, "an instance on it")?;
    let id = new_id();
    let port = port_on(state, &network, &id, &req.fixed_ips)
        .map_err(|e| e.context(format!("instance {name}")))?;
    if req.dhcp {
        for fixed in &port.fixed_ips {
            let subnet = state.subnet_by_id(&fixed.subnet_id);
            if let Some(s) = subnet.filter(|s| !s.dhcp.enabled) {
                bail_invalid!(
                    "instance {name}: --dhcp: subnet {} serves no DHCP ('qrouter subnet set {} --dhcp')",
                    s.name,
                    s.name
                );
            }
        }
    }
    state.instances.push(Rc::new(Instance {
        id: id.clone(),
        name: name.to_string(),
        port_id: port.id.clone(),
        dhcp: req.dhcp,
        host: req.host.clone(),
    }));
    state.ports.push(Rc::new(port));
    let touched = Touched {
        networks: [network.id].into(),
        instances: [id.clone()].into(),
        ..Default::default()
    };
    Ok(Outcome::new(touched, &id))
}

/// An instance's port on `network`: its address `ip`, or the next free one.
fn port_on(
    state: &State,
    network: &Network,
    id: &str,
    ips: &[std::net::IpAddr],
) -> anyhow::Result<Port> {
    let fixed: Vec<crate::model::FixedIpSpec> = ips.iter().map(|ip| (None, Some(*ip))).collect();
    state.new_port(PortRequest {
        network,
        role: PortRole::Instance,
        device_id: id,
        fixed: &fixed,
        mac: None,
        may_take_gateway: true,
    })
}

/// Whether `instance create NAME --network NETWORK` (no --fixed-ip) would find an address
/// there: the reason it would not. Prompts and completion offer only the networks it accepts.
pub fn check_network(state: &State, network: &Network) -> anyhow::Result<()> {
    port_on(state, network, "", &[]).map(drop)
}

/// `instance delete`.
pub fn delete(state: &mut State, keys: &[String]) -> anyhow::Result<Outcome> {
    let mut touched = Touched::default();
    for key in keys {
        let instance = state.instance(key)?.clone();
        if let Some(fip) = state
            .floating_ips
            .iter()
            .find(|f| f.port_id.as_deref() == Some(instance.port_id.as_str()))
        {
            bail_invalid!(
                "instance {}: floating IP {} is associated with it; unset it first",
                instance.name,
                fip.address
            );
        }
        state.ports.retain(|p| p.id != instance.port_id);
        state.instances.retain(|i| i.id != instance.id);
        touched.instances.insert(instance.id);
    }
    Ok(Outcome { touched, id: None })
}
