//! Results on stdout in the formats openstackclient offers: table, json, yaml, value, csv, shell.
//! A `show` is one record of fields; a `list` is rows under headers; `router show` adds
//! named sections (tables) after its record.

pub mod diag;
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
}

pub struct Output {
    pub format: Format,
    pub columns: Vec<String>,
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
            Format::Table => {
                let mut out = render_table(
                    &["Field".into(), "Value".into()],
                    picked
                        .iter()
                        .map(|(k, v)| vec![Value::String(k.clone()), v.clone()]),
                );
                for s in sections.iter().filter(|_| self.columns.is_empty()) {
                    out += &format!(
                        "\n{}:\n{}",
                        s.title,
                        render_table(&s.listing.headers, s.listing.rows.iter().cloned())
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

    pub fn list(&self, listing: &Listing) -> anyhow::Result<()> {
        let idx = self.select(&listing.headers)?;
        let headers: Vec<String> = idx.iter().map(|i| listing.headers[*i].clone()).collect();
        let rows = listing
            .rows
            .iter()
            .map(|r| idx.iter().map(|i| r[*i].clone()).collect::<Vec<Value>>());
        let picked = Listing {
            headers,
            rows: rows.collect(),
        };
        let text = match self.format {
            Format::Table => render_table(&picked.headers, picked.rows.iter().cloned()),
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

fn render_table(headers: &[String], rows: impl Iterator<Item = Vec<Value>>) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::ASCII_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    if let Some((width, _)) = terminal_width() {
        table.set_width(width);
    }
    table.set_header(headers);
    for row in rows {
        table.add_row(row.iter().map(cell).collect::<Vec<_>>());
    }
    format!("{table}\n")
}

/// Wrap long values on a terminal; on a pipe, never wrap (scripts grep whole lines).
fn terminal_width() -> Option<(u16, u16)> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let cols = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok());
    cols.map(|c| (c, 0)).or(Some((120, 0)))
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

    #[test]
    fn columns_match_loosely_and_keep_command_order() {
        let out = Output {
            format: Format::Value,
            columns: vec!["name".into(), "Fixed IP Address".into(), "id".into()],
        };
        let names: Vec<String> = ["ID", "Name", "Fixed IP Address", "Status"]
            .map(String::from)
            .to_vec();
        assert_eq!(out.select(&names).unwrap(), [0, 1, 2]);
        let bad = Output {
            format: Format::Value,
            columns: vec!["colour".into()],
        };
        let err = bad.select(&names).unwrap_err().to_string();
        assert!(
            err.contains("column 'colour' does not exist") && err.contains("ID, Name"),
            "{err}"
        );
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
        let table = render_table(&["ID".into()], vec![vec![json!("r1")]].into_iter());
        assert!(
            table.contains("| ID |") && table.contains("| r1 |"),
            "{table}"
        );
    }
}
