//! How to reach an etcd store, as etcdctl takes it (`--cacert`, `--cert`, `--key`, `--user`),
//! and `store unlock`, which breaks its write lock.

use std::path::PathBuf;

use clap::Subcommand;

use super::{prompt, Ctx};
use crate::bail_invalid;
use crate::ops::unlock;
use crate::ops::EtcdAccess;

// The options of an etcd store, every command's (the agent's too).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct EtcdArgs {
    /// etcd over TLS (etcds:// or https://): the CA bundle its certificates are signed by
    /// (default: the public roots).
    #[arg(
        long,
        env = "QROUTER_ETCD_CACERT",
        global = true,
        value_name = "FILE",
        help_heading = "etcd"
    )]
    pub cacert: Option<PathBuf>,
    /// etcd over TLS: this client's certificate, for an etcd that asks for one (with --key).
    #[arg(
        long,
        env = "QROUTER_ETCD_CERT",
        global = true,
        value_name = "FILE",
        help_heading = "etcd"
    )]
    pub cert: Option<PathBuf>,
    /// etcd over TLS: the key of --cert.
    #[arg(
        long,
        env = "QROUTER_ETCD_KEY",
        global = true,
        value_name = "FILE",
        help_heading = "etcd"
    )]
    pub key: Option<PathBuf>,
    /// etcd's user auth: the user, and its password after a colon (else --password, or asked
    /// for on a terminal).
    #[arg(
        long,
        env = "QROUTER_ETCD_USER",
        global = true,
        value_name = "USER[:PASSWORD]",
        help_heading = "etcd"
    )]
    pub user: Option<String>,
    /// etcd's user auth: the password of --user.
    #[arg(
        long,
        env = "QROUTER_ETCD_PASSWORD",
        global = true,
        hide_env_values = true,
        help_heading = "etcd"
    )]
    pub password: Option<String>,
}

impl EtcdArgs {
    /// How to reach etcd. A user without a password is asked for it when `may_ask` (a
    /// terminal, no --yes) and the store is etcd; else that is a usage error.
    pub fn access(&self, etcd: bool, may_ask: bool) -> anyhow::Result<EtcdAccess> {
        let (user, mut password) = match self.user.as_deref().map(|u| u.split_once(':')) {
            Some(Some((user, password))) => (Some(user.to_string()), Some(password.to_string())),
            Some(None) => (self.user.clone(), self.password.clone()),
            None => (None, None),
        };
        if let (Some(user), None, true) = (&user, &password, etcd) {
            if !may_ask {
                bail_invalid!(
                    "etcd user {user}: no password (--user {user}:PASSWORD, --password or \
                     QROUTER_ETCD_PASSWORD; no terminal to ask on, or --yes)"
                );
            }
            password = Some(prompt::password(&format!("etcd password of {user}"))?);
        }
        Ok(EtcdAccess {
            cacert: self.cacert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            user,
            password,
        })
    }
}

#[derive(Subcommand)]
#[command(defer = true)]
pub enum Cmd {
    /// Break the etcd store's write lock: a key no lease ends (a value set by hand, a lock
    /// of a qrouter before leases) or a writer that hangs. Says what holds it and asks first
    /// (-y without a terminal); exit 2 when nothing holds it. A writer that died lets go by
    /// itself when its lease ends, within seconds.
    #[command(after_help = "Example:\n  qrouter --store etcd://10.0.0.10:2379 store unlock -y")]
    Unlock,
}

/// `store unlock`: `yes` is -y (go ahead without asking).
pub fn run(ctx: &mut Ctx, cmd: Cmd, yes: bool) -> anyhow::Result<i32> {
    let Cmd::Unlock = cmd;
    let holders = unlock::holders(&mut ctx.session.store)?;
    if holders.is_empty() {
        bail_invalid!("store unlock: nothing holds the write lock; nothing to unlock");
    }
    let held = holders.described();
    for h in &held {
        eprintln!("the write lock: {h}");
    }
    if !yes {
        if !ctx.ask {
            bail_invalid!(
                "store unlock: give -y to break the lock without a terminal; nothing changed"
            );
        }
        if !prompt::confirm(&format!("Break the write lock ({} key(s))?", held.len()))? {
            bail_invalid!("store unlock: cancelled; nothing changed");
        }
    }
    let broken = unlock::break_lock(&mut ctx.session.store, &holders)?;
    println!("broke the write lock: {broken} key(s) deleted");
    if broken < held.len() {
        eprintln!(
            "qrouter: {} key(s) changed meanwhile and were left (run it again to see them)",
            held.len() - broken
        );
        return Ok(1);
    }
    Ok(0)
}
