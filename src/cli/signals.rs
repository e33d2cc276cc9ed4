//! Signals turned into a clean stop: while a `Caught` lives, SIGTERM, SIGHUP or SIGINT (those
//! it names) are only recorded, and the code that runs many commands (a batch, the shell's
//! prompts) checks between them and stops at a point it can report. A change in progress
//! already defers them (`ops::session`); this decides what happens once it is done.
//! The handler is reset to the default in processes qrouter starts (exec does that), so an
//! `instance exec ping` still stops on Ctrl-C.

use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// The last signal recorded; 0 for none.
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn record(signal: nix::libc::c_int) {
    // Async-signal-safe: one atomic store.
    CAUGHT.store(signal, Ordering::SeqCst);
}

/// While it lives, the signals it was made for are recorded instead of acting; their previous
/// dispositions come back when it is dropped.
pub struct Caught {
    old: Vec<(Signal, SigAction)>,
}

impl Caught {
    pub fn new(signals: &[Signal]) -> Caught {
        CAUGHT.store(0, Ordering::SeqCst);
        // SA_RESTART: a read or write the signal lands in goes on, as it would without it.
        let action = SigAction::new(
            SigHandler::Handler(record),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        let old = signals
            .iter()
            .map(|&s| {
                // SAFETY: the handler only stores to an atomic.
                let old = unsafe { sigaction(s, &action) }.expect("valid signal and handler");
                (s, old)
            })
            .collect();
        Caught { old }
    }

    /// The signal received since this was made (or since the last `take`), if any.
    pub fn take(&self) -> Option<Signal> {
        match CAUGHT.swap(0, Ordering::SeqCst) {
            0 => None,
            n => Signal::try_from(n).ok(),
        }
    }
}

impl Drop for Caught {
    fn drop(&mut self) {
        for (signal, old) in self.old.drain(..).rev() {
            // SAFETY: restores the disposition that was in place before.
            let _ = unsafe { sigaction(signal, &old) };
        }
    }
}

/// The exit code of a process a signal stopped, as a shell reports it: 128 + its number
/// (SIGHUP 129, SIGINT 130, SIGTERM 143).
pub fn exit_code(signal: Signal) -> i32 {
    128 + signal as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_signal_is_recorded_once_and_the_old_action_comes_back() {
        {
            let caught = Caught::new(&[Signal::SIGUSR2]);
            assert_eq!(caught.take(), None);
            nix::sys::signal::raise(Signal::SIGUSR2).unwrap();
            assert_eq!(caught.take(), Some(Signal::SIGUSR2));
            assert_eq!(caught.take(), None);
        }
        // SAFETY: reads the disposition back by setting it to what it is.
        let now = unsafe {
            sigaction(
                Signal::SIGUSR2,
                &SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty()),
            )
        }
        .unwrap();
        assert!(matches!(now.handler(), SigHandler::SigDfl));
        assert_eq!(exit_code(Signal::SIGTERM), 143);
        assert_eq!(exit_code(Signal::SIGHUP), 129);
    }
}
