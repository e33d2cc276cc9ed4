//! `qrouter sync`: print what converging everything changed, or with `--dry-run` would.

use std::io::IsTerminal;

use super::Ctx;

/// Returns the exit code: with `--dry-run`, 1 when the kernel differs from the store.
pub async fn run(ctx: &mut Ctx, dry_run: bool) -> anyhow::Result<i32> {
    let log = ctx.session.sync(dry_run, progress_bar).await?;
    log.progress.iter().for_each(|p| p.finish_and_clear());
    for line in &log.done {
        println!("{}{line}", if dry_run { "would: " } else { "" });
    }
    // Foreign objects are only reported: they are not drift, and nothing will change them.
    for line in &log.foreign {
        println!("foreign: {line}");
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
