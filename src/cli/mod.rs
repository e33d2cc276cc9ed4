//! The command line, mirroring python-openstackclient: one file per noun.

mod args;
mod batch;
mod candidates;
pub mod complete;
mod examples;
mod floating_ip;
mod host;
mod instance;
mod local_globals;
mod man;
mod network;
mod port;
mod port_list;
mod prompt;
mod router;
mod router_view;
mod shell;
mod signals;
mod store;
mod subnet;
mod sync;
mod topology;
mod trace;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::ops::Session;
use crate::output::{diag, Output};

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
    /// (each runs 'qrouter agent'; etcds:// or https:// endpoints for TLS, the next endpoint
    /// when one is down). Without it, the embedded store in --state-dir.
    #[arg(long, env = "QROUTER_STORE", global = true, value_name = "URL")]
    pub store: Option<String>,
    #[command(flatten)]
    pub etcd: store::EtcdArgs,
    /// With an etcd store: return once the change is written, without waiting for the
    /// hosts' agents to apply it.
    #[arg(long, global = true)]
    pub no_wait: bool,
    #[command(flatten)]
    pub out: OutputArgs,
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
#[command(defer = true)]
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
    /// The store itself: 'store unlock' breaks an etcd store's write lock.
    #[command(subcommand)]
    Store(store::Cmd),
    /// Run this host's agent: converge its part of the etcd store's desired state, for good.
    #[command(
        after_help = "Example:\n  qrouter --store etcd://10.0.0.10:2379 agent --host network1 \\\n      --local-ip 192.168.0.11 --role network"
    )]
    Agent(host::AgentArgs),
    /// Make the kernel match the store (after a reboot); report every drift found. Creates
    /// what is missing, repairs what differs, and deletes orphans: devices and namespaces
    /// that carry this store's mark but that no object explains (others are left alone).
    /// Plugs a workload's tap (named as 'port create' said, made by other software) into
    /// its network's bridge; never deletes it. With an etcd store, asks each host's agent to
    /// do it for its part, and reports per host.
    #[command(
        after_help = "Examples:\n  qrouter sync\n  qrouter sync --dry-run   # exit 1 when the kernel differs from the store\n  \
        qrouter --store etcd://10.0.0.10:2379 sync --host network1"
    )]
    Sync {
        /// Only list what differs (and foreign look-alikes); exit 1 when anything differs.
        #[arg(long)]
        dry_run: bool,
        /// With an etcd store: only this host (default: every host).
        #[arg(long)]
        host: Option<String>,
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
    Demo {
        /// The seed across hosts: network1 and compute1, etcd and an agent each, VXLAN;
        /// then an HA router on network2 and network3 whose master's host crashes.
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
        /// The shell to complete in.
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
    Man {
        /// The directory to write the pages into.
        dir: PathBuf,
    },
}

/// `-f`: the formats openstackclient offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// Tables with ASCII borders (the default).
    Table,
    /// JSON: structured values stay objects and lists.
    Json,
    /// YAML: as JSON, in YAML.
    Yaml,
    /// Values only, space-separated, one object or row per line.
    Value,
    /// Comma-separated values with a header line.
    Csv,
    /// `name="value"` lines for a shell's `eval` (show commands).
    Shell,
    /// `topology` only: a drawing for the terminal (elsewhere: a table).
    Text,
    /// `topology` only: Graphviz dot.
    Dot,
    /// `topology` only: a self-contained SVG picture.
    Svg,
}

/// `--quote`: which CSV fields are quoted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum QuoteArg {
    /// Every field.
    All,
    /// Only fields with a comma, quote or newline in them.
    Minimal,
    /// No field.
    None,
    /// Every field that is not a number (the default, as openstackclient's).
    Nonnumeric,
}

