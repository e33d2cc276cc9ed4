//! Results on stdout in the formats openstackclient offers: table, json, yaml, value, csv, shell.
//! A `show` is one record of fields; a `list` is rows under headers; `router show` adds
//! named sections (tables) after its record.

pub mod diag;
pub mod router;
mod yaml;

use comfy_table::{presets, ContentArrangement, Table};
use serde_json::{Map, Value};

use crate::bail_invalid;

/// The formats openstackclient offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
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

/// Which CSV fields are quoted, as openstackclient's `--quote` says; `NonNumeric` by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Quote {
    All,
    Minimal,
    None,
    #[default]
    NonNumeric,
}

/// How results are printed. The command line builds it (`cli::OutputArgs`); this layer
/// knows nothing of how it was asked for.
#[derive(Clone, Debug, Default)]
pub struct Output {
    pub format: Format,
    /// Only these columns or fields, in the command's order; unknown ones are ignored as
    /// long as one is known.
    pub columns: Vec<String>,
    /// Sort list rows by these columns, ascending unless `sort_descending`.
    pub sort_columns: Vec<String>,
    pub sort_descending: bool,
    /// Tables at most N characters wide (0: never wrap).
    pub max_width: Option<u16>,
    /// Fit tables to $COLUMNS (or 80) even when output is not a terminal.
    pub fit_width: bool,
    /// JSON on one line.
    pub noindent: bool,
    /// `-f shell`: a prefix for every variable name.
    pub prefix: String,
    /// `-f csv`: which fields are quoted.
    pub quote: Quote,
}

/// Fields of one object, in display order: (field name, value).
pub type Record = Vec<(String, Value)>;

