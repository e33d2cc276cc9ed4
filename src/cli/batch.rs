//! `qrouter batch FILE|-`: many commands in one process, one per line, as `ip -batch` runs
//! them. The process, the store and the netlink connections are opened once. Without
//! `--atomic` each line is its own change, and the batch stops at the first that fails
//! (the lines before it stay applied). With `--atomic` every line is validated against the
//! state the lines before it leave, and all of them are applied as one change at the end.

use std::io::Read;
use std::path::Path;

use anyhow::Context;

use super::{dispatch, Cli, Command, Ctx};
use crate::error::invalid;

pub async fn run(ctx: &mut Ctx, file: &Path, atomic: bool) -> anyhow::Result<i32> {
    let text = read(file)?;
    let lines = parse(&text)?;
    ctx.store.keep_cache = true;
    // A batch runs unattended: nothing in it is asked for.
    ctx.ask = false;
    if atomic {
        ctx.start_atomic()?;
    }
    for (number, line, cli) in lines {
        if atomic && matches!(cli.command, Some(Command::Sync { .. })) {
            return Err(invalid(format!(
                "line {number}: sync cannot be part of an atomic batch"
            )));
        }
        ctx.out = cli.out;
        let code = dispatch(ctx, cli.command.expect("checked when parsed"))
            .await
            .with_context(|| format!("line {number}: {line}"))?;
        if code != 0 {
            return Ok(code);
        }
    }
    if atomic {
        ctx.finish_atomic().await?;
    }
    Ok(0)
}

fn read(file: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("batch: cannot read standard input")?;
    } else {
        text = std::fs::read_to_string(file)
            .map_err(|e| invalid(format!("batch file {}: {e}", file.display())))?;
    }
    Ok(text)
}

/// Every line parsed before anything runs, so a typo on line 90 changes nothing. A long
/// batch is parsed in two halves, the second on another thread: clap takes 50 us a line.
fn parse(text: &str) -> anyhow::Result<Vec<(usize, &str, Cli)>> {
    let lines: Vec<(usize, &str)> = text.lines().enumerate().map(|(i, l)| (i + 1, l)).collect();
    if lines.len() < 400 {
        return parse_lines(&lines);
    }
    let (first, second) = lines.split_at(lines.len() / 2);
    let (first, second) = std::thread::scope(|scope| {
        let second = scope.spawn(|| parse_lines(second));
        (
            parse_lines(first),
            second.join().expect("parsing does not panic"),
        )
    });
    let mut parsed = first?;
    parsed.extend(second?);
    Ok(parsed)
}

fn parse_lines<'a>(lines: &[(usize, &'a str)]) -> anyhow::Result<Vec<(usize, &'a str, Cli)>> {
    let mut parsed = Vec::new();
    for &(number, line) in lines {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words = shlex::split(line)
            .ok_or_else(|| invalid(format!("line {number}: unbalanced quotes: {line}")))?;
        let cli = super::parse_words(words)
            .map_err(|e| invalid(format!("line {number}: {line}: {}", e.kind())))?;
        if !cli.command.as_ref().is_some_and(Command::runs_from_a_line) {
            return Err(invalid(format!(
                "line {number}: {line}: cannot run inside a batch"
            )));
        }
        parsed.push((number, line, cli));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_like_the_command_line() {
        let text = "# seed\n\nrouter create r1\n  router add interface r1 'vlan 101'\n";
        let lines = parse(text).unwrap();
        assert_eq!(
            lines.iter().map(|(n, l, _)| (*n, *l)).collect::<Vec<_>>(),
            [
                (3, "router create r1"),
                (4, "router add interface r1 'vlan 101'")
            ]
        );
    }

    #[test]
    fn a_long_batch_parses_in_order_and_names_its_first_bad_line() {
        let mut lines: Vec<String> = (0..1000).map(|i| format!("network create n{i}")).collect();
        let text = lines.join("\n");
        let parsed = parse(&text).unwrap();
        let numbers: Vec<usize> = parsed.iter().map(|(n, _, _)| *n).collect();
        assert_eq!(numbers, (1..=1000).collect::<Vec<_>>());
        assert_eq!(parsed[999].1, "network create n999");
        lines[900] = "network frobnicate".into();
        let err = parse(&lines.join("\n")).map(|_| ()).unwrap_err();
        assert!(err.to_string().starts_with("line 901: "), "{err}");
        lines[10] = "network frobnicate".into();
        let err = parse(&lines.join("\n")).map(|_| ()).unwrap_err();
        assert!(err.to_string().starts_with("line 11: "), "{err}");
    }

    #[test]
    fn a_bad_line_is_refused_before_anything_runs() {
        for (text, said) in [
            (
                "router create r1\nrouter frobnicate r1\n",
                "line 2: router frobnicate r1",
            ),
            ("router create 'r1\n", "line 1: unbalanced quotes"),
            (
                "batch other.txt\n",
                "line 1: batch other.txt: cannot run inside a batch",
            ),
        ] {
            let err = parse(text).map(|_| ()).unwrap_err();
            assert!(err.to_string().starts_with(said), "{err}");
            assert_eq!(crate::error::exit_code(&err), 2);
        }
    }
}
