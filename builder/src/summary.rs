//! What changed between two configs, in the words a person uses: "added the device phone",
//! "DNS: added the record nas", "mail turned on". A generation's summary is its config compared
//! with its parent's (the request that made it stays in `reason`); `pic diff` and the events say
//! the same. Works on the configs' JSON, so that it reads any generation this builder can list.

use serde_json::Value;

/// Lists whose items have a name: where they are, what an item is called, and its key.
const NAMED: &[(&[&str], &str, &str)] = &[
    (&["wireguard", "peers"], "the device", "name"),
    (&["users"], "the user", "name"),
    (&["apps"], "the app", "name"),
    (&["links"], "the link with", "name"),
    (&["connectivity", "exits"], "the exit", "name"),
    (&["services", "dns", "records"], "DNS: $ the record", "name"),
    (&["services", "dhcp", "reservations"], "DHCP: $ the reservation", "name"),
    (&["services", "mail", "mailboxes"], "mail: $ the mailbox", "address"),
    (&["services", "mail", "aliases"], "mail: $ the alias", "address"),
];

/// Lists of plain values.
const VALUES: &[(&[&str], &str)] = &[
    (&["services", "mail", "domains"], "mail: $ the domain"),
    (&["services", "calendar", "users"], "calendar: $ the user"),
    (&["services", "files", "users"], "files: $ the user"),
    (&["services", "dns", "upstreams"], "DNS: $ the upstream server"),
    (&["services", "ntp", "servers"], "time: $ the server"),
];

/// Single settings, by the words the web UI uses for them; `$` is the new value.
const SETTINGS: &[(&[&str], &str)] = &[
    (&["wireguard", "endpoint"], "WireGuard: devices dial $"),
    (&["wireguard", "listen_port"], "WireGuard: listens on port $"),
    (&["wireguard", "subnet"], "WireGuard: devices' addresses come from $"),
    (&["network", "subnet"], "the cell network is $"),
    (&["cell", "domain"], "the cell is reached as $"),
];

/// The services by the words the web UI uses for them.
const SERVICES: &[(&str, &str)] = &[
    ("proxy", "the web proxy"),
    ("dns", "DNS"),
    ("dhcp", "DHCP"),
    ("ntp", "time (NTP)"),
    ("mail", "mail"),
    ("calendar", "calendar and contacts"),
    ("files", "files"),
    ("webmail", "webmail"),
];

/// One line per change from `old` to `new` (configs as JSON); `old` is `None` for the first.
pub fn summarize(old: Option<&Value>, new: &Value) -> Vec<String> {
    let Some(old) = old else { return vec!["set up the cell".to_owned()] };
    let mut lines = Vec::new();
    let mut covered: Vec<Vec<&str>> = Vec::new();

    if let (Some(a), Some(b)) = (str_at(old, &["cell", "name"]), str_at(new, &["cell", "name"]))
        && a != b
    {
        lines.push(format!("renamed the cell {a} to {b}"));
    }
    covered.push(vec!["cell", "name"]);
    if let Some(b) = str_at(new, &["cell", "timezone"])
        && str_at(old, &["cell", "timezone"]) != Some(b)
    {
        lines.push(format!("set the time zone to {b}"));
    }
    covered.push(vec!["cell", "timezone"]);

    for (service, words) in SERVICES {
        let path = ["services", service, "enabled"];
        let (a, b) = (at(old, &path).and_then(Value::as_bool), at(new, &path).and_then(Value::as_bool));
        if a.unwrap_or(false) != b.unwrap_or(false) {
            lines.push(format!("{words} turned {}", if b.unwrap_or(false) { "on" } else { "off" }));
        }
        covered.push(path.to_vec());
    }
    let path = ["wireguard", "enabled"];
    if at(old, &path) != at(new, &path) {
        let on = at(new, &path).and_then(Value::as_bool).unwrap_or(true);
        lines.push(format!("the VPN turned {}", if on { "on" } else { "off" }));
    }
    covered.push(path.to_vec());

    for (path, words) in SETTINGS {
        let (a, b) = (at(old, path), at(new, path));
        if a != b {
            let value = match b {
                None | Some(Value::Null) => "nothing (unset)".to_owned(),
                Some(Value::String(text)) => text.clone(),
                Some(Value::Object(domain)) => match (domain.get("mode"), domain.get("name")) {
                    (_, Some(Value::String(name))) => name.clone(),
                    _ => "a local name".to_owned(),
                },
                Some(other) => other.to_string(),
            };
            lines.push(words.replace('$', &value));
        }
        covered.push(path.to_vec());
    }

    for (path, noun, key) in NAMED {
        let (a, b) = (items(old, path), items(new, path));
        let name = |item: &Value| item.get(*key).and_then(Value::as_str).unwrap_or("?").to_owned();
        let say = |verb: &str, item: &str| match noun.split_once("$ ") {
            Some((before, after)) => format!("{before}{verb} {after} {item}"),
            None => format!("{verb} {noun} {item}"),
        };
        for item in &b {
            match a.iter().find(|x| name(x) == name(item)) {
                None => lines.push(say("added", &name(item))),
                Some(before) if before != item => {
                    // Which of its settings: "changed the device tablet (access)".
                    let mut fields = Vec::new();
                    changed_paths(before, item, &mut Vec::new(), &[], &mut fields);
                    lines.push(format!("{} ({})", say("changed", &name(item)), fields.join(", ")));
                }
                Some(_) => {}
            }
        }
        for item in a.iter().filter(|x| !b.iter().any(|y| name(y) == name(x))) {
            lines.push(say("removed", &name(item)));
        }
        covered.push(path.to_vec());
    }
    for (path, noun) in VALUES {
        let (a, b) = (items(old, path), items(new, path));
        let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        let say = |verb: &str, item: &Value| match noun.split_once("$ ") {
            Some((before, after)) => format!("{before}{verb} {after} {}", text(item)),
            None => format!("{verb} {noun} {}", text(item)),
        };
        lines.extend(b.iter().filter(|v| !a.contains(v)).map(|v| say("added", v)));
        lines.extend(a.iter().filter(|v| !b.contains(v)).map(|v| say("removed", v)));
        covered.push(path.to_vec());
    }

    // Whatever else changed, by where it is in the config.
    let mut rest = Vec::new();
    changed_paths(old, new, &mut Vec::new(), &covered, &mut rest);
    lines.extend(rest.into_iter().map(|path| format!("changed {path}")));
    if lines.is_empty() {
        lines.push("no change to the config".to_owned());
    }
    lines
}

