//! A line that names no global option after its subcommand, parsed against a definition
//! where the global options belong to the top command alone.
//!
//! clap copies the value of every global option (21 here, each with its default) into the
//! matches of every level a line goes through, looking each up in linear maps: 0.74 M
//! instructions for each line of a `batch`, 30 % of what qrouter itself executed building
//! routers with 500 present, and about 0.6 M of a command that does nothing else (callgrind).
//! A line without any of them after its subcommand (before it, they are the top command's
//! own either way) parses to the same `Cli`. Any other line, and any error (help included),
//! goes through the usual definition, so what is printed is unchanged.

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches};

use super::Cli;

/// The definition with local globals, and the names that route a line away from it: for the
/// lines of a batch or the shell, which reuse both.
pub struct LocalGlobals {
    command: clap::Command,
    names: GlobalNames,
}

impl LocalGlobals {
    pub fn new() -> LocalGlobals {
        let top = Cli::command();
        LocalGlobals {
            names: GlobalNames::of(&top),
            command: local(top),
        }
    }

    /// `args` (the program's name first) parsed, if `GlobalNames::plain` and it parses; None
    /// sends the line to the usual definition.
    pub fn parse(&mut self, args: &[OsString]) -> Option<Cli> {
        if !self.names.plain(args) {
            return None;
        }
        let matches = self.command.try_get_matches_from_mut(args).ok()?;
        Cli::from_arg_matches(&matches).ok()
    }
}

/// `top` (the bare definition) with its global options made its own.
pub fn local(top: clap::Command) -> clap::Command {
    top.mut_args(|a| a.global(false))
}

/// The global options' long names and short letters, each with whether it takes a value.
pub struct GlobalNames {
    longs: Vec<(String, bool)>,
    shorts: Vec<(char, bool)>,
}

impl GlobalNames {
    /// The global options of `top`, the bare definition.
    pub fn of(top: &clap::Command) -> GlobalNames {
        let (mut longs, mut shorts) = (vec![], vec![]);
        for arg in top.get_arguments().filter(|a| a.is_global_set()) {
            let value = arg.get_action().takes_values();
            let names = arg
                .get_long()
                .into_iter()
                .chain(arg.get_all_aliases().into_iter().flatten());
            longs.extend(names.map(|l| (l.to_string(), value)));
            let letters = arg
                .get_short()
                .into_iter()
                .chain(arg.get_all_short_aliases().into_iter().flatten());
            shorts.extend(letters.map(|c| (c, value)));
        }
        GlobalNames { longs, shorts }
    }

    /// Whether no global option comes after the subcommand in `args` (before it, they are
    /// the top command's own): then the line parses the same against `local`.
    pub fn plain(&self, args: &[OsString]) -> bool {
        let mut words = args.iter().skip(1).map(|w| w.to_string_lossy());
        // The top command's options, up to the first word that is not one (or its value).
        while let Some(word) = words.next() {
            if word == "--" {
                return false;
            }
            if !word.starts_with('-') || word == "-" {
                break;
            }
            if self.takes_next(&word) {
                words.next();
            }
        }
        words.all(|w| !self.may_name_a_global(&w))
    }

    /// Whether `option`, given before the subcommand, takes the next word as its value.
    fn takes_next(&self, option: &str) -> bool {
        if let Some(long) = option.strip_prefix("--") {
            return !long.contains('=') && self.longs.iter().any(|(l, v)| l == long && *v);
        }
        let letters: Vec<char> = option.chars().skip(1).collect();
        for (i, c) in letters.iter().enumerate() {
            if self.shorts.iter().any(|(s, v)| s == c && *v) {
                // A value attached (`-fjson`), or the next word.
                return i + 1 == letters.len();
            }
        }
        false
    }

    /// Whether `word` is, or may be, one of the global options: `--name`, `--name=value`, or
    /// a cluster of short options with one of theirs in it (a value that looks like one
    /// only costs the usual parse).
    fn may_name_a_global(&self, word: &str) -> bool {
        if let Some(long) = word.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or_default();
            return self.longs.iter().any(|(l, _)| l == name);
        }
        match word.strip_prefix('-') {
            Some(letters) => letters
                .chars()
                .any(|c| self.shorts.iter().any(|(s, _)| *s == c)),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<OsString> {
        std::iter::once("qrouter")
            .chain(line.split_whitespace())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn lines_without_global_options_parse_as_before() {
        let mut local = LocalGlobals::new();
        for line in [
            "router add interface r5 s10",
            "router set r5 --external-gateway ext_net",
            "subnet create s1 --network n1 --subnet-range 172.16.0.0/24 --no-dhcp",
            "network create ext_net --external --bridge br-ex",
            "floating ip create ext_net --instance vm1",
            "router list",
            "-f value router list",
            "--state-dir /tmp/x -fjson router show r1",
            "-y --format value network delete n1",
        ] {
            let args = words(line);
            assert!(local.parse(&args).is_some(), "{line}");
            let fast = local
                .command
                .clone()
                .try_get_matches_from(&args)
                .expect(line);
            let usual = Cli::command().try_get_matches_from(&args).expect(line);
            assert_eq!(described(&fast), described(&usual), "{line}");
        }
    }

    /// Each level of `m`: its arguments with their values and where each came from (below
    /// the top, without the global options, which the usual definition copies into every
    /// level), then its subcommand.
    fn described(m: &clap::ArgMatches) -> Vec<String> {
        let globals: Vec<String> = (Cli::command().get_arguments())
            .filter(|a| a.is_global_set())
            .map(|a| a.get_id().to_string())
            .collect();
        let mut out = vec![];
        let mut level = Some(("qrouter", m));
        while let Some((name, m)) = level {
            out.push(format!("> {name}"));
            let mut ids: Vec<&str> = m.ids().map(|i| i.as_str()).collect();
            ids.sort();
            for id in ids
                .into_iter()
                .filter(|id| name == "qrouter" || !globals.iter().any(|g| g == id))
            {
                let values: Option<Vec<String>> = m
                    .get_raw(id)
                    .map(|v| v.map(|x| x.to_string_lossy().into_owned()).collect());
                out.push(format!("{id} = {values:?} from {:?}", m.value_source(id)));
            }
            level = m.subcommand();
        }
        out
    }

    #[test]
    fn a_line_naming_a_global_option_goes_the_usual_way() {
        let mut local = LocalGlobals::new();
        for line in [
            "router list -f value",
            "router list --format=json",
            "router list -yc Name",
            "router delete r1 --state-dir /tmp/x",
            "router list --quiet",
        ] {
            assert!(local.parse(&words(line)).is_none(), "{line}");
        }
        // Errors too: the usual definition makes the message.
        assert!(local.parse(&words("router frobnicate")).is_none());
        assert!(local.parse(&words("router list --help")).is_none());
    }
}
