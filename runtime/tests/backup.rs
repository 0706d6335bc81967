//! `pic backup`, `pic restore`, `pic backups` end to end: wipe the state directory and restore
//! it; a damaged archive is refused with exit code 2, the member named, nothing changed.

mod common;

use std::fs;

use common::{Cell, example_path};

fn started() -> Cell {
    let cell = Cell::new();
    cell.ok(&["init", "--config", example_path().to_str().unwrap()]);
    cell.ok(&["switch"]);
    cell.set_password("alice", "alice-password-1");
    cell.ok(&["peer", "add", "phone"]);
    cell
}

fn passphrase_file(cell: &Cell) -> String {
    let path = cell.dir.path().join("passphrase");
    fs::write(&path, "correct horse battery staple\n").unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn wipe_and_restore_brings_back_the_same_generations_config_and_secrets() {
    let cell = started();
    let pass = passphrase_file(&cell);
    let info = cell.json(&["backup", "--passphrase-file", &pass, "--include-data"]);
    let archive = info["path"].as_str().unwrap().to_owned();
    assert!(archive.starts_with(cell.state().join("backups").to_str().unwrap()), "{archive}");
    let listed = cell.json(&["backups"]);
    assert_eq!(listed[0]["id"], info["id"]);
    assert_eq!(listed[0]["header"]["generations"], serde_json::json!([1, 2]));

    // Kept outside, the state directory wiped.
    let outside = cell.dir.path().join("cell.tar.zst");
    fs::copy(&archive, &outside).unwrap();
    let read = |sub: &str| fs::read(cell.state().join(sub)).unwrap();
    let (g1, g2, desired, key) = (
        read("generations/1/manifest.json"),
        read("generations/2/config.json"),
        read("cell_config.json"),
        read("secrets/ca/ca.key"),
    );
    fs::remove_dir_all(cell.state()).unwrap();

    let dry = cell.json(&["restore", outside.to_str().unwrap(), "--passphrase-file", &pass, "--dry-run"]);
    assert_eq!(dry["new_generation"], 3);
    assert!(!cell.state().exists(), "a dry run wrote the state directory");
    let restored = cell.json(&["restore", outside.to_str().unwrap(), "--passphrase-file", &pass, "--include-data"]);
    assert_eq!(restored["restored_generations"], serde_json::json!([1, 2]));
    assert_eq!(cell.current(), Some(3));
    assert_eq!(read("generations/1/manifest.json"), g1);
    assert_eq!(read("generations/2/config.json"), g2);
    assert_eq!(read("cell_config.json"), desired);
    assert_eq!(read("secrets/ca/ca.key"), key);
    cell.ok(&["verify"]);
    // The password came back with the secrets.
    let users = cell.json(&["user", "list"]);
    assert!(users.as_array().unwrap().iter().any(|u| u["name"] == "alice" && u["has_password"] == true), "{users}");
}

#[test]
fn a_flipped_byte_is_refused_naming_the_member_with_exit_code_2() {
    let cell = started();
    let pass = passphrase_file(&cell);
    let out = cell.dir.path().join("c.tar.zst");
    cell.ok(&["backup", "--passphrase-file", &pass, "--output", out.to_str().unwrap()]);
    let mut bytes = fs::read(&out).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    fs::write(&out, &bytes).unwrap();
    let before = cell.ok(&["generations"]);
    let refused = cell.pic(&["restore", out.to_str().unwrap(), "--passphrase-file", &pass]);
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("member \"") && stderr.contains("nothing was changed"), "{stderr}");
    assert_eq!(cell.ok(&["generations"]), before);
}

#[test]
fn without_a_passphrase_the_secrets_stay_out() {
    let cell = started();
    let out = cell.dir.path().join("plain.tar.zst");
    let made = cell.pic(&["backup", "--output", out.to_str().unwrap()]);
    assert!(made.status.success());
    assert!(String::from_utf8_lossy(&made.stderr).contains("secrets are left out"));
    let key = fs::read(cell.state().join("secrets/wireguard/server.key")).unwrap();
    let plain = zstd_decode(&fs::read(&out).unwrap());
    let key_text = String::from_utf8(key).unwrap();
    assert!(!String::from_utf8_lossy(&plain).contains(key_text.trim()), "the private key is in the archive");
    let header = cell.json(&["backups"]);
    assert!(header.as_array().unwrap().is_empty(), "--output is not in backups/");

    let short = cell.dir.path().join("short");
    fs::write(&short, "short\n").unwrap();
    let refused = cell.pic(&["backup", "--passphrase-file", short.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("at least 8"));
}

fn zstd_decode(bytes: &[u8]) -> Vec<u8> {
    let mut child = std::process::Command::new("zstd")
        .args(["-d", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("zstd is installed");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    child.wait_with_output().unwrap().stdout
}
