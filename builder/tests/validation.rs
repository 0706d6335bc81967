//! One bad config per validation rule: each must be refused with an error at the named field, and
//! every message (with its fix) is snapshotted so that wording changes are reviewed.

use pic_builder::config::{self, ValidationErrors};
use serde_json::{Value, json};

fn example() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/cell.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The example with the links of `examples/linked.json`.
fn with_links(c: &mut Value) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/linked.json")).unwrap();
    let linked: Value = serde_json::from_str(&text).unwrap();
    c["links"] = linked["links"].clone();
}

/// The example with the apps of `examples/apps.json` installed.
fn with_apps(c: &mut Value) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/apps.json")).unwrap();
    let apps: Value = serde_json::from_str(&text).unwrap();
    c["apps"] = apps["apps"].clone();
}

/// The example with the exits of `examples/exits.json`, and a device sent through one.
fn with_exits(c: &mut Value) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/exits.json")).unwrap();
    let exits: Value = serde_json::from_str(&text).unwrap();
    c["connectivity"] = exits["connectivity"].clone();
    c["wireguard"]["peers"][0]["exit"] = json!("provider");
}

type Mutation = fn(&mut Value);

/// (case, the field the error must name, how to break the example config)
const CASES: &[(&str, &str, Mutation)] = &[
    ("version from the future", "version", |c| c["version"] = json!(3)),
    ("version zero", "version", |c| c["version"] = json!(0)),
    ("version missing", "version", |c| drop(c.as_object_mut().unwrap().remove("version"))),
    ("unknown field", "colour", |c| c["colour"] = json!("blue")),
    ("backup time not a time", "backups.schedule.at", |c| c["backups"]["schedule"]["at"] = json!("25:00")),
    ("backup day on a daily schedule", "backups.schedule.on", |c| c["backups"]["schedule"]["on"] = json!("monday")),
    ("backups keep nothing", "backups.keep", |c| c["backups"]["keep"] = json!({"daily": 0, "weekly": 0})),
    ("backup destination relative", "backups.destination", |c| c["backups"]["destination"] = json!("usb/backups")),
    ("backup destination climbs", "backups.destination", |c| c["backups"]["destination"] = json!("/mnt/../etc")),
    ("wrong type", "wireguard.listen_port", |c| c["wireguard"]["listen_port"] = json!("51820")),
    ("port out of range", "wireguard.listen_port", |c| c["wireguard"]["listen_port"] = json!(70000)),
    ("malformed address", "wireguard.peers[0].address", |c| {
        c["wireguard"]["peers"][0]["address"] = json!("10.8.0.300")
    }),
    ("cell name not a label", "cell.name", |c| c["cell"]["name"] = json!("My Cell")),
    ("public domain not a host name", "cell.domain.name", |c| {
        c["cell"]["domain"] = json!({"mode": "public", "name": "exa mple.org", "acme_email": "a@example.org"})
    }),
    ("public domain not qualified", "cell.domain.name", |c| {
        c["cell"]["domain"] = json!({"mode": "public", "name": "localhost", "acme_email": "a@example.org"})
    }),
    ("acme email invalid", "cell.domain.acme_email", |c| {
        c["cell"]["domain"] =
            json!({"mode": "ddns", "provider": "duckdns", "name": "me.duckdns.org", "acme_email": "nobody"})
    }),
    ("acme directory not a url", "cell.domain.acme_ca", |c| {
        c["cell"]["domain"] = json!({"mode": "public", "name": "cell.example.org", "acme_email": "a@example.org",
            "acme_ca": "https://acme.example.org/dir; rm -rf"})
    }),
    ("acme root not a certificate", "cell.domain.acme_ca_root", |c| {
        c["cell"]["domain"] = json!({"mode": "public", "name": "cell.example.org", "acme_email": "a@example.org",
            "acme_ca_root": "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n}"})
    }),
    ("store key not a minisign key", "store.trusted_keys[0]", |c| {
        c["store"] = json!({"trusted_keys": ["RWQnot-a-key"]})
    }),
    ("store index not absolute", "store.index", |c| c["store"] = json!({"index": "../index"})),
    ("store index a web page", "store.index", |c| c["store"] = json!({"index": "https://apps.example.org/"})),
    ("app setting unknown", "apps[0].settings.colour", |c| {
        with_apps(c);
        c["apps"][0]["settings"]["colour"] = json!("blue")
    }),
    ("app setting of the wrong type", "apps[0].settings.title", |c| {
        with_apps(c);
        c["apps"][0]["settings"]["title"] = json!(5)
    }),
    ("app secret setting in the config", "apps[1].settings.rpc_password", |c| {
        with_apps(c);
        c["apps"][1]["settings"]["rpc_password"] = json!("hunter22")
    }),
    ("app on a service's address", "apps[0].address", |c| {
        with_apps(c);
        c["apps"][0]["address"] = json!("172.20.0.2")
    }),
    ("app version other than its manifest's", "apps[0].version", |c| {
        with_apps(c);
        c["apps"][0]["version"] = json!("1.0")
    }),
    ("app manifest asking for privileged mode", "apps[0].manifest.container.privileged", |c| {
        with_apps(c);
        c["apps"][0]["manifest"]["container"]["privileged"] = json!(true)
    }),
    ("app mounting a host path", "apps[0].manifest.container.mounts[0].source", |c| {
        with_apps(c);
        c["apps"][0]["manifest"]["container"]["mounts"][0]["source"] = json!("/etc")
    }),
    ("two apps on one host name", "apps[1].manifest.site.host", |c| {
        with_apps(c);
        c["apps"][1]["manifest"]["site"]["host"] = json!("wiki")
    }),
    ("apps without the proxy", "services.proxy.enabled", |c| {
        with_apps(c);
        c["services"]["proxy"]["enabled"] = json!(false)
    }),
    ("unknown domain mode", "cell.domain.mode", |c| c["cell"]["domain"] = json!({"mode": "magic"})),
    ("unknown ddns provider", "cell.domain", |c| {
        c["cell"]["domain"] =
            json!({"mode": "ddns", "provider": "dyndns3", "name": "a.example.org", "acme_email": "a@example.org"})
    }),
    ("duckdns name outside duckdns.org", "cell.domain.name", |c| {
        c["cell"]["domain"] =
            json!({"mode": "ddns", "provider": "duckdns", "name": "me.example.org", "acme_email": "a@example.org"})
    }),
    ("pic.ngo name outside pic.ngo", "cell.domain.name", |c| {
        c["cell"]["domain"] =
            json!({"mode": "ddns", "provider": "pic_ngo", "name": "me.example.org", "acme_email": "a@example.org"})
    }),
    ("cloudflare name outside its zone", "cell.domain.name", |c| {
        c["cell"]["domain"] = json!({"mode": "ddns", "provider": "cloudflare", "name": "cell.example.org",
            "zone": "example.net", "acme_email": "a@example.org"})
    }),
    ("zone for a provider without zones", "cell.domain.zone", |c| {
        c["cell"]["domain"] = json!({"mode": "ddns", "provider": "noip", "name": "me.ddns.net", "username": "key",
            "zone": "ddns.net", "acme_email": "a@example.org"})
    }),
    ("noip without its username", "cell.domain.username", |c| {
        c["cell"]["domain"] =
            json!({"mode": "ddns", "provider": "noip", "name": "me.ddns.net", "acme_email": "a@example.org"})
    }),
    ("username with a space", "cell.domain.username", |c| {
        c["cell"]["domain"] = json!({"mode": "ddns", "provider": "noip", "name": "me.ddns.net", "username": "my key",
            "acme_email": "a@example.org"})
    }),
    ("dyndns2 without its server", "cell.domain.server", |c| {
        c["cell"]["domain"] = json!({"mode": "ddns", "provider": "dyndns2", "name": "me.example.org", "username": "me",
            "acme_email": "a@example.org"})
    }),
    ("server not an http url", "cell.domain.server", |c| {
        c["cell"]["domain"] = json!({"mode": "ddns", "provider": "dyndns2", "name": "me.example.org", "username": "me",
            "server": "ftp://members.example.org", "acme_email": "a@example.org"})
    }),
    ("address service with a quote", "cell.domain.address.urls[0]", |c| {
        c["cell"]["domain"] = json!({"mode": "ddns", "provider": "freedns", "name": "me.mooo.com",
            "address": {"from": "web", "urls": ["https://ip.example.org/\"x"]}, "acme_email": "a@example.org"})
    }),
    ("no address service", "cell.domain.address.urls", |c| {
        c["cell"]["domain"] = json!({"mode": "ddns", "provider": "freedns", "name": "me.mooo.com",
            "address": {"from": "web", "urls": []}, "acme_email": "a@example.org"})
    }),
    ("address interface too long", "cell.domain.address.name", |c| {
        c["cell"]["domain"] = json!({"mode": "ddns", "provider": "freedns", "name": "me.mooo.com",
            "address": {"from": "interface", "name": "an-interface-name-too-long"}, "acme_email": "a@example.org"})
    }),
    ("ddns interval too short", "cell.domain.interval_seconds", |c| {
        c["cell"]["domain"] = json!({"mode": "ddns", "provider": "freedns", "name": "me.mooo.com",
            "interval_seconds": 10, "acme_email": "a@example.org"})
    }),
    ("unknown time zone", "cell.timezone", |c| c["cell"]["timezone"] = json!("Mars/Olympus")),
    ("subnet with host bits", "network.subnet", |c| c["network"]["subnet"] = json!("172.20.0.5/24")),
    ("subnet too small", "network.subnet", |c| c["network"]["subnet"] = json!("172.20.0.0/29")),
    ("subnet not private", "network.subnet", |c| c["network"]["subnet"] = json!("8.8.0.0/24")),
    ("address for unknown service", "network.addresses.printer", |c| {
        c["network"]["addresses"] = json!({"printer": "172.20.0.40"})
    }),
    ("service address outside subnet", "network.addresses.dns", |c| {
        c["network"]["addresses"] = json!({"dns": "172.21.0.3"})
    }),
    ("service address is the gateway", "network.addresses.dns", |c| {
        c["network"]["addresses"] = json!({"dns": "172.20.0.1"})
    }),
    ("service address taken", "network.addresses.ntp", |c| c["network"]["addresses"] = json!({"ntp": "172.20.0.3"})),
    ("vpn subnet with host bits", "wireguard.subnet", |c| c["wireguard"]["subnet"] = json!("10.8.0.1/24")),
    ("vpn subnet overlaps the cell", "wireguard.subnet", |c| c["wireguard"]["subnet"] = json!("172.20.0.0/16")),
    ("vpn subnet too small", "wireguard.subnet", |c| c["wireguard"]["subnet"] = json!("10.8.0.0/31")),
    ("server address outside vpn subnet", "wireguard.address", |c| c["wireguard"]["address"] = json!("10.9.0.1")),
    ("listen port zero", "wireguard.listen_port", |c| c["wireguard"]["listen_port"] = json!(0)),
    ("endpoint without port", "wireguard.endpoint", |c| c["wireguard"]["endpoint"] = json!("vpn.example.org")),
    ("peer name with newline and brace", "wireguard.peers[1].name", |c| {
        c["wireguard"]["peers"][1]["name"] = json!("evil\n}")
    }),
    ("peer key not a key", "wireguard.peers[0].public_key", |c| {
        c["wireguard"]["peers"][0]["public_key"] = json!("not-a-key")
    }),
    ("peer address outside vpn subnet", "wireguard.peers[0].address", |c| {
        c["wireguard"]["peers"][0]["address"] = json!("10.9.0.2")
    }),
    ("peer address is the server's", "wireguard.peers[0].address", |c| {
        c["wireguard"]["peers"][0]["address"] = json!("10.8.0.1")
    }),
    ("peer address is the broadcast", "wireguard.peers[0].address", |c| {
        c["wireguard"]["peers"][0]["address"] = json!("10.8.0.255")
    }),
    ("peer access to an unknown service", "wireguard.peers[1].access[0]", |c| {
        c["wireguard"]["peers"][1]["access"][0] = json!("ssh")
    }),
    ("address for a host service", "network.addresses.wireguard", |c| {
        c["network"]["addresses"] = json!({"wireguard": "172.20.0.30"})
    }),
    ("log level for an unknown service", "logging.levels.ssh", |c| c["logging"] = json!({"levels": {"ssh": "debug"}})),
    ("unknown log level", "logging.levels.dns", |c| c["logging"] = json!({"levels": {"dns": "verbose"}})),
    ("peer of unknown user", "wireguard.peers[0].user", |c| c["wireguard"]["peers"][0]["user"] = json!("mallory")),
    ("duplicate peer name", "wireguard.peers[1].name", |c| c["wireguard"]["peers"][1]["name"] = json!("alice-laptop")),
    ("duplicate peer key", "wireguard.peers[2].public_key", |c| {
        c["wireguard"]["peers"][2]["public_key"] = c["wireguard"]["peers"][0]["public_key"].clone()
    }),
    ("duplicate peer address", "wireguard.peers[1].address", |c| {
        c["wireguard"]["peers"][1]["address"] = json!("10.8.0.2")
    }),
    ("bad expiry", "wireguard.peers[0].expires", |c| c["wireguard"]["peers"][0]["expires"] = json!("next tuesday")),
    ("unusable upstream", "services.dns.upstreams[0]", |c| c["services"]["dns"]["upstreams"][0] = json!("0.0.0.0")),
    ("duplicate upstream", "services.dns.upstreams[1]", |c| c["services"]["dns"]["upstreams"][1] = json!("9.9.9.9")),
    ("DNS open to a /4", "services.dns.allowed_networks[0]", |c| {
        c["services"]["dns"]["allowed_networks"] = json!(["16.0.0.0/4"])
    }),
    ("record name invalid", "services.dns.records[0].name", |c| {
        c["services"]["dns"]["records"][0]["name"] = json!("nas;rm")
    }),
    ("A record with a name", "services.dns.records[0].value", |c| {
        c["services"]["dns"]["records"][0]["value"] = json!("nas.example.org")
    }),
    ("TXT record with a quote", "services.dns.records[2].value", |c| {
        c["services"]["dns"]["records"][2]["value"] = json!("x\" IN A 1.2.3.4")
    }),
    ("CNAME beside another record", "services.dns.records[3].name", |c| {
        c["services"]["dns"]["records"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "storage", "type": "A", "value": "172.20.0.60"}))
    }),
    ("duplicate record", "services.dns.records[3]", |c| {
        let first = c["services"]["dns"]["records"][0].clone();
        c["services"]["dns"]["records"].as_array_mut().unwrap().push(first)
    }),
    ("dhcp without range", "services.dhcp.range", |c| {
        drop(c["services"]["dhcp"].as_object_mut().unwrap().remove("range"))
    }),
    ("dhcp range reversed", "services.dhcp.range", |c| {
        c["services"]["dhcp"]["range"] = json!({"start": "172.20.0.200", "end": "172.20.0.100"})
    }),
    ("dhcp range outside the cell network", "services.dhcp.range.end", |c| {
        c["services"]["dhcp"]["range"]["end"] = json!("172.21.0.10")
    }),
    ("dhcp range over service addresses", "services.dhcp.range", |c| {
        c["services"]["dhcp"]["range"]["start"] = json!("172.20.0.2")
    }),
    ("reservation outside the range", "services.dhcp.reservations[0].address", |c| {
        c["services"]["dhcp"]["reservations"][0]["address"] = json!("172.20.0.50")
    }),
    ("reservation with a bad mac", "services.dhcp.reservations[0].mac", |c| {
        c["services"]["dhcp"]["reservations"][0]["mac"] = json!("52:54:00:12:34")
    }),
    ("duplicate reservation mac", "services.dhcp.reservations[1].mac", |c| {
        c["services"]["dhcp"]["reservations"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "scanner", "mac": "52:54:00:12:34:56", "address": "172.20.0.151"}))
    }),
    ("ntp server invalid", "services.ntp.servers[0]", |c| c["services"]["ntp"]["servers"][0] = json!("pool ntp org")),
    ("ntp without servers", "services.ntp.servers", |c| c["services"]["ntp"]["servers"] = json!([])),
    ("mail domain invalid", "services.mail.domains[0]", |c| c["services"]["mail"]["domains"][0] = json!("home..cell")),
    ("mail without domains", "services.mail.domains", |c| {
        c["services"]["mail"]["domains"] = json!([]);
        c["services"]["mail"]["mailboxes"] = json!([]);
        c["services"]["mail"]["aliases"] = json!([]);
    }),
    ("mailbox in unknown domain", "services.mail.mailboxes[0].address", |c| {
        c["services"]["mail"]["mailboxes"][0]["address"] = json!("alice@elsewhere.org")
    }),
    ("mailbox not an address", "services.mail.mailboxes[0].address", |c| {
        c["services"]["mail"]["mailboxes"][0]["address"] = json!("alice")
    }),
    ("mailbox of unknown user", "services.mail.mailboxes[0].user", |c| {
        c["services"]["mail"]["mailboxes"][0]["user"] = json!("mallory")
    }),
    ("duplicate mailbox", "services.mail.mailboxes[1].address", |c| {
        c["services"]["mail"]["mailboxes"][1]["address"] = json!("alice@home.cell")
    }),
    ("alias in unknown domain", "services.mail.aliases[0].address", |c| {
        c["services"]["mail"]["aliases"][0]["address"] = json!("info@elsewhere.org")
    }),
    ("alias that is a mailbox", "services.mail.aliases[0].address", |c| {
        c["services"]["mail"]["aliases"][0]["address"] = json!("bob@home.cell")
    }),
    ("alias to no mailbox", "services.mail.aliases[0].to", |c| {
        c["services"]["mail"]["aliases"][0]["to"] = json!("carol@home.cell")
    }),
    ("duplicate alias", "services.mail.aliases[1].address", |c| {
        c["services"]["mail"]["aliases"]
            .as_array_mut()
            .unwrap()
            .push(json!({"address": "postmaster@home.cell", "to": "bob@home.cell"}))
    }),
    ("calendar user unknown", "services.calendar.users[1]", |c| {
        c["services"]["calendar"]["users"][1] = json!("mallory")
    }),
    ("files user twice", "services.files.users[1]", |c| c["services"]["files"]["users"][1] = json!("alice")),
    ("user name invalid", "users[1].name", |c| c["users"][1]["name"] = json!("Bob")),
    ("user name twice", "users[1].name", |c| c["users"][1]["name"] = json!("alice")),
    ("no admin", "users", |c| c["users"][0]["role"] = json!("peer")),
    ("https port colliding with dns", "services.proxy.https_port", |c| {
        c["services"]["proxy"]["https_port"] = json!(53)
    }),
    ("wireguard port colliding with ntp", "wireguard.listen_port", |c| c["wireguard"]["listen_port"] = json!(123)),
    ("peer named like a service", "wireguard.peers[0].name", |c| {
        c["wireguard"]["peers"][0]["name"] = json!("calendar")
    }),
    ("reservation named like a peer", "services.dhcp.reservations[0].name", |c| {
        c["services"]["dhcp"]["reservations"][0]["name"] = json!("alice-phone")
    }),
    ("record named like the web UI", "services.dns.records[0].name", |c| {
        c["services"]["dns"]["records"][0]["name"] = json!("pic")
    }),
    ("link vpn subnet overlapping ours", "links[0].vpn_subnet", |c| {
        with_links(c);
        c["links"][0]["vpn_subnet"] = json!("10.8.0.0/16");
        c["links"][0]["tunnel_address"] = json!("10.8.5.1")
    }),
    ("link cell subnet overlapping another link's", "links[1].cell_subnet", |c| {
        with_links(c);
        c["links"][1]["cell_subnet"] = json!("172.21.0.0/25");
        c["links"][1]["dns"] = json!("172.21.0.3")
    }),
    ("link with this cell's domain", "links[0].domain", |c| {
        with_links(c);
        c["links"][0]["domain"] = json!("home.cell")
    }),
    ("link domain inside this cell's", "links[0].domain", |c| {
        with_links(c);
        c["links"][0]["domain"] = json!("parents.home.cell")
    }),
    ("link named like this cell", "links[0].name", |c| {
        with_links(c);
        c["links"][0]["name"] = json!("home")
    }),
    ("link key of a device", "links[0].public_key", |c| {
        with_links(c);
        c["links"][0]["public_key"] = c["wireguard"]["peers"][0]["public_key"].clone()
    }),
    ("link signing key not a key", "links[0].signing_key", |c| {
        with_links(c);
        c["links"][0]["signing_key"] = json!("short")
    }),
    ("link tunnel address outside its vpn subnet", "links[0].tunnel_address", |c| {
        with_links(c);
        c["links"][0]["tunnel_address"] = json!("10.99.0.1")
    }),
    ("link dns outside its cell subnet", "links[0].dns", |c| {
        with_links(c);
        c["links"][0]["dns"] = json!("10.9.0.3")
    }),
    ("link granted the web UI", "links[0].grants[1]", |c| {
        with_links(c);
        c["links"][0]["grants"] = json!(["calendar", "proxy"])
    }),
    ("link granted a service twice", "links[0].grants[1]", |c| {
        with_links(c);
        c["links"][0]["grants"] = json!(["calendar", "calendar"])
    }),
    ("two links to one domain", "links[1].domain", |c| {
        with_links(c);
        c["links"][1]["domain"] = json!("parents.cell")
    }),
    ("links without wireguard", "wireguard.enabled", |c| {
        with_links(c);
        c["wireguard"]["enabled"] = json!(false)
    }),
    ("exit name too long for its interface", "connectivity.exits[0].name", |c| {
        with_exits(c);
        c["connectivity"]["exits"][0]["name"] = json!("my-vpn-provider");
        c["wireguard"]["peers"][0]["exit"] = json!("my-vpn-provider")
    }),
    ("exit of no kind", "connectivity.exits[1]", |c| {
        with_exits(c);
        c["connectivity"]["exits"][1] = json!({"name": "nothing"})
    }),
    ("exit key not a key", "connectivity.exits[0].wireguard.public_key", |c| {
        with_exits(c);
        c["connectivity"]["exits"][0]["wireguard"]["public_key"] = json!("not-a-key")
    }),
    ("exit endpoint without a port", "connectivity.exits[0].wireguard.endpoint", |c| {
        with_exits(c);
        c["connectivity"]["exits"][0]["wireguard"]["endpoint"] = json!("vpn.example.net")
    }),
    ("exit address inside the cell network", "connectivity.exits[0].wireguard.address", |c| {
        with_exits(c);
        c["connectivity"]["exits"][0]["wireguard"]["address"] = json!("172.20.0.99/32")
    }),
    ("exit mtu too small", "connectivity.exits[0].wireguard.mtu", |c| {
        with_exits(c);
        c["connectivity"]["exits"][0]["wireguard"]["mtu"] = json!(576)
    }),
    ("two exits with one name", "connectivity.exits[1].name", |c| {
        with_exits(c);
        c["connectivity"]["exits"][1]["name"] = json!("provider")
    }),
    ("device sent to an unknown exit", "wireguard.peers[0].exit", |c| {
        with_exits(c);
        c["wireguard"]["peers"][0]["exit"] = json!("nowhere")
    }),
    ("device with an exit but split routing", "wireguard.peers[1].exit", |c| {
        with_exits(c);
        c["wireguard"]["peers"][1]["exit"] = json!("provider")
    }),
    ("openvpn exit at a service's address", "connectivity.exits[2].openvpn.address", |c| {
        with_exits(c);
        c["connectivity"]["exits"][2]["openvpn"]["address"] = json!("172.20.0.3")
    }),
    ("openvpn exit outside the cell network", "connectivity.exits[2].openvpn.address", |c| {
        with_exits(c);
        c["connectivity"]["exits"][2]["openvpn"]["address"] = json!("10.1.2.3")
    }),
    ("exit both wireguard and openvpn", "connectivity.exits[2]", |c| {
        with_exits(c);
        c["connectivity"]["exits"][2]["wireguard"] = c["connectivity"]["exits"][0]["wireguard"].clone()
    }),
    ("user sent to an unknown exit", "users[1].exit", |c| {
        with_exits(c);
        c["users"][1]["exit"] = json!("nowhere")
    }),
];

