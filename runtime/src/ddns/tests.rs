//! The DDNS client against fake providers, each written from the provider's documented API and
//! run on loopback: the exact requests (paths, queries, auth headers, User-Agent, bodies), one
//! update per address change and none over ten unchanged cycles (the clock is the test's), the
//! keep-alive, and what each error answer does to the next cycles.

use std::collections::BTreeMap;

use base64::Engine;
use jiff::Timestamp;
use pic_builder::State;
use pic_builder::config::DdnsProvider;
use serde_json::{Value, json};

use super::{Cycle, Http, cycle};
use crate::fake_http::{Fake, Reply, text};

/// A cell whose desired config uses `provider` at the fake, and a "what is my address" fake.
struct Cell {
    _dir: tempfile::TempDir,
    state: State,
    http: Http,
    provider: Fake,
    my_address: Fake,
    /// The IPv6 "what is my address" service, on ::1 (the client asks it over IPv6).
    my_address_v6: Fake,
    now: Timestamp,
}

const START: &str = "2026-11-30T08:00:00Z";

impl Cell {
    async fn new(domain: Value, credential: Option<&str>, provider: Reply) -> Cell {
        let provider = Fake::start(provider).await;
        let my_address = Fake::start(text(200, "203.0.113.7\n")).await;
        let my_address_v6 = Fake::start_on("[::1]:0", text(200, "2a01:4f8:1:2::7\n")).await;
        let dir = tempfile::tempdir().unwrap();
        let state = State::new(dir.path().join("state"));
        state.init(None).unwrap();
        let mut domain = domain;
        if domain["provider"] != "dyndns2" || domain.get("server").is_none() {
            domain["server"] = json!(provider.url());
        }
        domain["address"] = json!({"from": "web", "urls": [format!("{}/ip", my_address.url())],
            "urls_v6": [format!("{}/ip6", my_address_v6.url_v6())]});
        domain["acme_email"] = json!("owner@example.org");
        let config =
            json!({"version": 2, "cell": {"name": "home", "domain": domain}, "network": {"subnet": "172.20.0.0/24"}});
        let config = pic_builder::config::validate(serde_json::from_value(config).unwrap()).unwrap();
        state.writer().unwrap().build_and_switch(&config, "test").unwrap();
        if let Some(credential) = credential {
            state.secrets().set_ddns_credential(provider_of(&domain), credential).unwrap();
        }
        Cell {
            _dir: dir,
            state,
            http: Http::new().unwrap(),
            provider,
            my_address,
            my_address_v6,
            now: START.parse().unwrap(),
        }
    }

    /// One cycle, `minutes` after the previous one.
    async fn cycle_after(&mut self, minutes: i64) -> Cycle {
        self.now += jiff::SignedDuration::from_mins(minutes);
        cycle(&self.state, &self.http, self.now, false).await.unwrap()
    }

    fn public_address(&self, address: &str) {
        self.my_address.answer(text(200, address));
    }
}

