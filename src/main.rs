//! qrouter: OpenStack-Neutron-style virtual routers on a Linux host.

mod cli;
mod converge;
mod demo;
mod error;
mod kernel;
mod model;
mod output;
mod store;

fn main() {
    // A completion script calling back for candidates: answer and exit.
    clap_complete::CompleteEnv::with_factory(cli::command)
        .var(cli::complete::VAR)
        .complete();
    let args = cli::parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit());
    // The demo moves into a private sandbox; unshare needs a single-threaded process,
    // so it happens before the runtime starts its threads.
    if matches!(args.command, Some(cli::Command::Demo)) {
        std::process::exit(demo::run());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(cli::run(args));
    // Drop the netlink drivers before exiting.
    drop(runtime);
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("qrouter: {err:#}");
            std::process::exit(error::exit_code(&err));
        }
    }
}
