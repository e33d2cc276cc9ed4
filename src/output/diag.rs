//! Diagnostics on stderr: `-q` keeps only errors, `-v` adds every kernel change made.

use std::fmt::Display;
use std::sync::atomic::{AtomicI8, Ordering};

static LEVEL: AtomicI8 = AtomicI8::new(0);

pub fn set_level(quiet: bool, verbose: bool) {
    LEVEL.store(i8::from(verbose) - i8::from(quiet), Ordering::Relaxed);
}

pub fn warn(msg: impl Display) {
    if LEVEL.load(Ordering::Relaxed) >= 0 {
        eprintln!("qrouter: warning: {msg}");
    }
}

/// A change the operator must know of (one outside qrouter's own objects); `-q` hides it.
pub fn notice(msg: impl Display) {
    if LEVEL.load(Ordering::Relaxed) >= 0 {
        eprintln!("qrouter: {msg}");
    }
}

/// One kernel change, printed with `-v`.
pub fn change(msg: impl Display) {
    if LEVEL.load(Ordering::Relaxed) > 0 {
        eprintln!("qrouter: {msg}");
    }
}
