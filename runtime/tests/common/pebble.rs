//! Debian's Pebble (an ACME CA for tests) and its `pebble-challtestsrv` (the DNS Pebble asks),
//! for the tests of certificates (the unit tests of DNS-01, which include this file by path,
//! and the cell in Docker), with fake Cloudflare and DuckDNS APIs (from their documentation)
//! that put the TXT records they are given into that DNS. Pebble gets a TLS certificate of its
//! own (the .deb ships none) from a root the client is handed as `acme_ca_root`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const CLOUDFLARE_TOKEN: &str = "cf-token-0123456789abcdefghij";
pub const DUCK_TOKEN: &str = "a7c4d0ad-114e-40ef-ba1d-d217904a50f2";

/// Pebble and its DNS start within a second here; the limit leaves room for a busy machine.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Pebble with a TLS certificate of its own (the .deb ships none) and pebble-challtestsrv.
pub struct Pebble {
    pub dir: tempfile::TempDir,
    pub directory: String,
    pub management: String,
    /// challtestsrv's management API, where the fakes put TXT records.
    pub dns_management: String,
    /// The root that signed Pebble's own HTTPS certificate (the config's `acme_ca_root`).
    pub listener_root: String,
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
    /// Pebble listening on `listen` (its certificate is for that address), checking HTTP-01 on
    /// `http_port` (a free port when none), with a DNS that answers every A query with
    /// `address`.
    pub fn start(listen: &str, http_port: Option<u16>, address: &str) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::default();
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "PIC test: Pebble's listener CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), listen.to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        std::fs::write(dir.path().join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        let (acme, management, dns, dns_management) = (free_port(), free_port(), free_port(), free_port());
        let config = json!({"pebble": {
            "listenAddress": format!("{listen}:{acme}"),
            "managementListenAddress": format!("{listen}:{management}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port.unwrap_or_else(free_port),
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        std::fs::write(dir.path().join("pebble.json"), config.to_string()).unwrap();
        let quiet = |command: &mut Command| command.stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        let dns_server = quiet(
            Command::new("pebble-challtestsrv")
                .args(["-dns01", &format!("127.0.0.1:{dns}"), "-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args([
                    "-management",
                    &format!("127.0.0.1:{dns_management}"),
                    "-defaultIPv4",
                    address,
                    "-defaultIPv6",
                    "",
                ]),
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
            directory: format!("https://{listen}:{acme}/dir"),
            management: format!("{listen}:{management}"),
            dns_management: format!("127.0.0.1:{dns_management}"),
            listener_root: ca.pem(),
            children: vec![dns_server, pebble],
            dir,
        };
        std::fs::write(pebble.dir.path().join("listener-root.pem"), &pebble.listener_root).unwrap();
        for (host, port) in [(listen, acme), (listen, management), ("127.0.0.1", dns_management)] {
            let started = Instant::now();
            while std::net::TcpStream::connect((host, port)).is_err() {
                assert!(started.elapsed() < START_LIMIT, "nothing listens on {host}:{port} after {START_LIMIT:?}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        pebble
    }

    /// The root of the certificates Pebble issues (new at every start).
    pub fn issuing_root(&self) -> String {
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
pub fn challtestsrv(address: &str, path: &str, body: &Value) {
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
pub fn cloudflare(dns_management: String, publish: Arc<AtomicBool>) -> super::Reply {
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
pub fn duckdns(dns_management: String) -> super::Reply {
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
