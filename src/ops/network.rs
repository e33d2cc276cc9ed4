//! Network operations: a Linux bridge each, on the host's own devices or new ones.

use std::rc::Rc;

use super::{Done, Outcome, Session};
use crate::bail_invalid;
use crate::kernel::{self, link};
use crate::model::{
    check_new_name, dhcp, naming, new_id, validate, Network, Object, PortRole, State,
};
use crate::reconcile::Touched;
use crate::store::{Around, Reads};

/// `network create`.
#[derive(Debug, Default)]
pub struct Create {
    pub name: String,
    pub external: bool,
    pub bridge: Option<String>,
    pub provider_interface: Option<String>,
    pub mtu: Option<u32>,
    /// Description, tags, admin state.
    pub meta: crate::model::Meta,
    /// `--provider-network-type`: flat (the default), vxlan; vlan is refused.
    pub network_type: Option<String>,
    /// `--provider-segment`: the VNI of a vxlan network (else the lowest free one).
    pub segment: Option<u32>,
    /// The store is shared by several hosts (etcd): a tenant network with no type given
    /// is a vxlan segment, as Neutron's `tenant_network_types = vxlan`. Set by
    /// `Session::create_network` from the store.
    pub spans_hosts: bool,
    /// Port security for the ports made on it (`--disable-port-security`: off).
    pub port_security: bool,
    /// `--share`.
    pub shared: bool,
    /// `--default`: the default external network.
    pub is_default: bool,
    /// `--ipv6-gateway`: the upstream router's link-local address (external networks).
    pub ipv6_gateway: Option<std::net::Ipv6Addr>,
}

/// `network set` and `network unset`: each field that is given changes.
#[derive(Debug, Default)]
pub struct Set {
    pub network: String,
    pub name: Option<String>,
    /// `--external`/`--internal`.
    pub external: Option<bool>,
    /// `--share`/`--no-share`.
    pub shared: Option<bool>,
    /// `--default`/`--no-default`.
    pub is_default: Option<bool>,
    /// `set --ipv6-gateway LLA` (Some(Some)), `unset --ipv6-gateway` (Some(None)).
    pub ipv6_gateway: Option<Option<std::net::Ipv6Addr>>,
    pub meta: super::MetaEdit,
}

/// `--ipv6-gateway`: on an external network only, and a link-local address, as Neutron's
/// L3 agent requires of its `ipv6_gateway` (the upstream router's address on the link).
fn check_ipv6_gateway(
    name: &str,
    external: bool,
    gateway: Option<std::net::Ipv6Addr>,
) -> anyhow::Result<()> {
    let Some(gw) = gateway else { return Ok(()) };
    if !external {
        bail_invalid!("network {name}: --ipv6-gateway is the upstream router of an external network; this one is internal");
    }
    if !crate::model::ipv6::is_link_local(gw) {
        bail_invalid!("network {name}: --ipv6-gateway {gw} is not a link-local address (fe80::/10); an upstream with a global address is a subnet's --gateway");
    }
    Ok(())
}

/// What the host holds of the devices a new network names.
#[derive(Default)]
pub struct Devices {
    /// `--bridge` names a bridge that exists already: it is the operator's, and qrouter
    /// will never delete it.
    bridge_exists: bool,
    /// The bridge (or bond, ...) the provider interface is enslaved to, other than the
    /// network's own bridge.
    provider_controller: Option<String>,
}

/// `--bridge` must name a bridge, if it exists; `--provider-interface` a device that exists
/// and can be enslaved to one: not lo, not a bridge. Both are read from the kernel before
/// anything changes, and refused with exit 2 and the device's kind. With a store that spans
/// hosts the devices are on the hosts, not here: each host's agent finds them there, and
/// uses a bridge that exists without ever deleting it (it carries no mark of qrouter's).
async fn check_devices(session: &mut Session, args: &Create) -> anyhow::Result<Devices> {
    let mut devices = Devices::default();
    if args.bridge.is_none() && args.provider_interface.is_none() || args.spans_hosts {
        return Ok(devices);
    }
    let name = &args.name;
    if let Some(bridge) = &args.bridge {
        validate::interface_name("--bridge", bridge)?;
    }
    if let Some(iface) = &args.provider_interface {
        validate::interface_name("--provider-interface", iface)?;
    }
    kernel::preflight()?;
    let host = session.kernel()?.host().clone();
    if let Some(bridge) = &args.bridge {
        devices.bridge_exists = match link::get_with_kind(&host, bridge).await? {
            Some((_, kind)) if kind == "bridge" => true,
            Some((_, kind)) => {
                bail_invalid!("network {name}: --bridge {bridge} is a {kind} device, not a bridge")
            }
            None => false,
        };
    }
    let Some(iface) = &args.provider_interface else {
        return Ok(devices);
    };
    let Some((port, kind)) = link::get_with_kind(&host, iface).await? else {
        bail_invalid!("network {name}: provider interface {iface} does not exist");
    };
    match kind.as_str() {
        "loopback" => bail_invalid!(
            "network {name}: provider interface {iface} is the loopback device; it cannot be enslaved to a bridge"
        ),
        "bridge" => bail_invalid!(
            "network {name}: provider interface {iface} is a bridge, which cannot be enslaved to another bridge; use --bridge {iface} to carry the network on it"
        ),
        _ => {}
    }
    if let Some(index) = port.controller {
        let controller = link::get_by_index(&host, index)
            .await?
            .map_or_else(|| format!("link {index}"), |l| l.name);
        if args.bridge.as_ref() != Some(&controller) {
            devices.provider_controller = Some(controller);
        }
    }
    Ok(devices)
}

