//! Desired state -> kernel. Pure functions turn the store's objects into plans (devices,
//! addresses, routes, rules); `converge` makes the kernel match them: it creates what is
//! missing, fixes what differs and deletes what is stale. Converging an unchanged object
//! changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use anyhow::{bail, Context};
use ipnet::Ipv4Net;

use crate::kernel::{addr, arp, iptables, link, netns, nft, route, sysctl, Kernel, NewNamespace};
use crate::model::{ipam, naming, rules, Instance, Network, PortRole, Router, State};

/// The objects a command changed; converge visits exactly these.
#[derive(Debug, Default)]
pub struct Touched {
    pub networks: BTreeSet<String>,
    pub routers: BTreeSet<String>,
    pub instances: BTreeSet<String>,
}

impl Touched {
    pub fn extend(&mut self, other: Touched) {
        self.networks.extend(other.networks);
        self.routers.extend(other.routers);
        self.instances.extend(other.instances);
    }
}

/// Sysctls Neutron sets in every router namespace.
pub const ROUTER_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.conf.all.arp_ignore", "1"),
    ("net.ipv4.conf.all.arp_announce", "2"),
    ("net.ipv4.conf.all.promote_secondaries", "1"),
    ("net.netfilter.nf_conntrack_tcp_be_liberal", "1"),
    // Announce a device's addresses (gratuitous ARP) when it comes up, without a process.
    ("net.ipv4.conf.all.arp_notify", "1"),
];

/// One veth end inside a namespace, as the store wants it.
#[derive(Debug, PartialEq)]
pub struct Device {
    pub name: String,
    pub tap: String,
    pub bridge: String,
    pub mac: String,
    pub addresses: Vec<Ipv4Net>,
    pub mtu: Option<u32>,
}

/// Everything one namespace (router or instance) should hold.
#[derive(Debug)]
pub struct Plan {
    pub namespace: String,
    pub devices: Vec<Device>,
    /// (destination, next hop)
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
    pub rules: Vec<rules::Table>,
    pub sysctls: &'static [(&'static str, &'static str)],
}

pub fn router_plan(state: &State, router: &Router) -> Plan {
    let mut devices = Vec::new();
    let mut routes = Vec::new();
    let mut nat = rules::RouterNat {
        snat: router.snat,
        ..Default::default()
    };
    let floating = state.router_floating_ips(router);
    for port in state.router_ports(router) {
        let Some(network) = state.network_by_id(&port.network_id) else {
            continue;
        };
        let mut device = device(port, network);
        for fixed in &port.fixed_ips {
            let Some(subnet) = state.subnet_by_id(&fixed.subnet_id) else {
                continue;
            };
            device.addresses.push(ipam::with_prefix(subnet, fixed.ip));
            match port.role {
                PortRole::RouterGateway => {
                    if let Some(gw) = subnet.gateway {
                        routes.push((Ipv4Net::default(), gw));
                    }
                    nat.gateway.get_or_insert((device.name.clone(), fixed.ip));
                }
                _ => nat.internal.push(subnet.cidr),
            }
        }
        if port.role == PortRole::RouterGateway {
            for (fip, fixed) in &floating {
                device.addresses.push(Ipv4Net::from(fip.address));
                nat.floating.push((fip.address, *fixed));
            }
        }
        devices.push(device);
    }
    routes.extend(router.routes.iter().map(|r| (r.destination, r.nexthop)));
    Plan {
        namespace: naming::router_namespace(&router.id),
        devices,
        routes,
        rules: rules::build(&nat),
        sysctls: ROUTER_SYSCTLS,
    }
}

pub fn instance_plan(state: &State, instance: &Instance) -> Plan {
    let mut plan = Plan {
        namespace: naming::instance_namespace(&instance.id),
        devices: vec![],
        routes: vec![],
        rules: vec![],
        sysctls: &[],
    };
    let Some(port) = state.port_by_id(&instance.port_id) else {
        return plan;
    };
    let Some(network) = state.network_by_id(&port.network_id) else {
        return plan;
    };
    let mut device = device(port, network);
    for fixed in &port.fixed_ips {
        let Some(subnet) = state.subnet_by_id(&fixed.subnet_id) else {
            continue;
        };
        device.addresses.push(ipam::with_prefix(subnet, fixed.ip));
        if let Some(gw) = subnet.gateway.filter(|gw| *gw != fixed.ip) {
            plan.routes.push((Ipv4Net::default(), gw));
        }
    }
    plan.devices.push(device);
    plan
}

