//! Error kinds that decide the exit code: invalid input is 2, everything else is 1.

use std::fmt;

/// Bad usage or invalid input: the command changed nothing and exits with code 2.
#[derive(Debug)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// Build an `anyhow::Error` that exits with code 2.
pub fn invalid(msg: impl Into<String>) -> anyhow::Error {
    Invalid(msg.into()).into()
}

/// Return early with an invalid-input error, formatted like `format!`.
#[macro_export]
macro_rules! bail_invalid {
    ($($arg:tt)*) => {
        return Err($crate::error::invalid(format!($($arg)*)))
    };
}

/// The exit code for an error: 2 when any cause in the chain is invalid input.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.chain().any(|e| e.is::<Invalid>()) {
        2
    } else {
        1
    }
}