impl Session {
    /// `network create`: its devices checked on this host, then the change.
    pub async fn create_network(&mut self, mut args: Create) -> anyhow::Result<Done> {
        args.spans_hosts = self.backend() == super::Backend::Agents;
        let checked = check_devices(self, &args).await?;
        let reads = reads_for_create(&args, self.collecting());
        self.change_only(reads, |s| create(s, &args, &checked))
            .await
    }
}

/// What creating a network reads: only a network of the same name can conflict with a new
/// one, unless it names a bridge or a provider interface (checked against every network's),
/// is to be the default external network (there is one at most), spans hosts or may (a
/// segment is allocated among all), or the host's FORWARD chain needs qrouter's rules,
/// which name every network's bridge. An atomic batch reads everything.
fn reads_for_create(args: &Create, collecting: bool) -> Reads<'static> {
    if collecting || args.network_type.is_some() || args.spans_hosts {
        return Reads::All;
    }
    if !args.is_default
        && args.bridge.is_none()
        && args.provider_interface.is_none()
        && crate::reconcile::host_forward_idle()
    {
        return Reads::Around(Around {
            names: vec![(Network::KIND, args.name.clone())],
            ..Default::default()
        });
    }
    Reads::Kinds(&[Network::KIND])
}

/// `network create`, with what `check_devices` found of its devices.
pub fn create(state: &mut State, args: &Create, devices: &Devices) -> anyhow::Result<Outcome> {
    check_new_name(&state.networks, &args.name, None)?;
    let id = &new_id();
    let (bridge, owns_bridge) = match &args.bridge {
        Some(bridge) => {
            validate::interface_name("--bridge", bridge)?;
            if let Some(other) = state.networks.iter().find(|n| &n.bridge == bridge) {
                bail_invalid!(
                    "network {}: bridge {bridge} already carries network {}",
                    args.name,
                    other.name
                );
            }
            (bridge.clone(), !devices.bridge_exists)
        }
        None => (naming::network_bridge(id), true),
    };
    if let Some(iface) = &args.provider_interface {
        validate::interface_name("--provider-interface", iface)?;
        // Two networks on one interface would take it from each other at every sync.
        if let Some(other) = state
            .networks
            .iter()
            .find(|n| n.provider_interface.as_ref() == Some(iface))
        {
            bail_invalid!(
                "network {}: provider interface {iface} is already used by network {}",
                args.name,
                other.name
            );
        }
        if let Some(controller) = &devices.provider_controller {
            if let Some(owner) = state.networks.iter().find(|n| &n.bridge == controller) {
                bail_invalid!(
                    "network {}: provider interface {iface} is enslaved to {controller}, the bridge of network {}",
                    args.name,
                    owner.name
                );
            }
            bail_invalid!(
                "network {}: provider interface {iface} is enslaved to {controller}; release it first ('ip link set {iface} nomaster')",
                args.name
            );
        }
    }
    check_default(state, &args.name, args.external, args.is_default, None)?;
    let provider = super::vxlan::Provider {
        name: &args.name,
        external: args.external,
        host_devices: args.provider_interface.is_some() || args.bridge.is_some(),
        network_type: args.network_type.as_deref(),
        segment: args.segment,
        spans_hosts: args.spans_hosts,
    };
    let vni = super::vxlan::segment(state, &provider)?;
    check_ipv6_gateway(&args.name, args.external, args.ipv6_gateway)?;
    state.networks.push(Rc::new(Network {
        port_security: args.port_security,
        id: id.clone(),
        name: args.name.clone(),
        external: args.external,
        bridge,
        owns_bridge,
        provider_interface: args.provider_interface.clone(),
        mtu: args.mtu,
        meta: args.meta.clone(),
        vni,
        shared: args.shared,
        is_default: args.is_default,
        ipv6_gateway: args.ipv6_gateway,
        ha: false,
    }));
    let touched = Touched {
        networks: [id.clone()].into(),
        ..Default::default()
    };
    Ok(Outcome::new(touched, id))
}

