//! Shell completion: `qrouter completion SHELL` prints a script that asks qrouter itself for
//! candidates while completing (clap_complete's dynamic mode), so `router show <TAB>` offers
//! the routers in the store and `--external-gateway <TAB>` only external networks.

use std::io::Write;

use clap::{Command, ValueEnum};
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};
use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};

use crate::model::{PortRole, State};
use crate::store::Store;

/// The environment variable the completion scripts set when they call qrouter back.
pub const VAR: &str = "COMPLETE";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Print the completion script of `shell`.
pub fn print_script(shell: Shell) -> anyhow::Result<i32> {
    let completer: &dyn EnvCompleter = match shell {
        Shell::Bash => &Bash,
        Shell::Zsh => &Zsh,
        Shell::Fish => &Fish,
    };
    let mut out = std::io::stdout().lock();
    completer.write_registration(VAR, "qrouter", "qrouter", "qrouter", &mut out)?;
    out.flush()?;
    Ok(0)
}

/// What an argument names, so that its candidates come from the store.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Router,
    Network,
    ExternalNetwork,
    Subnet,
    /// A subnet a router can take an interface on: internal, with a gateway.
    InterfaceSubnet,
    Instance,
    FloatingIp,
    Port,
    /// `-c`: the columns or fields of the command being completed.
    Column,
}

/// The kind of argument `arg` of command `path` ("router add interface"), if it names objects.
fn kind(path: &str, arg: &str) -> Option<Kind> {
    Some(match arg {
        "router" | "routers" => Kind::Router,
        "external_gateway" => Kind::ExternalNetwork,
        "network" if path == "floating ip create" => Kind::ExternalNetwork,
        "network" | "networks" => Kind::Network,
        "subnet" if path.starts_with("router add") => Kind::InterfaceSubnet,
        "subnet" | "subnets" => Kind::Subnet,
        "instance" | "instances" => Kind::Instance,
        "floating_ip" | "floating_ips" => Kind::FloatingIp,
        "port" => Kind::Port,
        "columns" => Kind::Column,
        _ => return None,
    })
}

/// Object-name candidates on every argument of `cmd` that names objects.
pub fn annotate(cmd: Command) -> Command {
    annotate_under(cmd, "")
}

fn annotate_under(cmd: Command, path: &str) -> Command {
    let cmd = cmd.mut_args(|arg| {
        match kind(path, arg.get_id().as_str()).filter(|_| arg.get_action().takes_values()) {
            Some(k) => arg.add(ArgValueCandidates::new(move || candidates(k))),
            None => arg,
        }
    });
    cmd.mut_subcommands(|sub| {
        let path = format!("{path} {}", sub.get_name());
        annotate_under(sub, path.trim_start())
    })
}

/// Candidates from the store the command would use; none when there is no store yet.
fn candidates(kind: Kind) -> Vec<CompletionCandidate> {
    if kind == Kind::Column {
        let words: Vec<String> = std::env::args().skip(1).collect();
        return columns(&words)
            .iter()
            .map(|c| CompletionCandidate::new(*c))
            .collect();
    }
    let dir = std::env::var_os("QROUTER_STATE_DIR").unwrap_or_else(|| "/var/lib/qrouter".into());
    let Ok(state) = Store::open_read_only(dir.as_ref()).and_then(|mut s| s.load()) else {
        return vec![];
    };
    names(&state, kind)
        .into_iter()
        .map(|(name, help)| CompletionCandidate::new(name).help(Some(help.into())))
        .collect()
}

/// (name, description) of the objects of `kind`.
fn names(s: &State, kind: Kind) -> Vec<(String, String)> {
    let subnet = |sub: &std::rc::Rc<crate::model::Subnet>| (sub.name.clone(), sub.cidr.to_string());
    let external = |net_id: &str| s.network_by_id(net_id).is_some_and(|n| n.external);
    match kind {
        Kind::Router => s
            .routers
            .iter()
            .map(|r| (r.name.clone(), r.id.clone()))
            .collect(),
        Kind::Network | Kind::ExternalNetwork => s
            .networks
            .iter()
            .filter(|n| kind == Kind::Network || n.external)
            .map(|n| (n.name.clone(), n.bridge.clone()))
            .collect(),
        Kind::Subnet => s.subnets.iter().map(subnet).collect(),
        Kind::InterfaceSubnet => s
            .subnets
            .iter()
            .filter(|sub| sub.gateway.is_some() && !external(&sub.network_id))
            .map(subnet)
            .collect(),
        Kind::Instance => s
            .instances
            .iter()
            .map(|i| (i.name.clone(), i.id.clone()))
            .collect(),
        Kind::FloatingIp => s
            .floating_ips
            .iter()
            .map(|f| (f.address.to_string(), f.id.clone()))
            .collect(),
        Kind::Port => s
            .ports
            .iter()
            .filter(|p| p.role != PortRole::Instance)
            .map(|p| (p.id.clone(), crate::model::naming::port_device(p)))
            .collect(),
        Kind::Column => vec![],
    }
}

