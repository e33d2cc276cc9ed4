//! `qrouter batch FILE|-`: many commands in one process, one per line, as `ip -batch` runs
//! them. The process, the store and the netlink connections are opened once. Without
//! `--atomic` each line is its own change, and the batch stops at the first that fails
//! (the lines before it stay applied). With `--atomic` every line is validated against the
//! state the lines before it leave, and all of them are applied as one change at the end.

use std::io::{BufRead, Read};
use std::path::Path;

use anyhow::Context;

use nix::sys::signal::Signal;

use super::signals::{self, Caught};
use super::{dispatch, Cli, Command, Ctx};
use crate::bail_invalid;
use crate::error::invalid;

pub async fn run(ctx: &mut Ctx, file: &Path, atomic: bool) -> anyhow::Result<i32> {
    let text = read(file)?;
    let lines = parse(&text)?;
    ctx.session.store.keep_cache = true;
    // A batch runs unattended: nothing in it is asked for.
    ctx.ask = false;
    // From here on SIGTERM, SIGHUP and SIGINT stop the batch after the line in progress (not
    // before the input is read: a batch waiting on a terminal's stdin still just ends).
    let caught = Caught::new(&[Signal::SIGTERM, Signal::SIGHUP, Signal::SIGINT]);
    if atomic {
        ctx.session.start_atomic()?;
    }
    let total = lines.len();
    for (done, (number, line, cli)) in lines.into_iter().enumerate() {
        if atomic && matches!(cli.command, Some(Command::Sync { .. })) {
            return Err(invalid(format!(
                "line {number}: sync cannot be part of an atomic batch"
            )));
        }
        ctx.out = cli.out.into();
        let code = dispatch(ctx, cli.command.expect("checked when parsed"))
            .await
            .with_context(|| format!("line {number}: {line}"))?;
        if code != 0 {
            return Ok(code);
        }
        if let Some(signal) = caught.take() {
            let done = done + 1;
            let what = if atomic {
                format!("nothing applied (--atomic; {done} of {total} lines checked)")
            } else {
                format!("{done} of {total} lines done, {} not run", total - done)
            };
            return Ok(stopped(signal, &format!("after line {number}: {what}")));
        }
    }
    if atomic {
        ctx.session.finish_atomic().await?;
    }
    if let Some(signal) = caught.take() {
        let all = if atomic { "applied" } else { "done" };
        return Ok(stopped(
            signal,
            &format!("at the end: all {total} lines {all}"),
        ));
    }
    Ok(0)
}

/// Say where a signal stopped the batch; the exit code a shell gives for the signal.
fn stopped(signal: Signal, at: &str) -> i32 {
    eprintln!("qrouter: batch stopped by {signal} {at}");
    signals::exit_code(signal)
}

/// The longest line a batch takes: far beyond any command, short of a runaway input.
const MAX_LINE: usize = 64 * 1024;
/// The most a batch holds in all: millions of commands, not a disk's worth.
const MAX_BATCH: usize = 256 * 1024 * 1024;

/// The batch's text, read a line at a time and each line bounded, so `batch /dev/zero` is
/// refused, not read into memory without end. Input that is no batch (a line too long, not
/// UTF-8) exits 2 from a file and from standard input alike.
fn read(file: &Path) -> anyhow::Result<String> {
    if file == Path::new("-") {
        return read_bounded("batch: standard input", std::io::stdin().lock(), false);
    }
    let what = format!("batch file {}", file.display());
    let opened = std::fs::File::open(file).map_err(|e| invalid(format!("{what}: {e}")))?;
    read_bounded(&what, std::io::BufReader::new(opened), true)
}

/// `input` as text; `what` names it in errors. A failure to read is invalid input for a
/// file (a directory, say), an I/O failure (exit 1) for standard input.
fn read_bounded(what: &str, mut input: impl BufRead, file: bool) -> anyhow::Result<String> {
    let (mut text, mut line) = (String::new(), Vec::new());
    for number in 1.. {
        line.clear();
        let read = input
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line);
        let n = match read {
            Ok(n) => n,
            Err(e) if file => return Err(invalid(format!("{what}: line {number}: {e}"))),
            Err(e) => return Err(e).with_context(|| format!("{what}: cannot read line {number}")),
        };
        if n == 0 {
            break;
        }
        if line.len() - usize::from(line.ends_with(b"\n")) > MAX_LINE {
            bail_invalid!("{what}: line {number} is longer than {MAX_LINE} bytes");
        }
        let Ok(part) = std::str::from_utf8(&line) else {
            bail_invalid!("{what}: line {number} is not valid UTF-8");
        };
        if text.len() + part.len() > MAX_BATCH {
            bail_invalid!(
                "{what}: more than {} MiB at line {number}; split it into several batches",
                MAX_BATCH >> 20
            );
        }
        text.push_str(part);
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
    fn input_is_read_a_bounded_line_at_a_time() {
        // Issue 15 item 14: `batch /dev/zero` grew without end.
        let zeros = std::io::BufReader::new(std::io::repeat(0));
        let err = read_bounded("batch file /dev/zero", zeros, true).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert_eq!(
            err.to_string(),
            "batch file /dev/zero: line 1 is longer than 65536 bytes"
        );
        let long = format!("router list\n{}\n", "x".repeat(MAX_LINE + 1));
        let err = read_bounded("batch: standard input", long.as_bytes(), false).unwrap_err();
        assert!(err
            .to_string()
            .ends_with("line 2 is longer than 65536 bytes"));
        let fits = format!("{}\n{}", "x".repeat(MAX_LINE), "y".repeat(MAX_LINE));
        assert_eq!(read_bounded("-", fits.as_bytes(), false).unwrap(), fits);
        // Not UTF-8: the same exit code from standard input as from a file.
        for file in [false, true] {
            let err = read_bounded("b", &b"router list\nrouter show \xff\n"[..], file).unwrap_err();
            assert_eq!(crate::error::exit_code(&err), 2);
            assert_eq!(err.to_string(), "b: line 2 is not valid UTF-8");
        }
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