// How results are printed; every command takes these options.
#[derive(Clone, Debug, clap::Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value = "table", global = true)]
    pub format: FormatArg,
    /// Only these columns or fields, in the command's order (repeatable); unknown ones are
    /// ignored while one is known.
    #[arg(short = 'c', long = "column", value_name = "COLUMN", global = true)]
    pub columns: Vec<String>,
    /// Sort list rows by these columns (repeatable), ascending unless --sort-descending.
    #[arg(long = "sort-column", value_name = "COLUMN", global = true)]
    pub sort_columns: Vec<String>,
    /// Sort list rows in ascending order (the default).
    #[arg(long, global = true, conflicts_with = "sort_descending")]
    pub sort_ascending: bool,
    /// Sort list rows in descending order.
    #[arg(long, global = true)]
    pub sort_descending: bool,
    /// Tables at most N characters wide; long values wrap (0: never wrap).
    #[arg(long, value_name = "N", global = true)]
    pub max_width: Option<u16>,
    /// Fit tables to the terminal width ($COLUMNS, or 80) even when output is not a terminal.
    #[arg(long, global = true)]
    pub fit_width: bool,
    /// -f json: everything on one line.
    #[arg(long, global = true)]
    pub noindent: bool,
    /// -f shell: a prefix for every variable name.
    #[arg(long, value_name = "PREFIX", default_value = "", global = true)]
    pub prefix: String,
    /// -f csv: which fields are quoted.
    #[arg(long, value_enum, default_value = "nonnumeric", global = true)]
    pub quote: QuoteArg,
}

impl From<OutputArgs> for Output {
    fn from(a: OutputArgs) -> Output {
        use crate::output::{Format, Quote};
        Output {
            format: match a.format {
                FormatArg::Table => Format::Table,
                FormatArg::Json => Format::Json,
                FormatArg::Yaml => Format::Yaml,
                FormatArg::Value => Format::Value,
                FormatArg::Csv => Format::Csv,
                FormatArg::Shell => Format::Shell,
                FormatArg::Text => Format::Text,
                FormatArg::Dot => Format::Dot,
                FormatArg::Svg => Format::Svg,
            },
            columns: a.columns,
            sort_columns: a.sort_columns,
            sort_descending: a.sort_descending,
            max_width: a.max_width,
            fit_width: a.fit_width,
            noindent: a.noindent,
            prefix: a.prefix,
            quote: match a.quote {
                QuoteArg::All => Quote::All,
                QuoteArg::Minimal => Quote::Minimal,
                QuoteArg::None => Quote::None,
                QuoteArg::Nonnumeric => Quote::NonNumeric,
            },
        }
    }
}

/// The command line as qrouter parses it: the definitions above, an example in every
/// --help, and object-name candidates for completion.
pub fn command() -> clap::Command {
    whole(Cli::command())
}

/// `cmd` with every subcommand made (their definitions are deferred, see `parse_from`), then
/// the examples and hints added to them.
fn whole(mut cmd: clap::Command) -> clap::Command {
    cmd.build();
    complete::annotate(examples::add(cmd))
}

/// Parse the process's command line. The examples and completion hints `command` adds only
/// show in help, so a line is parsed against the bare definition, and again against the
/// whole one only when help is asked for. On a terminal, a required argument that names
/// objects is asked for (`prompt::ask_missing`); a failure there (cancelled, nothing to
/// choose from) is printed and ends the process with its exit code.
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::error::ErrorKind;
    use clap::FromArgMatches;
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let parse = |mut cmd: clap::Command| {
        let matches = cmd.try_get_matches_from_mut(&args);
        // The tree goes with the process: freeing it took a quarter of the instructions of
        // a command that does nothing else (callgrind, `router list` on an empty store).
        std::mem::forget(cmd);
        matches.and_then(|m| Cli::from_arg_matches(&m))
    };
    // Each subcommand's definition is deferred (`#[command(defer = true)]`): clap makes only
    // the ones the line goes through, where building every noun's tree was a quarter of
    // what a command that does nothing else cost (2.94 -> 2.27 M instructions, callgrind).
    let top = Cli::command();
    let top = match local_globals::GlobalNames::of(&top).plain(&args) {
        true => match parse(local_globals::local(top)) {
            Ok(cli) => return Ok(cli),
            // The usual definition makes the message, or asks.
            Err(_) => Cli::command(),
        },
        false => top,
    };
    match parse(top) {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            parse(command())
        }
        Err(e) if e.kind() == ErrorKind::MissingRequiredArgument => {
            let load = |given: &candidates::Given| candidates::load(given.state_dir.as_deref());
            match prompt::ask_missing(&args, load) {
                Ok(Some(filled)) => parse_from(filled),
                Ok(None) => Err(usage_without_env(e, &args)),
                Err(err) => {
                    crate::error::print(&err);
                    std::process::exit(crate::error::exit_code(&err));
                }
            }
        }
        Err(e) => Err(usage_without_env(e, &args)),
        parsed => parsed,
    }
}