fn device(port: &crate::model::Port, network: &Network) -> Device {
    Device {
        name: naming::port_device(port),
        tap: naming::port_tap(port),
        bridge: network.bridge.clone(),
        mac: port.mac.clone(),
        addresses: vec![],
        mtu: network.mtu,
    }
}

/// What converging did, or with `dry_run` would do: one line per kernel change.
#[derive(Debug, Default)]
pub struct Changes {
    pub dry_run: bool,
    /// Read back even what the store did not change (`sync`): drift made behind our back.
    pub check_drift: bool,
    pub done: Vec<String>,
    /// Ticks once per namespace converged (`sync` on a terminal).
    pub progress: Option<indicatif::ProgressBar>,
    /// Each bridge made to match, by name, with its index (for the veths enslaved to it).
    bridges: HashMap<String, u32>,
    /// The states hold only some of the store's networks: the host's FORWARD rules, which
    /// name every network's bridge, cannot be built from them.
    pub partial: bool,
}

impl Changes {
    /// Record a change; true when it should really be made.
    fn note(&mut self, what: String) -> bool {
        self.done.push(what);
        !self.dry_run
    }
}

/// Make the kernel match `new` for the touched objects. Objects gone from `new` are removed
/// using what `old` knew of them.
pub async fn converge(
    k: &mut Kernel,
    old: &State,
    new: &State,
    touched: &Touched,
    log: &mut Changes,
) -> anyhow::Result<()> {
    // Namespaces to remove go first, all together; the host ends of their veths are known
    // from the old state's ports (and, for orphans, from the qr-/qg- names inside).
    let gone_routers = touched
        .routers
        .iter()
        .filter(|id| new.router_by_id(id).is_none());
    let gone_instances = touched
        .instances
        .iter()
        .filter(|id| new.instance_by_id(id).is_none());
    let mut taps: Vec<String> = gone_routers
        .clone()
        .filter_map(|id| old.router_by_id(id))
        .flat_map(|r| old.router_ports(r))
        .chain(
            gone_instances
                .clone()
                .filter_map(|id| old.instance_by_id(id))
                .filter_map(|i| old.port_by_id(&i.port_id)),
        )
        .map(naming::port_tap)
        .collect();
    let gone: Vec<String> = gone_routers
        .map(|id| naming::router_namespace(id))
        .chain(gone_instances.map(|id| naming::instance_namespace(id)))
        .collect();
    remove_namespaces(k, &gone, &mut taps, log).await?;

    // Each router's namespace, where it is missing, is made on another thread while the
    // router before it is filled: namespaces, sysctls and iptables take the second core.
    let routers: Vec<&Router> = touched
        .routers
        .iter()
        .filter_map(|id| new.router_by_id(id))
        .collect();
    let mut next = routers.first().map(|r| router_plan(new, r));
    let mut ahead = None;
    for (i, router) in routers.iter().enumerate() {
        let plan = next.take().expect("planned one ahead");
        let made_ahead = ahead.take();
        next = routers.get(i + 1).map(|r| router_plan(new, r));
        ahead = next
            .as_ref()
            .filter(|p| !log.dry_run && !netns::exists(&p.namespace))
            .map(make_namespace);
        let before = old.router_by_id(&router.id).map(|r| router_plan(old, r));
        apply(k, new, &plan, before.as_ref(), log, made_ahead)
            .await
            .with_context(|| format!("router {}", router.name))?;
        log.progress.iter().for_each(|p| p.inc(1));
    }
    for id in &touched.instances {
        let Some(instance) = new.instance_by_id(id) else {
            continue;
        };
        let plan = instance_plan(new, instance);
        apply(k, new, &plan, None, log, None)
            .await
            .with_context(|| format!("instance {}", instance.name))?;
        log.progress.iter().for_each(|p| p.inc(1));
    }
    // The bridges of networks no router or instance uses: the others were made with the
    // devices on them, while another thread made the next namespace.
    for id in &touched.networks {
        match (new.network_by_id(id), old.network_by_id(id)) {
            (Some(network), _) => ensure_network(k, network, log).await?,
            (None, Some(network)) => remove_network(k, network, log).await?,
            (None, None) => {}
        }
    }
    // Only a network made or deleted changes the host's rules; `sync` checks them anyway.
    let (was, is) = (old.networks.iter(), new.networks.iter());
    if !was.map(|n| &n.id).eq(is.map(|n| &n.id)) || log.check_drift {
        host_forward(new, log)?;
    }
    Ok(())
}

