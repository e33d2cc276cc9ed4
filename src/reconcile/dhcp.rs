//! DHCP per network, in the same plan → observe → diff → apply shape as routers: the
//! `qdhcp-<network id>` namespace and its `ns-` device are a `Plan` of kind `Dhcp`, converged
//! by `converge_namespace` like any other; dnsmasq's files and process are observed here
//! (`Observed`), compared (`diff`) into `Step`s and applied. `sync --dry-run` lists the steps,
//! `network show` reports the process and marks it when dead.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;

use anyhow::Context;
use ipnet::IpNet;

use super::plan::{self, Kind, Plan};
use super::{converge_namespace, Changes, Touched};
use crate::kernel::{dnsmasq, netns, Kernel};
use crate::model::dhcp_config;
use crate::model::{dhcp, ipam, naming, Network, Object, PortRole, State, Subnet};

/// The namespace a network's DHCP server wants, if any subnet of it serves DHCP.
pub fn dhcp_plan(state: &State, network: &Network) -> Option<Plan> {
    if !dhcp::wanted(state, &network.id) {
        return None;
    }
    let port = dhcp::dhcp_port(state, &network.id)?;
    let mut device = plan::device(port, network);
    for fixed in &port.fixed_ips {
        if let Some(subnet) = state.subnet_by_id(&fixed.subnet_id) {
            device.addresses.push(ipam::with_prefix(subnet, fixed.ip));
        }
    }
    // Where a router holds a DHCP subnet's gateway, the namespace's default route (of that
    // family) goes through it, as Neutron sets it: instances on the router's other subnets
    // can then use this network's DNS server.
    let routed = |subnet: &Subnet, gw: IpAddr| {
        state.ports.iter().any(|p| {
            p.role == PortRole::RouterInterface
                && p.fixed_ips
                    .iter()
                    .any(|f| f.subnet_id == subnet.id && f.ip == gw)
        })
    };
    let mut plan = Plan::empty(Kind::Dhcp, &network.id, naming::dhcp_namespace(&network.id));
    for v6 in [false, true] {
        let gateway = port
            .fixed_ips
            .iter()
            .filter(|f| f.ip.is_ipv6() == v6)
            .filter_map(|f| state.subnet_by_id(&f.subnet_id))
            .find_map(|s| s.gateway.filter(|gw| routed(s, *gw)));
        plan.routes.extend(gateway.map(plan::Route::default_via));
    }
    // Its IPv6 addresses are static, as Neutron's DHCP agent has them (no advertisement
    // changes them), and usable at once: DHCPv6 replies leave from the device's link-local.
    if port.fixed_ips.iter().any(|f| f.ip.is_ipv6()) {
        for key in ["accept_ra", "accept_dad"] {
            plan.sysctls.push(plan::ipv6_conf(&device.name, key, "0"));
        }
    }
    plan.devices.push(device);
    Some(plan)
}

/// The files dnsmasq reads, by name, in `Config::files` order.
const FILES: [&str; 3] = ["host", "addn_hosts", "opts"];

/// dnsmasq's side of a network, as found.
#[derive(Debug)]
pub struct Observed {
    pub process: dnsmasq::State,
    pub files: Vec<Option<String>>,
    /// The leases it holds: (MAC, address).
    pub leases: Vec<(String, Ipv4Addr)>,
}

pub fn observe(network_id: &str) -> Observed {
    Observed {
        process: dnsmasq::state(network_id),
        files: dnsmasq::read_files(network_id, &FILES),
        leases: dnsmasq::read_leases(network_id),
    }
}

/// One change to a network's dnsmasq.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    WriteFiles(Vec<&'static str>),
    Start {
        dead: Option<i32>,
    },
    Restart {
        pid: i32,
        why: &'static str,
    },
    /// SIGHUP: the files are read again, the leases stay.
    Reload {
        pid: i32,
    },
    /// A lease no port explains any more (deleted, or its MAC or address changed), released
    /// once dnsmasq has the new files, so the address can go to another MAC at once.
    Release {
        mac: String,
        ip: Ipv4Addr,
        /// The DHCP port's address on the lease's subnet, to which the release goes.
        server: Ipv4Addr,
    },
}

