//! The command line, mirroring python-openstackclient: one file per noun.

mod batch;
pub mod complete;
mod examples;
mod floating_ip;
mod instance;
mod man;
mod network;
mod port;
mod prompt;
mod router;
mod shell;
mod subnet;
mod sync;
mod topology;
mod trace;

use std::path::PathBuf;
use std::rc::Rc;

use clap::{CommandFactory, Parser, Subcommand};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};

use crate::kernel::{self, Kernel};
use crate::model::State;
use crate::output::{diag, Output};
use crate::reconcile::{converge, Changes, Touched};
use crate::store::{Reads, Store};

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
    #[command(flatten)]
    pub out: Output,
    /// Never prompt.
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,
    /// Print less on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Without one, on a terminal: the interactive shell.
    #[command(subcommand)]
    pub command: Option<Command>,
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
    /// A packet's path hop by hop: routes, NAT and FORWARD rules, drops in words.
    #[command(after_help = "Examples:\n  qrouter trace cirros-vm3 10.10.10.1\n  \
        qrouter trace 10.10.10.1 cirros-vm3 --protocol tcp --port 22\n  \
        qrouter trace upstream 10.10.10.3 --live -f json")]
    Trace(trace::Args),
    /// The networks, routers and instances as a picture: text, dot, svg or json.
    #[command(
        after_help = "Examples:\n  qrouter topology\n  qrouter topology --router router_100_101\n  \
        qrouter topology -f svg > topology.svg"
    )]
    Topology(topology::Args),
    /// Run many commands in one process, one per line (like `ip -batch`); stops at the first
    /// that fails. With --atomic, all of them are applied together, or none.
    #[command(after_help = "Examples:\n  qrouter batch routers.txt\n  \
        printf 'router create r1\\nrouter add interface r1 vlan101\\n' | qrouter batch --atomic -\n\n\
        Lines are split like a shell splits words ('quotes' and \\ escapes); empty lines and\n\
        lines starting with # are skipped.")]
    Batch {
        /// The file of commands, or - for standard input.
        file: PathBuf,
        /// Apply every command or none: one store transaction and one converge at the end.
        #[arg(long)]
        atomic: bool,
    },
    /// The seed scenario end to end in a private sandbox; prints every view.
    Demo,
    /// Print the shell completion script; it completes object names from the store.
    #[command(
        after_help = "Examples:\n  echo 'source <(qrouter completion bash)' >> ~/.bashrc\n  \
        qrouter completion zsh > \"${fpath[1]}/_qrouter\"\n  \
        qrouter completion fish > ~/.config/fish/completions/qrouter.fish"
    )]
    Completion {
        #[arg(value_enum)]
        shell: complete::Shell,
    },
    /// An interactive shell: history, tab completion of commands and names, help.
    /// `qrouter` alone starts it on a terminal.
    #[command(
        after_help = "Example:\n  qrouter\n  (qrouter) router add interface router_100_101 <TAB>"
    )]
    Shell,
    /// Write the man pages (qrouter.1 and one per command) into DIR.
    #[command(hide = true)]
    Man { dir: PathBuf },
}

/// The command line as qrouter parses it: the definitions above, an example in every
/// --help, and object-name candidates for completion.
pub fn command() -> clap::Command {
    complete::annotate(examples::add(Cli::command()))
}

/// Parse the process's command line. The examples and completion hints `command` adds only
/// show in help, so a line is parsed against the bare definition, and again against the
/// whole one only when help is asked for.
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::error::ErrorKind;
    use clap::FromArgMatches;
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let parse = |cmd: clap::Command| {
        cmd.try_get_matches_from(&args)
            .and_then(|m| Cli::from_arg_matches(&m))
    };
    match parse(Cli::command()) {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            parse(command())
        }
        parsed => parsed,
    }
}

/// The words of a batch or shell line, parsed as if typed after `qrouter`. The command line's
/// definition is built once per process: building it costs more than parsing a line.
fn parse_words(words: Vec<String>) -> Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    thread_local! {
        static LINE: std::cell::RefCell<clap::Command> = std::cell::RefCell::new(command());
    }
    let args = std::iter::once("qrouter".to_string()).chain(words);
    LINE.with_borrow_mut(|cmd| cmd.try_get_matches_from_mut(args))
        .and_then(|m| Cli::from_arg_matches(&m))
}

impl Command {
    /// Whether it only reads the store: it then opens the store read-only, and never creates
    /// it. Anything not named here may write (batch and the shell run commands that do).
    fn reads_only(&self) -> bool {
        use floating_ip::{Cmd::Ip, IpCmd};
        matches!(
            self,
            Command::Network(network::Cmd::List | network::Cmd::Show { .. })
                | Command::Subnet(subnet::Cmd::List { .. } | subnet::Cmd::Show { .. })
                | Command::Router(router::Cmd::List | router::Cmd::Show { .. })
                | Command::Port(port::Cmd::List { .. } | port::Cmd::Show { .. })
                | Command::Floating(Ip(IpCmd::List | IpCmd::Show { .. }))
                | Command::Instance(
                    instance::Cmd::List | instance::Cmd::Show { .. } | instance::Cmd::Exec { .. }
                )
                | Command::Completion { .. }
                | Command::Man { .. }
                | Command::Topology(_)
                | Command::Trace(_)
        )
    }

