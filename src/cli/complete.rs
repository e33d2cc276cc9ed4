//! Shell completion: `qrouter completion SHELL` prints a script that asks qrouter itself for
//! candidates while completing (clap_complete's dynamic mode), so `router show <TAB>` offers
//! the routers in the store and `--external-gateway <TAB>` only external networks.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Command, ValueEnum};
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};
use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};

use crate::model::{PortRole, State};
use crate::ops;

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

thread_local! {
    /// The line the shell is completing; none when a completion script calls qrouter back,
    /// which then finds the line in its own arguments.
    static LINE: std::cell::RefCell<Option<Given>> = const { std::cell::RefCell::new(None) };
}

/// Complete in the shell: `given` is what the typed line says, for the candidates.
pub fn with_line<T>(given: Given, f: impl FnOnce() -> T) -> T {
    LINE.set(Some(given));
    let result = f();
    LINE.set(None);
    result
}

/// Candidates from the store the command would use; none when there is no store yet.
fn candidates(kind: Kind) -> Vec<CompletionCandidate> {
    // A completion script runs `qrouter -- qrouter WORDS...`.
    let given = LINE.with_borrow(Clone::clone).unwrap_or_else(|| {
        let words: Vec<OsString> = std::env::args_os()
            .skip_while(|a| a != "--")
            .skip(1)
            .collect();
        Given::from_words(&words)
    });
    let Ok(state) = load(given.state_dir.as_deref()) else {
        return vec![];
    };
    if kind == Kind::Column {
        return columns(&state, &given.command)
            .into_iter()
            .map(CompletionCandidate::new)
            .collect();
    }
    names(&state, kind, &given)
        .into_iter()
        .map(|(name, help)| CompletionCandidate::new(name).help(Some(help.into())))
        .collect()
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

/// The columns of the command `path` (`router list`): the headers its listing prints (with
/// and without `--long`), or for one that prints an object (`show`, `create`, `set`) the
/// fields of the first object of its kind in `state`, as it prints them; none without one.
fn columns(state: &State, path: &str) -> Vec<String> {
    use super::{floating_ip, instance, network, port, port_list, router_view, subnet};
    let listing = path.ends_with(" list");
    let noun = path.rsplit_once(' ').map_or(path, |(noun, _)| noun);
    if listing {
        let empty = State::default();
        let headers = |long: bool| -> Vec<String> {
            match noun {
                "router" => {
                    router_view::listing(&empty, &Default::default(), long, |_| true).headers
                }
                "network" => network::listing(&empty, long, |_| true).headers,
                "floating ip" => floating_ip::listing(&empty, long, |_| true).headers,
                "subnet" => subnet::headers(long)
                    .into_iter()
                    .map(String::from)
                    .collect(),
                "port" => port_list::headers(long)
                    .into_iter()
                    .map(String::from)
                    .collect(),
                "instance" => instance::HEADERS.map(String::from).to_vec(),
                _ => vec![],
            }
        };
        let mut all = headers(true);
        let short_only: Vec<String> = headers(false)
            .into_iter()
            .filter(|h| !all.contains(h))
            .collect();
        all.extend(short_only);
        return all;
    }
    let record = match noun {
        "router" => state.routers.first().map(|r| {
            // What `router show` adds from where the router runs.
            let live = ["host", "kernel"].map(|k| (k.to_string(), serde_json::Value::Null));
            router_view::record(state, r, "")
                .into_iter()
                .chain(live)
                .collect()
        }),
        "network" => state.networks.first().map(|n| network::record(state, n)),
        "subnet" => state.subnets.first().map(|s| subnet::record(state, s)),
        "port" => state.ports.first().map(|p| port::record(state, p, "")),
        "floating ip" => state
            .floating_ips
            .first()
            .map(|f| floating_ip::record(state, f)),
        "instance" => state
            .instances
            .first()
            .map(|i| instance::record(state, i, "", serde_json::Value::Null)),
        _ => None,
    };
    let mut fields: Vec<String> = Vec::new();
    for (field, _) in record.unwrap_or_default() {
        if !fields.contains(&field) {
            fields.push(field);
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_what_the_command_prints() {
        let state = crate::ops::tests::seed_state();
        let has = |path: &str, column: &str| columns(&state, path).iter().any(|c| c == column);
        assert!(has("router show", "external_gateway_info") && has("router show", "kernel"));
        assert!(has("router list", "External gateway info") && has("router list", "State"));
        // Only without --long.
        assert!(has("subnet list", "Gateway") && has("subnet list", "Network Name"));
        assert!(has("network show", "router:external"));
        assert!(has("floating ip list", "Floating IP Address"));
        assert!(has("port list", "Device Owner") && has("instance list", "Namespace"));
        assert!(columns(&state, "sync").is_empty());
        // Nothing to show, nothing offered.
        assert!(columns(&State::default(), "router show").is_empty());
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
            Some(Kind::FloatingIpNetwork)
        );
        assert_eq!(
            kind("instance create", "network"),
            Some(Kind::InstanceNetwork)
        );
        assert_eq!(
            kind("router remove interface", "subnet"),
            Some(Kind::AttachedSubnet)
        );
        assert_eq!(kind("router create", "name"), None);
        assert_eq!(kind("", "columns"), Some(Kind::Column));
        // Every annotated argument exists on the real command line.
        super::super::command().debug_assert();
    }
}
