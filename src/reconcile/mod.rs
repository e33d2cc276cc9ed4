//! Desired state -> kernel, in three parts that never mix: `plan` builds what each namespace
//! should hold from the store, as data; `observe` reads what the kernel holds and `diff`
//! compares the two into steps; `apply` carries the steps out. `router show` marks the
//! steps, `sync --dry-run` lists them and every change applies them, so the three agree.
//! Converging an unchanged object changes nothing.

mod apply;
pub mod dhcp;
pub mod diff;
pub mod ha;
pub mod host;
pub mod observe;
pub mod plan;
pub mod portsec;

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::kernel::{netns, Kernel, NewNamespace};
use crate::model::{naming, Network, PortRole, Router, State, Subnet};
use apply::make_namespace;
use diff::{Observed, Step};
use host::{ensure_network, host_forward, remove_namespaces, remove_network};
pub use host::{host_forward_idle, remove_orphan_links};
use observe::Reading;
pub use plan::{instance_plan, router_plan, Plan};

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

    /// Add the routers and instances whose plan a change of networks or subnets altered,
    /// though the change named none of them: a subnet made on an external network is an
    /// on-link route in every router with its gateway there (Neutron's set_onlink_routes),
    /// one deleted takes its route away. Every change leaves every router it affects
    /// converged; the plans say which, so no operation has to know.
    pub fn follow_networks(&mut self, old: &State, new: &State) {
        let changed = changed_networks(old, new);
        if changed.is_empty() {
            return;
        }
        for port in new
            .ports
            .iter()
            .filter(|p| changed.contains(p.network_id.as_str()))
        {
            let id = &port.device_id;
            match port.role {
                PortRole::RouterGateway | PortRole::RouterInterface => {
                    if self.routers.contains(id) {
                        continue;
                    }
                    if let (Some(was), Some(is)) = (old.router_by_id(id), new.router_by_id(id)) {
                        if router_plan(old, was) != router_plan(new, is) {
                            self.routers.insert(id.clone());
                        }
                    }
                }
                PortRole::Instance => {
                    if self.instances.contains(id) {
                        continue;
                    }
                    let (was, is) = (old.instance_by_id(id), new.instance_by_id(id));
                    if let (Some(was), Some(is)) = (was, is) {
                        if instance_plan(old, was) != instance_plan(new, is) {
                            self.instances.insert(id.clone());
                        }
                    }
                }
                PortRole::Dhcp | PortRole::Workload => {}
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty() && self.routers.is_empty() && self.instances.is_empty()
    }

    /// Everything `state` holds, and every namespace on this host named like ours: one
    /// with no object in the state may be an orphan, and converging an id the state does
    /// not have removes its namespace if it carries our mark (a full sync).
    pub fn all_here(state: &State) -> Touched {
        let mut touched = Touched {
            networks: state.networks.iter().map(|n| n.id.clone()).collect(),
            routers: state.routers.iter().map(|r| r.id.clone()).collect(),
            instances: state.instances.iter().map(|i| i.id.clone()).collect(),
        };
        // A router's radvd outlives a namespace deleted behind qrouter's back.
        touched
            .routers
            .extend(crate::kernel::radvd::routers_with_pid_files());
        for name in netns::names() {
            if let Some(id) = name.strip_prefix("qrouter-") {
                touched.routers.insert(id.to_string());
            } else if let Some(id) = name.strip_prefix("qinstance-") {
                touched.instances.insert(id.to_string());
            } else if let Some(id) = name.strip_prefix("qdhcp-") {
                touched.networks.insert(id.to_string());
            }
        }
        touched
    }
}

/// The networks that changed between the states, or whose subnets did (by id).
/// A set of ids that a change's few networks are looked up in once per port: ordered, where
/// hashing every port's network id cost 7 % of a `batch` with 500 routers present.
fn changed_networks<'s>(old: &'s State, new: &'s State) -> BTreeSet<&'s str> {
    let mut changed = BTreeSet::new();
    let (networks, _) = differing(&old.networks, &new.networks, |n: &Network| &n.id);
    changed.extend(networks.iter().map(|n| n.id.as_str()));
    let (edited, gone) = differing(&old.subnets, &new.subnets, |s: &Subnet| &s.id);
    changed.extend(edited.iter().chain(&gone).map(|s| s.network_id.as_str()));
    changed
}

/// The objects of `new` that are not in `old` as they were (new or edited), and those of
/// `old` gone from `new`. A change edits copies of only what it touches, in place, appends
/// and removes: what it left is still shared with `old` (the same `Rc`) and in the same
/// order. So only the part between the longest shared start and end is compared by id and
/// value; with a thousand routers present that is one object, not every network and subnet
/// hashed and compared on every change.
fn differing<'s, T: PartialEq>(
    old: &'s [std::rc::Rc<T>],
    new: &'s [std::rc::Rc<T>],
    id: impl Fn(&T) -> &str,
) -> (Vec<&'s T>, Vec<&'s T>) {
    use std::rc::Rc;
    let start = old
        .iter()
        .zip(new)
        .take_while(|(o, n)| Rc::ptr_eq(o, n))
        .count();
    let (old, new) = (&old[start..], &new[start..]);
    let end = (old.iter().rev().zip(new.iter().rev()))
        .take_while(|(o, n)| Rc::ptr_eq(o, n))
        .count();
    let (old, new) = (&old[..old.len() - end], &new[..new.len() - end]);
    let was: HashMap<&str, &T> = old.iter().map(|o| (id(o), &**o)).collect();
    let edited = (new.iter())
        .filter(|n| was.get(id(n)).is_none_or(|w| *w != &***n))
        .map(|n| &**n)
        .collect();
    let is: HashSet<&str> = new.iter().map(|n| id(n)).collect();
    let gone = (old.iter())
        .filter(|o| !is.contains(id(o)))
        .map(|o| &**o)
        .collect();
    (edited, gone)
}

