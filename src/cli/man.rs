//! Man pages from the command line itself (clap_mangen): `qrouter.1` and one page per
//! command, named as git names them (`qrouter-router-set.1`), each with the EXIT STATUS,
//! ENVIRONMENT and FILES sections clap does not write. `man/` holds them, generated with
//! `qrouter man man/`; a test fails when they are stale.

use std::path::Path;

use anyhow::Context;
use clap::Command;

pub fn write_pages(dir: &Path) -> anyhow::Result<i32> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("man pages: cannot create {}", dir.display()))?;
    let mut cmd = super::command();
    cmd.build();
    write(dir, cmd, "qrouter")?;
    Ok(0)
}

fn write(dir: &Path, cmd: Command, name: &str) -> anyhow::Result<()> {
    let subcommands: Vec<Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .cloned()
        .collect();
    let page = cmd.name(name.to_string()).bin_name(name.replace('-', " "));
    let mut text = Vec::new();
    clap_mangen::Man::new(page).render(&mut text)?;
    let text = with_sections(String::from_utf8(text)?);
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, text)
        .with_context(|| format!("man pages: cannot write {}", path.display()))?;
    for sub in subcommands {
        let sub_name = format!("{name}-{}", sub.get_name());
        write(dir, sub, &sub_name)?;
    }
    Ok(())
}

/// What every page says besides its command: exit codes, the environment, the files.
const SECTIONS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success.
.TP
\fB1\fR
The operation failed and nothing changed (the kernel refused, the store is unusable, qrouter
is not root); \fBsync \-\-dry\-run\fR: the kernel differs from the store.
.TP
\fB2\fR
Bad usage or invalid input; nothing changed.
.TP
\fB128+N\fR
Signal N stopped qrouter: 129 SIGHUP, 130 SIGINT, 143 SIGTERM. A change in progress finishes
or rolls back first. A \fBbatch\fR stops after the line in progress and says on standard
error which line that was, and how many lines are done and how many were not run.
.SH ENVIRONMENT
.TP
\fBQROUTER_STATE_DIR\fR
The state directory, where \fB\-\-state\-dir\fR does not give one; without either,
\fI/var/lib/qrouter\fR.
.SH FILES
.TP
\fISTATE_DIR/qrouter.db\fR
The store (SQLite): the desired state of every network, subnet, router, port, floating IP and
instance. \fBqrouter sync\fR rebuilds the kernel's objects from it after a reboot. The
directory is the invoking user's, mode 0700.
.TP
\fISTATE_DIR/qrouter.db\-wal\fR, \fISTATE_DIR/qrouter.db\-shm\fR
SQLite's write\-ahead log and its index, beside the store: the latest changes can be in the
log, so back up, copy or remove the three files together, while no qrouter runs.
.TP
\fI~/.qrouter_history\fR
The interactive shell's history.
"#;

/// A page clap_mangen rendered, with `SECTIONS` before its VERSION section (or at its end).
fn with_sections(page: String) -> String {
    match page.find(".SH VERSION") {
        Some(at) => format!("{}{SECTIONS}{}", &page[..at], &page[at..]),
        None => page + SECTIONS,
    }
}
