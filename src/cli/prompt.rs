//! Asking for what a command line left out, the way openstackclient users expect on a
//! terminal: a choice list of the valid candidates. Never without a terminal or with
//! `--yes`: scripts get a usage error naming what is missing, and never hang.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use dialoguer::theme::SimpleTheme;
use dialoguer::{Confirm, Select};
use nix::sys::signal::Signal;

use super::signals::Caught;
use crate::bail_invalid;

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
