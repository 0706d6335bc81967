//! The firewall and the proxy enforce one access policy: over random devices, access lists and
//! enabled services, the rendered nftables ruleset and the rendered Caddyfile are read back (by
//! the small evaluators below, which refuse any rule they do not understand) and every
//! (device, service) pair is admitted exactly when the config's access lists say so — the
//! firewall deciding for services with their own address, the proxy for the sites behind it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use base64::Engine;
use ipnet::Ipv4Net;
use pic_builder::config::{self, ValidConfig, services};
use pic_builder::render::{PublicKeys, Renderer};
use proptest::prelude::*;
use serde_json::{Value, json};

const KEY: &str = "c2C9I3d9maFf+uWSNqTiPnN8jR0gmMAtJ6rITkc+GRA=";
/// Names a device's list may hold: every service a device can reach, and some it cannot.
const NAMES: &[&str] = &["dns", "dhcp", "ntp", "mail", "calendar", "files", "webmail", "proxy", "wireguard"];
const TOGGLED: &[&str] = &["proxy", "dns", "ntp", "mail", "calendar", "files", "webmail"];

#[derive(Debug, Clone)]
struct DeviceSpec {
    host: u8,
    access: Option<Vec<&'static str>>,
    enabled: bool,
    full: bool,
}

fn device() -> impl Strategy<Value = DeviceSpec> {
    (
        2u8..60,
        prop::option::of(prop::sample::subsequence(NAMES, 0..=NAMES.len())),
        prop::bool::weighted(0.85),
        any::<bool>(),
    )
        .prop_map(|(host, access, enabled, full)| DeviceSpec { host, access, enabled, full })
}

