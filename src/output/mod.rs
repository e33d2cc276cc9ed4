//! Results on stdout in the formats openstackclient offers: table, json, yaml, value, csv, shell.
//! A `show` is one record of fields; a `list` is rows under headers; `router show` adds
//! named sections (tables) after its record.

pub mod diag;
pub mod router;
mod yaml;

use comfy_table::{presets, ContentArrangement, Table};
use serde_json::{Map, Value};

use crate::bail_invalid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
    Value,
    Csv,
    Shell,
    /// `topology` only: a drawing for the terminal (elsewhere: a table).
    Text,
    /// `topology` only: Graphviz dot.
    Dot,
    /// `topology` only: a self-contained SVG picture.
    Svg,
}

/// How results are printed; every command takes these options.
#[derive(Clone, Debug, clap::Args)]
pub struct Output {
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value = "table", global = true)]
    pub format: Format,
    /// Only these columns or fields, in the command's order (repeatable).
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
}

/// Fields of one object, in display order: (field name, value).
pub type Record = Vec<(String, Value)>;

/// Rows under headers, as `list` commands print them.
pub struct Listing {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// A titled table inside a `show` (the Interfaces, Routes and NAT views of a router).
pub struct Section {
    pub title: String,
    pub key: String,
    pub listing: Listing,
}

/// openstackclient matches `-c` loosely: case, spaces, dashes and underscores do not matter.
fn normalise(name: &str) -> String {
    name.to_ascii_lowercase().replace([' ', '-'], "_")
}

impl Output {
    /// Indices of the selected columns, in the command's own order.
    fn select(&self, names: &[String]) -> anyhow::Result<Vec<usize>> {
        if self.columns.is_empty() {
            return Ok((0..names.len()).collect());
        }
        let wanted: Vec<String> = self.columns.iter().map(|c| normalise(c)).collect();
        if let Some(unknown) = wanted
            .iter()
            .find(|w| !names.iter().any(|n| normalise(n) == **w))
        {
            bail_invalid!(
                "column '{unknown}' does not exist; choose from: {}",
                names.join(", ")
            );
        }
        Ok((0..names.len())
            .filter(|i| wanted.contains(&normalise(&names[*i])))
            .collect())
    }

    fn drawing_only() -> &'static str {
        "-f dot and -f svg draw 'qrouter topology'; here use table, json, yaml, value, csv or shell"
    }

    pub fn show(&self, record: &Record) -> anyhow::Result<()> {
        self.show_with_sections(record, &[])
    }

    pub fn show_with_sections(&self, record: &Record, sections: &[Section]) -> anyhow::Result<()> {
        let names: Vec<String> = record.iter().map(|(k, _)| k.clone()).collect();
        let picked: Vec<&(String, Value)> = self
            .select(&names)?
            .into_iter()
            .map(|i| &record[i])
            .collect();
        let text = match self.format {
            Format::Dot | Format::Svg => bail_invalid!("{}", Self::drawing_only()),
            Format::Table | Format::Text => {
                let mut out = render_table(
                    &["Field".into(), "Value".into()],
                    picked
                        .iter()
                        .map(|(k, v)| vec![Value::String(k.clone()), v.clone()]),
                    self.width(),
                );
                for s in sections.iter().filter(|_| self.columns.is_empty()) {
                    out += &format!(
                        "\n{}:\n{}",
                        s.title,
                        render_table(
                            &s.listing.headers,
                            s.listing.rows.iter().cloned(),
                            self.width()
                        )
                    );
                }
                out
            }
            Format::Json | Format::Yaml => {
                let mut object: Map<String, Value> =
                    picked.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                for s in sections.iter().filter(|_| self.columns.is_empty()) {
                    object.insert(s.key.clone(), listing_json(&s.listing));
                }
                structured(self.format, &Value::Object(object))
            }
            Format::Value => picked
                .iter()
                .map(|(_, v)| format!("{}\n", plain(v)))
                .collect(),
            Format::Shell => picked
                .iter()
                .map(|(k, v)| format!("{}=\"{}\"\n", normalise(k), shell_escape(&plain(v))))
                .collect(),
            Format::Csv => {
                let header: Vec<String> = picked.iter().map(|(k, _)| csv_field(k)).collect();
                let values: Vec<String> =
                    picked.iter().map(|(_, v)| csv_field(&plain(v))).collect();
                format!("{}\n{}\n", header.join(","), values.join(","))
            }
        };
        print(&text);
        Ok(())
    }