fn errors_of(config: &Value) -> ValidationErrors {
    match config::parse(&config.to_string()) {
        Ok(_) => ValidationErrors(Vec::new()),
        Err(e) => e,
    }
}

#[test]
fn the_example_is_valid() {
    assert_eq!(errors_of(&example()).0, Vec::new());
}

#[test]
fn every_rule_names_its_field() {
    let mut report = String::new();
    let mut wrong = Vec::new();
    for (case, path, mutate) in CASES {
        let mut config = example();
        mutate(&mut config);
        let errors = errors_of(&config);
        if !errors.0.iter().any(|e| e.path == *path) {
            wrong.push(format!("{case}: expected an error at {path}, got {:?}", errors.0));
        }
        report.push_str(&format!("## {case}\n"));
        for e in &errors.0 {
            report.push_str(&format!("{}: {} ({})\n", e.path, e.message, e.hint));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    insta::assert_snapshot!(report);
}

#[test]
fn all_problems_are_reported_at_once() {
    let mut config = example();
    config["cell"]["name"] = json!("-bad");
    config["wireguard"]["peers"][0]["name"] = json!("evil\n}");
    config["wireguard"]["peers"][1]["address"] = json!("10.9.9.9");
    config["services"]["mail"]["mailboxes"][0]["address"] = json!("alice@nowhere.org");
    config["services"]["dhcp"]["range"]["end"] = json!("172.21.0.1");
    let paths: Vec<String> = errors_of(&config).0.into_iter().map(|e| e.path).collect();
    for expected in [
        "cell.name",
        "wireguard.peers[0].name",
        "wireguard.peers[1].address",
        "services.mail.mailboxes[0].address",
        "services.dhcp.range.end",
    ] {
        assert!(paths.iter().any(|p| p == expected), "{expected} missing from {paths:?}");
    }
}
