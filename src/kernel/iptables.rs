//! iptables in a namespace through `iptables-save` and `iptables-restore --noflush`
//! (the `iptables` crate runs one process per rule and cannot target a namespace).

use std::io::Write;
use std::process::Stdio;

use anyhow::{bail, Context};

use super::netns;

/// `iptables-save [-c]` inside namespace `ns`: every table, in one process.
pub fn save(ns: &str, counters: bool) -> anyhow::Result<String> {
    let file = netns::open(ns)?;
    let mut cmd = netns::command(&file, "iptables-save");
    if counters {
        cmd.arg("-c");
    }
    let out = cmd.output().context("cannot run iptables-save")?;
    if !out.status.success() {
        bail!(
            "iptables-save in {ns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Apply one batch (any number of tables) atomically: a batch with a bad line changes nothing.
pub fn restore(ns: &str, batch: &str) -> anyhow::Result<()> {
    let file = netns::open(ns)?;
    let mut child = netns::command(&file, "iptables-restore")
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run iptables-restore")?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(batch.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "iptables-restore in {ns} refused the batch: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
