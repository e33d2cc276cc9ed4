//! A router made HA, or no longer: its VRID, and the store's HA network made with the first
//! HA router and removed with the last. Its copies are placed with the change
//! (`ops::placement`), where the live hosts are known.

use std::rc::Rc;

use crate::bail_invalid;
use crate::model::ha::{self, Ha};
use crate::model::{naming, new_id, Meta, Network, Router, State};
use crate::reconcile::Touched;

/// Make router `id` HA with `copies` copies (None: the default), the HA network with it if
/// it is the store's first.
pub fn make_ha(state: &mut State, id: &str, copies: Option<u8>) -> anyhow::Result<Touched> {
    let name = state.router_by_id(id).expect("router exists").name.clone();
    let wanted = copies.unwrap_or(ha::DEFAULT_COPIES);
    if !ha::COPIES.contains(&wanted) {
        bail_invalid!(
            "router {name}: --ha-hosts {wanted}: an HA router runs {}..={} copies",
            ha::COPIES.start(),
            ha::COPIES.end()
        );
    }
    let Some(vrid) = state.free_vrid() else {
        bail_invalid!(
            "router {name}: the HA network has no VRRP router id left: {} HA routers at most",
            ha::VRIDS.end()
        );
    };
    let mut touched = Touched::default();
    if state.ha_network().is_none() {
        touched.networks.insert(add_network(state)?);
    }
    let r = state.router_mut(id);
    r.host = None;
    r.ha = Some(Ha {
        vrid,
        wanted,
        copies: vec![],
    });
    touched.routers.insert(id.to_string());
    Ok(touched)
}

/// `router set --ha` / `--no-ha` on `router` (as it was): only while it is disabled, as
/// Neutron requires, so no copy forwards while the shape changes. `--no-ha` keeps it on
/// the host of its first copy unless `moved` (`--host` given too).
pub fn set_ha(
    state: &mut State,
    router: &Router,
    ha: Option<u8>,
    moved: bool,
) -> anyhow::Result<Touched> {
    if router.meta.admin_state_up {
        bail_invalid!(
            "router {}: --ha and --no-ha change a disabled router only (Neutron's rule): \
             'router set {} --disable' first",
            router.name,
            router.name
        );
    }
    match (ha, &router.ha) {
        (Some(copies), None) => make_ha(state, &router.id, Some(copies)),
        (Some(copies), Some(now)) if copies != now.wanted => bail_invalid!(
            "router {}: it is HA with {} copies already; --no-ha first to change their number",
            router.name,
            now.wanted
        ),
        (Some(_), Some(_)) | (None, None) => Ok(Touched::default()),
        (None, Some(now)) => {
            let r = state.router_mut(&router.id);
            r.ha = None;
            if !moved {
                r.host = now.copies.first().map(|c| c.host.clone());
            }
            let mut touched = Touched::default();
            touched.routers.insert(router.id.clone());
            touched.networks.extend(drop_unused_network(state));
            Ok(touched)
        }
    }
}

/// The HA network goes with the last HA router: its id, if it went.
pub fn drop_unused_network(state: &mut State) -> Option<String> {
    let network = state.ha_network()?.id.clone();
    if state.routers.iter().any(|r| r.ha.is_some()) {
        return None;
    }
    state.networks.retain(|n| n.id != network);
    Some(network)
}

/// The HA network: a VXLAN segment of its own, no subnet (each copy's address is the
/// router's, `ha::Copy`), no port security (VRRP adverts are multicast or unicast between
/// the copies' own addresses).
fn add_network(state: &mut State) -> anyhow::Result<String> {
    crate::model::check_new_name(&state.networks, ha::NETWORK_NAME, None)?;
    let provider = crate::ops::vxlan::Provider {
        name: ha::NETWORK_NAME,
        network_type: Some("vxlan"),
        spans_hosts: true,
        ..Default::default()
    };
    let vni = crate::ops::vxlan::segment(state, &provider)?;
    let id = new_id();
    state.networks.push(Rc::new(Network {
        id: id.clone(),
        name: ha::NETWORK_NAME.into(),
        external: false,
        bridge: naming::network_bridge(&id),
        owns_bridge: true,
        provider_interface: None,
        mtu: None,
        vni,
        port_security: false,
        shared: false,
        is_default: false,
        ha: true,
        ipv6_gateway: None,
        meta: Meta::default(),
    }));
    Ok(id)
}
