//! iptables through `iptables-save` and `iptables-restore --noflush`, in a named namespace or,
//! with `None`, in qrouter's own (the `iptables` crate runs one process per rule and cannot
//! target a namespace).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};

use super::netns;

/// Start `program` in namespace `ns` (or here) once `configure` has set its arguments and
/// pipes.
///
/// In a namespace it is spawned by a thread that entered it (a child starts in the namespace
/// of the thread that makes it), not by a child that enters it before exec: without such a
/// hook std spawns with posix_spawn (vfork) rather than fork, which would leave every page of
/// qrouter's heap to be copied on its next write. Its own process group keeps a Ctrl-C at the
/// terminal from stopping it halfway; qrouter itself defers the signal until its change is
/// done or undone.
fn spawn(
    ns: Option<&str>,
    program: &str,
    configure: impl FnOnce(&mut Command),
) -> anyhow::Result<Child> {
    let path = super::find_program(program).unwrap_or_else(|| program.into());
    let mut cmd = Command::new(&path);
    // iptables names itself after argv[0] in its messages.
    cmd.arg0(program).process_group(0);
    configure(&mut cmd);
    match ns {
        Some(ns) => netns::spawn_in(ns, cmd),
        None => cmd.spawn().map_err(Into::into),
    }
    .with_context(|| format!("cannot run {program}"))
}

/// Whether the host's iptables is iptables-nft, whose rules live in nf_tables and which
/// qrouter then writes itself (`model::rules_nft`), or iptables-legacy, whose rules only its
/// own tools reach: Debian's `iptables-restore` leads, through alternatives, to
/// `xtables-nft-multi` or `xtables-legacy-multi`. Looked at once per process.
pub fn uses_nf_tables() -> bool {
    static NFT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NFT.get_or_init(|| {
        super::find_program("iptables-restore")
            .and_then(|p| std::fs::canonicalize(p).ok())
            .is_none_or(|p| !p.to_string_lossy().contains("legacy"))
    })
}

fn place(ns: Option<&str>) -> &str {
    ns.unwrap_or("the host")
}

/// The tool of a family: IPv4's iptables, or with `v6` ip6tables; `what` its save or
/// restore.
fn tool(v6: bool, what: &str) -> String {
    format!("{}tables-{what}", if v6 { "ip6" } else { "ip" })
}

/// `iptables-save [-c]` (`ip6tables-save` with `v6`): every table, in one process.
pub fn save(ns: Option<&str>, v6: bool, counters: bool) -> anyhow::Result<String> {
    start_save(ns, v6, counters)?.finish()
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

pub fn start_save(ns: Option<&str>, v6: bool, counters: bool) -> anyhow::Result<Running> {
    let program = tool(v6, "save");
    let child = spawn(ns, &program, |cmd| {
        if counters {
            cmd.arg("-c");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    })?;
    Ok(Running {
        child: Some(child),
        failure: format!("{program} in {}", place(ns)),
    })
}

/// Apply one batch (any number of tables of one family) atomically: a batch with a bad
/// line changes nothing.
pub fn restore(ns: Option<&str>, v6: bool, batch: &str) -> anyhow::Result<()> {
    start_restore(ns, v6, batch)?.finish().map(drop)
}

/// One `iptables-restore` batch, or with `v6` an `ip6tables-restore` one.
pub struct Restore {
    pub v6: bool,
    pub text: String,
}

pub fn start_restore(ns: Option<&str>, v6: bool, batch: &str) -> anyhow::Result<Running> {
    let program = tool(v6, "restore");
    feed(
        spawn(ns, &program, restore_args)?,
        &program,
        place(ns),
        batch,
    )
}

/// `start_restore` from a thread that entered namespace `ns` itself.
pub fn start_restore_here(ns: &str, v6: bool, batch: &str) -> anyhow::Result<Running> {
    let program = tool(v6, "restore");
    feed(spawn(None, &program, restore_args)?, &program, ns, batch)
}

fn restore_args(cmd: &mut Command) {
    cmd.arg("--noflush")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
}

/// Write the batch to a started `program` (`iptables-restore`) running in `place`.
fn feed(mut child: Child, program: &str, place: &str, batch: &str) -> anyhow::Result<Running> {
    let stdin = child.stdin.take().expect("piped stdin");
    let running = Running {
        child: Some(child),
        failure: format!("{program} in {place} refused the batch"),
    };
    // The block moves stdin in, so it is closed (the batch's end of file) before anything
    // waits for the process, even when the write fails and `running` is dropped.
    { stdin }
        .write_all(batch.as_bytes())
        .with_context(|| format!("{}: cannot write to it", running.failure))?;
    Ok(running)
}
