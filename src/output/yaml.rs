//! A small YAML emitter for JSON values (block style, strings quoted when YAML would
//! read them as something else).

use serde_json::Value;

pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if m.is_empty() => out.push_str("{}\n"),
        Value::Array(a) if a.is_empty() => out.push_str("[]\n"),
        Value::Object(_) | Value::Array(_) => write(&mut out, value, 0),
        scalar => out += &format!("{}\n", scalar_text(scalar)),
    }
    out
}

fn write(out: &mut String, value: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        *out += &format!("{pad}{}:\n", quote(k));
                        write(out, v, indent + 2);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        *out += &format!("{pad}{}:\n", quote(k));
                        write(out, v, indent);
                    }
                    _ => *out += &format!("{pad}{}: {}\n", quote(k), scalar_text(v)),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        let mut inner = String::new();
                        write(&mut inner, item, indent + 2);
                        // The first key goes on the dash line.
                        *out += &format!("{pad}- {}", &inner[indent + 2..]);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        *out += &format!("{pad}-\n");
                        write(out, item, indent + 2);
                    }
                    _ => *out += &format!("{pad}- {}\n", scalar_text(item)),
                }
            }
        }
        _ => {}
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

fn quote(s: &str) -> String {
    let plain_ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/ ".contains(c))
        && !s.starts_with([' ', '-'])
        && !s.ends_with(' ')
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
        )
        && s.parse::<f64>().is_err();
    if plain_ok {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("strings serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_values() {
        let v = json!({"name": "router_100_101", "snat": true, "routes": [], "interfaces": [{"device": "qg-b8b32a88-03", "ips": ["10.10.10.2/24"]}], "id": "0123"});
        assert_eq!(
            to_string(&v),
            "name: router_100_101\nsnat: true\nroutes: []\ninterfaces:\n- device: qg-b8b32a88-03\n  ips:\n  - 10.10.10.2/24\nid: \"0123\"\n"
        );
    }
}