impl Step {
    pub fn describe(&self, ns: &str) -> String {
        match self {
            Step::WriteFiles(names) => format!("{ns}: write dnsmasq {}", names.join(", ")),
            Step::Start { dead: None } => format!("{ns}: start dnsmasq"),
            Step::Start { dead: Some(pid) } => {
                format!("{ns}: start dnsmasq (pid {pid} of its pid file is dead)")
            }
            Step::Restart { pid, why } => format!("{ns}: restart dnsmasq (pid {pid}): {why}"),
            Step::Reload { pid } => format!("{ns}: reload dnsmasq (pid {pid}, SIGHUP)"),
            Step::Release { mac, ip, .. } => {
                format!("{ns}: release the lease of {mac} on {ip} (no port has that pair now)")
            }
        }
    }
}

/// The steps from `seen` to `config`. `remade`: the namespace or its device was made anew,
/// so a dnsmasq still running is bound to what is gone. `served`: the DHCP port's
/// addresses, to which releases go.
pub fn diff(
    config: &dhcp_config::Config,
    seen: &Observed,
    remade: bool,
    served: &[IpNet],
) -> Vec<Step> {
    let changed: Vec<&'static str> = config
        .files()
        .iter()
        .zip(&seen.files)
        .filter(|((_, want), have)| have.as_deref() != Some(*want))
        .map(|((name, _), _)| *name)
        .collect();
    let mut steps = vec![];
    if !changed.is_empty() {
        steps.push(Step::WriteFiles(changed.clone()));
    }
    match &seen.process {
        dnsmasq::State::Running(p) if p.args != config.args => steps.push(Step::Restart {
            pid: p.pid,
            why: "its options changed",
        }),
        dnsmasq::State::Running(p) if remade => steps.push(Step::Restart {
            pid: p.pid,
            why: "its device was made anew",
        }),
        dnsmasq::State::Running(p) if !changed.is_empty() => {
            steps.push(Step::Reload { pid: p.pid })
        }
        dnsmasq::State::Running(_) => {}
        dnsmasq::State::Dead(pid) => steps.push(Step::Start { dead: Some(*pid) }),
        dnsmasq::State::Absent => steps.push(Step::Start { dead: None }),
    }
    for (mac, ip) in seen.leases.iter().filter(|l| !config.leases.contains(l)) {
        // A lease outside every subnet served now goes with the range dnsmasq drops.
        let server = served.iter().find_map(|a| match a {
            IpNet::V4(a) if a.contains(ip) => Some(a.addr()),
            _ => None,
        });
        if let Some(server) = server {
            steps.push(Step::Release {
                mac: mac.clone(),
                ip: *ip,
                server,
            });
        }
    }
    steps
}

fn config(state: &State, network: &Network, plan: &Plan) -> dhcp_config::Config {
    dhcp_config::config(
        state,
        network,
        &plan.devices[0].name,
        &dnsmasq::conf_dir(&network.id),
        &dnsmasq::pid_file(&network.id),
    )
}

/// Everything the network's DHCP side is made from (its namespace's plan, dnsmasq's files
/// and arguments), None without DHCP: two states that give the same need no converging.
pub fn wanted(state: &State, network: &Network) -> Option<(Plan, dhcp_config::Config)> {
    let plan = dhcp_plan(state, network)?;
    let config = config(state, network, &plan);
    Some((plan, config))
}

/// The networks whose DHCP side a change can affect: those touched, and those whose ports,
/// instances (their names are in DNS) or subnets changed.
pub fn affected(
    old: &State,
    new: &State,
    touched: &Touched,
    check_drift: bool,
) -> BTreeSet<String> {
    let mut ids = touched.networks.clone();
    if !std::ptr::eq(old, new) {
        for p in differing(&old.ports, &new.ports) {
            ids.insert(p.network_id.clone());
        }
        for i in differing(&old.instances, &new.instances) {
            let port = new
                .port_by_id(&i.port_id)
                .or_else(|| old.port_by_id(&i.port_id));
            ids.extend(port.map(|p| p.network_id.clone()));
        }
        for s in differing(&old.subnets, &new.subnets) {
            ids.insert(s.network_id.clone());
        }
    }
    if check_drift {
        ids.extend(dnsmasq::networks_with_pid_files());
    }
    ids
}

