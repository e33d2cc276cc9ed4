//! `qrouter` alone on a terminal (or `qrouter shell`): an interactive shell like
//! openstackclient's. Prompt `(qrouter)`, history in ~/.qrouter_history, tab completion of
//! commands and object names (the engine the shell scripts use), `help [COMMAND]`, and
//! errors that are printed without ending the shell. The store and the netlink connections
//! stay open between commands.

use std::ffi::OsString;

use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Editor, Helper};

use super::candidates::Given;
use super::complete;
use super::{dispatch, Command, Ctx};
use crate::error::{exit_code, printable};

pub async fn run(ctx: &mut Ctx, state_dir: &std::path::Path) -> anyhow::Result<i32> {
    // As bash completes: the common prefix at once, the list on a second TAB.
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .build();
    let mut editor: Editor<Names, DefaultHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(Names {
        state_dir: state_dir.to_path_buf(),
    }));
    let history =
        std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".qrouter_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    // Ctrl-C at a choice list cancels that command, not the shell.
    super::prompt::in_shell();
    eprintln!("qrouter shell: 'help' lists the commands, 'help router' one noun, 'exit' leaves.");
    let mut last = 0;
    loop {
        let line = match editor.readline("(qrouter) ") {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let _ = editor.add_history_entry(line);
        // Saved before the command runs: whatever becomes of it, the line is kept.
        if let Some(h) = &history {
            let _ = editor.save_history(h);
        }
        if matches!(line, "exit" | "quit") {
            break;
        }
        last = one(ctx, line).await;
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(last)
}

/// Run one line; returns its exit code (errors are printed, and the shell goes on).
async fn one(ctx: &mut Ctx, line: &str) -> i32 {
    let Some(mut words) = shlex::split(line) else {
        eprintln!("qrouter: unbalanced quotes: {}", printable(line));
        return 2;
    };
    // `help router set` is `router set --help`.
    if words.first().map(String::as_str) == Some("help") {
        words.remove(0);
        words.push("--help".into());
    }
    let mut parsed = super::parse_words(words.clone());
    // A missing object name is asked for, as on the command line.
    if let Err(e) = &parsed {
        if e.kind() == clap::error::ErrorKind::MissingRequiredArgument && ctx.ask {
            let args: Vec<OsString> = std::iter::once("qrouter".to_string())
                .chain(words)
                .map(OsString::from)
                .collect();
            match super::prompt::ask_missing(&args, |_| ctx.session.load()) {
                Ok(Some(filled)) => {
                    let words = filled
                        .iter()
                        .skip(1)
                        .map(|w| w.to_string_lossy().into_owned());
                    parsed = super::parse_words(words.collect());
                }
                Ok(None) => {}
                Err(err) => {
                    crate::error::print(&err);
                    return exit_code(&err);
                }
            }
        }
    }
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => return super::print_usage(&e),
    };
    if !cli.command.as_ref().is_some_and(Command::runs_from_a_line) {
        eprintln!("qrouter: {}: not inside the shell", printable(line));
        return 2;
    }
    ctx.out = cli.out.into();
    match dispatch(ctx, cli.command.expect("checked above")).await {
        Ok(code) => code,
        Err(err) => {
            crate::error::print(&err);
            exit_code(&err)
        }
    }
}

/// Tab completion: the words typed so far, completed by clap_complete's engine; candidates
/// from the shell's store, and only those the line's command would take.
struct Names {
    state_dir: std::path::PathBuf,
}

impl Completer for Names {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let typed = &line[..pos];
        let current = typed.rsplit(char::is_whitespace).next().unwrap_or("");
        let mut args: Vec<OsString> = vec!["qrouter".into()];
        args.extend(typed.split_whitespace().map(OsString::from));
        if current.is_empty() {
            args.push(OsString::new());
        }
        let index = args.len() - 1;
        let mut given = Given::from_words(&args);
        given.state_dir = Some(self.state_dir.clone());
        let found = complete::with_line(given, || {
            clap_complete::engine::complete(&mut super::command(), args, index, None)
        })
        .unwrap_or_default();
        let words = found
            .into_iter()
            .map(|c| c.get_value().to_string_lossy().into_owned())
            .filter(|w| current.starts_with('-') || !w.starts_with('-'))
            .map(|w| w + " ")
            .collect();
        Ok((pos - current.len(), words))
    }
}

impl Hinter for Names {
    type Hint = String;
}
impl Highlighter for Names {}
impl Validator for Names {}
impl Helper for Names {}