/// Where bridged frames cross the host's FORWARD chain and its policy is DROP, accept those
/// within qrouter's bridges (see `rules::host_forward`), and say so: it is the one change
/// qrouter makes to the host's own firewall.
pub fn host_forward(state: &State, log: &mut Changes) -> anyhow::Result<()> {
    if host_forward_idle() {
        return Ok(());
    }
    if log.partial {
        bail!("the host's FORWARD chain changed while this command ran; nothing was changed, run it again");
    }
    let save = iptables::save(None, false)?;
    let drops = rules::policy(&save, "filter", "FORWARD") == Some("DROP");
    let bridges: Vec<&str> = state.networks.iter().map(|n| n.bridge.as_str()).collect();
    let wanted = rules::host_forward(&bridges, drops);
    let mut saved = rules::parse_save_tables(&save);
    let Some(batch) = rules::restore_batch(&wanted, &saved.remove("filter").unwrap_or_default())
    else {
        return Ok(());
    };
    let what = if wanted.chains.is_empty() {
        "host: remove chain qrouter-FORWARD from the filter table".to_string()
    } else {
        format!(
            "host: the FORWARD policy is DROP and bridged frames pass it (net.bridge.bridge-nf-call-iptables=1): \
             chain qrouter-FORWARD accepts frames within {}; it goes with the last network",
            bridges.join(", ")
        )
    };
    if log.note(what.clone()) {
        iptables::restore(None, &batch)?;
        crate::output::diag::notice(what);
    }
    Ok(())
}

/// Whether the host's FORWARD chain needs nothing from qrouter: bridged frames do not cross
/// it, or nothing there drops them and qrouter has no chain there.
pub fn host_forward_idle() -> bool {
    let bridged = sysctl::host_get("bridge/bridge-nf-call-iptables").is_ok_and(|v| v == "1");
    !bridged || nothing_forwarded_to_do()
}

/// Whether nf_tables shows the usual case, without an `iptables-save`: the host's FORWARD
/// chain does not drop, and qrouter has no chain there. iptables-legacy's tables are not in
/// nf_tables: where any is loaded, this cannot tell.
fn nothing_forwarded_to_do() -> bool {
    let legacy = std::fs::read_to_string("/proc/net/ip_tables_names")
        .is_ok_and(|names| !names.trim().is_empty());
    !legacy
        && matches!(
            nft::ipv4_chain("filter", "FORWARD"),
            Ok(nft::Chain::Missing | nft::Chain::Accepts)
        )
        && matches!(
            nft::ipv4_chain("filter", &rules::chain("FORWARD")),
            Ok(nft::Chain::Missing)
        )
}

/// Make the network's bridge (and provider interface) match, once per change; its index goes
/// into `log.bridges`, except in a dry run that has yet to make it.
async fn ensure_network(
    k: &mut Kernel,
    network: &Network,
    log: &mut Changes,
) -> anyhow::Result<()> {
    if log.bridges.contains_key(&network.bridge) {
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
            link::add_bridge(k.host(), &network.bridge, network.mtu).await?;
            link::get(k.host(), &network.bridge)
                .await?
                .context("bridge vanished after creation")?
        }
    };
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

