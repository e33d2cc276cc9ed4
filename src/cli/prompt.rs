//! Asking for what a command line left out, the way openstackclient users expect on a
//! terminal: a choice list of the valid candidates. Never without a terminal or with
//! `--yes`: scripts get a usage error naming what is missing, and never hang.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

use dialoguer::theme::SimpleTheme;
use dialoguer::{Confirm, Password, Select};
use nix::sys::signal::Signal;

use super::candidates::{self, Given, Kind, Leaf};
use super::signals::Caught;
use crate::bail_invalid;
use crate::model::State;

/// Set in the interactive shell: Ctrl-C at a prompt then cancels the command, not the shell.
static IN_SHELL: AtomicBool = AtomicBool::new(false);

/// From now on, the process is the interactive shell.
pub fn in_shell() {
    IN_SHELL.store(true, Ordering::Relaxed);
}

/// Run a dialoguer prompt of `command`. Ctrl-C there (dialoguer reads it as a key and raises
/// SIGINT) cancels the command in the shell, which goes on; a lone command dies of SIGINT as
/// it would have without the prompt (exit 130). Either way the cursor it hid comes back.
fn interact<T>(command: &str, prompt: impl FnOnce() -> dialoguer::Result<T>) -> anyhow::Result<T> {
    let caught = Caught::new(&[Signal::SIGINT]);
    let result = prompt();
    let interrupted = caught.take().is_some()
        || matches!(&result, Err(dialoguer::Error::IO(e)) if e.kind() == std::io::ErrorKind::Interrupted);
    drop(caught);
    if !interrupted {
        return Ok(result?);
    }
    // Show the cursor again, and leave the line the prompt was on.
    eprintln!("\x1b[?25h");
    if IN_SHELL.load(Ordering::Relaxed) {
        bail_invalid!("{command}: cancelled (Ctrl-C); nothing changed");
    }
    let _ = nix::sys::signal::raise(Signal::SIGINT);
    std::process::exit(super::signals::exit_code(Signal::SIGINT));
}

/// Whether qrouter may ask: stdin and stderr are terminals and `--yes` was not given.
pub fn allowed(yes: bool) -> bool {
    !yes && std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Ask `command`'s missing `what` from (name, description) candidates; returns the name.
pub fn choose(
    allowed: bool,
    command: &str,
    what: &str,
    candidates: Vec<(String, String)>,
) -> anyhow::Result<String> {
    if !allowed {
        bail_invalid!("{command}: {what} is missing; give it on the command line (no terminal to ask on, or --yes)");
    }
    if candidates.is_empty() {
        bail_invalid!("{command}: {what} is missing, and there is none to choose from");
    }
    let width = candidates.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let labels: Vec<String> = candidates
        .iter()
        .map(|(name, about)| format!("{name:width$}  {about}"))
        .collect();
    let picked = interact(command, || {
        Select::with_theme(&SimpleTheme)
            .with_prompt(format!("{command}: which {what}?"))
            .items(&labels)
            .default(0)
            .interact_opt()
    })?;
    match picked {
        Some(i) => Ok(candidates[i].0.clone()),
        None => bail_invalid!("{command}: cancelled; nothing changed"),
    }
}

/// Ask a yes/no question (the answer defaults to no).
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    interact(question, || {
        Confirm::with_theme(&SimpleTheme)
            .with_prompt(question)
            .default(false)
            .interact()
    })
}

/// Ask for a secret, not echoed.
pub fn password(what: &str) -> anyhow::Result<String> {
    interact(what, || {
        Password::with_theme(&SimpleTheme)
            .with_prompt(what)
            .allow_empty_password(true)
            .interact()
    })
}

/// Before removing several objects: ask on a terminal, go ahead without one (or with --yes).
pub fn confirm_removal(allowed: bool, kind: &str, names: &[String]) -> anyhow::Result<()> {
    if !allowed || names.len() < 2 {
        return Ok(());
    }
    let go = interact(&format!("{kind} delete"), || {
        Confirm::with_theme(&SimpleTheme)
            .with_prompt(format!(
                "Delete {} {kind}s: {}?",
                names.len(),
                names.join(", ")
            ))
            .default(false)
            .interact()
    })?;
    if !go {
        bail_invalid!("{kind} delete: cancelled; nothing deleted");
    }
    Ok(())
}