fn at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

fn str_at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v str> {
    at(value, path).and_then(Value::as_str)
}

fn items<'v>(value: &'v Value, path: &[&str]) -> Vec<&'v Value> {
    at(value, path).and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default()
}

/// The paths (two levels deep at most, `services.dns.upstreams` three) where `a` and `b` differ,
/// leaving out the covered ones.
fn changed_paths<'k>(
    a: &'k Value,
    b: &'k Value,
    path: &mut Vec<&'k str>,
    covered: &[Vec<&str>],
    out: &mut Vec<String>,
) {
    if a == b || covered.iter().any(|c| c.as_slice() == path.as_slice()) {
        return;
    }
    let depth = if path.first() == Some(&"services") { 3 } else { 2 };
    if let (Value::Object(x), Value::Object(y)) = (a, b)
        && path.len() < depth
    {
        let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            path.push(key);
            changed_paths(
                x.get(key.as_str()).unwrap_or(&Value::Null),
                y.get(key.as_str()).unwrap_or(&Value::Null),
                path,
                covered,
                out,
            );
            path.pop();
        }
        return;
    }
    if path.as_slice() != ["version"] {
        out.push(path.join("."));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_change_is_said_in_words() {
        let old = json!({
            "version": 2,
            "cell": {"name": "home", "timezone": "UTC"},
            "network": {"subnet": "172.20.0.0/24"},
            "wireguard": {"peers": [{"name": "laptop", "address": "10.8.0.2"}, {"name": "old", "address": "10.8.0.3"}]},
            "services": {"dns": {"enabled": true, "records": [], "upstreams": ["9.9.9.9"]}, "mail": {"enabled": false}},
            "users": [{"name": "alice", "role": "admin"}]
        });
        let new = json!({
            "version": 2,
            "cell": {"name": "home", "timezone": "Europe/Berlin"},
            "network": {"subnet": "172.21.0.0/24"},
            "wireguard": {"peers": [{"name": "laptop", "address": "10.8.0.9"}, {"name": "phone", "address": "10.8.0.4"}]},
            "services": {
                "dns": {"enabled": true, "records": [{"name": "nas", "type": "A", "value": "172.21.0.5"}], "upstreams": ["1.1.1.1"]},
                "mail": {"enabled": true, "domains": ["home.cell"], "aliases": [{"address": "info@home.cell", "to": "a@home.cell"}]}
            },
            "users": [{"name": "alice", "role": "admin"}]
        });
        insta::assert_snapshot!(summarize(Some(&old), &new).join("\n"), @r"
        set the time zone to Europe/Berlin
        mail turned on
        the cell network is 172.21.0.0/24
        changed the device laptop (address)
        added the device phone
        removed the device old
        DNS: added the record nas
        mail: added the alias info@home.cell
        mail: added the domain home.cell
        DNS: added the upstream server 1.1.1.1
        DNS: removed the upstream server 9.9.9.9
        ");
        assert_eq!(summarize(Some(&new), &new), ["no change to the config"]);
        assert_eq!(summarize(None, &new), ["set up the cell"]);
    }
}
