//! The one seam between "it runs here" and "it runs where the agents put it": what only a
//! kernel knows of an object (whether it stands, its live views, a lease, a port's device) is
//! read from this host's kernel with the embedded store, and asked of the agent of the host
//! the object is placed on with an etcd store. The backend is chosen once, when the session
//! is made from its store (`Backend::of`); the command line asks here and never which store
//! is open. Changes take the same fork in `Session::change` (converge here, or wait for the
//! agents: `agents.rs`).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::ask;
use super::session::{connected, Session};
use crate::kernel::{link, netns, udhcpc};
use crate::model::ha::HaState;
use crate::model::protocol::{Condition, Kind, ObjectRef, Reply, Request, Status};
use crate::model::{naming, Instance, Network, Port, PortRole, Router, State};
use crate::output::{self, Section};
use crate::reconcile;
use crate::store::etcd::Etcd;

/// Where objects run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded store: on this host, whose kernel the command reads.
    Here,
    /// An etcd store: on the hosts the objects are placed on, each converged and reported by
    /// its host's agent.
    Agents,
}

impl Backend {
    pub fn of(store: &crate::store::Store) -> Backend {
        match store.converges_here() {
            true => Backend::Here,
            false => Backend::Agents,
        }
    }
}

/// How long a command waits for an agent's answer to what only its kernel knows.
const ASK_WAIT: Duration = Duration::from_secs(2);

/// A port's status (Neutron's) and what its device is doing, in words.
pub struct PortStatus {
    pub status: String,
    pub device_state: String,
}

/// What `router show` adds to the router's record: its status, where it runs, the
/// `kernel` summary, and the live views (Interfaces, Routes, NAT, Firewall, Drift).
pub struct RouterLive {
    pub fields: Vec<(String, Value)>,
    pub sections: Vec<Section>,
}

/// One copy of an HA router, as `router show` lists it (openstackclient's `network agent
/// list --router R --long`: the host, its status, its HA state).
#[derive(serde::Serialize)]
struct HaCopy {
    host: String,
    status: String,
    ha_state: Option<HaState>,
}

/// What each host's agent reported, by host; None for a host whose agent is away.
type Reports = HashMap<String, Option<HashMap<ObjectRef, Status>>>;

impl Session {
    /// Where this session's objects run.
    pub fn backend(&self) -> Backend {
        Backend::of(&self.store)
    }