    /// Whether a batch or shell line may run it: anything but batch, demo or shell.
    fn runs_from_a_line(&self) -> bool {
        !matches!(self, Command::Batch { .. } | Command::Demo | Command::Shell)
    }
}

/// What every command gets: the store, the output settings, and the kernel once needed.
pub struct Ctx {
    pub store: Store,
    pub out: Output,
    kernel: Option<Kernel>,
    /// A missing argument may be asked for (a terminal, and no --yes).
    pub ask: bool,
    /// In `batch --atomic`: the changes made so far, applied together at the end.
    pending: Option<Pending>,
}

struct Pending {
    old: State,
    /// Shared with the command that just read it; edited in place once it has let go.
    new: Rc<State>,
    touched: Touched,
}

impl Ctx {
    pub fn kernel(&mut self) -> anyhow::Result<&mut Kernel> {
        connected(&mut self.kernel)
    }

    /// The state as this command sees it: committed, or with an atomic batch's pending changes.
    pub fn load(&mut self) -> anyhow::Result<Rc<State>> {
        self.load_only(&Reads::All)
    }

    /// `load`, reading only what `reads` says of the committed state.
    pub fn load_only(&mut self, reads: &Reads) -> anyhow::Result<Rc<State>> {
        match &self.pending {
            Some(p) => Ok(p.new.clone()),
            None => self.store.load_only(reads),
        }
    }

    /// Validate and apply one change: `f` edits a copy of the state and says what it touched.
    /// The store keeps the write lock until the kernel matches; if converging fails, the store
    /// change is rolled back and the touched objects are converged back to the old state.
    /// In an atomic batch the change is only validated and kept for `finish_atomic`.
    pub async fn change(
        &mut self,
        f: impl FnOnce(&mut State) -> anyhow::Result<Touched>,
    ) -> anyhow::Result<Rc<State>> {
        self.change_only(Reads::All, f).await
    }

    /// `change` for a command that reads and writes only what `reads` says: the rest of the
    /// store is not read. Creating a network, for one, needs only the networks of its name.
    pub async fn change_only(
        &mut self,
        reads: Reads<'_>,
        f: impl FnOnce(&mut State) -> anyhow::Result<Touched>,
    ) -> anyhow::Result<Rc<State>> {
        // A failed change fails the whole batch, which then applies nothing: the pending
        // state is edited in place, not copied for each line (quadratic in a large batch).
        if let Some(p) = &mut self.pending {
            let new = Rc::make_mut(&mut p.new);
            let touched = f(new)?;
            new.check_floating_ips()?;
            p.touched.extend(touched);
            return Ok(p.new.clone());
        }
        let partial = matches!(reads, Reads::Around(_));
        let (txn, old) = self.store.begin_only(&reads)?;
        // The one copy a change needs: `old` stays for the diff and for rolling back.
        let mut new = (*old).clone();
        let touched = f(&mut new)?;
        new.check_floating_ips()?;
        // A router is converged from its plan, which needs all its ports: only a router read
        // whole, or one this change made, may change. Another one (a floating IP's, chosen
        // by what was read before the change began) means the store changed meanwhile.
        if let Reads::Around(around) = &reads {
            let partly_read =
                |r: &String| !around.routers.contains(r) && old.router_by_id(r).is_some();
            if touched.routers.iter().any(partly_read) {
                anyhow::bail!(
                    "the store changed while this command ran; nothing was changed, run it again"
                );
            }
        }
        apply(&mut self.kernel, txn, old, new, touched, partial).await
    }

    /// Whether changes are being collected for an atomic batch, which reads the store once.
    pub fn collecting(&self) -> bool {
        self.pending.is_some()
    }

    /// From now on, changes are collected instead of applied.
    pub fn start_atomic(&mut self) -> anyhow::Result<()> {
        let old = (*self.store.load()?).clone();
        self.pending = Some(Pending {
            new: Rc::new(old.clone()),
            old,
            touched: Touched::default(),
        });
        Ok(())
    }

    /// Apply everything collected since `start_atomic` as one change, or nothing.
    pub async fn finish_atomic(&mut self) -> anyhow::Result<()> {
        let p = self.pending.take().expect("an atomic batch was started");
        let (txn, current) = self.store.begin()?;
        if *current != p.old {
            anyhow::bail!("the store changed while the batch was being read; nothing was applied, run it again");
        }
        apply(
            &mut self.kernel,
            txn,
            Rc::new(p.old),
            Rc::unwrap_or_clone(p.new),
            p.touched,
            false,
        )
        .await
        .map(drop)
    }
}