async fn remove_network(
    k: &mut Kernel,
    network: &Network,
    log: &mut Changes,
) -> anyhow::Result<()> {
    if network.owns_bridge {
        if let Some(bridge) = link::get(k.host(), &network.bridge).await? {
            if log.note(format!(
                "network {}: delete bridge {}",
                network.name, bridge.name
            )) {
                link::delete(k.host(), &bridge).await?;
                log.bridges.remove(&bridge.name);
            }
        }
    }
    Ok(())
}

/// Make one namespace match its plan: namespace, sysctls, devices, addresses, rules, routes.
/// `before` is the plan of the state being left, if the namespace had one: what did not
/// change in it needs no reading back. `ahead` is its namespace, already being made.
async fn apply(
    k: &mut Kernel,
    state: &State,
    plan: &Plan,
    before: Option<&Plan>,
    log: &mut Changes,
    ahead: Option<NewNamespace>,
) -> anyhow::Result<()> {
    let ns = plan.namespace.as_str();
    let fresh = ahead.is_some() || !netns::exists(ns);
    if fresh {
        log.note(format!("{ns}: create namespace"));
    }
    // A new namespace is made on a thread of its own while its networks are made here.
    let making = ahead.or_else(|| (fresh && !log.dry_run).then(|| make_namespace(plan)));
    for network in state
        .networks
        .iter()
        .filter(|n| plan.devices.iter().any(|d| d.bridge == n.bridge))
    {
        ensure_network(k, network, log).await?;
    }
    let mut early = None;
    if let Some(making) = making {
        let made = making.finish(k)?;
        for key in made.sysctls {
            log.done.push(format!("{ns}: set sysctl {key}"));
        }
        early = made.rules;
    }
    // In a dry run a missing namespace stays missing: everything in it is to be made.
    let h = if netns::exists(ns) {
        Some(k.ns(ns)?)
    } else {
        None
    };
    let list_links = |h: Option<rtnetlink::Handle>| async move {
        match h {
            Some(h) => link::list(&h).await,
            None => Ok(vec![]),
        }
    };

    // Sysctls go before any device is made: devices take the namespace's defaults, and with
    // arp_notify the kernel announces a device's addresses itself when it comes up. Only
    // someone else changes them afterwards: a new namespace gets them on its thread, and
    // `sync` checks them.
    let sysctls_due = !fresh && (before.is_none() || log.check_drift);
    if h.is_some() && !plan.sysctls.is_empty() && sysctls_due {
        for key in sysctl::ensure(ns, plan.sysctls, log.dry_run)? {
            log.done.push(format!("{ns}: set sysctl {key}"));
        }
    }

    // iptables runs as processes, the slowest step by far. A command moves the rules from
    // what the state it leaves wanted to what the new one wants, without reading them back;
    // `sync` reads them (drift), and so does a command whose batch the kernel refuses
    // because it differed from the store. A namespace made just now holds no rules.
    let rules_changed = fresh || before.is_none_or(|b| b.rules != plan.rules);
    let trusted = before.filter(|_| !fresh && !log.check_drift);
    let read = || -> anyhow::Result<BTreeMap<String, rules::Saved>> {
        match &h {
            Some(_) if !fresh => Ok(rules::parse_save_tables(&iptables::save(Some(ns), false)?)),
            _ => Ok(Default::default()),
        }
    };
    let mut rules = None;
    if rules_changed || log.check_drift {
        let assumed = match trusted {
            Some(b) => b
                .rules
                .iter()
                .map(|t| (t.name.to_string(), t.as_saved()))
                .collect(),
            None => read()?,
        };
        rules = Some(rules_batch(ns, &plan.rules, assumed, log)).filter(|b| !b.is_empty());
    }
    // Where the change only adds addresses, the batch runs while the devices are made: the
    // process is waited for before the first address, as the order below wants.
    let only_adds = fresh
        || trusted.is_some_and(|b| {
            b.devices.iter().all(|was| {
                plan.devices.iter().any(|d| {
                    d.name == was.name && was.addresses.iter().all(|a| d.addresses.contains(a))
                })
            })
        });
    if let Some(batch) = rules
        .as_ref()
        .filter(|_| only_adds && early.is_none() && !log.dry_run)
    {
        early = Some(iptables::start_restore(Some(ns), batch)?);
    }

    let mut links = list_links(h.clone()).await?;
    let wanted = |name: &str| name == "lo" || plan.devices.iter().any(|d| d.name == name);
    let mut made = Vec::new();
    for dev in plan
        .devices
        .iter()
        .filter(|d| !links.iter().any(|l| l.name == d.name))
    {
        // A tap whose peer is elsewhere (an orphan) would block the name.
        if let Some(orphan) = link::get(k.host(), &dev.tap).await? {
            if log.note(format!("host: delete orphan {}", orphan.name)) {
                link::delete(k.host(), &orphan).await?;
            }
        }
        if !log.note(format!(
            "{ns}: create veth {} (host end {} on {})",
            dev.name, dev.tap, dev.bridge
        )) {
            continue;
        }
        let veth = link::Veth {
            tap: &dev.tap,
            bridge_index: *log.bridges.get(&dev.bridge).context("bridge missing")?,
            peer: &dev.name,
            peer_mac: &dev.mac,
            mtu: dev.mtu,
        };
        link::add_veth(k.host(), &veth, &netns::open(ns)?).await?;
        made.push(dev.name.as_str());
    }
    links = list_links(h.clone()).await?;
    // IPv4 routers (the namespaces with sysctls): no IPv6 link-local address on their
    // devices, set while they are down, whose probes and solicitations would be flooded into
    // every router on the external bridge. Per device, over netlink: the namespace-wide
    // default lives in /proc/sys/net/ipv6, which costs a new namespace 1 ms to look up when
    // a thousand others have one.
    if !plan.sysctls.is_empty() {
        for l in links.iter().filter(|l| made.contains(&l.name.as_str())) {
            link::no_link_local(h.as_ref().expect("made"), l).await?;
        }
    }

    // Removals go address, then rules; additions rules, then address (a floating IP is
    // announced only once its DNAT is in place).
    let addrs = match &h {
        Some(h) => addr::list(h).await?,
        None => vec![],
    };
    let on = |dev: &Device| -> (Option<&link::Link>, Vec<&addr::Address>) {
        let link = links.iter().find(|l| l.name == dev.name);
        let current = addrs
            .iter()
            .filter(|a| Some(a.link_index) == link.map(|l| l.index))
            .collect();
        (link, current)
    };
    for dev in &plan.devices {
        for extra in on(dev).1.iter().filter(|a| !dev.addresses.contains(&a.net)) {
            if log.note(format!(
                "{ns}: delete address {} from {}",
                extra.net, dev.name
            )) {
                addr::delete(h.as_ref().expect("listed"), extra).await?;
            }
        }
    }
    let routes = match &h {
        Some(h) => route::list(h).await?,
        None => vec![],
    };
    let ours: Vec<&route::Route> = routes.iter().filter(|r| r.is_static()).collect();
    for extra in ours.iter().filter(|r| {
        !plan
            .routes
            .iter()
            .any(|(d, v)| r.destination == *d && r.gateway == Some(*v))
    }) {
        if log.note(format!("{ns}: delete route {}", extra.destination)) {
            route::delete(h.as_ref().expect("listed"), extra).await?;
        }
    }

    // The rules change while stale devices go: iptables after deleting rules, and the kernel
    // after unregistering a device, each wait out an RCU grace period (15-40 ms here).
    if let Some(batch) = rules.as_ref().filter(|_| early.is_none() && !log.dry_run) {
        early = Some(iptables::start_restore(Some(ns), batch)?);
    }
    for stale in links.iter().filter(|l| !wanted(&l.name)) {
        if log.note(format!("{ns}: delete stale device {}", stale.name)) {
            link::delete(h.as_ref().expect("listed"), stale).await?;
        }
    }
    if let Some(running) = early {
        if let Err(refused) = running.finish() {
            if trusted.is_none() {
                return Err(refused);
            }
            let batch = rules_batch(ns, &plan.rules, read()?, &mut Changes::default());
            iptables::restore(Some(ns), &batch)?;
        }
    }

    for dev in &plan.devices {
        let (link, current) = on(dev);
        for missing in dev
            .addresses
            .iter()
            .filter(|n| !current.iter().any(|a| a.net == **n))
        {
            if log.note(format!("{ns}: add address {missing} to {}", dev.name)) {
                let link = link.context("device missing after creation")?;
                addr::add(h.as_ref().expect("listed"), link.index, *missing).await?;
                // A device still down is announced by the kernel as it comes up. Like
                // Neutron, a lost announcement is not worth failing the change for.
                if link.up && !plan.sysctls.is_empty() {
                    if let Err(e) = arp::announce(ns, link.index, &dev.mac, missing.addr()) {
                        crate::output::diag::warn(format!("{e:#}"));
                    }
                }
            }
        }
    }
    for l in links.iter().filter(|l| !l.up && wanted(&l.name)) {
        if log.note(format!("{ns}: set {} up", l.name)) {
            link::set_up(h.as_ref().expect("listed"), l.index).await?;
        }
    }
    for (dst, via) in plan.routes.iter().filter(|(d, v)| {
        !ours
            .iter()
            .any(|r| r.destination == *d && r.gateway == Some(*v))
    }) {
        if log.note(format!("{ns}: add route {dst} via {via}")) {
            route::add(h.as_ref().expect("namespace exists"), *dst, *via).await?;
        }
    }
    Ok(())
}

