//! DNS-01 against a real ACME CA: Debian's Pebble on loopback, its `pebble-challtestsrv` as the
//! DNS it asks, and fake Cloudflare and DuckDNS APIs (from their documentation) that put the
//! TXT records they are given into that DNS. The certificate is checked with `openssl verify`
//! against Pebble's root; renewal and the wait after a failure follow the test's own clock.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use pic_builder::State;
use pic_builder::config::DdnsProvider;
use serde_json::{Value, json};

use super::{Renewal, certificates, renew, status};
use crate::ddns::Http;
use crate::fake_http::{Fake, Reply};

#[path = "../../tests/common/pebble.rs"]
mod pebble;
use pebble::{CLOUDFLARE_TOKEN, DUCK_TOKEN, Pebble, cloudflare, duckdns};

const START: &str = "2026-11-30T08:00:00Z";

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
            json!({"version": 2, "cell": {"name": "home", "domain": domain}, "network": {"subnet": "172.20.0.0/24"}});
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
    let pebble = Pebble::start("127.0.0.1", None, "127.0.0.1");
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
    // Pebble may refuse the record as the challenge is taken or when it checks it later,
    // depending on how fast it runs: either says which name failed.
    let refused = |text: &str| {
        (text.contains("could not verify") || text.contains("did not take the challenge"))
            && text.contains("cell.example.org")
    };
    assert!(refused(&reason), "{reason}");
    assert_eq!(cell.chain("cell.example.org"), first, "a failed order keeps the certificate");
    assert_eq!(status(&cell.state).unwrap().last_error.unwrap().message, reason);
    now += SignedDuration::from_mins(10);
    let Renewal::Held { reason: held } = cell.renew(now).await else { panic!("the next try should wait") };
    assert!(held.contains("waiting until") && refused(&held), "{held}");

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
    let pebble = Pebble::start("127.0.0.1", None, "127.0.0.1");
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
