//! The host's side of the kernel: bridges, qrouter's one chain in the host's FORWARD, orphans
//! and namespaces being removed.

use std::collections::HashSet;

use anyhow::{bail, Context};

use super::Changes;
use crate::kernel::{iptables, link, netns, nft, radvd, sysctl, Kernel};
use crate::model::rules::Family;
use crate::model::rules_edit;
use crate::model::rules_router;
use crate::model::{naming, rules, rules_nft, Network, State};

/// Where bridged frames cross the host's FORWARD chain and its policy is DROP, accept those
/// within qrouter's bridges (see `rules_router::host_forward`), and say so: it is the one change
/// qrouter makes to the host's own firewall. iptables' and ip6tables' alike: bridged IPv6
/// crosses ip6tables' FORWARD (`bridge-nf-call-ip6tables`), whose policy is its own.
pub fn host_forward(k: &mut Kernel, state: &State, log: &mut Changes) -> anyhow::Result<()> {
    for family in [Family::V4, Family::V6] {
        host_forward_of(k, state, log, family)?;
    }
    Ok(())
}

fn host_forward_of(
    k: &mut Kernel,
    state: &State,
    log: &mut Changes,
    family: Family,
) -> anyhow::Result<()> {
    if idle(family) {
        return Ok(());
    }
    if log.partial {
        bail!("the host's FORWARD chain changed while this command ran; nothing was changed, run it again");
    }
    let v6 = family == Family::V6;
    let nf_tables = iptables::uses_nf_tables();
    let (drops, saved) = match nf_tables {
        true => host_filter(k, family)?,
        false => {
            let save = iptables::save(None, v6, false)?;
            let drops = rules::policy(&save, "filter", "FORWARD") == Some("DROP");
            let mut tables = rules_edit::parse_save_tables(&save);
            (drops, tables.remove("filter").unwrap_or_default())
        }
    };
    // A bridge name no interface can have names no bridge: none to accept frames within.
    let bridges: Vec<rules::IfName> = state
        .networks
        .iter()
        .filter_map(|n| rules::IfName::new(&n.bridge).ok())
        .collect();
    let wanted = rules_router::host_forward(&bridges, drops, family);
    let Some(change) = rules_edit::change(&wanted, &saved) else {
        return Ok(());
    };
    let (tool, call) = match family {
        Family::V4 => ("iptables", "bridge-nf-call-iptables"),
        Family::V6 => ("ip6tables", "bridge-nf-call-ip6tables"),
    };
    let what = if wanted.chains.is_empty() {
        format!("host: remove chain qrouter-FORWARD from {tool}' filter table")
    } else {
        let names: Vec<&str> = bridges.iter().map(|b| b.as_str()).collect();
        format!(
            "host: the {tool} FORWARD policy is DROP and bridged frames pass it (net.bridge.{call}=1): \
             chain qrouter-FORWARD accepts frames within {}; it goes with the last network",
            names.join(", ")
        )
    };
    if log.note(what.clone()) {
        if nf_tables {
            let mut batch = nft::Batch::new(rules_nft::nfproto(family));
            rules_nft::add_to(&mut batch, &change)?;
            batch
                .commit(k.host_nft()?)
                .with_context(|| format!("host: nf_tables refused the {tool} FORWARD rules"))?;
        } else {
            iptables::restore(None, v6, &change.restore_text())?;
        }
        log::info!("{what}");
    }
    Ok(())
}

/// The host's FORWARD policy of `family` and its filter table as far as qrouter cares (the
/// FORWARD chain and its own), from nf_tables.
fn host_filter(k: &mut Kernel, family: Family) -> anyhow::Result<(bool, rules_edit::Saved)> {
    let sock = k.host_nft()?;
    let proto = rules_nft::nfproto(family);
    let read = || -> std::io::Result<_> {
        let chains: Vec<nft::Chain> = nft::chains(sock, proto, Some("filter"))?
            .into_iter()
            .filter(|c| c.name == "FORWARD" || c.name == rules::chain("FORWARD"))
            .collect();
        let mut found = Vec::new();
        for c in &chains {
            found.extend(nft::rules(sock, proto, Some("filter"), Some(&c.name))?);
        }
        Ok((chains, found))
    };
    let (chains, found) = read().context("host: cannot read nf_tables")?;
    let drops = chains.iter().any(|c| c.name == "FORWARD" && c.drops());
    let mut tables = rules_nft::saved(family, &chains, &found);
    Ok((
        drops,
        tables.remove(&family.key("filter")).unwrap_or_default(),
    ))
}

/// Whether the host's FORWARD chains need nothing from qrouter: bridged frames do not cross
/// them, or nothing there drops them and qrouter has no chain there.
pub fn host_forward_idle() -> bool {
    idle(Family::V4) && idle(Family::V6)
}

