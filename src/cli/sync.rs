//! `qrouter sync`: make the kernel match the store for every object (after a reboot, or to
//! repair changes made behind qrouter's back), and remove orphans qrouter owns.

use std::collections::BTreeSet;
use std::io::IsTerminal;

use super::Ctx;
use crate::kernel::{self, netns};
use crate::reconcile::{converge, remove_orphan_links, Changes, Touched};

/// Returns the exit code: with `--dry-run`, 1 when the kernel differs from the store.
pub async fn run(ctx: &mut Ctx, dry_run: bool) -> anyhow::Result<i32> {
    ctx.store.must_exist("nothing to sync against")?;
    kernel::preflight()?;
    // Hold the write lock so no other command changes the store meanwhile.
    let (txn, state) = ctx.store.begin()?;
    let owner = txn.store_id().to_string();
    let mut touched = Touched {
        networks: state.networks.iter().map(|n| n.id.clone()).collect(),
        routers: state.routers.iter().map(|r| r.id.clone()).collect(),
        instances: state.instances.iter().map(|i| i.id.clone()).collect(),
    };
    // Namespaces named like ours with no object in the store are orphans: converging an id
    // that is not in the store removes its namespace.
    for name in namespaces() {
        if let Some(id) = name.strip_prefix("qrouter-") {
            touched.routers.insert(id.to_string());
        } else if let Some(id) = name.strip_prefix("qinstance-") {
            touched.instances.insert(id.to_string());
        } else if let Some(id) = name.strip_prefix("qdhcp-") {
            touched.networks.insert(id.to_string());
        }
    }
    // A bar on a terminal once there is more than a moment's work; nothing on a pipe.
    let total = (state.routers.len() + state.instances.len()) as u64;
    let progress = (total >= 20 && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "sync {bar:40} {pos}/{len} namespaces {elapsed}",
            )
            .expect("a valid template"),
        );
        bar
    });
    let mut log = Changes::new(&owner);
    (log.dry_run, log.check_drift, log.progress) = (dry_run, true, progress);
    let k = super::connected(&mut ctx.kernel)?;
    converge(k, &state, &state, &touched, &mut log).await?;
    remove_orphan_links(k, &state, &mut log).await?;
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
    drop(txn);
    Ok(i32::from(dry_run && !log.done.is_empty()))
}

fn namespaces() -> BTreeSet<String> {
    let Ok(dir) = std::fs::read_dir(netns::NETNS_DIR) else {
        return BTreeSet::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect()
}
