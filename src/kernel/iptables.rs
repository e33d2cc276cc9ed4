//! iptables through `iptables-save` and `iptables-restore --noflush`, in a named namespace or,
//! with `None`, in qrouter's own (the `iptables` crate runs one process per rule and cannot
//! target a namespace).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};

use super::netns;

/// Run `program` in namespace `ns` (or here); `f` gets the prepared command and spawns it.
/// In a namespace, it is spawned from a thread that entered it rather than by a child that
/// enters it before exec: with no such hook, std spawns with posix_spawn (vfork) instead of
/// fork, which would leave every page of qrouter's heap to be copied on its next write.
fn run<T: Send>(
    ns: Option<&str>,
    program: &str,
    f: impl FnOnce(&mut Command) -> anyhow::Result<T> + Send,
) -> anyhow::Result<T> {
    let path = super::find_program(program).unwrap_or_else(|| program.into());
    let mut cmd = Command::new(&path);
    // iptables names itself after argv[0] in its messages.
    cmd.arg0(program);
    match ns {
        Some(ns) => netns::run_in(ns, || f(&mut cmd))?,
        None => f(&mut cmd),
    }
}

fn place(ns: Option<&str>) -> &str {
    ns.unwrap_or("the host")
}

/// `iptables-save [-c]`: every table, in one process.
pub fn save(ns: Option<&str>, counters: bool) -> anyhow::Result<String> {
    start_save(ns, counters)?.finish()
}

/// An iptables process running while the caller does something else. Dropped unfinished
/// (the caller failed meanwhile), it is still waited for: whatever undoes a change must not
/// race it.
pub struct Running {
    child: Option<Child>,
    /// What a failure says, before iptables' own words.
    failure: String,
}

impl Running {
    /// What the process printed.
    pub fn finish(mut self) -> anyhow::Result<String> {
        let out = self
            .child
            .take()
            .expect("finished once")
            .wait_with_output()
            .with_context(|| format!("{}: cannot wait for it", self.failure))?;
        if !out.status.success() {
            bail!(
                "{}: {}",
                self.failure,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

pub fn start_save(ns: Option<&str>, counters: bool) -> anyhow::Result<Running> {
    let child = run(ns, "iptables-save", |cmd| {
        if counters {
            cmd.arg("-c");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run iptables-save")
    })?;
    Ok(Running {
        child: Some(child),
        failure: format!("iptables-save in {}", place(ns)),
    })
}

/// Apply one batch (any number of tables) atomically: a batch with a bad line changes nothing.
pub fn restore(ns: Option<&str>, batch: &str) -> anyhow::Result<()> {
    start_restore(ns, batch)?.finish().map(drop)
}

pub fn start_restore(ns: Option<&str>, batch: &str) -> anyhow::Result<Running> {
    let child = run(ns, "iptables-restore", |cmd| {
        let mut child = cmd
            .arg("--noflush")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run iptables-restore")?;
        // Dropping stdin after the batch is written is its end of file.
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(batch.as_bytes())?;
        Ok(child)
    })?;
    Ok(Running {
        child: Some(child),
        failure: format!("iptables-restore in {} refused the batch", place(ns)),
    })
}