/// `host_forward_idle` of one family's FORWARD chain.
fn idle(family: Family) -> bool {
    let call = match family {
        Family::V4 => "bridge/bridge-nf-call-iptables",
        Family::V6 => "bridge/bridge-nf-call-ip6tables",
    };
    let bridged = sysctl::host_get(call).is_ok_and(|v| v == "1");
    !bridged || nothing_forwarded_to_do(family)
}

/// Whether nf_tables shows the usual case, without an `iptables-save`: the host's FORWARD
/// chain of `family` does not drop, and qrouter has no chain there. iptables-legacy's
/// tables are not in nf_tables: where any is loaded, this cannot tell.
fn nothing_forwarded_to_do(family: Family) -> bool {
    let names = match family {
        Family::V4 => "/proc/net/ip_tables_names",
        Family::V6 => "/proc/net/ip6_tables_names",
    };
    let legacy = std::fs::read_to_string(names).is_ok_and(|names| !names.trim().is_empty());
    let proto = rules_nft::nfproto(family);
    !legacy
        && matches!(
            nft::chains_drop(proto, "filter", &["FORWARD", &rules::chain("FORWARD")]).as_deref(),
            Ok([None | Some(false), None])
        )
}

/// Make the network's bridge (and provider interface) match, once per change; its index goes
/// into `log.bridges`, except in a dry run that has yet to make it.
pub async fn ensure_network(
    k: &mut Kernel,
    network: &Network,
    log: &mut Changes,
) -> anyhow::Result<()> {
    if !log.networks_done.insert(network.id.clone()) {
        return Ok(());
    }
    let bridge = match link::get(k.host(), &network.bridge).await? {
        Some(b) => b,
        None => {
            if !log.note(format!(
                "network {}: create bridge {}",
                network.name, network.bridge
            )) {
                return Ok(());
            }
            let mark = naming::mark(&log.owner, &network.id);
            link::add_bridge(k.host(), &network.bridge, network.mtu, &mark).await?;
            link::get(k.host(), &network.bridge)
                .await?
                .context("bridge vanished after creation")?
        }
    };
    if bridge.kind != "bridge" {
        // Someone else's device took the name: nothing qrouter may delete or repair.
        let what = format!(
            "network {}: {} is a {} device, not a bridge; it cannot carry the network (delete or rename it)",
            network.name, bridge.name, bridge.kind
        );
        if log.note(what.clone()) {
            bail!(what);
        }
        return Ok(());
    }
    if !bridge.up
        && log.note(format!(
            "network {}: set bridge {} up",
            network.name, bridge.name
        ))
    {
        link::set_up(k.host(), bridge.index).await?;
    }
    if let Some(iface) = &network.provider_interface {
        let Some(port) = link::get(k.host(), iface).await? else {
            bail!(
                "network {}: provider interface {iface} does not exist",
                network.name
            );
        };
        let enslave = format!(
            "network {}: enslave {iface} to {}",
            network.name, bridge.name
        );
        if port.controller != Some(bridge.index) && log.note(enslave) {
            link::set_controller(k.host(), port.index, bridge.index).await?;
        }
        if !port.up && log.note(format!("network {}: set {iface} up", network.name)) {
            link::set_up(k.host(), port.index).await?;
        }
    }
    log.bridges.insert(bridge.name, bridge.index);
    Ok(())
}

/// Delete the network's bridge, where qrouter made it: whether it did is decided here, on
/// the host whose kernel holds it, by its mark (a bridge that existed before, the
/// operator's `br-ex` with its uplink, carries none), never by what another host saw when
/// the network was created.
pub async fn remove_network(
    k: &mut Kernel,
    network: &Network,
    log: &mut Changes,
) -> anyhow::Result<()> {
    if network.owns_bridge {
        let Some(bridge) = link::get(k.host(), &network.bridge).await? else {
            return Ok(());
        };
        if !naming::marked_by(bridge.alias.as_deref(), &log.owner) {
            log.foreign.push(format!(
                "network {}: bridge {} carries no mark of this store: used, never deleted",
                network.name, bridge.name
            ));
            return Ok(());
        }
        if log.note(format!(
            "network {}: delete bridge {}",
            network.name, bridge.name
        )) {
            link::delete(k.host(), &bridge).await?;
            log.bridges.remove(&bridge.name);
        }
    }
    Ok(())
}