/// Write `new` under the lock `txn` holds and converge the touched objects; on failure roll
/// the store back and converge them back to `old`.
async fn apply(
    kernel: &mut Option<Kernel>,
    txn: crate::store::Txn<'_>,
    old: Rc<State>,
    new: State,
    touched: Touched,
    partial: bool,
) -> anyhow::Result<Rc<State>> {
    if new == *old {
        return Ok(old);
    }
    let needs_kernel = !(touched.networks.is_empty()
        && touched.routers.is_empty()
        && touched.instances.is_empty());
    if needs_kernel {
        kernel::preflight()?;
    }
    let _deferred = SignalsDeferred::new();
    txn.save(&old, &new)?;
    if needs_kernel {
        let k = connected(kernel)?;
        let owner = txn.store_id().to_string();
        let mut changes = Changes::new(&owner);
        changes.partial = partial;
        let result = converge(k, &old, &new, &touched, &mut changes).await;
        changes.done.iter().for_each(diag::change);
        if let Err(err) = result {
            drop(txn);
            let mut back = Changes::new(&owner);
            back.partial = partial;
            if let Err(undo) = converge(k, &new, &old, &touched, &mut back).await {
                diag::warn(format!(
                    "rolling the kernel back also failed: {undo:#}; run 'qrouter sync'"
                ));
            }
            return Err(err);
        }
    }
    let new = Rc::new(new);
    txn.commit(&new)?;
    Ok(new)
}

/// Ctrl-C, SIGTERM and SIGHUP wait while a change is applied: the change finishes or rolls
/// back, then the signal acts. Blocked signals stay blocked in the threads started meanwhile;
/// the iptables processes run in their own process group, out of reach of the terminal's
/// Ctrl-C, so none of them is stopped halfway either.
struct SignalsDeferred(SigSet);

impl SignalsDeferred {
    fn new() -> Self {
        let mut set = SigSet::empty();
        [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP]
            .into_iter()
            .for_each(|s| set.add(s));
        let mut old = SigSet::empty();
        // Only the main thread exists outside a change; it is the one that takes signals.
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
            .expect("blocking signals cannot fail");
        SignalsDeferred(old)
    }
}

impl Drop for SignalsDeferred {
    fn drop(&mut self) {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
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
    match &cli.command {
        Some(Command::Completion { shell }) => return complete::print_script(*shell),
        Some(Command::Man { dir }) => return man::write_pages(dir),
        None if !prompt::allowed(cli.yes) => {
            eprintln!(
                "{}\nqrouter: no command given (the interactive shell needs a terminal); see 'qrouter --help'",
                Cli::command().render_usage()
            );
            return Ok(2);
        }
        _ => {}
    }
    let store = match &cli.command {
        Some(command) if command.reads_only() => Store::open_read_only(&cli.state_dir)?,
        _ => Store::open(&cli.state_dir)?,
    };
    let mut ctx = Ctx {
        store,
        out: cli.out,
        kernel: None,
        ask: prompt::allowed(cli.yes),
        pending: None,
    };
    match cli.command {
        Some(Command::Batch { file, atomic }) => batch::run(&mut ctx, &file, atomic).await,
        Some(Command::Shell) | None => shell::run(&mut ctx).await,
        Some(command) => dispatch(&mut ctx, command).await,
    }
}

/// Run one command; returns its exit code.
pub async fn dispatch(ctx: &mut Ctx, command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Network(cmd) => network::run(ctx, cmd).await.map(|_| 0),
        Command::Subnet(cmd) => subnet::run(ctx, cmd).await.map(|_| 0),
        Command::Router(cmd) => router::run(ctx, cmd).await.map(|_| 0),
        Command::Port(cmd) => port::run(ctx, cmd).map(|_| 0),
        Command::Floating(cmd) => floating_ip::run(ctx, cmd).await.map(|_| 0),
        Command::Instance(cmd) => instance::run(ctx, cmd).await,
        Command::Sync { dry_run } => sync::run(ctx, dry_run).await,
        Command::Trace(args) => trace::run(ctx, args).await,
        Command::Topology(args) => topology::run(ctx, args).await,
        Command::Completion { shell } => complete::print_script(shell),
        Command::Man { dir } => man::write_pages(&dir),
        Command::Batch { .. } | Command::Demo | Command::Shell => {
            crate::bail_invalid!("this command cannot run inside a batch")
        }
    }
}

/// A record field from anything serialisable.
pub fn field(name: &str, value: impl serde::Serialize) -> (String, serde_json::Value) {
    (
        name.to_string(),
        serde_json::to_value(value).expect("values serialise"),
    )
}
