//! Port operations: ports for VMs and containers that other software runs.

use std::rc::Rc;

use super::{MetaEdit, Outcome};
use crate::bail_invalid;
pub use crate::model::FixedIpSpec;
use crate::model::{
    check_new_name, dhcp, portsec, Meta, Network, Port, PortRequest, PortRole, State,
};
use crate::reconcile::Touched;

/// `port create`.
#[derive(Debug)]
pub struct Create {
    pub name: String,
    pub network: String,
    /// `--fixed-ip`s; none: Neutron's choice.
    pub fixed_ips: Vec<FixedIpSpec>,
    /// Default: one in Neutron's fa:16:3e range.
    pub mac: Option<String>,
    /// Description, tags, admin state.
    pub meta: Meta,
    /// With an etcd store, the host whose agent plugs its tap (Neutron's binding:host_id).
    pub host: Option<String>,
    /// `--enable-port-security`/`--disable-port-security`; None: the network's default.
    pub port_security: Option<bool>,
    /// `--allowed-address ip-address=IP[,mac-address=MAC]`, as given.
    pub allowed_addresses: Vec<String>,
}

/// `port set` and `port unset`: each field that is given changes.
#[derive(Debug, Default)]
pub struct Set {
    pub port: String,
    pub name: Option<String>,
    pub mac: Option<String>,
    /// `--no-fixed-ip`: drop the fixed IPs first (then add any `add_fixed_ips`).
    pub no_fixed_ip: bool,
    /// `unset --fixed-ip`: the fixed IPs that match one of these go.
    pub remove_fixed_ips: Vec<FixedIpSpec>,
    /// `set --fixed-ip`: addresses added (the first free one of the subnet where no
    /// address is given).
    pub add_fixed_ips: Vec<FixedIpSpec>,
    pub meta: MetaEdit,
    /// `--enable-port-security`/`--disable-port-security`.
    pub port_security: Option<bool>,
    /// `set --no-allowed-address`: drop the allowed address pairs first.
    pub no_allowed_address: bool,
    /// `unset --allowed-address`: the pairs that match one of these go.
    pub remove_allowed_addresses: Vec<String>,
    /// `set --allowed-address`: pairs added, as given.
    pub add_allowed_addresses: Vec<String>,
}

/// `port create`: a port for a workload other software runs.
pub fn create(state: &mut State, args: &Create) -> anyhow::Result<Outcome> {
    let name = &args.name;
    check_new_name(&state.ports, name, None)?;
    let network = state.network(&args.network)?.clone();
    crate::model::ha::refuse_ha_network(&network, "a port on it")?;
    let mac = args
        .mac
        .as_deref()
        .map(|m| free_mac(state, &network, name, "", m))
        .transpose()?;
    let mut port = state
        .new_port(PortRequest {
            network: &network,
            role: PortRole::Workload,
            device_id: "",
            fixed: &args.fixed_ips,
            mac: mac.as_deref(),
            may_take_gateway: false,
        })
        .map_err(|e| e.context(format!("port {name}")))?;
    port.name = name.clone();
    port.meta = args.meta.clone();
    port.host = args.host.clone();
    if let Some(on) = args.port_security {
        port.security.enabled = on;
    }
    for text in &args.allowed_addresses {
        let pair = portsec::address_pair(name, text)?;
        if !port.security.allowed_address_pairs.contains(&pair) {
            port.security.allowed_address_pairs.push(pair);
        }
    }
    check_security(&port)?;
    let id = port.id.clone();
    state.ports.push(Rc::new(port));
    let touched = Touched {
        networks: [network.id].into(),
        ..Default::default()
    };
    Ok(Outcome::new(touched, &id))
}

