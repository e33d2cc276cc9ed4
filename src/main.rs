//! The `qrouter` binary: process setup and exit codes around the library's command line.

use qrouter::{cli, demo, error, NO_LIB_BACKTRACE};

fn main() {
    // Errors are printed without a backtrace, so none is captured for them even where
    // RUST_BACKTRACE is set (anyhow would walk the stack for each: 2-3 ms per failed
    // command here). A panic still prints one; RUST_LIB_BACKTRACE=1 still asks for them.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // Before any thread exists, so no other reader of the environment races this.
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
        NO_LIB_BACKTRACE.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    // A completion script calling back for candidates: answer and exit.
    clap_complete::CompleteEnv::with_factory(cli::command)
        .var(cli::complete::VAR)
        .complete();
    let args = cli::parse_from(std::env::args_os())
        .unwrap_or_else(|e| std::process::exit(cli::print_usage(&e)));
    // The demo moves into a private sandbox; unshare needs a single-threaded process,
    // so it happens before the runtime starts its threads.
    if let Some(cli::Command::Demo { hosts }) = args.command {
        std::process::exit(if hosts {
            demo::hosts::run()
        } else {
            demo::run()
        });
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
            error::print(&err);
            std::process::exit(error::exit_code(&err));
        }
    }
}
