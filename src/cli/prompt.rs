//! Asking for what a command line left out, the way openstackclient users expect on a
//! terminal: a choice list of the valid candidates. Never without a terminal or with
//! `--yes`: scripts get a usage error naming what is missing, and never hang.

use std::io::IsTerminal;

use dialoguer::theme::SimpleTheme;
use dialoguer::{Confirm, Select};

use crate::bail_invalid;

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
    let picked = Select::with_theme(&SimpleTheme)
        .with_prompt(format!("{command}: which {what}?"))
        .items(&labels)
        .default(0)
        .interact_opt()?;
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
    let go = Confirm::with_theme(&SimpleTheme)
        .with_prompt(format!(
            "Delete {} {kind}s: {}?",
            names.len(),
            names.join(", ")
        ))
        .default(false)
        .interact()?;
    if !go {
        bail_invalid!("{kind} delete: cancelled; nothing deleted");
    }
    Ok(())
}