/// A `--mac-address` for a port (`id`, empty for a new one) on `network`: unicast, and no
/// other port's there.
fn free_mac(
    state: &State,
    network: &Network,
    name: &str,
    id: &str,
    mac: &str,
) -> anyhow::Result<String> {
    let mac = dhcp::unicast_mac(&format!("port {name}: --mac-address"), mac)?;
    if let Some(other) = state
        .ports
        .iter()
        .find(|p| p.network_id == network.id && p.mac == mac && p.id != id)
    {
        bail_invalid!(
            "port {name}: MAC {mac} is already used on network {} by port {}",
            network.name,
            other.display_name()
        );
    }
    Ok(mac)
}

/// `port set` (and `unset`): name, description, tags and admin state of any port; MAC and
/// fixed IPs only of a port made by `port create`, as a router's or instance's device holds
/// those in the kernel.
pub fn set(state: &mut State, req: &Set) -> anyhow::Result<Outcome> {
    let port = state.port(&req.port)?.clone();
    let shown = port.display_name();
    if let Some(name) = &req.name {
        check_new_name(&state.ports, name, Some(&port))?;
    }
    let addressing = req.mac.is_some()
        || req.no_fixed_ip
        || !req.remove_fixed_ips.is_empty()
        || !req.add_fixed_ips.is_empty();
    if addressing && port.role != PortRole::Workload {
        bail_invalid!(
            "port {shown}: its MAC and fixed IPs are those of {} {}'s device; they change only with it",
            port.role.owner_kind(),
            state.port_owner_name(&port)
        );
    }
    let network = state
        .network_by_id(&port.network_id)
        .expect("a port's network exists")
        .clone();
    let mut new = port.clone();
    if let Some(mac) = &req.mac {
        new.mac = free_mac(state, &network, &shown, &port.id, mac)?;
    }
    if req.no_fixed_ip {
        new.fixed_ips.clear();
    }
    for spec in &req.remove_fixed_ips {
        let subnet = spec.0.as_deref().map(|s| state.subnet(s)).transpose()?;
        new.fixed_ips.retain(|f| {
            !(subnet.is_none_or(|s| s.id == f.subnet_id) && spec.1.is_none_or(|ip| ip == f.ip))
        });
    }
    // The EUI-64 addresses follow the MAC: the auto-address subnets' are made anew (and
    // are no port's to remove by hand: they come back, as in Neutron).
    let auto: Vec<String> = state
        .subnets_of(&network.id)
        .filter(|s| s.is_auto_address())
        .map(|s| s.id.clone())
        .collect();
    new.fixed_ips.retain(|f| !auto.contains(&f.subnet_id));
    // Addresses are taken with the port's released ones free again.
    replace_port(state, new.clone());
    for spec in &req.add_fixed_ips {
        let fixed = state
            .new_port(PortRequest {
                network: &network,
                role: PortRole::Workload,
                device_id: "",
                fixed: std::slice::from_ref(spec),
                mac: Some(&new.mac),
                may_take_gateway: false,
            })
            .map_err(|e| e.context(format!("port {shown}")))?
            .fixed_ips
            .remove(0);
        if new.fixed_ips.iter().any(|f| f.subnet_id == fixed.subnet_id) {
            let subnet = state.subnet_by_id(&fixed.subnet_id).map(|s| s.name.clone());
            bail_invalid!(
                "port {shown}: it already has an address on subnet {}",
                subnet.unwrap_or(fixed.subnet_id)
            );
        }
        new.fixed_ips.push(fixed);
        replace_port(state, new.clone());
    }
    for fixed in state.auto_addresses(&network, new.role, &new.mac) {
        if !new.fixed_ips.iter().any(|f| f.subnet_id == fixed.subnet_id) {
            if let Some(other) = state
                .ports
                .iter()
                .find(|p| p.id != new.id && p.fixed_ips.contains(&fixed))
            {
                bail_invalid!(
                    "port {shown}: its EUI-64 address {} is held by {} {} already",
                    fixed.ip,
                    other.role.owner_kind(),
                    state.port_owner_name(other)
                );
            }
            new.fixed_ips.push(fixed);
        }
    }
    if new.fixed_ips.is_empty() {
        bail_invalid!("port {shown}: a port needs a fixed IP; give one with --fixed-ip");
    }
    if let Some(name) = &req.name {
        new.name = name.clone();
    }
    edit_security(state, &mut new, req)?;
    req.meta.apply(&mut new.meta);
    let mut touched = Touched {
        networks: [port.network_id.clone()].into(),
        ..Default::default()
    };
    if new.meta.admin_state_up != port.meta.admin_state_up {
        owners(&new, &mut touched);
    }
    let id = new.id.clone();
    replace_port(state, new);
    Ok(Outcome::new(touched, &id))
}

