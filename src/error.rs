//! Error kinds that decide the exit code: invalid input is 2, everything else is 1.

use std::borrow::Cow;
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

/// Text echoed to the operator's terminal, with its control characters escaped (`\x1b`, `\x07`,
/// `\r`, the C1 controls), so a name typed or planted with an escape sequence in it cannot
/// retitle, recolour or rewrite the terminal. Newlines and tabs are kept: messages span lines.
pub fn printable(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            c if unsafe_char(c) => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Print an error as qrouter does, `qrouter: ` and the chain, control characters escaped.
pub fn print(err: &anyhow::Error) {
    eprintln!("qrouter: {}", printable(&format!("{err:#}")));
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_printed_escaped() {
        assert_eq!(
            super::printable("router x\u{1b}]0;t\u{7}: no such router\r\u{9b}2J"),
            "router x\\x1b]0;t\\x07: no such router\\r\\x9b2J"
        );
        assert_eq!(super::printable("line 1\n\tline 2 é"), "line 1\n\tline 2 é");
    }
}