/// A usage error as it reads without `$QROUTER_STATE_DIR`: clap counts an option set from
/// the environment as given, and shows `--state-dir <STATE_DIR>` in the usage line as if the
/// command required it. The error is made again from a definition without the variable.
fn usage_without_env(e: clap::Error, args: &[std::ffi::OsString]) -> clap::Error {
    if std::env::var_os("QROUTER_STATE_DIR").is_none() {
        return e;
    }
    let bare = whole(Cli::command().mut_arg("state_dir", |a| a.env(None)));
    match bare.try_get_matches_from(args) {
        Err(again) if again.kind() == e.kind() => again,
        _ => e,
    }
}

/// The words of a batch or shell line, parsed as if typed after `qrouter`. The command line's
/// definition is built once per process: building it costs more than parsing a line.
fn parse_words(words: Vec<String>) -> Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    thread_local! {
        static LINE: std::cell::RefCell<clap::Command> = std::cell::RefCell::new(command());
        static LOCAL: std::cell::RefCell<local_globals::LocalGlobals> =
            std::cell::RefCell::new(local_globals::LocalGlobals::new());
    }
    let args: Vec<std::ffi::OsString> = std::iter::once("qrouter".to_string())
        .chain(words)
        .map(Into::into)
        .collect();
    if let Some(cli) = LOCAL.with_borrow_mut(|local| local.parse(&args)) {
        return Ok(cli);
    }
    LINE.with_borrow_mut(|cmd| cmd.try_get_matches_from_mut(&args))
        .and_then(|m| Cli::from_arg_matches(&m))
        .map_err(|e| usage_without_env(e, &args))
}

impl Command {
    /// Whether it only reads the store: it then opens the store read-only, and never creates
    /// it. Anything not named here may write (batch and the shell run commands that do).
    fn reads_only(&self) -> bool {
        use floating_ip::{Cmd::Ip, IpCmd};
        matches!(
            self,
            Command::Network(network::Cmd::List { .. } | network::Cmd::Show { .. })
                | Command::Subnet(subnet::Cmd::List { .. } | subnet::Cmd::Show { .. })
                | Command::Router(router::Cmd::List { .. } | router::Cmd::Show { .. })
                | Command::Port(port::Cmd::List(_) | port::Cmd::Show { .. })
                | Command::Floating(Ip(IpCmd::List { .. } | IpCmd::Show { .. }))
                | Command::Instance(
                    instance::Cmd::List | instance::Cmd::Show { .. } | instance::Cmd::Exec { .. }
                )
                | Command::Host(host::Cmd::List | host::Cmd::Show { .. })
                | Command::Store(_)
                | Command::Completion { .. }
                | Command::Man { .. }
                | Command::Topology(_)
                | Command::Trace(_)
                | Command::Sync { dry_run: true, .. }
        )
    }

