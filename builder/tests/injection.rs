//! No config value can smuggle text into a rendered file: every string in the example config
//! (which enables every service, so every template reads them) is replaced by payloads carrying
//! characters that WireGuard INI, unbound, Caddyfile or JSON give a meaning to, and each such
//! config must be refused with an error at (or above) that field.

use pic_builder::config;
use serde_json::Value;

const PAYLOADS: &[&str] = &[
    "evil\n}",
    "a\"b",
    "a'b",
    "a;b",
    "a{b",
    "a}b",
    "{{ 7*7 }}",
    "a\0b",
    "a\\b",
    "a b",
    "a#b",
    "a\rb",
    "a\tb",
    "x\nPostUp = rm -rf /",
];

/// TXT data is rendered inside double quotes, where a space is plain text.
const ALLOWED: &[(&str, &str)] = &[("services.dns.records[2].value", "a b")];

/// Every string leaf of `value` with its field path, as validation names it.
fn string_leaves(value: &Value, path: String, out: &mut Vec<String>) {
    match value {
        Value::String(_) => out.push(path),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                string_leaves(item, format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                string_leaves(v, child, out);
            }
        }
        _ => {}
    }
}

/// Sets the leaf at `path` (as made by `string_leaves`).
fn set(value: &mut Value, path: &str, new: &str) {
    let mut node = value;
    for part in path.split('.') {
        let (key, indices) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        node = &mut node[key];
        for index in indices.split(['[', ']']).filter(|s| !s.is_empty()) {
            node = &mut node[index.parse::<usize>().unwrap()];
        }
    }
    *node = Value::String(new.to_string());
}

#[test]
fn every_string_field_refuses_every_payload() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/cell.json")).unwrap();
    let example: Value = serde_json::from_str(&text).unwrap();
    let mut leaves = Vec::new();
    string_leaves(&example, String::new(), &mut leaves);
    assert!(leaves.len() > 40, "the example should exercise many string fields, has {}", leaves.len());

    let mut accepted = Vec::new();
    for leaf in &leaves {
        for payload in PAYLOADS {
            let mut config = example.clone();
            set(&mut config, leaf, payload);
            match config::parse(&config.to_string()) {
                Ok(_) if ALLOWED.contains(&(leaf.as_str(), payload)) => {}
                Ok(_) => accepted.push(format!("{leaf} = {payload:?}")),
                Err(errors) => {
                    let named = errors.0.iter().any(|e| leaf == &e.path || leaf.starts_with(&format!("{}.", e.path)));
                    assert!(named, "{leaf} = {payload:?} refused without naming the field: {errors}");
                }
            }
        }
    }
    assert!(accepted.is_empty(), "accepted payloads:\n{}", accepted.join("\n"));
}