/// The columns (`list`) or fields (`show`, `create`) of the command in `words`, the command
/// line being completed; `-f value -c <TAB>` then offers what the command prints.
fn columns(words: &[String]) -> &'static [&'static str] {
    let word = |w: &str| words.iter().any(|x| x == w);
    let noun = [
        "network", "subnet", "router", "port", "floating", "instance",
    ]
    .into_iter()
    .find(|n| word(n));
    let listing = word("list");
    match (noun, listing) {
        (Some("router"), true) => &[
            "ID",
            "Name",
            "Status",
            "State",
            "Routes",
            "External gateway info",
            "Tags",
            "Description",
            "External Gateway",
            "Gateway IP",
            "SNAT",
            "Interfaces",
        ],
        (Some("router"), false) => &[
            "admin_state_up",
            "created_at",
            "description",
            "external_gateway_info",
            "id",
            "interfaces_info",
            "name",
            "revision_number",
            "routes",
            "status",
            "tags",
            "updated_at",
            "namespace",
            "external_gateway_network",
            "external_gateway_ip",
            "enable_snat",
            "interfaces",
            "inbound",
            "kernel",
        ],
        (Some("network"), true) => &[
            "ID",
            "Name",
            "Subnets",
            "Status",
            "State",
            "Network Type",
            "Router Type",
            "Tags",
            "Description",
            "External",
            "Bridge",
        ],
        (Some("network"), false) => &[
            "admin_state_up",
            "created_at",
            "description",
            "id",
            "mtu",
            "name",
            "provider:network_type",
            "provider:physical_network",
            "revision_number",
            "router:external",
            "status",
            "subnets",
            "tags",
            "updated_at",
            "bridge",
            "provider_interface",
            "subnet_names",
        ],
        (Some("subnet"), true) => &[
            "ID",
            "Name",
            "Network",
            "Subnet",
            "Allocation Pools",
            "IP Version",
            "Gateway",
            "Tags",
            "Description",
            "Network Name",
        ],
        (Some("subnet"), false) => &[
            "allocation_pools",
            "cidr",
            "created_at",
            "description",
            "dns_nameservers",
            "enable_dhcp",
            "gateway_ip",
            "host_routes",
            "id",
            "ip_version",
            "name",
            "network_id",
            "revision_number",
            "tags",
            "updated_at",
            "network",
        ],
        (Some("floating"), true) => &[
            "ID",
            "Floating IP Address",
            "Fixed IP Address",
            "Port",
            "Floating Network",
            "Router",
            "Status",
            "Description",
            "Tags",
            "Instance",
            "Router Name",
        ],
        (Some("floating"), false) => &[
            "created_at",
            "description",
            "fixed_ip_address",
            "floating_ip_address",
            "floating_network_id",
            "id",
            "port_details",
            "port_id",
            "revision_number",
            "router_id",
            "status",
            "tags",
            "updated_at",
            "instance",
            "floating_network",
            "router",
        ],
        (Some("port"), true) => &[
            "ID",
            "Name",
            "MAC Address",
            "Fixed IP Addresses",
            "Device Owner",
            "Device",
        ],
        (Some("port"), false) => &[
            "id",
            "name",
            "network_id",
            "status",
            "network",
            "mac_address",
            "fixed_ips",
            "device_owner",
            "device_id",
            "device",
            "host_device",
            "bridge",
        ],
        (Some("instance"), true) => &["ID", "Name", "Network", "Fixed IP", "Namespace"],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_complete_for_the_command_being_typed() {
        let words = |line: &str| -> Vec<String> { line.split(' ').map(String::from).collect() };
        let router_show = columns(&words("qrouter router show r1 -c"));
        assert!(router_show.contains(&"external_gateway_info"));
        let list = columns(&words("qrouter router list --long -c"));
        assert!(list.contains(&"External gateway info") && list.contains(&"State"));
        assert!(columns(&words("qrouter network show n -f value -c")).contains(&"router:external"));
        assert!(columns(&words("qrouter floating ip list -c")).contains(&"Floating IP Address"));
        assert!(columns(&words("qrouter sync -c")).is_empty());
    }

    #[test]
    fn arguments_that_name_objects_get_candidates() {
        assert_eq!(kind("router show", "router"), Some(Kind::Router));
        assert_eq!(
            kind("router add interface", "subnet"),
            Some(Kind::InterfaceSubnet)
        );
        assert_eq!(
            kind("router set", "external_gateway"),
            Some(Kind::ExternalNetwork)
        );
        assert_eq!(
            kind("floating ip create", "network"),
            Some(Kind::ExternalNetwork)
        );
        assert_eq!(kind("instance create", "network"), Some(Kind::Network));
        assert_eq!(kind("router create", "name"), None);
        assert_eq!(kind("", "columns"), Some(Kind::Column));
        // Every annotated argument exists on the real command line.
        super::super::command().debug_assert();
    }
}