    /// Rows ordered by the --sort-column columns: numbers as numbers, text as text.
    fn sorted<'a>(&self, listing: &'a Listing) -> anyhow::Result<Vec<&'a Vec<Value>>> {
        let mut keys = Vec::new();
        for name in &self.sort_columns {
            let Some(i) = listing
                .headers
                .iter()
                .position(|h| normalise(h) == normalise(name))
            else {
                bail_invalid!(
                    "--sort-column '{name}' does not exist; choose from: {}",
                    listing.headers.join(", ")
                );
            };
            keys.push(i);
        }
        let mut rows: Vec<&Vec<Value>> = listing.rows.iter().collect();
        rows.sort_by(|a, b| {
            let order = keys
                .iter()
                .map(|k| compare(&a[*k], &b[*k]))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal);
            if self.sort_descending {
                order.reverse()
            } else {
                order
            }
        });
        Ok(rows)
    }

    /// The width tables wrap at: --max-width, --fit-width, or the terminal's (none on a pipe).
    fn width(&self) -> Option<u16> {
        use std::io::IsTerminal;
        match self.max_width {
            Some(0) => None,
            Some(n) => Some(n),
            None if self.fit_width && !std::io::stdout().is_terminal() => Some(
                std::env::var("COLUMNS")
                    .ok()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(80),
            ),
            // On a terminal comfy-table asks the terminal; on a pipe nothing wraps (grep).
            None => None,
        }
    }

    pub fn list(&self, listing: &Listing) -> anyhow::Result<()> {
        let all_rows = self.sorted(listing)?;
        let idx = self.select(&listing.headers)?;
        let headers: Vec<String> = idx.iter().map(|i| listing.headers[*i].clone()).collect();
        let rows = all_rows
            .iter()
            .map(|r| idx.iter().map(|i| r[*i].clone()).collect::<Vec<Value>>());
        let picked = Listing {
            headers,
            rows: rows.collect(),
        };
        let text = match self.format {
            Format::Dot | Format::Svg => bail_invalid!("{}", Self::drawing_only()),
            Format::Table | Format::Text => {
                render_table(&picked.headers, picked.rows.iter().cloned(), self.width())
            }
            Format::Json | Format::Yaml => structured(self.format, &listing_json(&picked)),
            Format::Value => picked
                .rows
                .iter()
                .map(|r| format!("{}\n", r.iter().map(plain).collect::<Vec<_>>().join(" ")))
                .collect(),
            Format::Csv => {
                let mut out = format!(
                    "{}\n",
                    picked
                        .headers
                        .iter()
                        .map(|h| csv_field(h))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                for r in &picked.rows {
                    out += &format!(
                        "{}\n",
                        r.iter()
                            .map(|v| csv_field(&plain(v)))
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                }
                out
            }
            Format::Shell => bail_invalid!("-f shell shows one object; use it with a show command"),
        };
        print(&text);
        Ok(())
    }
}

fn print(text: &str) {
    use std::io::Write;
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().write_all(text.as_bytes());
}

fn listing_json(listing: &Listing) -> Value {
    Value::Array(
        listing
            .rows
            .iter()
            .map(|r| {
                Value::Object(
                    listing
                        .headers
                        .iter()
                        .cloned()
                        .zip(r.iter().cloned())
                        .collect(),
                )
            })
            .collect(),
    )
}

fn structured(format: Format, value: &Value) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(value).expect("JSON values serialise") + "\n",
        _ => yaml::to_string(value),
    }
}

/// A value as one line of text: lists joined by ", ", null as empty.
pub fn plain(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// In tables, list items go on lines of their own, as openstackclient prints fixed_ips.
fn cell(v: &Value) -> String {
    match v {
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join("\n"),
        other => plain(other),
    }
}

fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ => plain(a).cmp(&plain(b)),
    }
}