fn provider_of(domain: &Value) -> DdnsProvider {
    serde_json::from_value(domain["provider"].clone()).unwrap()
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn published(address: &str) -> Cycle {
    Cycle::Published { addresses: super::Addresses { ipv4: Some(address.parse().unwrap()), ipv6: None } }
}

const DUCK_TOKEN: &str = "a7c4d0ad-114e-40ef-ba1d-d217904a50f2";

#[tokio::test]
async fn duckdns_gets_one_update_per_change_and_none_while_nothing_changes() {
    let domain = json!({"mode": "ddns", "provider": "duckdns", "name": "mycell.duckdns.org"});
    let mut cell = Cell::new(domain, Some(DUCK_TOKEN), text(200, "OK\n203.0.113.7\n\nUPDATED")).await;
    assert_eq!(cell.cycle_after(0).await, published("203.0.113.7"));
    let seen = cell.provider.take();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    let request = &seen[0];
    assert_eq!((request.method.as_str(), request.path.as_str()), ("GET", "/update"));
    let query: BTreeMap<&str, &str> = request.query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        query,
        BTreeMap::from([("domains", "mycell"), ("token", DUCK_TOKEN), ("ip", "203.0.113.7"), ("verbose", "true")])
    );
    assert!(
        request.user_agent.starts_with("PIC pic/") && request.user_agent.ends_with(" owner@example.org"),
        "{}",
        request.user_agent
    );

    for _ in 0..10 {
        assert_eq!(cell.cycle_after(5).await, Cycle::Current);
    }
    assert!(cell.provider.take().is_empty(), "ten cycles without a change sent requests");
    assert_eq!(cell.my_address.take().len(), 11, "every cycle looks at the address");

    cell.public_address("198.51.100.20");
    cell.provider.answer(text(200, "OK\n198.51.100.20\n\nUPDATED"));
    assert_eq!(cell.cycle_after(5).await, published("198.51.100.20"));
    assert_eq!(cell.cycle_after(5).await, Cycle::Current);
    let seen = cell.provider.take();
    assert_eq!(seen.len(), 1, "one change, one update: {seen:#?}");
    assert_eq!(seen[0].query["ip"], "198.51.100.20");
    let status = super::status(&cell.state).unwrap();
    assert_eq!(status.published.ipv4, Some("198.51.100.20".parse().unwrap()));
    assert_eq!(status.updates, 2);
    let file = std::fs::read_to_string(cell.state.root().join("ddns.json")).unwrap();
    assert!(!file.contains(DUCK_TOKEN), "the status file holds the token: {file}");

    // KO: the token or name is wrong; nothing more is sent until the credential changes.
    cell.public_address("198.51.100.21");
    cell.provider.answer(text(200, "KO"));
    assert!(matches!(cell.cycle_after(5).await, Cycle::Failed { .. }));
    for _ in 0..5 {
        assert!(matches!(cell.cycle_after(5).await, Cycle::Held { reason } if reason.contains("KO")));
    }
    assert_eq!(cell.provider.take().len(), 1, "requests after KO");
    cell.state.secrets().set_ddns_credential(DdnsProvider::Duckdns, "b7c4d0ad-114e-40ef-ba1d-d217904a50f2").unwrap();
    cell.provider.answer(text(200, "OK\n198.51.100.21\n\nUPDATED"));
    assert_eq!(cell.cycle_after(5).await, published("198.51.100.21"));
}

#[tokio::test]
async fn noip_speaks_dyndns2_with_its_user_agent_and_honours_911_and_badauth() {
    let domain = json!({"mode": "ddns", "provider": "noip", "name": "mycell.ddns.net", "username": "key-name"});
    let mut cell = Cell::new(domain, Some("key-password"), text(200, "good 203.0.113.7")).await;
    assert_eq!(cell.cycle_after(0).await, published("203.0.113.7"));
    let seen = cell.provider.take();
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("GET", "/nic/update"));
    assert_eq!(
        seen[0].query,
        BTreeMap::from([("hostname".into(), "mycell.ddns.net".into()), ("myip".into(), "203.0.113.7".into())])
    );
    assert_eq!(seen[0].authorization.as_deref(), Some(basic("key-name", "key-password").as_str()));
    assert!(
        seen[0].user_agent.contains("pic/") && seen[0].user_agent.contains('@'),
        "No-IP wants a contact: {}",
        seen[0].user_agent
    );

    // 911: nothing for 30 minutes, then one try.
    cell.public_address("198.51.100.20");
    cell.provider.answer(text(200, "911"));
    assert!(matches!(cell.cycle_after(5).await, Cycle::Failed { .. }));
    for _ in 0..5 {
        assert!(matches!(cell.cycle_after(5).await, Cycle::Held { .. }));
    }
    assert_eq!(cell.provider.take().len(), 1, "requests during the back-off");
    cell.provider.answer(text(200, "nochg 198.51.100.20"));
    assert_eq!(cell.cycle_after(5).await, published("198.51.100.20"));
    assert_eq!(cell.provider.take().len(), 1);

    // badauth: stopped until the user acts.
    cell.public_address("198.51.100.21");
    cell.provider.answer(text(200, "badauth"));
    assert!(matches!(cell.cycle_after(5).await, Cycle::Failed { reason } if reason.starts_with("badauth")));
    assert!(matches!(cell.cycle_after(60 * 24).await, Cycle::Held { .. }));
    assert_eq!(cell.provider.take().len(), 1);
    let status = super::status(&cell.state).unwrap();
    assert!(status.stopped.as_deref().is_some_and(|s| s.starts_with("badauth")), "{status:?}");
    assert!(status.last_error.is_some());
}