    /// The status of each router of `routers` (by id) as `router list` and `show` print it:
    /// DOWN while disabled; here ACTIVE while its namespace exists (BUILD in an atomic batch,
    /// which makes it at the end); with agents as its host's agent reported it.
    pub fn router_statuses<'a>(
        &mut self,
        routers: impl Iterator<Item = &'a Router>,
    ) -> anyhow::Result<HashMap<String, String>> {
        let building = self.collecting();
        let mut reports = Reports::new();
        let mut out = HashMap::new();
        for r in routers {
            let status = match (r.meta.admin_state_up, self.backend()) {
                (false, _) => Condition::Down.to_string(),
                (true, Backend::Here) => {
                    match (netns::exists(&naming::router_namespace(&r.id)), building) {
                        (true, _) => Condition::Active.to_string(),
                        (false, true) => Condition::Build.to_string(),
                        (false, false) => Condition::Down.to_string(),
                    }
                }
                // An HA router is as well as its best copy.
                (true, Backend::Agents) if r.ha.is_some() => {
                    let copies = self.ha_copies(&mut reports, r)?;
                    let active = Condition::Active.to_string();
                    match copies.iter().any(|c| c.status == active) {
                        true => active,
                        false => copies
                            .first()
                            .map_or(Condition::Build.to_string(), |c| c.status.clone()),
                    }
                }
                (true, Backend::Agents) => {
                    let object = ObjectRef::new(Kind::Router, r.id.clone());
                    self.reported(&mut reports, &object, r.host.as_deref())?.0
                }
            };
            out.insert(r.id.clone(), status);
        }
        Ok(out)
    }

    /// Each copy of HA router `r`: its host, the status its agent reported, and what
    /// keepalived made of it there (none while its agent is away).
    fn ha_copies(&mut self, reports: &mut Reports, r: &Router) -> anyhow::Result<Vec<HaCopy>> {
        let object = ObjectRef::new(Kind::Router, r.id.clone());
        let mut out = vec![];
        for host in r.hosts() {
            let (status, _) = self.reported(reports, &object, Some(host))?;
            let seen = reports.get(host).and_then(Option::as_ref);
            let ha = seen.and_then(|s| s.get(&object)).and_then(|s| s.ha);
            out.push(HaCopy {
                host: host.to_string(),
                status,
                ha_state: ha,
            });
        }
        Ok(out)
    }

    /// An instance's status: here ACTIVE while its namespace exists; with agents as its
    /// host's agent reported it.
    pub fn instance_status(&mut self, i: &Instance) -> anyhow::Result<String> {
        Ok(match self.backend() {
            Backend::Here => match netns::exists(&naming::instance_namespace(&i.id)) {
                true => Condition::Active.to_string(),
                false => Condition::Down.to_string(),
            },
            Backend::Agents => {
                let object = ObjectRef::new(Kind::Instance, i.id.clone());
                self.reported(&mut Reports::new(), &object, i.host.as_deref())?
                    .0
            }
        })
    }

    /// The fields that say where an object runs: its host, with agents; none here.
    pub fn placement_fields(&self, host: Option<&str>) -> Vec<(String, Value)> {
        match self.backend() {
            Backend::Here => vec![],
            Backend::Agents => vec![("host".into(), host.into())],
        }
    }

    /// Whether a port's filter is in the host's nf_tables table as its plan says, in words;
    /// none with agents (its host's agent judges it, and reports drift as its status).
    pub fn port_security_rules(&self, state: &State, port: &Port) -> Option<String> {
        if self.backend() != Backend::Here {
            return None;
        }
        Some(
            match super::port::security_in_place(state, port, self.store.id()) {
                Ok(None) if port.security.enabled => {
                    "none: the port of a router or a DHCP server (exempt)".into()
                }
                Ok(None) => "none: port security is off".into(),
                Ok(Some(true)) => "in place".into(),
                Ok(Some(false)) => "MISSING or changed: 'qrouter sync' puts them back".into(),
                Err(e) => format!("unknown: {e:#}"),
            },
        )
    }

    /// Each port's status: here from its tap (up, on its network's bridge), from one dump
    /// of the host's links; with agents from what its owner's agent reported.
    pub async fn port_statuses(
        &mut self,
        state: &State,
        ports: &[&Port],
    ) -> anyhow::Result<Vec<PortStatus>> {
        if ports.is_empty() {
            return Ok(vec![]);
        }
        match self.backend() {
            Backend::Here => {
                let host = connected(&mut self.kernel)?.host().clone();
                let links = link::list(&host).await?;
                let links: HashMap<&str, &link::Link> =
                    links.iter().map(|l| (l.name.as_str(), l)).collect();
                Ok(ports
                    .iter()
                    .map(|p| {
                        let bridge = state.network_by_id(&p.network_id);
                        let bridge = bridge.and_then(|n| links.get(n.bridge.as_str()).copied());
                        let tap = links.get(naming::port_tap(p).as_str()).copied();
                        port_status_here(state, p, tap, bridge)
                    })
                    .collect())
            }
            Backend::Agents => {
                let mut reports = Reports::new();
                let mut out = Vec::with_capacity(ports.len());
                for p in ports {
                    out.push(self.port_status_placed(&mut reports, state, p)?);
                }
                Ok(out)
            }
        }
    }

    /// What an instance's DHCP client got (`instance show`'s `dhcp_lease`): here from its
    /// lease file, with agents asked of its host's agent (the file is there). Null for an
    /// instance whose address qrouter sets.
    pub fn instance_lease(&mut self, i: &Instance) -> anyhow::Result<Value> {
        if !i.dhcp {
            return Ok(Value::Null);
        }
        if self.backend() == Backend::Here {
            let got = udhcpc::read_lease(&i.id);
            if got.is_empty() {
                return Ok("none yet ('qrouter sync' runs its DHCP client)".into());
            }
            let fields = got.into_iter().filter(|(_, v)| !v.is_empty());
            let map: serde_json::Map<String, Value> =
                fields.map(|(k, v)| (k, Value::from(v))).collect();
            return Ok(map.into());
        }
        let Some(host) = i.host.as_deref() else {
            return Ok(Value::Null);
        };
        let etcd = self.agents()?;
        if !etcd.alive(host)? {
            return Ok(format!("on host {host}, which is down").into());
        }
        let request = Request::InstanceLease {
            instance: i.id.clone(),
        };
        Ok(match ask::ask(etcd, host, request, ASK_WAIT)? {
            None => no_answer(host).into(),
            Some(Reply::InstanceLease { lease }) if !lease.is_empty() => {
                serde_json::to_value(lease).unwrap_or_default()
            }
            Some(Reply::Failed { error }) => format!("on host {host}: {error}").into(),
            Some(_) => format!("none yet on host {host} (its agent runs the DHCP client)").into(),
        })
    }

    /// What `network show` says of the network's DHCP server: here its namespace, addresses
    /// and dnsmasq as this kernel has them; with agents the host it runs on and the status its
    /// agent reported.
    pub fn network_dhcp(
        &mut self,
        state: &State,
        n: &Network,
    ) -> anyhow::Result<Vec<(String, Value)>> {
        if self.backend() == Backend::Here {
            return Ok(reconcile::dhcp::fields(state, n));
        }
        let Some(p) = crate::model::dhcp::dhcp_port(state, &n.id) else {
            return Ok(vec![("dhcp".into(), "off (no subnet serves DHCP)".into())]);
        };
        let object = ObjectRef::new(Kind::Network, n.id.clone());
        let (status, _) = self.reported(&mut Reports::new(), &object, p.host.as_deref())?;
        Ok(vec![
            ("dhcp_host".into(), p.host.clone().into()),
            ("dhcp_status".into(), status.into()),
        ])
    }

    /// `router show`'s status, host, `kernel` summary and live views: here read from this
    /// kernel; with agents asked of the agent of the router's host, or why they cannot come
    /// (placed nowhere, the host down, no answer in time).
    pub async fn router_live(&mut self, state: &State, r: &Router) -> anyhow::Result<RouterLive> {
        let status = self.router_statuses(std::iter::once(r))?.remove(&r.id);
        let mut fields = vec![("status".to_string(), status.into())];
        fields.extend(self.placement_fields(r.host.as_deref()));
        if self.backend() == Backend::Here {
            let owner = self.store.id().to_string();
            let k = connected(&mut self.kernel)?;
            let inspection = reconcile::inspect(k, state, r, &owner).await?;
            fields.push(("kernel".into(), output::router::summary(&inspection).into()));
            let sections = output::router::kernel_views(state, r, &inspection);
            return Ok(RouterLive { fields, sections });
        }
        // An HA router's views are its master's (else its first copy's).
        let mut asked = r.host.clone();
        if let Some(ha) = &r.ha {
            let copies = self.ha_copies(&mut Reports::new(), r)?;
            let master = copies.iter().find(|c| c.ha_state == Some(HaState::Master));
            asked = master.or(copies.first()).map(|c| c.host.clone());
            let copies = serde_json::to_value(&copies).unwrap_or_default();
            fields.push(("ha_copies".into(), copies));
            let placed = format!("{} of {} copies", ha.copies.len(), ha.wanted);
            let redundancy = match ha.degraded() {
                true => format!("degraded: {placed}, no other live network host to run one"),
                false => placed,
            };
            fields.push(("ha_redundancy".into(), redundancy.into()));
        }
        let (kernel, sections) = self.router_views_asked(r, asked.as_deref())?;
        fields.push(("kernel".into(), kernel.into()));
        Ok(RouterLive { fields, sections })
    }

    fn router_views_asked(
        &mut self,
        r: &Router,
        host: Option<&str>,
    ) -> anyhow::Result<(String, Vec<Section>)> {
        let Some(host) = host else {
            return Ok(("placed on no host: it runs nowhere".into(), vec![]));
        };
        let etcd = self.agents()?;
        if !etcd.alive(host)? {
            let why = format!("on host {host}, which is down: its live views are unavailable");
            return Ok((why, vec![]));
        }
        let request = Request::RouterShow {
            router: r.id.clone(),
        };
        let Some(answer) = ask::ask(etcd, host, request, ASK_WAIT)? else {
            return Ok((
                format!("{}; the live views are there", no_answer(host)),
                vec![],
            ));
        };
        Ok(match answer {
            Reply::RouterShow { summary, views } => (
                format!("on host {host}: {summary}"),
                views.into_iter().map(Section::from).collect(),
            ),
            Reply::Failed { error } => (format!("on host {host}: {error}"), vec![]),
            other => (
                format!("on host {host}: its agent answered another question: {other:?}"),
                vec![],
            ),
        })
    }

    /// Run `command` inside instance `i`'s namespace (`instance exec`), on this host; its exit
    /// code. With agents the instance runs on its host: there, `qrouter instance exec` works
    /// as here.
    pub fn exec_in(&mut self, i: &Instance, command: &[String]) -> anyhow::Result<i32> {
        let ns = naming::instance_namespace(&i.id);
        if !netns::exists(&ns) {
            match (self.backend(), i.host.as_deref()) {
                (Backend::Agents, Some(host)) => crate::bail_invalid!(
                    "instance {}: it runs on host {host}, not here: run 'qrouter instance exec' there",
                    i.name
                ),
                _ => crate::bail_invalid!(
                    "instance {}: its namespace {ns} does not exist; run 'qrouter sync'",
                    i.name
                ),
            }
        }
        let file = netns::open(&ns)?;
        let mut cmd = netns::command(&file, &command[0]);
        if crate::NO_LIB_BACKTRACE.load(std::sync::atomic::Ordering::Relaxed) {
            cmd.env_remove("RUST_LIB_BACKTRACE");
        }
        let status = cmd
            .args(&command[1..])
            .status()
            .map_err(|e| anyhow::anyhow!("instance {}: cannot run {}: {e}", i.name, command[0]))?;
        Ok(status.code().unwrap_or(1))
    }

    /// The etcd store the agents read, or an error for a command that needs one.
    fn agents(&mut self) -> anyhow::Result<&mut Etcd> {
        match self.store.etcd() {
            Some(etcd) => Ok(etcd),
            None => crate::bail_invalid!(
                "hosts are an etcd store's (--store etcd://...); this store is one host"
            ),
        }
    }

    /// An object's status as its host's agent reported it, and in words why: DOWN with the
    /// host's agent away, BUILD before its agent reported it or while it is placed nowhere.
    /// Each host's reports are read once per command (`reports`).
    fn reported(
        &mut self,
        reports: &mut Reports,
        object: &ObjectRef,
        host: Option<&str>,
    ) -> anyhow::Result<(String, String)> {
        let kind = object.kind;
        let Some(host) = host else {
            let why = format!("its {kind} is placed on no host yet");
            return Ok((Condition::Build.to_string(), why));
        };
        if !reports.contains_key(host) {
            let etcd = self.agents()?;
            let seen = match etcd.alive(host)? {
                true => Some(etcd.statuses(host)?),
                false => None,
            };
            reports.insert(host.to_string(), seen);
        }
        let Some(seen) = &reports[host] else {
            let why = format!("the agent of host {host} is away");
            return Ok((Condition::Down.to_string(), why));
        };
        Ok(match seen.get(object) {
            Some(s) => (
                s.state.to_string(),
                format!("as its {kind}'s agent on {host} reported"),
            ),
            None => (
                Condition::Pending.to_string(),
                format!("the agent on {host} has not reported its {kind}"),
            ),
        })
    }

    /// A port's status with agents, where its device is on the host its owner is placed on:
    /// DOWN while it or its network is disabled, else the status its owner's agent reported.
    /// No agent reports on DHCP and workload ports: N/A, Neutron's word for a status nobody
    /// tracks.
    fn port_status_placed(
        &mut self,
        reports: &mut Reports,
        state: &State,
        port: &Port,
    ) -> anyhow::Result<PortStatus> {
        let status = |s: &str, why: String| PortStatus {
            status: s.to_string(),
            device_state: why,
        };
        if let Some(why) = state.port_down_because(port) {
            return Ok(status("DOWN", why));
        }
        let (kind, host) = match port.role {
            PortRole::RouterInterface | PortRole::RouterGateway => {
                let router = state.router_by_id(&port.device_id);
                (Kind::Router, router.map(|r| r.host.clone()))
            }
            PortRole::Instance => {
                let instance = state.instance_by_id(&port.device_id);
                (Kind::Instance, instance.map(|i| i.host.clone()))
            }
            // Bound to a host (a network host's dnsmasq, a workload's `--host`), whose agent
            // plugs the tap but reports no status of its own for it.
            PortRole::Dhcp | PortRole::Workload => {
                let tap = naming::port_tap(port);
                let where_ = match &port.host {
                    Some(h) => {
                        format!("on host {h}, whose agent plugs {tap} ('qrouter sync --host {h}')")
                    }
                    None => "bound to no host: its tap is plugged nowhere".to_string(),
                };
                return Ok(status("N/A", where_));
            }
        };
        let object = ObjectRef::new(kind, port.device_id.clone());
        let (state_, why) = self.reported(reports, &object, host.flatten().as_deref())?;
        // A port whose owner was not reported yet is being built (Neutron's BUILD).
        let state_ = match state_ == Condition::Pending.as_str() {
            true => Condition::Build.to_string(),
            false => state_,
        };
        Ok(status(&state_, why))
    }
}