/// `network set` (and `unset`, whose request only removes tags).
pub fn set(state: &mut State, req: &Set) -> anyhow::Result<Outcome> {
    let network = state.network(&req.network)?.clone();
    if let Some(name) = &req.name {
        check_new_name(&state.networks, name, Some(&network))?;
    }
    match req.external {
        Some(false) if network.external => match holder(state, &network, true) {
            Some(Holder::Port(port)) => bail_invalid!(
                "network {}: cannot make it internal: {} {} has its gateway on it",
                network.name,
                port.role.owner_kind(),
                state.port_owner_name(port)
            ),
            Some(Holder::FloatingIps) => bail_invalid!(
                "network {}: cannot make it internal: floating IPs are allocated from it",
                network.name
            ),
            None => {}
        },
        Some(true) if !network.external => {
            if let Some(port) = state.ports.iter().find(|p| {
                p.network_id == network.id && p.role == crate::model::PortRole::RouterInterface
            }) {
                bail_invalid!(
                    "network {}: cannot make it external: router {} has an interface on it",
                    network.name,
                    state.port_owner_name(port)
                );
            }
        }
        _ => {}
    }
    let external = req.external.unwrap_or(network.external);
    // A network made internal is no longer the default external network, as in Neutron,
    // where that flag lives with the external network's record.
    let is_default = match req.is_default {
        Some(default) => default,
        None => network.is_default && external,
    };
    check_default(
        state,
        &network.name,
        external,
        is_default,
        Some(&network.id),
    )?;
    let ipv6_gateway = req.ipv6_gateway.unwrap_or(network.ipv6_gateway);
    check_ipv6_gateway(&network.name, external, ipv6_gateway)?;
    let n = state.networks.iter_mut().find(|n| n.id == network.id);
    let n = std::rc::Rc::make_mut(n.expect("network exists"));
    if let Some(name) = &req.name {
        n.name = name.clone();
    }
    n.external = external;
    n.is_default = is_default;
    n.ipv6_gateway = ipv6_gateway;
    if let Some(shared) = req.shared {
        n.shared = shared;
    }
    req.meta.apply(&mut n.meta);
    let mut touched = Touched {
        networks: [network.id.clone()].into(),
        ..Default::default()
    };
    // Enabling or disabling a network sets the devices of its ports up or down.
    if req
        .meta
        .admin_state_up
        .is_some_and(|up| up != network.meta.admin_state_up)
    {
        for port in state.ports.iter().filter(|p| p.network_id == network.id) {
            super::port::owners(port, &mut touched);
        }
    }
    Ok(Outcome::new(touched, &network.id))
}

/// `--default` takes an external network, and one at most is the default (Neutron's rule:
/// auto-allocation picks it). `id`: the network being changed.
fn check_default(
    state: &State,
    name: &str,
    external: bool,
    is_default: bool,
    id: Option<&str>,
) -> anyhow::Result<()> {
    if !is_default {
        return Ok(());
    }
    if !external {
        bail_invalid!("network {name}: --default needs an external network (--external)");
    }
    let mut others = state.networks.iter().filter(|n| Some(n.id.as_str()) != id);
    if let Some(other) = others.find(|n| n.is_default) {
        bail_invalid!(
            "network {name}: network {} is the default external network already; 'qrouter network set {} --no-default' first",
            other.name,
            other.name
        );
    }
    Ok(())
}

/// What keeps a network in use.
enum Holder<'s> {
    /// A port on it (its DHCP server's counts only where `dhcp_holds`: deleting a network
    /// takes its DHCP server with it).
    Port(&'s crate::model::Port),
    /// Floating IPs allocated from it.
    FloatingIps,
}

fn holder<'s>(state: &'s State, network: &Network, dhcp_holds: bool) -> Option<Holder<'s>> {
    let port = (state.ports.iter())
        .find(|p| p.network_id == network.id && (dhcp_holds || p.role != PortRole::Dhcp));
    match port {
        Some(port) => Some(Holder::Port(port)),
        None => (state.floating_ips.iter())
            .any(|f| f.network_id == network.id)
            .then_some(Holder::FloatingIps),
    }
}

/// `network delete`, with the network's subnets.
pub fn delete(state: &mut State, keys: &[String]) -> anyhow::Result<Outcome> {
    let mut touched = Touched::default();
    for key in keys {
        let network = state.network(key)?.clone();
        crate::model::ha::refuse_ha_network(&network, "deleting it")?;
        match holder(state, &network, false) {
            Some(Holder::Port(port)) => bail_invalid!(
                "network {}: in use by {} {}; remove it first",
                network.name,
                port.role.owner_kind(),
                state.port_owner_name(port)
            ),
            Some(Holder::FloatingIps) => bail_invalid!(
                "network {}: floating IPs are allocated from it; delete them first",
                network.name
            ),
            None => {}
        }
        state.subnets.retain(|s| s.network_id != network.id);
        state.networks.retain(|n| n.id != network.id);
        dhcp::fit_dhcp_port(state, &network.id)?;
        touched.networks.insert(network.id);
    }
    Ok(Outcome { touched, id: None })
}
