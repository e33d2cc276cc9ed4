//! Shell completion: `qrouter completion SHELL` prints a script that asks qrouter itself for
//! candidates while completing (clap_complete's dynamic mode), so `router show <TAB>` offers
//! the routers in the store and `--external-gateway <TAB>` only external networks.

use std::ffi::OsString;
use std::io::Write;

use clap::{Command, ValueEnum};
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};
use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};

use super::candidates::{kind, names, Kind};
use super::candidates::{load, Given};
use crate::model::State;

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