#[tokio::test]
async fn dyndns2_sends_both_families_and_a_keep_alive_after_25_days() {
    let domain =
        json!({"mode": "ddns", "provider": "dyndns2", "name": "cell.example.org", "username": "me", "ipv6": true});
    let mut cell = Cell::new(domain, Some("s3cret!"), text(200, "good")).await;
    assert!(matches!(cell.cycle_after(0).await, Cycle::Published { .. }));
    let seen = cell.provider.take();
    assert_eq!(seen[0].query["myip"], "203.0.113.7,2a01:4f8:1:2::7");
    assert_eq!(seen[0].authorization.as_deref(), Some(basic("me", "s3cret!").as_str()));
    assert_eq!(cell.my_address_v6.take().len(), 1);
    assert!(matches!(cell.cycle_after(24 * 60 * 24).await, Cycle::Current));
    assert!(cell.provider.take().is_empty());
    assert!(matches!(cell.cycle_after(24 * 60 + 1).await, Cycle::Published { .. }), "no keep-alive after 25 days");
    assert_eq!(cell.provider.take().len(), 1);
}

#[tokio::test]
async fn pic_ngo_is_dyndns2_with_the_name_as_account() {
    let domain = json!({"mode": "ddns", "provider": "pic_ngo", "name": "mycell.pic.ngo"});
    let mut cell = Cell::new(domain, Some("pic-token-123"), text(200, "good 203.0.113.7")).await;
    assert_eq!(cell.cycle_after(0).await, published("203.0.113.7"));
    let seen = cell.provider.take();
    assert_eq!(seen[0].path, "/nic/update");
    assert_eq!(seen[0].authorization.as_deref(), Some(basic("mycell.pic.ngo", "pic-token-123").as_str()));
}

#[tokio::test]
async fn freedns_uses_the_records_token_url_and_stops_on_an_unknown_token() {
    let domain = json!({"mode": "ddns", "provider": "freedns", "name": "mycell.mooo.com"});
    let token = "abcDEF123456ghiJKL789012";
    let mut cell =
        Cell::new(domain, Some(token), text(200, "Updated 1 host(s) mycell.mooo.com to 203.0.113.7 in 0.2 seconds"))
            .await;
    assert_eq!(cell.cycle_after(0).await, published("203.0.113.7"));
    let seen = cell.provider.take();
    assert_eq!(seen[0].path, format!("/u/{token}/"));
    assert_eq!(seen[0].query, BTreeMap::from([("ip".into(), "203.0.113.7".into())]));
    cell.public_address("198.51.100.20");
    cell.provider.answer(text(200, "ERROR: Unable to locate this record (changed password or deleted?)"));
    assert!(matches!(cell.cycle_after(5).await, Cycle::Failed { .. }));
    assert!(matches!(cell.cycle_after(5).await, Cycle::Held { .. }));
    assert_eq!(cell.provider.take().len(), 1);
    // The error text carries no token.
    let status = super::status(&cell.state).unwrap();
    assert!(!serde_json::to_string(&status).unwrap().contains(token));
}

/// Cloudflare's API v4 as its documentation describes it: zones, records, the envelope.
fn cloudflare_api() -> Reply {
    let envelope = |result: Value| json!({"success": true, "errors": [], "messages": [], "result": result}).to_string();
    Box::new(move |seen| {
        let ok = |result: Value| (200, Vec::new(), envelope(result));
        if seen.authorization.as_deref() != Some("Bearer cf-token-0123456789abcdefghij") {
            return (
                403,
                Vec::new(),
                json!({"success": false, "errors": [{"code": 9109, "message": "Invalid access token"}]}).to_string(),
            );
        }
        match (seen.method.as_str(), seen.path.as_str()) {
            ("GET", "/zones") if seen.query.get("name").map(String::as_str) == Some("example.org") => {
                ok(json!([{"id": "zone-1", "name": "example.org"}]))
            }
            ("GET", "/zones") => ok(json!([])),
            ("GET", "/zones/zone-1/dns_records") => ok(json!([])),
            ("POST", "/zones/zone-1/dns_records") => ok(json!({"id": "record-1"})),
            ("PUT", "/zones/zone-1/dns_records/record-1") => ok(json!({"id": "record-1"})),
            _ => (
                404,
                Vec::new(),
                json!({"success": false, "errors": [{"code": 7003, "message": "No route"}]}).to_string(),
            ),
        }
    })
}

