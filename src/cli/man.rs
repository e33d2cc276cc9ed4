//! Man pages from the command line itself (clap_mangen): `qrouter.1` and one page per
//! command, named as git names them (`qrouter-router-set.1`). `man/` holds them, generated
//! with `qrouter man man/`; a test fails when they are stale.

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
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, text)
        .with_context(|| format!("man pages: cannot write {}", path.display()))?;
    for sub in subcommands {
        let sub_name = format!("{name}-{}", sub.get_name());
        write(dir, sub, &sub_name)?;
    }
    Ok(())
}