/// Port security's part of `port set`/`unset`: on or off, pairs removed, then added.
fn edit_security(state: &State, port: &mut Port, req: &Set) -> anyhow::Result<()> {
    let shown = port.display_name();
    let editing = req.port_security.is_some()
        || req.no_allowed_address
        || !req.remove_allowed_addresses.is_empty()
        || !req.add_allowed_addresses.is_empty();
    if !editing {
        return Ok(());
    }
    if matches!(
        port.role,
        PortRole::RouterInterface | PortRole::RouterGateway | PortRole::Dhcp
    ) {
        bail_invalid!(
            "port {shown}: the port of {} {} is never filtered (Neutron exempts routers' and DHCP servers' ports from port security)",
            port.role.owner_kind(),
            state.port_owner_name(port)
        );
    }
    let pairs = &mut port.security.allowed_address_pairs;
    if req.no_allowed_address {
        pairs.clear();
    }
    for text in &req.remove_allowed_addresses {
        let gone = portsec::address_pair(&shown, text)?;
        let before = pairs.len();
        pairs.retain(|p| {
            !(p.ip == gone.ip && gone.mac.as_ref().is_none_or(|m| p.mac.as_ref() == Some(m)))
        });
        if pairs.len() == before {
            bail_invalid!("port {shown}: it has no allowed address pair {text}");
        }
    }
    for text in &req.add_allowed_addresses {
        let pair = portsec::address_pair(&shown, text)?;
        if !pairs.contains(&pair) {
            pairs.push(pair);
        }
    }
    if let Some(on) = req.port_security {
        port.security.enabled = on;
    }
    check_security(port)
}

/// Whether the kernel holds the port's port security rules as `state` wants them (None:
/// the port is not guarded), for `port show`; `owner` is the store's id.
pub fn security_in_place(state: &State, port: &Port, owner: &str) -> anyhow::Result<Option<bool>> {
    crate::reconcile::portsec::in_place(state, port, owner)
}

/// Neutron's rule: allowed address pairs need port security on (with it off everything
/// passes, and a pair would say otherwise).
fn check_security(port: &Port) -> anyhow::Result<()> {
    if !port.security.enabled && !port.security.allowed_address_pairs.is_empty() {
        bail_invalid!(
            "port {}: port security must be enabled for it to have allowed address pairs (remove them with 'port unset --allowed-address' or 'port set --no-allowed-address')",
            port.display_name()
        );
    }
    Ok(())
}

fn replace_port(state: &mut State, port: Port) {
    if let Some(p) = state.ports.iter_mut().find(|p| p.id == port.id) {
        *p = Rc::new(port);
    }
}

/// The router or instance whose namespace holds the port's device: converged when the
/// port goes up or down.
pub(super) fn owners(port: &Port, touched: &mut Touched) {
    match port.role {
        PortRole::RouterInterface | PortRole::RouterGateway => {
            touched.routers.insert(port.device_id.clone());
        }
        PortRole::Instance => {
            touched.instances.insert(port.device_id.clone());
        }
        PortRole::Dhcp | PortRole::Workload => {
            touched.networks.insert(port.network_id.clone());
        }
    }
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