fn config_of(devices: &[DeviceSpec], on: &[bool]) -> Value {
    let peers: Vec<Value> = devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut peer = json!({
                "name": format!("device{i}"),
                "public_key": base64::engine::general_purpose::STANDARD.encode([i as u8 + 1; 32]),
                "address": format!("10.8.0.{}", d.host),
                "enabled": d.enabled,
                "routing": if d.full { "full" } else { "split" },
            });
            if let Some(access) = &d.access {
                peer["access"] = json!(access);
            }
            peer
        })
        .collect();
    let mut services = serde_json::Map::new();
    for (name, enabled) in TOGGLED.iter().zip(on) {
        services.insert(name.to_string(), json!({"enabled": enabled}));
    }
    services["mail"]["domains"] = json!(["prop.cell"]);
    services["ntp"]["servers"] = json!(["0.debian.pool.ntp.org"]);
    json!({
        "version": 2,
        "cell": {"name": "prop"},
        "network": {"subnet": "172.20.0.0/24"},
        "wireguard": {"subnet": "10.8.0.0/24", "peers": peers},
        "services": services,
        "users": [{"name": "admin", "role": "admin"}]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn firewall_and_proxy_admit_exactly_what_the_access_lists_say(
        devices in prop::collection::vec(device(), 0..12)
            .prop_filter("distinct addresses", |d| d.iter().map(|d| d.host).collect::<BTreeSet<_>>().len() == d.len()),
        on in prop::collection::vec(any::<bool>(), TOGGLED.len()),
    ) {
        let config = config::parse(&config_of(&devices, &on).to_string())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let bundles = Renderer::new().render(&config, &PublicKeys { wireguard: KEY.into() }).unwrap();
        let text = |service: &str, file: &str| String::from_utf8(bundles[service].files[file].clone()).unwrap();
        let firewall = Ruleset::parse(&text("firewall", "ruleset.nft"));
        let proxy = bundles.contains_key("proxy").then(|| Sites::parse(&text("proxy", "Caddyfile")));

        let mut admitted = BTreeSet::new();
        let mut expected = BTreeSet::new();
        // Every device the config lists, and an address of the VPN that no device has.
        let sources = devices.iter().map(|d| (d.host, Some(d))).chain([(250u8, None)]);
        for (host, spec) in sources {
            let source = Ipv4Addr::new(10, 8, 0, host);
            for service in services::enabled(&config).filter(|s| !s.listens.is_empty()) {
                // A site behind the proxy is served only while the proxy runs.
                let reachable = !service.via_proxy || proxy.is_some();
                let may = reachable && spec.is_some_and(|d| {
                    d.enabled && (service.name == "proxy" || d.access.as_ref().is_none_or(|a| a.contains(&service.name)))
                });
                if may {
                    expected.insert((host, service.name));
                }
                let entry = if service.via_proxy { services::get("proxy").unwrap() } else { service };
                let mut through_firewall = true;
                for (daddr, proto, dport) in endpoints(&config, entry) {
                    let direct = firewall.forward(&Packet { source, daddr, proto, dport, dnat: false });
                    // Sent to a published port of the host, which Docker forwarded to the container.
                    let published = firewall.forward(&Packet { source, daddr, proto, dport, dnat: true });
                    prop_assert_eq!(direct, published, "{} to {}:{}/{} through a published port", source, daddr, dport, proto);
                    through_firewall &= direct;
                }
                let served = if let (true, Some(sites)) = (service.via_proxy, &proxy) {
                    let site = sites.of_upstream(&config, service);
                    // The firewall lets every device reach the proxy (the web UI is there)...
                    prop_assert_eq!(through_firewall, spec.is_some_and(|d| d.enabled), "proxy ports, {}", source);
                    // ...so the site's own rule must say exactly what the access list says.
                    prop_assert_eq!(site.serves(source), may, "{} for {}", service.name, source);
                    site.serves(source)
                } else {
                    reachable
                };
                if through_firewall && served {
                    admitted.insert((host, service.name));
                }
            }
        }
        prop_assert_eq!(admitted, expected);

        // Sources that are not devices of the VPN are not limited by the proxy: the cell
        // network and the LAN (published ports decide what reaches them).
        if let Some(sites) = &proxy {
            let web_ui = sites.web_ui(&config);
            prop_assert_eq!(web_ui.len(), 2, "the web UI by the cell's names and by any other name");
            for (host, _) in devices.iter().map(|d| (d.host, ())).chain([(250, ())]) {
                prop_assert!(web_ui.iter().all(|s| s.serves(Ipv4Addr::new(10, 8, 0, host))), "the web UI serves every device");
            }
            for site in sites.0.values().flatten() {
                for other in [Ipv4Addr::new(172, 20, 0, 1), Ipv4Addr::new(192, 168, 1, 20)] {
                    prop_assert!(site.serves(other));
                }
            }
        }
    }
}

/// Where a service listens: (address, protocol, port) on the cell network.
fn endpoints(config: &ValidConfig, service: &services::ServiceDef) -> Vec<(Ipv4Addr, &'static str, u16)> {
    service.listens.iter().map(|(p, port)| (config.service_address(service), p.name(), *port)).collect()
}

/// A new connection from a device, arriving on the VPN interface, forwarded to the cell network.
struct Packet {
    source: Ipv4Addr,
    daddr: Ipv4Addr,
    proto: &'static str,
    dport: u16,
    /// Docker rewrote its destination (it was sent to a published port of the host).
    dnat: bool,
}

const VPN_INTERFACE: &str = "wg0";
const BRIDGE: &str = "br-cell";

/// The rendered ruleset's sets and its forward chain.
struct Ruleset {
    sets: BTreeMap<String, Vec<String>>,
    forward: Vec<String>,
}

impl Ruleset {
    fn parse(text: &str) -> Ruleset {
        let mut sets = BTreeMap::new();
        let mut forward = Vec::new();
        let (mut set, mut in_forward) = (None::<String>, false);
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix("set ").and_then(|l| l.strip_suffix(" {")) {
                set = Some(name.to_owned());
            } else if let (Some(name), Some(elements)) = (&set, line.strip_prefix("elements = { ")) {
                let elements = elements.strip_suffix(" }").expect("elements on one line");
                sets.insert(name.clone(), elements.split(", ").map(str::to_owned).collect());
            } else if line == "chain forward {" {
                in_forward = true;
            } else if line == "}" {
                set = None;
                in_forward = false;
            } else if in_forward && !line.is_empty() && !line.starts_with('#') && !line.starts_with("type ") {
                forward.push(line.to_owned());
            }
        }
        assert!(!forward.is_empty(), "no forward chain in:\n{text}");
        Ruleset { sets, forward }
    }

    /// The forward chain's verdict on a new connection (its policy is drop).
    fn forward(&self, packet: &Packet) -> bool {
        for rule in &self.forward {
            if let Some(verdict) = self.rule(rule, packet) {
                return verdict;
            }
        }
        false
    }

    /// The rule's verdict if every match of it holds, else `None`.
    fn rule(&self, rule: &str, p: &Packet) -> Option<bool> {
        let mut tokens = Tokens::new(rule);
        let mut matched = true;
        loop {
            let Some(word) = tokens.next() else { panic!("a rule without a verdict: {rule}") };
            let holds = match word.as_str() {
                "accept" | "drop" => {
                    let rest = tokens.rest();
                    assert!(rest.is_empty() || rest.starts_with("comment "), "after the verdict: {rule}");
                    return matched.then_some(word == "accept");
                }
                "ct" => match (tokens.next().as_deref(), tokens.next().as_deref()) {
                    // Every packet here opens a new connection.
                    (Some("state"), Some("established,related" | "invalid")) => false,
                    (Some("status"), Some("dnat")) => p.dnat,
                    other => panic!("unknown ct match {other:?} in {rule}"),
                },
                "iifname" | "oifname" => {
                    let negated = tokens.negation();
                    let name = tokens.next().expect("an interface name");
                    let actual = if word == "iifname" { VPN_INTERFACE } else { BRIDGE };
                    (name.trim_matches('"') == actual) != negated
                }
                "ip" => {
                    let field = tokens.next().expect("saddr or daddr");
                    if field == "daddr" && tokens.peek() == Some(".") {
                        for expected in [".", "meta", "l4proto", ".", "th", "dport"] {
                            assert_eq!(tokens.next().as_deref(), Some(expected), "{rule}");
                        }
                        let negated = tokens.negation();
                        let value = tokens.value();
                        let element = format!("{} . {} . {}", p.daddr, p.proto, p.dport);
                        self.contains(&value, |e| e == element) != negated
                    } else {
                        let address = match field.as_str() {
                            "saddr" => p.source,
                            "daddr" => p.daddr,
                            other => panic!("unknown ip field {other} in {rule}"),
                        };
                        let negated = tokens.negation();
                        let value = tokens.value();
                        self.contains(&value, |e| prefix(e).contains(&address)) != negated
                    }
                }
                other => panic!("unknown match {other:?} in {rule}"),
            };
            matched &= holds;
        }
    }

    /// Whether a value (`@set`, `{ a, b }` or one element) holds an element for which `is` holds.
    fn contains(&self, value: &str, is: impl Fn(&str) -> bool) -> bool {
        if let Some(name) = value.strip_prefix('@') {
            self.sets.get(name).unwrap_or_else(|| panic!("no set {name}")).iter().any(|e| is(e))
        } else if let Some(list) = value.strip_prefix("{ ").and_then(|v| v.strip_suffix(" }")) {
            list.split(", ").any(is)
        } else {
            is(value)
        }
    }
}