/// Start making the (missing) namespace of `plan`, with its sysctls and rules.
fn make_namespace(plan: &Plan) -> NewNamespace {
    let ns = &plan.namespace;
    let rules = rules_batch(ns, &plan.rules, BTreeMap::new(), &mut Changes::default());
    NewNamespace::start(ns, plan.sysctls, Some(rules).filter(|r| !r.is_empty()))
}

/// One `iptables-restore` batch for every table that differs from `saved`.
fn rules_batch(
    ns: &str,
    tables: &[rules::Table],
    mut saved: BTreeMap<String, rules::Saved>,
    log: &mut Changes,
) -> String {
    let mut batch = String::new();
    for table in tables {
        let saved = saved.remove(table.name).unwrap_or_default();
        if let Some(part) = rules::restore_batch(table, &saved) {
            log.note(format!(
                "{ns}: update qrouter chains of table {}",
                table.name
            ));
            batch += &part;
        }
    }
    batch
}

/// Bridges and taps named like qrouter's that no network or port in the store explains.
pub async fn remove_orphan_links(
    k: &mut Kernel,
    state: &State,
    log: &mut Changes,
) -> anyhow::Result<()> {
    let bridges: HashSet<&str> = state.networks.iter().map(|n| n.bridge.as_str()).collect();
    let taps: HashSet<String> = state.ports.iter().map(|p| naming::port_tap(p)).collect();
    for name in link::host_names()? {
        let orphan = (name.starts_with("brq") && !bridges.contains(name.as_str()))
            || (name.starts_with("tap") && !taps.contains(&name));
        if orphan && log.note(format!("host: delete orphan {name}")) {
            if let Some(l) = link::get(k.host(), &name).await? {
                link::delete(k.host(), &l).await?;
            }
        }
    }
    Ok(())
}