    /// Whether a batch or shell line may run it: anything but batch, demo or shell.
    fn runs_from_a_line(&self) -> bool {
        !matches!(
            self,
            Command::Batch { .. } | Command::Demo { .. } | Command::Shell | Command::Store(_)
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
    let program = match cli.command {
        Some(Command::Agent(_)) => "qrouter agent",
        _ => "qrouter",
    };
    diag::install(program, cli.quiet, cli.verbose);
    let on_etcd = cli.store.as_deref().and_then(crate::ops::etcd_endpoints);
    let access = cli
        .etcd
        .access(on_etcd.is_some(), prompt::allowed(cli.yes))?;
    crate::ops::set_etcd_access(access);
    crate::ops::set_state_dir(&cli.state_dir);
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
    // Root first, for the embedded store whose changes this process converges: a user
    // without CAP_NET_ADMIN is told that, not that the root's store is not theirs, and no
    // store is made for a command that cannot run.
    let local = cli.store.is_none();
    if writable && local {
        if let Some(root) = crate::ops::needs_root() {
            anyhow::bail!(root);
        }
    }
    let mut session =
        Session::open(cli.store.as_deref(), &cli.state_dir, writable).map_err(|e| {
            match crate::ops::needs_root().filter(|_| local && !writable) {
                Some(root) => anyhow::anyhow!("{root}; {e:#}"),
                None => e,
            }
        })?;
    if cli.no_wait {
        session.wait = None;
    }
    let mut ctx = Ctx {
        session,
        out: cli.out.into(),
        ask: prompt::allowed(cli.yes),
    };
    match cli.command {
        Some(Command::Batch { file, atomic }) => batch::run(&mut ctx, &file, atomic).await,
        Some(Command::Store(cmd)) => store::run(&mut ctx, cmd, cli.yes),
        Some(Command::Shell) | None => shell::run(&mut ctx, &cli.state_dir).await,
        Some(command) => dispatch(&mut ctx, command).await,
    }
}

/// Run one command; returns its exit code.
pub async fn dispatch(ctx: &mut Ctx, command: Command) -> anyhow::Result<i32> {
    ctx.session.next_command();
    match command {
        Command::Network(cmd) => network::run(ctx, cmd).await.map(|_| 0),
        Command::Subnet(cmd) => subnet::run(ctx, cmd).await.map(|_| 0),
        Command::Router(cmd) => router::run(ctx, cmd).await.map(|_| 0),
        Command::Port(cmd) => port::run(ctx, cmd).await.map(|_| 0),
        Command::Floating(cmd) => floating_ip::run(ctx, cmd).await.map(|_| 0),
        Command::Instance(cmd) => instance::run(ctx, cmd).await,
        Command::Sync { dry_run, host } => sync::run(ctx, dry_run, host.as_deref()).await,
        Command::Trace(args) => trace::run(ctx, args).await,
        Command::Topology(args) => topology::run(ctx, args).await,
        Command::Host(cmd) => host::run(ctx, cmd).map(|_| 0),
        Command::Agent(_) => {
            crate::bail_invalid!("the agent cannot run inside a batch")
        }
        Command::Completion { shell } => complete::print_script(shell),
        Command::Man { dir } => man::write_pages(&dir),
        Command::Batch { .. } | Command::Demo { .. } | Command::Shell | Command::Store(_) => {
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

/// Print what clap says of a command line (an error, or the help or version asked for) as
/// clap would, control characters escaped; its exit code.
pub fn print_usage(e: &clap::Error) -> i32 {
    let plain = e.render().to_string();
    if crate::error::printable(&plain) == plain {
        let _ = e.print();
    } else if e.use_stderr() {
        eprint!("{}", crate::error::printable(&plain));
    } else {
        // Help and version go to stdout.
        print!("{}", crate::error::printable(&plain));
    }
    e.exit_code()
}

/// Put `fields` into `record`: each replaces the field of its name where there is one, or
/// comes after the others.
pub fn merge_fields(record: &mut crate::output::Record, fields: Vec<(String, serde_json::Value)>) {
    for (name, value) in fields {
        match record.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => *v = value,
            None => record.push((name, value)),
        }
    }
}
