//! The cell CA: leaves for the cell's names on every build, revocation that `openssl verify
//! -crl_check` honours, and the CA certificate for clients.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Cell, example_path};

/// `openssl verify -crl_check` of a leaf against the cell CA and its CRL.
fn openssl_verify(secrets: &Path, name: &str) -> (bool, String) {
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(secrets.join("ca/ca.crt"))
        .arg("-CRLfile")
        .arg(secrets.join("ca/crl.pem"))
        .arg("-crl_check")
        .arg(secrets.join(format!("tls/{name}/cert.pem")))
        .output()
        .expect("openssl is installed");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn revoked_leaves_fail_verification_and_are_replaced() {
    let cell = Cell::new();
    cell.ok(&["init", "--config", example_path().to_str().unwrap()]);
    cell.ok(&["switch"]);
    let secrets = cell.state().join("secrets");

    let certs = cell.json(&["cert", "list"]);
    let names: Vec<&str> = certs.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    for expected in ["pic.home.cell", "calendar.home.cell", "files.home.cell", "webmail.home.cell", "mail.home.cell"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    let (ok, output) = openssl_verify(&secrets, "calendar.home.cell");
    assert!(ok, "{output}");

    let serial = certs.as_array().unwrap().iter().find(|c| c["name"] == "calendar.home.cell").unwrap()["serial"]
        .as_str()
        .unwrap()
        .to_string();
    cell.ok(&["cert", "revoke", &serial]);
    let (ok, output) = openssl_verify(&secrets, "calendar.home.cell");
    assert!(!ok, "a revoked certificate still verifies: {output}");
    assert!(output.contains("revoked"), "{output}");

    // The next build sees the revocation and issues a replacement, which verifies again.
    cell.ok(&["switch"]);
    let (ok, output) = openssl_verify(&secrets, "calendar.home.cell");
    assert!(ok, "{output}");
    let calendar: Vec<serde_json::Value> = cell
        .json(&["cert", "list"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "calendar.home.cell")
        .cloned()
        .collect();
    assert_eq!(calendar.len(), 2);
    assert_eq!(calendar.iter().filter(|c| c.get("revoked").is_some()).count(), 1);

    assert_eq!(cell.pic(&["cert", "revoke", "0123456789abcdef"]).status.code(), Some(2));
}

#[test]
fn issue_and_export() {
    let cell = Cell::new();
    cell.ok(&["init"]);
    let issued = cell.json(&["cert", "issue", "nas.home.cell", "--also", "nas.lan.example.org"]);
    assert_eq!(issued["subject_alt_names"], serde_json::json!(["nas.home.cell", "nas.lan.example.org"]));
    let secrets = cell.state().join("secrets");
    assert!(openssl_verify(&secrets, "nas.home.cell").0);
    let key = secrets.join("tls/nas.home.cell/key.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(key).unwrap().permissions().mode() & 0o777, 0o600);

    let exported = cell.ok(&["ca", "export"]);
    assert!(exported.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(exported, std::fs::read_to_string(secrets.join("ca/ca.crt")).unwrap());
    assert!(!exported.contains("PRIVATE KEY"));

    assert_eq!(cell.pic(&["cert", "issue", "bad name;"]).status.code(), Some(2));
}
