//! `qrouter sync`: print what converging everything changed, or with `--dry-run` would.

use std::io::IsTerminal;

use super::Ctx;
use crate::ops::Progress;
use crate::ops::{HostSync, Synced};

/// How long `sync` waits for the hosts' agents: a host's full sync of hundreds of routers
/// takes seconds.
const HOSTS_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Returns the exit code: with `--dry-run`, 1 when the kernel differs from the store.
pub async fn run(ctx: &mut Ctx, dry_run: bool, host: Option<&str>) -> anyhow::Result<i32> {
    let bar = std::cell::OnceCell::new();
    let synced = (ctx.session)
        .sync(dry_run, host, HOSTS_WAIT, |total| {
            let shown = progress_bar(total)?;
            let ticks = shown.clone();
            let _ = bar.set(shown);
            Some(Progress(Box::new(move || ticks.inc(1))))
        })
        .await?;
    bar.get().iter().for_each(|b| b.finish_and_clear());
    let log = match synced {
        Synced::Here(log) => log,
        Synced::Hosts(said) => return Ok(hosts(dry_run, said)),
    };
    for line in &log.done {
        println!("{}{line}", if dry_run { "would: " } else { "" });
    }
    // Foreign objects are only reported: they are not drift, and nothing will change them.
    for line in &log.foreign {
        println!("foreign: {line}");
    }
    // Each object that could not be converged, after what was done for the others.
    if !log.failures.is_empty() {
        log.failures.iter().for_each(crate::error::print);
        let objects = match log.failures.len() {
            1 => "1 object".to_string(),
            n => format!("{n} objects"),
        };
        let rest = if dry_run { "compared" } else { "converged" };
        anyhow::bail!("sync: {objects} failed; everything else was {rest}");
    }
    if log.done.is_empty() {
        println!("in sync: the kernel matches the store");
    }
    Ok(i32::from(dry_run && !log.done.is_empty()))
}

/// A bar on a terminal once there is more than a moment's work; nothing on a pipe.
fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    (total >= 20 && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "sync {bar:40} {pos}/{len} namespaces {elapsed}",
            )
            .expect("a valid template"),
        );
        bar
    })
}

/// With an etcd store: each host's agent syncs its part (or lists its drift); one block per
/// host. Exit 1 when a host is down, did not answer or failed, or, with `--dry-run`, when
/// anything differs.
fn hosts(dry_run: bool, said: Vec<(String, HostSync)>) -> i32 {
    if said.is_empty() {
        println!("no host has registered an agent: nothing to sync");
    }
    let mut code = 0;
    for (host, outcome) in said {
        match outcome {
            HostSync::Down => {
                println!("host {host}: down (its agent's lease expired): not synced");
                code = 1;
            }
            HostSync::NoAnswer => {
                println!(
                    "host {host}: its agent did not answer within {} s",
                    HOSTS_WAIT.as_secs()
                );
                code = 1;
            }
            HostSync::Done(report) => {
                let (done, error) = (&report.done, &report.error);
                let state = match (error, done.is_empty()) {
                    (Some(e), _) => format!("failed: {e}"),
                    (None, true) => "in sync: its kernel matches the store".to_string(),
                    (None, false) if dry_run => format!("{} differences", done.len()),
                    (None, false) => format!("{} changes made", done.len()),
                };
                println!("host {host}: {state}");
                for line in done {
                    println!("  {}{line}", if dry_run { "would: " } else { "" });
                }
                for line in &report.foreign {
                    println!("  foreign: {line}");
                }
                // A key it could not trust is not drift, but an operator must hear of it.
                for q in &report.quarantined {
                    println!("  quarantined: {q}; set aside, the rest goes on");
                }
                if error.is_some() || (dry_run && !done.is_empty()) {
                    code = 1;
                }
            }
        }
    }
    code
}