#[tokio::test]
async fn cloudflare_finds_the_zone_makes_the_record_then_puts_it_in_one_request() {
    let domain = json!({"mode": "ddns", "provider": "cloudflare", "name": "cell.example.org"});
    let mut cell = Cell::new(domain, Some("cf-token-0123456789abcdefghij"), cloudflare_api()).await;
    assert_eq!(cell.cycle_after(0).await, published("203.0.113.7"));
    let seen = cell.provider.take();
    let calls: Vec<String> = seen.iter().map(|s| format!("{} {} {:?}", s.method, s.path, s.query)).collect();
    assert_eq!(
        calls,
        [
            r#"GET /zones {"name": "cell.example.org"}"#,
            r#"GET /zones {"name": "example.org"}"#,
            r#"GET /zones/zone-1/dns_records {"name": "cell.example.org", "type": "A"}"#,
            "POST /zones/zone-1/dns_records {}",
        ]
    );
    let body: Value = serde_json::from_str(&seen[3].body).unwrap();
    assert_eq!(
        body,
        json!({"type": "A", "name": "cell.example.org", "content": "203.0.113.7", "ttl": 1, "proxied": false})
    );

    cell.public_address("198.51.100.20");
    assert_eq!(cell.cycle_after(5).await, published("198.51.100.20"));
    let seen = cell.provider.take();
    assert_eq!(seen.len(), 1, "a change after the lookups is one request: {seen:#?}");
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("PUT", "/zones/zone-1/dns_records/record-1"));

    // 429 with Retry-After: left alone that long.
    cell.public_address("198.51.100.21");
    cell.provider.answer(Box::new(|_| (429, vec![("retry-after", "600".into())], "{}".into())));
    assert!(matches!(cell.cycle_after(5).await, Cycle::Failed { .. }));
    assert!(matches!(cell.cycle_after(5).await, Cycle::Held { .. }));
    assert_eq!(cell.provider.take().len(), 1);
    cell.provider.answer(cloudflare_api());
    assert_eq!(cell.cycle_after(6).await, published("198.51.100.21"));
}

#[tokio::test]
async fn a_refused_token_stops_and_nothing_is_sent_without_a_credential_or_a_public_address() {
    let domain = json!({"mode": "ddns", "provider": "cloudflare", "name": "cell.example.org"});
    let mut cell = Cell::new(domain, None, cloudflare_api()).await;
    assert!(matches!(cell.cycle_after(0).await, Cycle::Held { reason } if reason.contains("pic ddns credential")));
    cell.state.secrets().set_ddns_credential(DdnsProvider::Cloudflare, "cf-token-wrong-0123456789").unwrap();
    assert!(matches!(cell.cycle_after(5).await, Cycle::Failed { reason } if reason.contains("Invalid access token")));
    assert!(matches!(cell.cycle_after(5).await, Cycle::Held { .. }));
    assert_eq!(cell.provider.take().len(), 1);
    cell.state.secrets().set_ddns_credential(DdnsProvider::Cloudflare, "cf-token-0123456789abcdefghij").unwrap();
    cell.public_address("192.168.1.20");
    assert!(matches!(cell.cycle_after(5).await, Cycle::Held { reason } if reason.contains("not a public address")));
    assert!(cell.provider.take().is_empty(), "a private address was published");
}

#[test]
fn a_malformed_credential_is_refused_naming_the_field() {
    for (provider, bad) in [
        (DdnsProvider::Duckdns, "not-a-token"),
        (DdnsProvider::Cloudflare, "short"),
        (DdnsProvider::Freedns, "has spaces in it"),
        (DdnsProvider::Noip, "line\nbreak"),
    ] {
        let error = provider.check_credential(bad).unwrap_err();
        assert_eq!(error.0[0].path, "credential", "{provider:?}");
    }
}