/// The objects made, changed or gone between two lists. Objects keep their creation order
/// and a change copies only what it changes: the common head is compared by pointer, and
/// only the rest by id, so a change costs what it changed, not the size of the store.
fn differing<'a, T: Object + PartialEq>(old: &'a [Rc<T>], new: &'a [Rc<T>]) -> Vec<&'a T> {
    let same = old
        .iter()
        .zip(new)
        .take_while(|(o, n)| Rc::ptr_eq(o, n))
        .count();
    let (old, new) = (&old[same..], &new[same..]);
    let was: HashMap<&str, &T> = old.iter().map(|o| (o.id(), o.as_ref())).collect();
    let is: HashMap<&str, &T> = new.iter().map(|n| (n.id(), n.as_ref())).collect();
    let changed = new
        .iter()
        .filter(|n| was.get(n.id()) != Some(&n.as_ref()))
        .map(|n| n.as_ref());
    let gone = old
        .iter()
        .filter(|o| !is.contains_key(o.id()))
        .map(|o| o.as_ref());
    changed.chain(gone).collect()
}

/// Make every affected network's DHCP side match `new`: its namespace and device, then
/// dnsmasq's files and process; or remove them where the network or its DHCP is gone.
pub async fn converge_networks(
    k: &mut Kernel,
    old: &State,
    new: &State,
    touched: &Touched,
    log: &mut Changes,
) -> anyhow::Result<()> {
    let mut affected = affected(old, new, touched, log.check_drift);
    affected.retain(|id| !log.held.contains(id));
    // Which networks serve DHCP, found once: `sync` of 1000 routers went through every
    // subnet for each of 2000 networks.
    let (served_now, served_before) = (served(new, &affected), served(old, &affected));
    for id in affected {
        let network = new
            .network_by_id(&id)
            .filter(|_| served_now.contains(id.as_str()));
        let done = match network.and_then(|n| Some((n, dhcp_plan(new, n)?))) {
            Some((network, plan)) => {
                let before = old
                    .network_by_id(&id)
                    .filter(|_| !log.check_drift && served_before.contains(id.as_str()))
                    .and_then(|n| dhcp_plan(old, n));
                converge_network(k, new, network, &plan, before.as_ref(), log).await
            }
            None => remove(k, old, new, &id, log).await,
        };
        let name = network.or(old.network_by_id(&id));
        let name = name.map_or(id.as_str(), |n| n.name.as_str());
        log.outcome(Some(format!("network {name}")), done)?;
    }
    Ok(())
}

/// Those of `networks` with a subnet that serves DHCP in `state` (`dhcp::wanted`).
fn served<'a>(state: &'a State, networks: &BTreeSet<String>) -> HashSet<&'a str> {
    if networks.is_empty() {
        return HashSet::new();
    }
    (state.subnets.iter())
        .filter(|s| s.dhcp.enabled && networks.contains(&s.network_id))
        .map(|s| s.network_id.as_str())
        .collect()
}

/// One network's DHCP namespace, then its dnsmasq.
async fn converge_network(
    k: &mut Kernel,
    new: &State,
    network: &Network,
    plan: &Plan,
    before: Option<&Plan>,
    log: &mut Changes,
) -> anyhow::Result<()> {
    if !netns::exists(&plan.namespace) {
        detached(plan, log)?;
    }
    let from = log.done.len();
    converge_namespace(k, new, plan, before, log, None)
        .await
        .context("its DHCP namespace")?;
    let remade = log.done[from..]
        .iter()
        .any(|l| l.contains(": create namespace") || l.contains(": create veth"));
    converge_dnsmasq(new, network, plan, remade, log).context("dnsmasq")
}

/// The namespace is gone (a reboot, or `ip netns del`) but a dnsmasq of ours may still run
/// in it, keeping it alive unseen with its veth, whose tap holds the name a new one needs:
/// stop it (the tap is then an orphan that converging the namespace deletes).
fn detached(plan: &Plan, log: &mut Changes) -> anyhow::Result<()> {
    let ns = &plan.namespace;
    if let dnsmasq::State::Running(p) = dnsmasq::state(&plan.id) {
        let what = format!("{ns}: stop dnsmasq (pid {}): its namespace is gone", p.pid);
        if log.note(what) {
            dnsmasq::stop(&plan.id)?;
        }
    }
    Ok(())
}

fn converge_dnsmasq(
    state: &State,
    network: &Network,
    plan: &Plan,
    remade: bool,
    log: &mut Changes,
) -> anyhow::Result<()> {
    let config = config(state, network, plan);
    let seen = observe(&network.id);
    let device = &plan.devices[0];
    for step in diff(&config, &seen, remade, &device.addresses) {
        if !log.note(step.describe(&plan.namespace)) {
            continue;
        }
        match step {
            Step::WriteFiles(_) => dnsmasq::write_files(&network.id, &config.files())?,
            Step::Start { .. } | Step::Restart { .. } => {
                dnsmasq::start(&network.id, &plan.namespace, &config.args)?;
            }
            Step::Reload { pid } => dnsmasq::reload(pid)?,
            Step::Release { mac, ip, server } => {
                dnsmasq::release(&plan.namespace, &device.name, server, ip, &mac)?;
            }
        }
    }
    Ok(())
}