fn prefix(text: &str) -> Ipv4Net {
    text.parse::<Ipv4Net>()
        .or_else(|_| text.parse::<Ipv4Addr>().map(Ipv4Net::from))
        .unwrap_or_else(|_| panic!("not an address or prefix: {text}"))
}

/// The words of a rule; `{ ... }` is one word.
struct Tokens<'a> {
    rest: &'a str,
}

impl<'a> Tokens<'a> {
    fn new(rule: &'a str) -> Tokens<'a> {
        Tokens { rest: rule.trim() }
    }

    fn peek(&self) -> Option<&'a str> {
        self.rest.split_whitespace().next()
    }

    fn next(&mut self) -> Option<String> {
        let word = self.peek()?;
        self.rest = self.rest[word.len()..].trim_start();
        Some(word.to_owned())
    }

    fn negation(&mut self) -> bool {
        let negated = self.peek() == Some("!=");
        if negated {
            self.next();
        }
        negated
    }

    fn value(&mut self) -> String {
        if self.rest.starts_with('{') {
            let end = self.rest.find('}').expect("a closing brace") + 1;
            let value = self.rest[..end].to_owned();
            self.rest = self.rest[end..].trim_start();
            value
        } else {
            self.next().expect("a value")
        }
    }

    fn rest(&self) -> &'a str {
        self.rest
    }
}

