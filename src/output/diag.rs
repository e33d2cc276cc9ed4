//! Diagnostics on stderr: the logger behind the `log` facade, which every layer below the
//! command line writes to. The command line installs it once per process with the program's
//! name and the verbosity asked for: `-q` keeps only errors, the default adds warnings and
//! notices (`info`), `-v` adds every kernel change made (`debug`).

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr {
    /// "qrouter", or "qrouter agent" for an agent's log.
    program: &'static str,
}

impl Log for Stderr {
    fn enabled(&self, m: &Metadata) -> bool {
        // Only qrouter's own: what dependencies log is not for the operator.
        m.target().starts_with("qrouter") && m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let program = self.program;
        match r.level() {
            Level::Error => eprintln!("{program}: error: {}", r.args()),
            Level::Warn => eprintln!("{program}: warning: {}", r.args()),
            _ => eprintln!("{program}: {}", r.args()),
        }
    }

    fn flush(&self) {}
}

/// Install the logger (once per process; a second call only changes the level).
pub fn install(program: &'static str, quiet: bool, verbose: bool) {
    let _ = log::set_boxed_logger(Box::new(Stderr { program }));
    log::set_max_level(match (quiet, verbose) {
        (true, _) => LevelFilter::Error,
        (false, true) => LevelFilter::Debug,
        (false, false) => LevelFilter::Info,
    });
}