/// A port's status from its tap and its network's bridge as this host's kernel has them:
/// ACTIVE when the tap exists, is up and is on the bridge (Neutron's port status); DOWN
/// otherwise, and always while the port or its network is disabled.
fn port_status_here(
    state: &State,
    port: &Port,
    tap: Option<&link::Link>,
    bridge: Option<&link::Link>,
) -> PortStatus {
    let name = naming::port_tap(port);
    let (status, device_state) = match state.port_down_because(port) {
        Some(why) => {
            let set = match tap {
                Some(t) if t.up => format!("; {name} is still up ('qrouter sync' sets it down)"),
                _ => String::new(),
            };
            ("DOWN", format!("{why}{set}"))
        }
        None => match (tap, bridge) {
            (Some(t), Some(b)) if t.controller == Some(b.index) && t.up => {
                ("ACTIVE", format!("{name} up on {}", b.name))
            }
            (Some(t), Some(b)) if t.controller == Some(b.index) => (
                "DOWN",
                format!("{name} is down ('qrouter sync' sets it up)"),
            ),
            (Some(_), _) => {
                let network = state.network_by_id(&port.network_id);
                let bridge = network.map_or("?", |n| n.bridge.as_str());
                let why = format!("{name} is not on bridge {bridge} ('qrouter sync' plugs it)");
                ("DOWN", why)
            }
            (None, _) => ("DOWN", format!("no device {name}")),
        },
    };
    PortStatus {
        status: status.to_string(),
        device_state,
    }
}

fn no_answer(host: &str) -> String {
    format!(
        "on host {host}: its agent did not answer within {} s",
        ASK_WAIT.as_secs()
    )
}