/// The Caddyfile's sites by the upstream they proxy to, with the rule each enforces.
struct Sites(BTreeMap<String, Vec<Site>>);

#[derive(Debug, Default)]
struct Site {
    denied_in: Vec<Ipv4Net>,
    except: Vec<Ipv4Net>,
    responds_403: bool,
}

impl Site {
    fn serves(&self, source: Ipv4Addr) -> bool {
        let denied =
            self.denied_in.iter().any(|n| n.contains(&source)) && !self.except.iter().any(|n| n.contains(&source));
        if denied {
            assert!(self.responds_403, "a site matches @denied but does not answer it");
        }
        !denied
    }
}

impl Sites {
    fn parse(text: &str) -> Sites {
        let mut sites = BTreeMap::new();
        let (mut site, mut upstream, mut depth, mut in_denied) = (Site::default(), None::<String>, 0, false);
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('#') || trimmed.is_empty() {
                continue;
            }
            if depth == 1 {
                if let Some(to) = trimmed.strip_prefix("reverse_proxy ") {
                    upstream = Some(to.to_owned());
                } else if trimmed == "@denied {" {
                    in_denied = true;
                } else if trimmed.starts_with("respond @denied ") {
                    site.responds_403 = true;
                } else if trimmed.starts_with('@') || trimmed.starts_with("respond") {
                    // Another matcher or a response before the proxy could change who is served
                    // (which files are compressed does not).
                    assert!(
                        trimmed.starts_with("@cell host ") || trimmed.starts_with("@compressible path "),
                        "a rule this test does not know: {trimmed}"
                    );
                }
            } else if depth == 2 && in_denied {
                let nets = |rest: &str| rest.split_whitespace().map(prefix).collect::<Vec<_>>();
                if let Some(rest) = trimmed.strip_prefix("not remote_ip ") {
                    site.except = nets(rest);
                } else if let Some(rest) = trimmed.strip_prefix("remote_ip ") {
                    site.denied_in = nets(rest);
                } else if trimmed != "}" {
                    panic!("a matcher this test does not know in @denied: {trimmed}");
                }
            }
            // Braces inside the 403 page's backquoted text are placeholders, not blocks.
            if !trimmed.contains('`') && !trimmed.starts_with('<') {
                depth += trimmed.matches('{').count() as i32 - trimmed.matches('}').count() as i32;
            }
            if depth == 1 && in_denied && trimmed == "}" {
                in_denied = false;
            }
            if depth == 0 && trimmed == "}" {
                if let Some(to) = upstream.take() {
                    sites.entry(to).or_insert_with(Vec::new).push(std::mem::take(&mut site));
                }
                site = Site::default();
            }
        }
        Sites(sites)
    }

    fn of_upstream(&self, config: &ValidConfig, service: &services::ServiceDef) -> &Site {
        let port = service.listens[0].1;
        let upstream = format!("{}:{port}", config.service_address(service));
        match self.0.get(&upstream).map(Vec::as_slice) {
            Some([site]) => site,
            other => panic!("not one site proxies to {upstream} ({}): {other:?}", service.name),
        }
    }

    /// The sites that serve the web UI (`pic serve` on the gateway).
    fn web_ui(&self, config: &ValidConfig) -> &[Site] {
        let upstream = format!("{}:{}", config.gateway(), pic_builder::render::WEBUI_PORT);
        self.0.get(&upstream).map(Vec::as_slice).unwrap_or_default()
    }
}
