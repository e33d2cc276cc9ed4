//! The command line, mirroring python-openstackclient: one file per noun.

mod batch;
pub mod complete;
mod examples;
mod floating_ip;
mod host;
mod instance;
mod man;
mod network;
mod port;
mod prompt;
mod router;
mod shell;
mod subnet;
mod sync;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::ops::Session;
use crate::output::{diag, Output};
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
    /// The desired state elsewhere: etcd://HOST:PORT[,HOST:PORT...] for several hosts
    /// (each runs 'qrouter agent'). Without it, the embedded store in --state-dir.
    #[arg(long, env = "QROUTER_STORE", global = true, value_name = "URL")]
    pub store: Option<String>,
    /// With an etcd store: return once the change is written, without waiting for the
    /// hosts' agents to apply it.
    #[arg(long, global = true)]
    pub no_wait: bool,
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
    /// Hosts running `qrouter agent` against an etcd store: role, liveness, what runs there.
    #[command(subcommand)]
    Host(host::Cmd),
    /// Run this host's agent: converge its part of the etcd store's desired state, for good.
    #[command(
        after_help = "Example:\n  qrouter --store etcd://10.0.0.10:2379 agent --host network1 \\\n      --local-ip 192.168.0.11 --role network"
    )]
    Agent(host::AgentArgs),
    /// Make the kernel match the store (after a reboot); report every drift found.
    #[command(
        after_help = "Examples:\n  qrouter sync\n  qrouter sync --dry-run   # exit 1 when the kernel differs from the store"
    )]
    Sync {
        /// Only list what differs; exit 1 when anything does.
        #[arg(long)]
        dry_run: bool,
    },
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
    Demo {
        /// The seed across hosts: network1 and compute1, etcd and an agent each, VXLAN.
        #[arg(long)]
        hosts: bool,
    },
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
                | Command::Host(_)
                | Command::Completion { .. }
                | Command::Man { .. }
        )
    }

    /// Whether a batch or shell line may run it: anything but batch, demo or shell.
    fn runs_from_a_line(&self) -> bool {
        !matches!(
            self,
            Command::Batch { .. } | Command::Demo { .. } | Command::Shell
        )
    }
}

/// What every command gets: the session (store, kernel, atomic batch) and the output
/// settings.
pub struct Ctx {
    pub session: Session,
    pub out: Output,
    /// A missing argument may be asked for (a terminal, and no --yes).
    pub ask: bool,
}

pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    diag::set_level(cli.quiet, cli.verbose);
    match &cli.command {
        Some(Command::Completion { shell }) => return complete::print_script(*shell),
        Some(Command::Man { dir }) => return man::write_pages(dir),
        Some(Command::Agent(args)) => return host::agent(cli.store.as_deref(), args).await,
        None if !prompt::allowed(cli.yes) => {
            eprintln!(
                "{}\nqrouter: no command given (the interactive shell needs a terminal); see 'qrouter --help'",
                Cli::command().render_usage()
            );
            return Ok(2);
        }
        _ => {}
    }
    let writable = !cli.command.as_ref().is_some_and(Command::reads_only);
    let store = Store::open_spec(cli.store.as_deref(), &cli.state_dir, writable)?;
    let mut session = Session::new(store);
    if cli.no_wait {
        session.wait = None;
    }
    let mut ctx = Ctx {
        session,
        out: cli.out,
        ask: prompt::allowed(cli.yes),
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
        Command::Host(cmd) => host::run(ctx, cmd).map(|_| 0),
        Command::Agent(_) => {
            crate::bail_invalid!("the agent cannot run inside a batch")
        }
        Command::Completion { shell } => complete::print_script(shell),
        Command::Man { dir } => man::write_pages(&dir),
        Command::Batch { .. } | Command::Demo { .. } | Command::Shell => {
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