/// What is told of each namespace converged: the command line decides what to draw.
pub struct Progress(pub Box<dyn Fn()>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

/// What converging did, or with `dry_run` would do: one line per kernel change.
#[derive(Debug, Default)]
pub struct Changes {
    pub dry_run: bool,
    /// Read back even what the store did not change (`sync`): drift made behind our back.
    pub check_drift: bool,
    pub done: Vec<String>,
    /// Called once per namespace converged (`sync` draws a bar with it on a terminal).
    pub progress: Option<Progress>,
    /// Each bridge made to match, by name, with its index (for the veths enslaved to it).
    bridges: HashMap<String, u32>,
    /// The networks whose bridge was made to match in this change.
    networks_done: HashSet<String>,
    /// The store's id: what qrouter makes carries it (`naming::mark`), and only what
    /// carries it is deleted as an orphan.
    pub owner: String,
    /// Objects named like qrouter's that carry no mark of this store: left alone, listed.
    pub foreign: Vec<String>,
    /// The states hold only some of the store's networks: the host's FORWARD rules, which
    /// name every network's bridge, cannot be built from them.
    pub partial: bool,
    /// The router or instance (kind, id) whose namespace `converge` failed at: an agent
    /// that then converges the others one by one need not repeat a slow failure (a DHCP
    /// client's 5 s) in the same pass.
    pub failed: Option<(&'static str, String)>,
    /// One object's failure holds no other back (`sync`): it is noted in `failures` and
    /// converging goes on. Otherwise the first failure ends it (a change rolls back).
    pub keep_going: bool,
    /// With `keep_going`: each object that failed, its error naming it.
    pub failures: Vec<anyhow::Error>,
    /// The ids of objects the store holds but the reader set aside (their keys failed their
    /// checks): nothing of theirs is removed, whatever the states say.
    pub held: HashSet<String>,
}

impl Changes {
    /// A change for the store whose id is `owner`.
    pub fn new(owner: &str) -> Changes {
        Changes {
            owner: owner.to_string(),
            ..Default::default()
        }
    }

    /// Record a change; true when it should really be made.
    fn note(&mut self, what: String) -> bool {
        self.done.push(what);
        !self.dry_run
    }

    /// What converging an object ended with, its error named after `what` (unless it names
    /// it already): with `keep_going` a failure is noted and passed over, otherwise it is
    /// the error.
    pub fn outcome(
        &mut self,
        what: Option<String>,
        done: anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let Err(e) = done else { return Ok(()) };
        let e = match what {
            Some(what) if !e.to_string().starts_with(&what) => e.context(what),
            _ => e,
        };
        if !self.keep_going {
            return Err(e);
        }
        self.failures.push(e);
        Ok(())
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
    // from the old state's ports (and, for orphans, from the qr-/qg- names inside). An
    // orphan, which no object of the store explains, goes only if it carries our mark.
    let gone_routers = (touched.routers.iter())
        .filter(|id| new.router_by_id(id).is_none() && !log.held.contains(*id));
    let gone_instances = (touched.instances.iter())
        .filter(|id| new.instance_by_id(id).is_none() && !log.held.contains(*id));
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
    let gone: Vec<(String, bool)> = gone_routers
        .map(|id| (naming::router_namespace(id), old.router_by_id(id).is_some()))
        .chain(gone_instances.map(|id| {
            (
                naming::instance_namespace(id),
                old.instance_by_id(id).is_some(),
            )
        }))
        .collect();
    // An HA copy's keepalived goes first: a master hands over at once (a priority-0
    // advert), and none is left behind in a namespace being deleted.
    for (ns, _) in &gone {
        let id = ns.strip_prefix("qrouter-").unwrap_or_default();
        let running = !id.is_empty() && crate::kernel::keepalived::present(id);
        if running && log.note(format!("{ns}: stop keepalived")) {
            let stopped = crate::kernel::keepalived::stop(id);
            log.outcome(Some(format!("router {id}")), stopped)?;
        }
    }
    let removed = remove_namespaces(k, &gone, &mut taps, log).await;
    log.outcome(None, removed)?;
    if !log.dry_run {
        for id in touched
            .instances
            .iter()
            .filter(|id| new.instance_by_id(id).is_none())
        {
            crate::kernel::udhcpc::remove_lease(id);
        }
    }

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
            .map(|p| make_namespace(p, &log.owner))
            .transpose()?;
        let before = old
            .router_by_id(&router.id)
            .filter(|_| !log.check_drift)
            .map(|r| router_plan(old, r));
        let converged = converge_namespace(k, new, &plan, before.as_ref(), log, made_ahead).await;
        if converged.is_err() {
            log.failed = Some(("router", router.id.clone()));
        }
        log.outcome(Some(format!("router {}", router.name)), converged)?;
        log.progress.iter().for_each(|tick| (tick.0)());
    }
    // Port security before the instances' devices are made: a tap is guarded from its
    // first frame on.
    portsec::converge(old, new, touched, log)?;
    // Each network's DHCP namespace and dnsmasq, before a deleted network's bridge goes,
    // and before the instances: one that takes its address by DHCP asks a dnsmasq that
    // already knows its port.
    dhcp::converge_networks(k, old, new, touched, log).await?;
    for id in &touched.instances {
        let Some(instance) = new.instance_by_id(id) else {
            continue;
        };
        let plan = instance_plan(new, instance);
        let converged = converge_namespace(k, new, &plan, None, log, None).await;
        if converged.is_err() {
            log.failed = Some(("instance", id.clone()));
        }
        log.outcome(Some(format!("instance {}", instance.name)), converged)?;
        log.progress.iter().for_each(|tick| (tick.0)());
    }
    // The bridges of networks no router or instance uses: the others were made with the
    // devices on them, while another thread made the next namespace.
    let networks: Vec<&String> = (touched.networks.iter())
        .filter(|id| !log.held.contains(*id))
        .collect();
    // Looked for once, not in every network's turn: `sync` of 1000 routers went through
    // every port for each of 2000 networks.
    let workloads: HashSet<&str> = match networks.is_empty() {
        true => HashSet::new(),
        false => (old.ports.iter().chain(new.ports.iter()))
            .filter(|p| p.role == PortRole::Workload)
            .map(|p| p.network_id.as_str())
            .collect(),
    };
    for id in networks {
        let done = match (new.network_by_id(id), old.network_by_id(id)) {
            (Some(network), _) => match ensure_network(k, network, log).await {
                Ok(()) if !workloads.contains(id.as_str()) => Ok(()),
                Ok(()) => match host::unplug_deleted(k, old, new, network, log).await {
                    Ok(()) => host::plug_workloads(k, new, network, log).await,
                    failed => failed,
                },
                failed => failed,
            },
            (None, Some(network)) => remove_network(k, network, log).await,
            (None, None) => continue,
        };
        let name = new.network_by_id(id).or(old.network_by_id(id));
        let name = name.map_or(id.as_str(), |n| n.name.as_str());
        log.outcome(Some(format!("network {name}")), done)?;
    }
    // Only a network made or deleted changes the host's rules; `sync` checks them anyway.
    let (was, is) = (old.networks.iter(), new.networks.iter());
    if !was.map(|n| &n.id).eq(is.map(|n| &n.id)) || log.check_drift {
        let done = host_forward(k, new, log);
        log.outcome(None, done)?;
    }
    Ok(())
}

/// Make one namespace match its plan. `before` is the plan of the state being left, if the
/// namespace had one: what it holds is trusted, not read back. `ahead` is its namespace,
/// already being made.
async fn converge_namespace(
    k: &mut Kernel,
    state: &State,
    plan: &Plan,
    before: Option<&Plan>,
    log: &mut Changes,
    ahead: Option<NewNamespace>,
) -> anyhow::Result<()> {
    // A new namespace is made on a thread of its own while its networks are made here.
    let missing = ahead.is_some() || !netns::exists(&plan.namespace);
    let making = match ahead {
        None if missing && !log.dry_run => Some(make_namespace(plan, &log.owner)?),
        ahead => ahead,
    };
    for device in &plan.devices {
        if let Some(network) = state.network_by_id(&device.network_id) {
            ensure_network(k, network, log).await?;
        }
    }
    let seen = match missing {
        true => observe::observe_missing(k, plan, &mut log.bridges).await?,
        false => {
            let reading = Reading {
                before,
                counters: false,
            };
            observe::observe(k, plan, reading, &mut log.bridges).await?
        }
    };
    let steps = diff::diff(plan, &seen, &log.owner);
    log.done.extend(steps.iter().map(|s| s.describe(plan)));
    if log.dry_run || steps.is_empty() {
        return Ok(());
    }
    let cx = apply::Inputs {
        plan,
        seen: &seen,
        making,
        bridges: &log.bridges,
        rules_assumed: before.is_some(),
        owner: &log.owner,
        announce: !log.check_drift,
    };
    apply::apply(k, &steps, cx).await
}

/// Announce a router's addresses again (gratuitous ARP) from its namespace as it is, on the
/// devices that are up: once another copy of it elsewhere is gone (a host it moved from,
/// back), the bridges and switches on the way learn that this one is where it lives. How
/// many addresses were announced.
pub async fn announce(k: &mut Kernel, state: &State, router: &Router) -> anyhow::Result<usize> {
    let plan = router_plan(state, router);
    if !netns::exists(&plan.namespace) {
        return Ok(0);
    }
    let links = crate::kernel::link::list(&k.ns(&plan.namespace)?).await?;
    let mut items = vec![];
    for d in &plan.devices {
        let Some(l) = links.iter().find(|l| l.name == d.name && l.up) else {
            continue;
        };
        items.extend(apply::announcements(l.index, d));
    }
    crate::kernel::arp::announce_all(&plan.namespace, &items)?;
    Ok(items.len())
}

/// A router's plan, what its namespace holds, and the steps between them: what `router show`
/// displays and marks.
pub struct Inspection {
    pub plan: Plan,
    pub seen: Observed,
    pub steps: Vec<Step>,
}

impl Inspection {
    /// The steps as `sync --dry-run` lists them.
    pub fn drift(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.describe(&self.plan)).collect()
    }
}

/// Read the kernel for `router` and compare it with the store, changing nothing.
pub async fn inspect(
    k: &mut Kernel,
    state: &State,
    router: &Router,
    owner: &str,
) -> anyhow::Result<Inspection> {
    let plan = router_plan(state, router);
    let reading = Reading {
        before: None,
        counters: true,
    };
    let seen = observe::observe(k, &plan, reading, &mut HashMap::new()).await?;
    let steps = diff::diff(&plan, &seen, owner);
    Ok(Inspection { plan, seen, steps })
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::differing;

    #[derive(Debug, PartialEq)]
    struct Obj(&'static str, u32);

    fn ids<'a>(objs: &[&'a Obj]) -> Vec<&'a str> {
        objs.iter().map(|o| o.0).collect()
    }

    #[test]
    fn only_what_a_change_copied_appended_or_removed_differs() {
        let old: Vec<Rc<Obj>> = ["a", "b", "c", "d"].map(|i| Rc::new(Obj(i, 0))).to_vec();
        fn id(o: &Obj) -> &str {
            o.0
        }
        let unchanged = old.clone();
        let (edited, gone) = differing(&old, &unchanged, id);
        assert!(edited.is_empty() && gone.is_empty());
        // Edited in place (a copy), one appended, one removed.
        let mut new = old.clone();
        new[1] = Rc::new(Obj("b", 1));
        new.retain(|o| o.0 != "c");
        new.push(Rc::new(Obj("e", 0)));
        let (edited, gone) = differing(&old, &new, id);
        assert_eq!((ids(&edited), ids(&gone)), (vec!["b", "e"], vec!["c"]));
        // A copy equal to what it replaced is no change.
        let mut same = old.clone();
        same[2] = Rc::new(Obj("c", 0));
        let (edited, gone) = differing(&old, &same, id);
        assert!(edited.is_empty() && gone.is_empty());
    }
}