/// Rows under headers, as `list` commands print them.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Listing {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// A titled table inside a `show` (the Interfaces, Routes and NAT views of a router).
#[derive(serde::Serialize, serde::Deserialize)]
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
    /// Indices of the selected columns, in the command's own order. As openstackclient
    /// does, a column this command does not have is ignored while another one is known
    /// (`-c project_id -c id` still prints the id); none known is an error.
    fn select(&self, names: &[String]) -> anyhow::Result<Vec<usize>> {
        if self.columns.is_empty() {
            return Ok((0..names.len()).collect());
        }
        let wanted: Vec<String> = self.columns.iter().map(|c| normalise(c)).collect();
        let picked: Vec<usize> = (0..names.len())
            .filter(|i| wanted.contains(&normalise(&names[*i])))
            .collect();
        if picked.is_empty() {
            // openstackclient's words, which scripts match, then the choices.
            let asked: Vec<String> = self.columns.iter().map(|c| format!("'{c}'")).collect();
            bail_invalid!(
                "No recognized column names in [{}]; choose from: {}",
                asked.join(", "),
                names.join(", ")
            );
        }
        Ok(picked)
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
                self.structured(&Value::Object(object))
            }
            Format::Value => picked
                .iter()
                .map(|(_, v)| format!("{}\n", plain(v)))
                .collect(),
            Format::Shell => picked
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}{}=\"{}\"\n",
                        self.prefix,
                        shell_name(k),
                        shell_escape(&plain(v))
                    )
                })
                .collect(),
            Format::Csv => {
                let header: Vec<String> = picked
                    .iter()
                    .map(|(k, _)| self.csv_field(&Value::String(k.clone())))
                    .collect();
                let values: Vec<String> = picked.iter().map(|(_, v)| self.csv_field(v)).collect();
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
            Format::Json | Format::Yaml => self.structured(&listing_json(&picked)),
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
                        .map(|h| self.csv_field(&Value::String(h.clone())))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                for r in &picked.rows {
                    out += &format!(
                        "{}\n",
                        r.iter()
                            .map(|v| self.csv_field(v))
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

impl Output {
    fn structured(&self, value: &Value) -> String {
        match self.format {
            Format::Json if self.noindent => {
                serde_json::to_string(value).expect("JSON values serialise") + "\n"
            }
            Format::Json => {
                serde_json::to_string_pretty(value).expect("JSON values serialise") + "\n"
            }
            _ => yaml::to_string(value),
        }
    }

    /// One CSV field, quoted as `--quote` says (numbers and booleans are numeric).
    fn csv_field(&self, v: &Value) -> String {
        let text = plain(v);
        let numeric = matches!(v, Value::Number(_) | Value::Bool(_));
        let quoted = || format!("\"{}\"", text.replace('"', "\"\""));
        match self.quote {
            Quote::All => quoted(),
            Quote::NonNumeric if !numeric => quoted(),
            Quote::None => text,
            _ if text.contains([',', '"', '\n', '\r']) => quoted(),
            _ => text,
        }
    }
}

/// A field's name as a shell variable, as openstackclient writes it: lower case, and
/// `router:external` -> `router_external`, `Fixed IP` -> `fixed_ip`.
fn shell_name(name: &str) -> String {
    normalise(name).replace([':', '.'], "_")
}

/// A value as one line of text: lists joined by ", ", null as empty.
/// Objects as openstackclient's dict formatter writes them: `key='value', key2='value2'`.
pub fn plain(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        // An allocation pool, as openstackclient's AllocationPoolsColumn prints it.
        Value::Object(f) if f.len() == 2 && f.contains_key("start") && f.contains_key("end") => {
            format!("{}-{}", plain(&f["start"]), plain(&f["end"]))
        }
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| match v {
                Value::Array(_) | Value::Object(_) => format!("{k}='{}'", v),
                _ => format!("{k}='{}'", plain(v)),
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// In tables, list items go on lines of their own, as openstackclient prints fixed_ips.
/// An object's fields go on lines of their own too, so a gateway's info stays narrow.
fn cell(v: &Value) -> String {
    match v {
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join("\n"),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| {
                plain(&Value::Object(
                    [(k.clone(), v.clone())].into_iter().collect(),
                ))
            })
            .collect::<Vec<_>>()
            .join("\n"),
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

    /// Output options as the command line would give them.
    fn output(args: &[&str]) -> Output {
        let mut out = Output::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut next = || it.next().unwrap().to_string();
            match *a {
                "-c" => out.columns.push(next()),
                "--sort-column" => out.sort_columns.push(next()),
                "--sort-descending" => out.sort_descending = true,
                "--max-width" => out.max_width = Some(next().parse().unwrap()),
                other => panic!("{other}"),
            }
        }
        out
    }

    #[test]
    fn columns_match_loosely_and_keep_command_order() {
        let out = output(&["-c", "name", "-c", "Fixed IP Address", "-c", "id"]);
        let names: Vec<String> = ["ID", "Name", "Fixed IP Address", "Status"]
            .map(String::from)
            .to_vec();
        assert_eq!(out.select(&names).unwrap(), [0, 1, 2]);
        // An unknown column beside a known one is ignored, as openstackclient does.
        let out = output(&["-c", "project_id", "-c", "id"]);
        assert_eq!(out.select(&names).unwrap(), [0]);
        let bad = output(&["-c", "colour"]);
        let err = bad.select(&names).unwrap_err().to_string();
        assert!(
            err.contains("No recognized column names in ['colour']") && err.contains("ID, Name"),
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
    fn csv_quotes_as_asked() {
        let field = |quote, v: Value| {
            Output {
                quote,
                ..Output::default()
            }
            .csv_field(&v)
        };
        assert_eq!(field(Quote::NonNumeric, json!("r1")), "\"r1\"");
        assert_eq!(field(Quote::NonNumeric, json!(2)), "2");
        assert_eq!(field(Quote::NonNumeric, json!(true)), "true");
        assert_eq!(field(Quote::All, json!(2)), "\"2\"");
        assert_eq!(field(Quote::Minimal, json!("r1")), "r1");
        assert_eq!(field(Quote::Minimal, json!("a,b")), "\"a,b\"");
        assert_eq!(
            field(Quote::Minimal, json!("say \"x\"")),
            "\"say \"\"x\"\"\""
        );
        assert_eq!(field(Quote::None, json!("a,b")), "a,b");
    }

    #[test]
    fn json_keeps_structure_and_noindent_is_one_line() {
        let value = json!({"routes": [{"destination": "10.0.10.0/24", "nexthop": "10.0.0.10"}]});
        let out = Output {
            format: Format::Json,
            noindent: true,
            ..Output::default()
        };
        assert_eq!(
            out.structured(&value),
            "{\"routes\":[{\"destination\":\"10.0.10.0/24\",\"nexthop\":\"10.0.0.10\"}]}\n"
        );
        let pretty = Output {
            format: Format::Json,
            ..Output::default()
        };
        let back: Value = serde_json::from_str(&pretty.structured(&value)).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn text_forms() {
        assert_eq!(
            plain(&json!(["10.10.10.2", "10.10.10.3"])),
            "10.10.10.2, 10.10.10.3"
        );
        assert_eq!(cell(&json!(["a", "b"])), "a\nb");
        assert_eq!(
            cell(&json!({"network_id": "n1", "enable_snat": true})),
            "network_id='n1'\nenable_snat='true'"
        );
        assert_eq!(plain(&Value::Null), "");
        assert_eq!(
            plain(&json!({"network_id": "n1", "enable_snat": true})),
            "network_id='n1', enable_snat='true'"
        );
        assert_eq!(
            plain(&json!([{"destination": "10.0.10.0/24", "nexthop": "10.0.0.10"}])),
            "destination='10.0.10.0/24', nexthop='10.0.0.10'"
        );
        assert_eq!(shell_name("router:external"), "router_external");
        assert_eq!(shell_name("Fixed IP Address"), "fixed_ip_address");
        assert_eq!(shell_escape("say \"$x\""), "say \\\"\\$x\\\"");
        let table = render_table(&["ID".into()], vec![vec![json!("r1")]].into_iter(), None);
        assert!(
            table.contains("| ID |") && table.contains("| r1 |"),
            "{table}"
        );
    }
}