/// Delete namespaces and everything in them. Their veths go first, from the host side and
/// in one kernel operation (one RCU grace period for all, not one per device), so no tap is
/// left behind by the kernel's lazy namespace teardown.
async fn remove_namespaces(
    k: &mut Kernel,
    namespaces: &[String],
    taps: &mut Vec<String>,
    log: &mut Changes,
) -> anyhow::Result<()> {
    let mut doomed = vec![];
    for ns in namespaces {
        if !std::path::Path::new(&netns::path(ns)).exists()
            || !log.note(format!("{ns}: delete namespace"))
        {
            continue;
        }
        if netns::exists(ns) {
            let h = k.ns(ns)?;
            for l in link::list(&h).await? {
                if let Some(id) = l.name.strip_prefix("qr-").or(l.name.strip_prefix("qg-")) {
                    taps.push(format!("tap{id}"));
                }
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
    link::delete_all(k.host(), host_ends.iter()).await?;
    for ns in doomed {
        k.forget(ns);
        netns::delete(ns)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FixedIp, Port, Subnet};

    fn seed() -> State {
        let net = |id: &str, name: &str, external: bool| Network {
            id: id.into(),
            name: name.into(),
            external,
            bridge: if external {
                "br-ex".into()
            } else {
                naming::network_bridge(id)
            },
            owns_bridge: true,
            provider_interface: None,
            mtu: None,
        };
        let subnet = |id: &str, net: &str, cidr: &str| {
            let cidr: Ipv4Net = cidr.parse().unwrap();
            let gateway = Some(ipam::default_gateway(cidr));
            Subnet {
                id: id.into(),
                name: id.into(),
                network_id: net.into(),
                cidr,
                gateway,
                pools: ipam::default_pools(cidr, gateway),
            }
        };
        let port = |id: &str, net: &str, role, subnet: &str, ip: &str| Port {
            id: id.into(),
            network_id: net.into(),
            role,
            device_id: "r1".into(),
            mac: "fa:16:3e:00:00:01".into(),
            fixed_ips: vec![FixedIp {
                subnet_id: subnet.into(),
                ip: ip.parse().unwrap(),
            }],
        };
        State {
            networks: vec![
                net("n-ext", "ext_net", true).into(),
                net("n101-0000-0000", "vlan101", false).into(),
            ],
            subnets: vec![
                subnet("s-ext", "n-ext", "10.10.10.0/24").into(),
                subnet("s101", "n101-0000-0000", "172.16.101.0/24").into(),
            ],
            routers: vec![Router {
                id: "r1".into(),
                name: "router_100_101".into(),
                gateway_port_id: Some("b8b32a88-0305".into()),
                snat: true,
                routes: vec![],
            }
            .into()],
            ports: vec![
                port(
                    "b8b32a88-0305",
                    "n-ext",
                    PortRole::RouterGateway,
                    "s-ext",
                    "10.10.10.2",
                )
                .into(),
                port(
                    "e17162c5-00aa",
                    "n101-0000-0000",
                    PortRole::RouterInterface,
                    "s101",
                    "172.16.101.1",
                )
                .into(),
            ],
            instances: vec![],
            floating_ips: vec![],
        }
    }

    #[test]
    fn seed_router_plan() {
        let state = seed();
        let plan = router_plan(&state, &state.routers[0]);
        assert_eq!(plan.namespace, "qrouter-r1");
        let names: Vec<_> = plan
            .devices
            .iter()
            .map(|d| (d.name.as_str(), d.tap.as_str(), d.bridge.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("qg-b8b32a88-03", "tapb8b32a88-03", "br-ex"),
                ("qr-e17162c5-00", "tape17162c5-00", "brqn101-0000-0")
            ]
        );
        assert_eq!(
            plan.devices[0].addresses,
            ["10.10.10.2/24".parse::<Ipv4Net>().unwrap()]
        );
        assert_eq!(
            plan.devices[1].addresses,
            ["172.16.101.1/24".parse::<Ipv4Net>().unwrap()]
        );
        assert_eq!(
            plan.routes,
            [(Ipv4Net::default(), "10.10.10.1".parse().unwrap())]
        );
        let snat = &plan.rules[0]
            .chains
            .iter()
            .find(|(c, _)| c == "qrouter-snat")
            .unwrap()
            .1;
        assert_eq!(
            snat.last().unwrap(),
            "-o qg-b8b32a88-03 -j SNAT --to-source 10.10.10.2 --random-fully"
        );
    }

    #[test]
    fn router_without_gateway_has_no_default_route_and_no_nat() {
        let mut state = seed();
        std::rc::Rc::make_mut(&mut state.routers[0]).gateway_port_id = None;
        let plan = router_plan(&state, &state.routers[0]);
        assert_eq!(plan.devices.len(), 1);
        assert!(plan.routes.is_empty());
        assert!(plan
            .rules
            .iter()
            .flat_map(|t| &t.chains)
            .all(|(_, r)| r.is_empty()));
    }
}