/// A command line that lacks required arguments naming objects (`router show`, `instance
/// create vm --network`), completed on a terminal by asking for each from the candidates the
/// command would accept (`candidates::names`). None when the line lacks something that cannot
/// be chosen from a list, when it is not missing anything, or when asking is not allowed
/// (no terminal, `--yes`): the parse error then stands. `load` reads the store the line names.
pub fn ask_missing(
    args: &[OsString],
    mut load: impl FnMut(&Given) -> anyhow::Result<Rc<State>>,
) -> anyhow::Result<Option<Vec<OsString>>> {
    let mut args = args.to_vec();
    // Where the next positional argument goes: before the line's own `--` (a command's last
    // arguments), or after one added here, so no option's value swallows it.
    let mut separator = args.iter().position(|a| a == "--");
    let mut next = separator;
    let mut asked = false;
    loop {
        let missing = missing_arguments(&args);
        let Some((path, yes, missing)) = missing else {
            return Ok(None);
        };
        let Some((arg, kind)) = missing.first().cloned() else {
            return Ok(asked.then_some(args));
        };
        if !allowed(yes) || missing.iter().any(|(_, k)| k.is_none()) {
            return Ok(None);
        }
        let kind = kind.expect("checked above");
        let given = Given::from_words(&args);
        let state = load(&given)?;
        let candidates = candidates::names(&state, kind, &given);
        let label = match arg.get_long() {
            Some(long) => format!("--{long}"),
            None => arg.get_value_names().and_then(|v| v.first()).map_or_else(
                || arg.get_id().to_string().to_uppercase(),
                |v| v.to_string(),
            ),
        };
        let value = choose(true, &path, &label, candidates)?;
        asked = true;
        match arg.get_long() {
            Some(long) => {
                let word = OsString::from(format!("--{long}={value}"));
                match separator {
                    Some(at) => {
                        args.insert(at, word);
                        separator = Some(at + 1);
                        next = next.map(|n| n + 1);
                    }
                    None => args.push(word),
                }
            }
            None => {
                if separator.is_none() {
                    args.push("--".into());
                    separator = Some(args.len() - 1);
                    next = Some(args.len());
                }
                let at = next.expect("set with the separator");
                args.insert(at, value.into());
                next = Some(at + 1);
                if at <= separator.expect("set") {
                    separator = separator.map(|s| s + 1);
                }
            }
        }
    }
}

/// The command path of a line ("router show"), whether it says --yes, and the required
/// arguments it lacks, each with the kind of object it names if it names one; None when the
/// line does not parse that far.
#[allow(clippy::type_complexity)]
fn missing_arguments(args: &[OsString]) -> Option<(String, bool, Vec<(clap::Arg, Option<Kind>)>)> {
    let Leaf {
        path,
        command,
        matches,
    } = Leaf::parse(args)?;
    let yes = matches.try_get_one::<bool>("yes").ok().flatten() == Some(&true);
    let missing = command
        .get_arguments()
        .filter(|a| a.is_required_set() && !a.is_global_set())
        .filter(|a| {
            !matches
                .try_contains_id(a.get_id().as_str())
                .unwrap_or(false)
        })
        .map(|a| (a.clone(), candidates::kind(&path, a.get_id().as_str())))
        .collect();
    Some((path, yes, missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Missing = Vec<(String, Option<Kind>)>;

    fn missing(line: &str) -> Option<(String, Missing)> {
        let args: Vec<OsString> = line.split(' ').map(OsString::from).collect();
        missing_arguments(&args).map(|(path, _, m)| {
            let m = m
                .into_iter()
                .map(|(a, k)| (a.get_id().to_string(), k))
                .collect();
            (path, m)
        })
    }

    #[test]
    fn the_missing_arguments_of_a_line_and_what_they_name() {
        assert_eq!(
            missing("qrouter router show"),
            Some((
                "router show".into(),
                vec![("router".into(), Some(Kind::Router))]
            ))
        );
        assert_eq!(
            missing("qrouter -f json instance create vm"),
            Some((
                "instance create".into(),
                vec![("network".into(), Some(Kind::InstanceNetwork))]
            ))
        );
        // Given: nothing missing. COMMAND cannot be chosen from a list.
        assert_eq!(
            missing("qrouter router show r1"),
            Some(("router show".into(), vec![]))
        );
        let (_, exec) = missing("qrouter instance exec").unwrap();
        assert_eq!(
            exec,
            [
                ("instance".to_string(), Some(Kind::Instance)),
                ("command".to_string(), None)
            ]
        );
        let (_, exec) = missing("qrouter instance exec -- ping").unwrap();
        assert_eq!(exec, [("instance".to_string(), Some(Kind::Instance))]);
        // The store and the router come from anywhere on the line.
        let words: Vec<OsString> = "qrouter --state-dir /x router add interface r1 -f json"
            .split(' ')
            .map(OsString::from)
            .collect();
        let given = Given::from_words(&words);
        assert_eq!(given.state_dir.as_deref(), Some(std::path::Path::new("/x")));
        assert_eq!(given.router.as_deref(), Some("r1"));
    }
}