/// Plug the taps of the network's workload ports (`port create`) that other software made
/// (libvirt, a container's veth) into the network's bridge, and set them up, or down while
/// the port or its network is disabled: qrouter never makes nor deletes them, it only
/// connects them, as Neutron's agent does.
pub async fn plug_workloads(
    k: &mut Kernel,
    state: &State,
    network: &Network,
    log: &mut Changes,
) -> anyhow::Result<()> {
    let ports = state
        .ports
        .iter()
        .filter(|p| p.network_id == network.id && p.role == crate::model::PortRole::Workload);
    let mut bridge = None;
    for port in ports {
        let tap = naming::port_tap(port);
        let Some(found) = link::get(k.host(), &tap).await? else {
            continue;
        };
        if bridge.is_none() {
            bridge = link::get(k.host(), &network.bridge).await?.map(|b| b.index);
        }
        let why_down = port.down_because(Some(network));
        let on = bridge.is_some() && found.controller == bridge;
        let set_state = found.up != why_down.is_none();
        if on && !set_state {
            continue;
        }
        let wanted = match &why_down {
            None => "up".to_string(),
            Some(why) => format!("down ({why})"),
        };
        let name = port.display_name();
        let what = match (on, set_state) {
            (true, _) => format!("host: set {tap} (port {name}) {wanted}"),
            (false, false) => format!("host: plug {tap} (port {name}) into {}", network.bridge),
            (false, true) => format!(
                "host: plug {tap} (port {name}) into {} and set it {wanted}",
                network.bridge
            ),
        };
        if !log.note(what) {
            continue;
        }
        let Some(index) = bridge else {
            bail!(
                "network {}: bridge {} is missing",
                network.name,
                network.bridge
            );
        };
        if !on {
            link::set_controller(k.host(), found.index, index)
                .await
                .with_context(|| format!("port {}: cannot plug {tap}", port.display_name()))?;
        }
        match (set_state, why_down.is_none()) {
            (false, _) => {}
            (true, true) => link::set_up(k.host(), found.index).await?,
            (true, false) => link::set_down(k.host(), found.index).await?,
        }
    }
    Ok(())
}

/// Unplug the devices of the network's workload ports that `new` no longer has (`port
/// delete`), as Neutron's agent does: off the bridge and down, so the workload behind no
/// longer reaches the network, and its address can go to another port safely. The device
/// itself is its workload's (libvirt's tap, a container's veth): it stays.
pub async fn unplug_deleted(
    k: &mut Kernel,
    old: &State,
    new: &State,
    network: &Network,
    log: &mut Changes,
) -> anyhow::Result<()> {
    let deleted = old.ports.iter().filter(|p| {
        p.network_id == network.id
            && p.role == crate::model::PortRole::Workload
            && new.port_by_id(&p.id).is_none()
    });
    for port in deleted {
        let tap = naming::port_tap(port);
        let Some(found) = link::get(k.host(), &tap).await? else {
            continue;
        };
        let bridge = link::get(k.host(), &network.bridge).await?;
        if found.controller.is_none() || found.controller != bridge.map(|b| b.index) {
            continue;
        }
        let what = format!(
            "host: unplug {tap} (port {} deleted): off {}, down; the device is its workload's and stays",
            port.display_name(),
            network.bridge
        );
        if log.note(what) {
            link::unplug(k.host(), found.index).await?;
        }
    }
    Ok(())
}

/// Host links that carry this store's mark and that no network or port in the store
/// explains. Links named like qrouter's without the mark are listed as foreign, never deleted.
pub async fn remove_orphan_links(
    k: &mut Kernel,
    state: &State,
    log: &mut Changes,
) -> anyhow::Result<()> {
    let bridges: HashSet<&str> = state.networks.iter().map(|n| n.bridge.as_str()).collect();
    let mut taps: HashSet<String> = state.ports.iter().map(|p| naming::port_tap(p)).collect();
    // The host end of each HA router copy's `ha-` device.
    let ha = state.routers.iter().filter(|r| r.ha.is_some());
    taps.extend(ha.map(|r| crate::model::ha::tap(&r.id)));
    // The names from /proc (a line each), then a netlink look-up of only those the store
    // does not explain: a dump of every link costs tens of megabytes with thousands of them.
    for name in link::host_names()? {
        if bridges.contains(name.as_str()) || taps.contains(&name) || name == "lo" {
            continue;
        }
        let Some(l) = link::get(k.host(), &name).await? else {
            continue;
        };
        // VXLAN devices are the agent's (`kernel::vxlan`, `agent`), kept by their segment.
        if l.kind == "vxlan" {
            continue;
        }
        let held = naming::marked_for(l.alias.as_deref(), &log.owner)
            .is_some_and(|id| log.held.contains(id));
        if held {
            continue;
        }
        if naming::marked_by(l.alias.as_deref(), &log.owner) {
            if log.note(format!("host: delete orphan {}", l.name)) {
                link::delete(k.host(), &l).await?;
            }
        } else if l.name.starts_with("tap") {
            log.foreign.push(unknown_tap(k, state, &l).await?);
        } else if l.name.starts_with("brq") {
            log.foreign.push(format!(
                "host: {}: named like qrouter's but carries no mark of this store; left alone",
                l.name
            ));
        }
    }
    Ok(())
}