/// Stop the network's dnsmasq (only one whose pid file is ours), remove its files, then its
/// namespace: proven ours when the store knew the network, else only when its `lo` carries
/// this store's mark.
async fn remove(
    k: &mut Kernel,
    old: &State,
    new: &State,
    id: &str,
    log: &mut Changes,
) -> anyhow::Result<()> {
    let ns = naming::dhcp_namespace(id);
    let exists = std::path::Path::new(&netns::path(&ns)).exists();
    let files = dnsmasq::conf_dir(id).exists();
    // A network that never served DHCP has none of these: no need to look for its dnsmasq
    // among every process of the host, except in `sync`, which finds strays.
    let traces = exists || files || dnsmasq::pid_file(id).exists();
    if !traces && !log.check_drift {
        return Ok(());
    }
    let process = dnsmasq::state(id);
    if !exists && process == dnsmasq::State::Absent && !files {
        return Ok(());
    }
    match &process {
        dnsmasq::State::Running(p) => {
            if log.note(format!("{ns}: stop dnsmasq (pid {})", p.pid)) {
                dnsmasq::stop(id)?;
            }
        }
        dnsmasq::State::Dead(_) => {
            if log.note(format!("{ns}: remove the pid file of a dead dnsmasq")) {
                dnsmasq::stop(id)?;
            }
        }
        dnsmasq::State::Absent => {}
    }
    if files && log.note(format!("{ns}: remove dnsmasq's files")) {
        dnsmasq::remove_files(id)?;
    }
    let proven = old.network_by_id(id).is_some() || new.network_by_id(id).is_some();
    let mut taps: Vec<String> = dhcp::dhcp_port(old, id)
        .into_iter()
        .map(naming::port_tap)
        .collect();
    super::remove_namespaces(k, &[(ns, proven)], &mut taps, log).await
}

/// `network show`'s fields for the network's DHCP server: namespace, addresses, dnsmasq
/// (running with its pid, or marked DEAD/MISSING) and what `sync` would change.
pub fn fields(state: &State, network: &Network) -> Vec<(String, serde_json::Value)> {
    let field = |k: &str, v: serde_json::Value| (k.to_string(), v);
    let Some(s) = status(state, network) else {
        return vec![field("dhcp", "off (no subnet serves DHCP)".into())];
    };
    let (dnsmasq, pid) = match &s.process {
        dnsmasq::State::Running(p) => ("running".to_string(), Some(p.pid)),
        dnsmasq::State::Dead(pid) => (
            format!("DEAD: pid {pid} of its pid file is not running; 'qrouter sync' restarts it"),
            None,
        ),
        dnsmasq::State::Absent => (
            "MISSING: not running; 'qrouter sync' starts it".to_string(),
            None,
        ),
    };
    vec![
        field("dhcp_namespace", s.namespace.into()),
        field("dhcp_addresses", s.addresses.into()),
        field("dnsmasq", dnsmasq.into()),
        field("dnsmasq_pid", pid.into()),
        field("dhcp_drift", s.drift.into()),
    ]
}

/// What `network show` reports of a network's DHCP server.
pub struct Status {
    pub namespace: String,
    pub addresses: Vec<String>,
    pub process: dnsmasq::State,
    /// What `sync` would change.
    pub drift: Vec<String>,
}

/// The DHCP server of `network` as the kernel has it, compared with the store; None when
/// the network has no DHCP. Reads files and /proc only.
pub fn status(state: &State, network: &Network) -> Option<Status> {
    let plan = dhcp_plan(state, network)?;
    let config = config(state, network, &plan);
    let seen = observe(&network.id);
    let mut drift = vec![];
    if !netns::exists(&plan.namespace) {
        drift.push(format!("{}: create namespace", plan.namespace));
    }
    drift.extend(
        diff(&config, &seen, false, &plan.devices[0].addresses)
            .iter()
            .map(|s| s.describe(&plan.namespace)),
    );
    Some(Status {
        addresses: plan.devices[0]
            .addresses
            .iter()
            .map(|a| a.to_string())
            .collect(),
        namespace: plan.namespace,
        process: seen.process,
        drift,
    })
}