/// ASCII borders and no colour, so `grep` and `awk` work on what a table prints.
fn render_table(
    headers: &[String],
    rows: impl Iterator<Item = Vec<Value>>,
    width: Option<u16>,
) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::ASCII_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    match width {
        Some(width) => {
            table.set_width(width);
        }
        // A terminal that reports no size (a serial console, an unsized pty) would get one
        // character per column: better not to wrap at all.
        None if table.width().is_some_and(|w| w < 20) => {
            table.force_no_tty();
        }
        None => {}
    }
    table.set_header(headers);
    for row in rows {
        table.add_row(row.iter().map(cell).collect::<Vec<_>>());
    }
    format!("{table}\n")
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn shell_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('$', "\\$")
        .replace('`', "\\`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Output options as the command line gives them.
    fn output(args: &[&str]) -> Output {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            out: Output,
        }
        <Cli as clap::Parser>::parse_from(std::iter::once("qrouter").chain(args.iter().copied()))
            .out
    }

    #[test]
    fn columns_match_loosely_and_keep_command_order() {
        let out = output(&["-c", "name", "-c", "Fixed IP Address", "-c", "id"]);
        let names: Vec<String> = ["ID", "Name", "Fixed IP Address", "Status"]
            .map(String::from)
            .to_vec();
        assert_eq!(out.select(&names).unwrap(), [0, 1, 2]);
        let bad = output(&["-c", "colour"]);
        let err = bad.select(&names).unwrap_err().to_string();
        assert!(
            err.contains("column 'colour' does not exist") && err.contains("ID, Name"),
            "{err}"
        );
    }

    #[test]
    fn rows_sort_by_columns_numbers_as_numbers() {
        let listing = Listing {
            headers: ["Name", "Interfaces"].map(String::from).to_vec(),
            rows: vec![
                vec![json!("r10"), json!(2)],
                vec![json!("r9"), json!(10)],
                vec![json!("r1"), json!(2)],
            ],
        };
        let names = |args: &[&str]| -> Vec<String> {
            output(args)
                .sorted(&listing)
                .unwrap()
                .iter()
                .map(|r| plain(&r[0]))
                .collect()
        };
        assert_eq!(
            names(&["--sort-column", "interfaces", "--sort-column", "name"]),
            ["r1", "r10", "r9"]
        );
        assert_eq!(
            names(&["--sort-column", "Interfaces", "--sort-descending"]),
            ["r9", "r10", "r1"]
        );
        assert_eq!(names(&[]), ["r10", "r9", "r1"]);
        let err = output(&["--sort-column", "colour"])
            .sorted(&listing)
            .unwrap_err();
        assert!(err
            .to_string()
            .contains("--sort-column 'colour' does not exist"));
    }

    #[test]
    fn long_values_wrap_within_max_width() {
        let long = json!("-A qrouter-snat -s 172.16.100.0/24 -m conntrack --ctstate DNAT -j SNAT --to-source 10.10.10.2 --random-fully");
        let table = render_table(
            &["Rule".into()],
            vec![vec![long]].into_iter(),
            output(&["--max-width", "40"]).width(),
        );
        assert!(table.lines().all(|l| l.chars().count() <= 40), "{table}");
        assert!(table.contains("--random-fully"), "{table}");
        assert_eq!(output(&["--max-width", "0"]).width(), None);
    }

    #[test]
    fn text_forms() {
        assert_eq!(
            plain(&json!(["10.10.10.2", "10.10.10.3"])),
            "10.10.10.2, 10.10.10.3"
        );
        assert_eq!(cell(&json!(["a", "b"])), "a\nb");
        assert_eq!(plain(&Value::Null), "");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(shell_escape("say \"$x\""), "say \\\"\\$x\\\"");
        let table = render_table(&["ID".into()], vec![vec![json!("r1")]].into_iter(), None);
        assert!(
            table.contains("| ID |") && table.contains("| r1 |"),
            "{table}"
        );
    }
}
