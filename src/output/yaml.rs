//! YAML for the `-f yaml` format: JSON values converted and written by yaml-rust2's emitter,
//! which quotes every string a YAML parser would read as something else (`yes`, `1.0`, `~`,
//! `: `, `#`, leading dashes, ...). Key order is kept.

use serde_json::Value;
use yaml_rust2::{yaml::Hash, Yaml, YamlEmitter};

pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    YamlEmitter::new(&mut out)
        .dump(&to_yaml(value))
        .expect("writing to a String cannot fail");
    // The emitter starts a document with `---`; openstackclient prints none.
    let body = out
        .strip_prefix("---")
        .unwrap_or(&out)
        .trim_start_matches(['\n', ' ']);
    format!("{body}\n")
}

fn to_yaml(value: &Value) -> Yaml {
    match value {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(items) => Yaml::Array(items.iter().map(to_yaml).collect()),
        Value::Object(map) => {
            let mut hash = Hash::new();
            for (k, v) in map {
                hash.insert(Yaml::String(k.clone()), to_yaml(v));
            }
            Yaml::Hash(hash)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use yaml_rust2::YamlLoader;

    #[test]
    fn nested_values() {
        let v = json!({"name": "router_100_101", "snat": true, "routes": [], "interfaces": [{"device": "qg-b8b32a88-03", "ips": ["10.10.10.2/24"]}], "id": "0123"});
        assert_eq!(
            to_string(&v),
            "name: router_100_101\nsnat: true\nroutes: []\ninterfaces:\n  - device: qg-b8b32a88-03\n    ips:\n      - 10.10.10.2/24\nid: \"0123\"\n"
        );
    }

    /// Every string reads back as the same string through a YAML parser.
    #[test]
    fn strings_a_parser_would_misread_are_quoted() {
        let tricky = [
            "yes",
            "no",
            "on",
            "y",
            "n",
            "true",
            "null",
            "~",
            "1.0",
            "0123",
            "0x1F",
            ".inf",
            "1e3",
            ":",
            "#",
            "a: b",
            "a #b",
            "- x",
            "",
            " lead",
            "trail ",
            "x\ny",
            "@x",
            "`x",
            "!x",
            "&x",
            "*x",
            "%x",
            "|",
            ">",
            "'",
            "\"",
            "2024-05-01",
        ];
        let v = json!({"values": tricky.to_vec()});
        let text = to_string(&v);
        let parsed = YamlLoader::load_from_str(&text).unwrap();
        let back: Vec<&str> = parsed[0]["values"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|y| {
                y.as_str()
                    .unwrap_or_else(|| panic!("{y:?} is not a string in {text}"))
            })
            .collect();
        assert_eq!(back, tricky);
    }
}
