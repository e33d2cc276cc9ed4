//! The command line, mirroring python-openstackclient: one file per noun.

mod floating_ip;
mod instance;
mod network;
mod port;
mod router;
mod subnet;
mod sync;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::converge::{converge, Changes, Touched};
use crate::kernel::{self, Kernel};
use crate::model::State;
use crate::output::{diag, Format, Output};
use crate::store::Store;

#[derive(Parser)]
#[command(name = "qrouter", version, about = "Neutron-style virtual routers on a Linux host", long_about = None)]
pub struct Cli {
    /// Where the embedded store lives.
    #[arg(
        long,
        env = "QROUTER_STATE_DIR",
        default_value = "/var/lib/qrouter",
        global = true
    )]
    pub state_dir: PathBuf,
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value = "table", global = true)]
    pub format: Format,
    /// Only these columns or fields, in the command's order (repeatable).
    #[arg(short = 'c', long = "column", value_name = "COLUMN", global = true)]
    pub columns: Vec<String>,
    /// Never prompt.
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,
    /// Print less on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Networks: a Linux bridge each.
    #[command(subcommand)]
    Network(network::Cmd),
    /// Subnets: address ranges, gateways and allocation pools on a network.
    #[command(subcommand)]
    Subnet(subnet::Cmd),
    /// Routers: a qrouter-<id> namespace each, with qr-/qg- interfaces and NAT.
    #[command(subcommand)]
    Router(router::Cmd),
    /// Ports: router interfaces, gateways and instance interfaces.
    #[command(subcommand)]
    Port(port::Cmd),
    /// Floating IPs: 1:1 NAT from an external address to an instance.
    #[command(subcommand)]
    Floating(floating_ip::Cmd),
    /// Test instances: namespaces that stand in for VMs like cirros-vm3.
    #[command(subcommand)]
    Instance(instance::Cmd),
    /// Make the kernel match the store (after a reboot); report every drift found.
    #[command(
        after_help = "Examples:\n  qrouter sync\n  qrouter sync --dry-run   # exit 1 when the kernel differs from the store"
    )]
    Sync {
        /// Only list what differs; exit 1 when anything does.
        #[arg(long)]
        dry_run: bool,
    },
    /// The seed scenario end to end in a private sandbox; prints every view.
    Demo,
}

/// What every command gets: the store, the output settings, and the kernel once needed.
pub struct Ctx {
    pub store: Store,
    pub out: Output,
    kernel: Option<Kernel>,
}

impl Ctx {
    pub fn kernel(&mut self) -> anyhow::Result<&mut Kernel> {
        connected(&mut self.kernel)
    }

    /// Validate and apply one change: `f` edits a copy of the state and says what it touched.
    /// The store keeps the write lock until the kernel matches; if converging fails, the store
    /// change is rolled back and the touched objects are converged back to the old state.
    pub async fn change(
        &mut self,
        f: impl FnOnce(&mut State) -> anyhow::Result<Touched>,
    ) -> anyhow::Result<State> {
        let (txn, old) = self.store.begin()?;
        let mut new = old.clone();
        let touched = f(&mut new)?;
        new.check_floating_ips()?;
        if new == old {
            return Ok(new);
        }
        let needs_kernel = !(touched.networks.is_empty()
            && touched.routers.is_empty()
            && touched.instances.is_empty());
        if needs_kernel {
            kernel::preflight()?;
        }
        txn.save(&old, &new)?;
        if needs_kernel {
            let k = connected(&mut self.kernel)?;
            let mut changes = Changes::default();
            let result = converge(k, &old, &new, &touched, &mut changes).await;
            changes.done.iter().for_each(diag::change);
            if let Err(err) = result {
                drop(txn);
                if let Err(undo) = converge(k, &new, &old, &touched, &mut Changes::default()).await
                {
                    diag::warn(format!(
                        "rolling the kernel back also failed: {undo:#}; run 'qrouter sync'"
                    ));
                }
                return Err(err);
            }
        }
        txn.commit()?;
        Ok(new)
    }
}

fn connected(slot: &mut Option<Kernel>) -> anyhow::Result<&mut Kernel> {
    if slot.is_none() {
        *slot = Some(Kernel::connect()?);
    }
    Ok(slot.as_mut().expect("just connected"))
}

pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    diag::set_level(cli.quiet, cli.verbose);
    let store = Store::open(&cli.state_dir)?;
    let mut ctx = Ctx {
        store,
        out: Output {
            format: cli.format,
            columns: cli.columns,
        },
        kernel: None,
    };
    match cli.command {
        Command::Network(cmd) => network::run(&mut ctx, cmd).await.map(|_| 0),
        Command::Subnet(cmd) => subnet::run(&mut ctx, cmd).await.map(|_| 0),
        Command::Router(cmd) => router::run(&mut ctx, cmd).await.map(|_| 0),
        Command::Port(cmd) => port::run(&mut ctx, cmd).map(|_| 0),
        Command::Floating(cmd) => floating_ip::run(&mut ctx, cmd).await.map(|_| 0),
        Command::Instance(cmd) => instance::run(&mut ctx, cmd).await,
        Command::Sync { dry_run } => sync::run(&mut ctx, dry_run).await,
        Command::Demo => unreachable!("the demo runs before the runtime starts"),
    }
}

/// A record field from anything serialisable.
pub fn field(name: &str, value: impl serde::Serialize) -> (String, serde_json::Value) {
    (
        name.to_string(),
        serde_json::to_value(value).expect("values serialise"),
    )
}