/// What a `tap…` that no port of the store names is, said plainly: on a bridge of the
/// store's networks its frames pass unguarded by port security; on none (a deleted port's
/// device, unplugged) it is harmless. Either way it is not qrouter's, and stays.
async fn unknown_tap(k: &mut Kernel, state: &State, tap: &link::Link) -> anyhow::Result<String> {
    let name = &tap.name;
    let mut on = None;
    if let Some(index) = tap.controller {
        for network in &state.networks {
            if link::get(k.host(), &network.bridge).await?.map(|b| b.index) == Some(index) {
                on = Some(network);
                break;
            }
        }
    }
    Ok(match on {
        Some(n) => format!(
            "host: {name}: on bridge {} of network {}, but no port of this store names it and it carries no mark: another program's device, its frames unguarded by port security; left alone (unplug it with 'ip link set {name} nomaster', or give it a port)",
            n.bridge, n.name
        ),
        None => format!(
            "host: {name}: no port of this store names it (a deleted port's device, unplugged, or another program's); not qrouter's: left alone"
        ),
    })
}

/// Delete namespaces and everything in them. Their veths go first, from the host side and
/// in one kernel operation (one RCU grace period for all, not one per device), so no tap is
/// left behind by the kernel's lazy namespace teardown.
///
/// Each namespace comes with whether the store proves it qrouter's (an object being
/// deleted; `taps` then has its devices' taps); the others, orphans, go only when their `lo`
/// carries this store's mark, and so do the taps found from their devices' names.
pub async fn remove_namespaces(
    k: &mut Kernel,
    namespaces: &[(String, bool)],
    taps: &mut Vec<String>,
    log: &mut Changes,
) -> anyhow::Result<()> {
    let mut doomed = vec![];
    let mut orphan_taps = vec![];
    for (ns, proven) in namespaces {
        // A router's radvd goes first, whether its namespace is there or not (one deleted
        // behind qrouter's back lives on in it): its pid file under the state directory
        // proves it ours.
        if let Some(id) = ns.strip_prefix("qrouter-") {
            if radvd::state(id, ns) != radvd::State::Absent && log.note(format!("{ns}: stop radvd"))
            {
                radvd::stop(id)?;
            }
        }
        if !std::path::Path::new(&netns::path(ns)).exists() {
            continue;
        }
        // A namespace the store proves ours comes with its devices' taps (`taps`): it is not
        // entered, which with a hundred routers deleted at once was a third of the time. A
        // device added behind qrouter's back goes with the namespace, its tap a moment later.
        let links = match !proven && netns::exists(ns) {
            true => link::list(&k.ns(ns)?).await?,
            false => vec![],
        };
        let ours = |l: &link::Link| naming::marked_by(l.alias.as_deref(), &log.owner);
        if !proven && !links.iter().any(|l| l.name == "lo" && ours(l)) {
            log.foreign.push(format!(
                "{ns}: named like qrouter's but carries no mark of this store; left alone"
            ));
            continue;
        }
        if !log.note(format!("{ns}: delete namespace")) {
            continue;
        }
        for l in &links {
            let id = ["qr-", "qg-", "ns-"]
                .iter()
                .find_map(|p| l.name.strip_prefix(p));
            if let Some(id) = id {
                orphan_taps.push(format!("tap{id}"));
            }
        }
        doomed.push(ns);
    }
    taps.sort();
    taps.dedup();
    let mut host_ends = vec![];
    for tap in taps.iter() {
        if let Some(l) = link::get(k.host(), tap).await? {
            host_ends.push(l);
        }
    }
    for tap in &orphan_taps {
        if let Some(l) = link::get(k.host(), tap).await? {
            if naming::marked_by(l.alias.as_deref(), &log.owner) {
                host_ends.push(l);
            }
        }
    }
    // The taps go first, their veths with them, handed to the announcer (`delete_soon`):
    // deleted here, each waited out an RCU grace period (20-30 ms), and left to the
    // namespace's teardown, they went only once nothing held the namespace any more (the
    // announcer, sending a new router's first rounds, did for up to 60 ms).
    link::delete_soon(k.host(), None, &host_ends).await?;
    for ns in doomed {
        k.forget(ns);
        netns::delete(ns)?;
    }
    Ok(())
}
