//! DNS-01 against a real ACME CA: Debian's Pebble on loopback, its `pebble-challtestsrv` as the
//! DNS it asks, and fake Cloudflare and DuckDNS APIs (from their documentation) that put the
//! TXT records they are given into that DNS. The certificate is checked with `openssl verify`
//! against Pebble's root; renewal and the wait after a failure follow the test's own clock.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use pic_builder::State;
use pic_builder::config::DdnsProvider;
use serde_json::{Value, json};

use super::{Renewal, certificates, renew, status};
use crate::ddns::Http;
use crate::fake_http::{Fake, Reply};

/// Pebble and its DNS start within a second here; the limit leaves room for a busy machine.
const START_LIMIT: Duration = Duration::from_secs(30);
const START: &str = "2026-11-30T08:00:00Z";
const CLOUDFLARE_TOKEN: &str = "cf-token-0123456789abcdefghij";
const DUCK_TOKEN: &str = "a7c4d0ad-114e-40ef-ba1d-d217904a50f2";

/// Pebble with a TLS certificate of its own (the .deb ships none) and pebble-challtestsrv.
struct Pebble {
    dir: tempfile::TempDir,
    directory: String,
    management: String,
    /// challtestsrv's management API, where the fakes put TXT records.
    dns_management: String,
    /// The root that signed Pebble's own HTTPS certificate (the config's `acme_ca_root`).
    listener_root: String,
    children: Vec<Child>,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Pebble {
    fn start() -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::default();
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "PIC test: Pebble's listener CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        std::fs::write(dir.path().join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        let (acme, management, dns, dns_management) = (free_port(), free_port(), free_port(), free_port());
        let config = json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": free_port(),
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        std::fs::write(dir.path().join("pebble.json"), config.to_string()).unwrap();
        let quiet = |command: &mut Command| command.stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        let dns_server = quiet(
            Command::new("pebble-challtestsrv")
                .args(["-dns01", &format!("127.0.0.1:{dns}"), "-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-management", &format!("127.0.0.1:{dns_management}"), "-defaultIPv6", ""]),
        )
        .expect("pebble-challtestsrv (Debian's pebble package; make test installs it)");
        // No validation sleep, and no authorization reused from an earlier order: every order
        // proves its names. Pebble still rejects 5% of nonces, which the client must retry.
        let pebble = quiet(
            Command::new("pebble")
                .args(["-config", dir.path().join("pebble.json").to_str().unwrap()])
                .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_AUTHZREUSE", "0"),
        )
        .expect("pebble (Debian's pebble package)");
        let pebble = Pebble {
            directory: format!("https://127.0.0.1:{acme}/dir"),
            management: format!("127.0.0.1:{management}"),
            dns_management: format!("127.0.0.1:{dns_management}"),
            listener_root: ca.pem(),
            children: vec![dns_server, pebble],
            dir,
        };
        for port in [acme, management, dns_management] {
            let started = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(started.elapsed() < START_LIMIT, "nothing listens on 127.0.0.1:{port} after {START_LIMIT:?}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        pebble
    }

    /// The root of the certificates Pebble issues (new at every start).
    fn issuing_root(&self) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--cacert", self.dir.path().join("listener-root.pem").to_str().unwrap()])
            .arg(format!("https://{}/roots/0", self.management))
            .output()
            .unwrap();
        assert!(out.status.success(), "Pebble's root: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

/// A POST to challtestsrv's management API (plain HTTP on loopback).
fn challtestsrv(address: &str, path: &str, body: &Value) {
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "challtestsrv {path} {body}: {answer}");
}

/// Cloudflare's API v4 for TXT records: the zone, then POST and DELETE of records, each TXT
/// record put into (and taken out of) the DNS Pebble asks, unless `publish` is off.
fn cloudflare(dns_management: String, publish: Arc<AtomicBool>) -> Reply {
    let records: Arc<Mutex<(u32, BTreeMap<String, String>)>> = Arc::default();
    let envelope =
        |result: Value| (200, Vec::new(), json!({"success": true, "errors": [], "result": result}).to_string());
    Box::new(move |seen| {
        if seen.authorization.as_deref() != Some(&format!("Bearer {CLOUDFLARE_TOKEN}")) {
            let refused = json!({"success": false, "errors": [{"code": 9109, "message": "Invalid access token"}]});
            return (403, Vec::new(), refused.to_string());
        }
        match (seen.method.as_str(), seen.path.as_str()) {
            ("GET", "/zones") if seen.query.get("name").map(String::as_str) == Some("example.org") => {
                envelope(json!([{"id": "zone-1", "name": "example.org"}]))
            }
            ("GET", "/zones") => envelope(json!([])),
            ("POST", "/zones/zone-1/dns_records") => {
                let body: Value = serde_json::from_str(&seen.body).unwrap();
                let host = format!("{}.", body["name"].as_str().unwrap());
                if publish.load(Ordering::SeqCst) {
                    challtestsrv(&dns_management, "/set-txt", &json!({"host": host, "value": body["content"]}));
                }
                let mut records = records.lock().unwrap();
                records.0 += 1;
                let id = format!("txt-{}", records.0);
                records.1.insert(id.clone(), host);
                envelope(json!({"id": id}))
            }
            ("DELETE", path) if path.starts_with("/zones/zone-1/dns_records/") => {
                let id = path.rsplit('/').next().unwrap();
                let host = records.lock().unwrap().1.remove(id).expect("a record the fake made");
                challtestsrv(&dns_management, "/clear-txt", &json!({"host": host}));
                envelope(json!({"id": id}))
            }
            _ => (
                404,
                Vec::new(),
                json!({"success": false, "errors": [{"code": 7003, "message": "No route"}]}).to_string(),
            ),
        }
    })
}

/// DuckDNS's update URL with `txt=` (and `clear=true`): one TXT value for the name.
fn duckdns(dns_management: String) -> Reply {
    Box::new(move |seen| {
        let query = &seen.query;
        if seen.path != "/update" || query.get("token").map(String::as_str) != Some(DUCK_TOKEN) {
            return (200, Vec::new(), "KO".into());
        }
        let host = format!("_acme-challenge.{}.duckdns.org.", query["domains"]);
        if query.get("clear").map(String::as_str) == Some("true") {
            challtestsrv(&dns_management, "/clear-txt", &json!({"host": host}));
        } else {
            challtestsrv(&dns_management, "/set-txt", &json!({"host": host, "value": query["txt"]}));
        }
        (200, Vec::new(), "OK\n\n\nUPDATED".into())
    })
}

/// A cell in ddns mode at the fake provider, with Pebble as its ACME CA.
struct Cell {
    _dir: tempfile::TempDir,
    state: State,
    http: Http,
}

impl Cell {
    fn new(pebble: &Pebble, mut domain: Value, credential: &str) -> Cell {
        let dir = tempfile::tempdir().unwrap();
        let state = State::new(dir.path().join("state"));
        state.init(None).unwrap();
        domain["acme_email"] = json!("owner@example.org");
        domain["acme_ca"] = json!(pebble.directory);
        domain["acme_ca_root"] = json!(pebble.listener_root);
        let provider: DdnsProvider = serde_json::from_value(domain["provider"].clone()).unwrap();
        let config =
            json!({"version": 1, "cell": {"name": "home", "domain": domain}, "network": {"subnet": "172.20.0.0/24"}});
        let config = pic_builder::config::validate(serde_json::from_value(config).unwrap()).unwrap();
        state.writer().unwrap().build_and_switch(&config, "test").unwrap();
        state.secrets().set_ddns_credential(provider, credential).unwrap();
        Cell { _dir: dir, state, http: Http::new().unwrap() }
    }

    async fn renew(&self, now: Timestamp) -> Renewal {
        renew(&self.state, &self.http, now, false, Some(Duration::ZERO)).await.unwrap()
    }

    fn chain(&self, name: &str) -> Vec<u8> {
        std::fs::read(certificates::issued_dir(&self.state, name).join("cert.pem")).unwrap()
    }
}

/// `openssl verify` of the chain's leaf against Pebble's issuing root, with the chain's
/// intermediate.
fn verify(pebble: &Pebble, chain: &[u8]) {
    let dir = pebble.dir.path();
    std::fs::write(dir.join("listener-root.pem"), &pebble.listener_root).unwrap();
    std::fs::write(dir.join("issuing-root.pem"), pebble.issuing_root()).unwrap();
    std::fs::write(dir.join("chain.pem"), chain).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.join("issuing-root.pem"))
        .arg("-untrusted")
        .arg(dir.join("chain.pem"))
        .arg(dir.join("chain.pem"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wildcard_certificate_by_dns01_through_cloudflare_renewed_and_kept_when_an_order_fails() {
    let pebble = Pebble::start();
    let publish = Arc::new(AtomicBool::new(true));
    let provider = Fake::start(cloudflare(pebble.dns_management.clone(), publish.clone())).await;
    let domain =
        json!({"mode": "ddns", "provider": "cloudflare", "name": "cell.example.org", "server": provider.url()});
    let cell = Cell::new(&pebble, domain, CLOUDFLARE_TOKEN);
    let names = vec!["*.cell.example.org".to_owned(), "cell.example.org".to_owned()];
    let mut now: Timestamp = START.parse().unwrap();

    let Renewal::Issued { names: issued, not_after } = cell.renew(now).await else {
        panic!("no certificate: {:?}", status(&cell.state).unwrap())
    };
    assert_eq!(issued, names);
    let first = cell.chain("cell.example.org");
    verify(&pebble, &first);
    let key = certificates::issued_dir(&cell.state, "cell.example.org").join("key.pem");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    for name in ["cell.example.org", "mail.cell.example.org", "pic.cell.example.org"] {
        let found = certificates::covering(&cell.state, name, now).unwrap_or_else(|| panic!("nothing covers {name}"));
        assert!(found.certificate.issuer.contains("Pebble"), "{name}: {:?}", found.certificate);
    }
    assert!(certificates::covering(&cell.state, "a.b.cell.example.org", now).is_none());
    // The zone looked up from the nearest parent, then one TXT record per name, each removed
    // once the CA has checked it.
    let seen = provider.take();
    let calls: Vec<String> = seen.iter().map(|s| format!("{} {}", s.method, s.path)).collect();
    assert_eq!(
        calls,
        [
            "GET /zones",
            "GET /zones",
            "POST /zones/zone-1/dns_records",
            "DELETE /zones/zone-1/dns_records/txt-1",
            "POST /zones/zone-1/dns_records",
            "DELETE /zones/zone-1/dns_records/txt-2",
        ]
    );
    let body: Value = serde_json::from_str(&seen[2].body).unwrap();
    assert_eq!(
        (&body["type"], &body["name"], &body["ttl"]),
        (&json!("TXT"), &json!("_acme-challenge.cell.example.org"), &json!(60))
    );
    assert_eq!(body["content"].as_str().unwrap().len(), 43, "base64url of a SHA-256: {body}");

    // A day later nothing is due and nothing is asked.
    now += SignedDuration::from_hours(24);
    assert!(matches!(cell.renew(now).await, Renewal::Current { .. }));
    assert!(provider.take().is_empty());

    // 29 days before it expires, the order fails at the CA (the TXT record never reaches the
    // DNS): the certificate stays, the reason is kept, and the next try waits an hour.
    publish.store(false, Ordering::SeqCst);
    now = not_after - SignedDuration::from_hours(29 * 24);
    let Renewal::Failed { reason } = cell.renew(now).await else { panic!("the order should fail") };
    assert!(reason.contains("could not verify"), "{reason}");
    assert_eq!(cell.chain("cell.example.org"), first, "a failed order keeps the certificate");
    assert_eq!(status(&cell.state).unwrap().last_error.unwrap().message, reason);
    now += SignedDuration::from_mins(10);
    let Renewal::Held { reason: held } = cell.renew(now).await else { panic!("the next try should wait") };
    assert!(held.contains("waiting until") && held.contains("could not verify"), "{held}");

    // An hour on it is tried again, and works.
    publish.store(true, Ordering::SeqCst);
    now += SignedDuration::from_mins(55);
    let Renewal::Issued { not_after: renewed, .. } = cell.renew(now).await else {
        panic!("no renewal: {:?}", status(&cell.state).unwrap())
    };
    assert!(renewed >= not_after);
    assert_ne!(cell.chain("cell.example.org"), first);
    verify(&pebble, &cell.chain("cell.example.org"));
    assert!(status(&cell.state).unwrap().last_error.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wildcard_certificate_by_dns01_through_duckdns_one_txt_value_at_a_time() {
    let pebble = Pebble::start();
    let provider = Fake::start(duckdns(pebble.dns_management.clone())).await;
    let domain = json!({"mode": "ddns", "provider": "duckdns", "name": "lab.duckdns.org", "server": provider.url()});
    let cell = Cell::new(&pebble, domain, DUCK_TOKEN);
    let Renewal::Issued { names, .. } = cell.renew(START.parse().unwrap()).await else {
        panic!("no certificate: {:?}", status(&cell.state).unwrap())
    };
    assert_eq!(names, ["*.lab.duckdns.org", "lab.duckdns.org"]);
    verify(&pebble, &cell.chain("lab.duckdns.org"));
    let seen = provider.take();
    let queries: Vec<String> = seen
        .iter()
        .map(|s| {
            let q = &s.query;
            format!(
                "{} {} {} txt={} clear={}",
                s.path,
                q["domains"],
                q["token"] == DUCK_TOKEN,
                q["txt"].len(),
                q.get("clear").map_or("-", String::as_str)
            )
        })
        .collect();
    assert_eq!(
        queries,
        [
            "/update lab true txt=43 clear=-",
            "/update lab true txt=0 clear=true",
            "/update lab true txt=43 clear=-",
            "/update lab true txt=0 clear=true",
        ]
    );
}
