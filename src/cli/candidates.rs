//! What an argument of a command line names, and the objects of the store it may name: for
//! completion (complete.rs) and for the prompts that ask for a missing argument (prompt.rs).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Command;

use crate::model::{PortRole, State};
use crate::ops;

/// What an argument names, so that its candidates come from the store.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Router,
    Network,
    ExternalNetwork,
    Subnet,
    /// A subnet the router can take an interface on (`ops::router::check_add_interface`).
    InterfaceSubnet,
    /// A subnet the router has an interface on that can go (`check_remove_interface`).
    AttachedSubnet,
    /// A network an instance can get an address on (`ops::instance::check_network`).
    InstanceNetwork,
    /// An external network with an address left (`ops::floating_ip::check_network`).
    FloatingIpNetwork,
    Instance,
    FloatingIp,
    Port,
    /// `port delete`: only ports made by `port create`; the others go with their owner.
    WorkloadPort,
    /// `-c`: the columns or fields of the command being completed.
    Column,
}

/// The kind of argument `arg` of command `path` ("router add interface"), if it names objects.
pub fn kind(path: &str, arg: &str) -> Option<Kind> {
    Some(match arg {
        "router" | "routers" => Kind::Router,
        "external_gateway" => Kind::ExternalNetwork,
        "network" if path == "floating ip create" => Kind::FloatingIpNetwork,
        "network" if path == "instance create" => Kind::InstanceNetwork,
        "network" | "networks" => Kind::Network,
        "subnet" if path.starts_with("router add") => Kind::InterfaceSubnet,
        "subnet" if path.starts_with("router remove") => Kind::AttachedSubnet,
        "subnet" | "subnets" => Kind::Subnet,
        "instance" | "instances" => Kind::Instance,
        "floating_ip" | "floating_ips" => Kind::FloatingIp,
        "ports" if path == "port delete" => Kind::WorkloadPort,
        "port" => Kind::Port,
        "columns" => Kind::Column,
        _ => return None,
    })
}

/// What the rest of a command line says that candidates depend on: the store it names, and
/// the router it is about (`router add interface r1 <TAB>` offers what r1 can take).
#[derive(Clone, Debug, Default)]
pub struct Given {
    /// The command the line runs (`router show`).
    pub command: String,
    pub state_dir: Option<PathBuf>,
    pub router: Option<String>,
}

impl Given {
    /// From the words of a line (`qrouter router add interface r1 x`), parsed leniently: the
    /// word being completed may be anything.
    pub fn from_words(words: &[OsString]) -> Given {
        let Some(line) = Leaf::parse(words) else {
            return Given::default();
        };
        let m = &line.matches;
        Given {
            command: line.path.clone(),
            state_dir: m
                .try_get_one::<PathBuf>("state_dir")
                .ok()
                .flatten()
                .cloned(),
            router: m.try_get_one::<String>("router").ok().flatten().cloned(),
        }
    }
}

/// A line parsed as far as it goes: its command ("router show"), that command's definition
/// and what the line gives it (global options included), errors such as a missing argument
/// ignored.
pub struct Leaf {
    pub path: String,
    pub command: Command,
    pub matches: clap::ArgMatches,
}

impl Leaf {
    pub fn parse(words: &[OsString]) -> Option<Leaf> {
        use clap::CommandFactory;
        let mut cmd = super::Cli::command();
        cmd.build();
        // The command path: the words naming subcommands, in turn. (clap, told to ignore
        // errors, drops a subcommand whose own arguments are incomplete.)
        // Other words on the way are global options (`--state-dir DIR router show`): they
        // count for the command too.
        let (mut path, mut args, mut rest) = (Vec::new(), Vec::new(), words.get(1..)?.iter());
        while cmd.has_subcommands() {
            let word = rest.next()?;
            match cmd.find_subcommand(word) {
                Some(sub) => {
                    path.push(sub.get_name().to_string());
                    cmd = sub.clone();
                }
                None => args.push(word.clone()),
            }
        }
        args.extend(rest.cloned());
        let matches = cmd
            .clone()
            .no_binary_name(true)
            .ignore_errors(true)
            .try_get_matches_from(args)
            .ok()?;
        Some(Leaf {
            path: path.join(" "),
            command: cmd,
            matches,
        })
    }
}

/// The store in `dir`, or `$QROUTER_STATE_DIR`, or the default, read-only.
pub fn load(dir: Option<&Path>) -> anyhow::Result<std::rc::Rc<State>> {
    let default = || {
        std::env::var_os("QROUTER_STATE_DIR")
            .map_or_else(|| "/var/lib/qrouter".into(), PathBuf::from)
    };
    let dir = dir.map_or_else(default, Path::to_path_buf);
    crate::ops::read_only_state(&dir)
}

/// (name, description) of the objects of `kind` a command could take, given the rest of its
/// line: only those the operation's own check accepts.
pub fn names(s: &State, kind: Kind, given: &Given) -> Vec<(String, String)> {
    let subnet = |sub: &std::rc::Rc<crate::model::Subnet>| (sub.name.clone(), sub.cidr.to_string());
    let network = |n: &std::rc::Rc<crate::model::Network>| (n.name.clone(), n.bridge.clone());
    // The router the line names, if it names one that exists.
    let router = given.router.as_deref().and_then(|r| s.router(r).ok());
    match kind {
        Kind::Router => s
            .routers
            .iter()
            .map(|r| (r.name.clone(), r.id.clone()))
            .collect(),
        Kind::Network => s.networks.iter().map(network).collect(),
        Kind::ExternalNetwork => s
            .networks
            .iter()
            .filter(|n| n.external)
            .map(network)
            .collect(),
        Kind::InstanceNetwork => s
            .networks
            .iter()
            .filter(|n| ops::instance::check_network(s, n).is_ok())
            .map(network)
            .collect(),
        Kind::FloatingIpNetwork => s
            .networks
            .iter()
            .filter(|n| ops::floating_ip::check_network(s, n).is_ok())
            .map(network)
            .collect(),
        Kind::Subnet => s.subnets.iter().map(subnet).collect(),
        Kind::InterfaceSubnet => s
            .subnets
            .iter()
            .filter(|sub| ops::router::check_add_interface(s, router, sub).is_ok())
            .map(subnet)
            .collect(),
        Kind::AttachedSubnet => s
            .subnets
            .iter()
            .filter(|sub| match router {
                Some(r) => ops::router::check_remove_interface(s, r, sub).is_ok(),
                None => s
                    .routers
                    .iter()
                    .any(|r| ops::router::check_remove_interface(s, r, sub).is_ok()),
            })
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
        // A port by its name where it has one (as `port list` shows it), else its id.
        Kind::Port | Kind::WorkloadPort => s
            .ports
            .iter()
            .filter(|p| match kind {
                Kind::WorkloadPort => p.role == PortRole::Workload,
                _ => p.role != PortRole::Instance,
            })
            .map(|p| match p.name.is_empty() {
                true => (p.id.clone(), crate::model::naming::port_device(p)),
                false => (p.name.clone(), p.id.clone()),
            })
            .collect(),
        Kind::Column => vec![],
    }
}
