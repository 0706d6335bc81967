//! The service store's index against Debian's `minisign`: an index signed by a trusted key opens;
//! a flipped byte, a manifest signed by another key, a signature of other content, an unsigned
//! file, a manifest changed after the index was made, and manifests asking for more than an app
//! may have are each refused with the reason, naming the field.

use std::path::Path;
use std::process::Command;

use pic_builder::apps::{self, StoreError};

#[path = "support/minisign.rs"]
mod minisign;
use minisign::Key;

const MANIFEST: &str = r#"name = "dokuwiki"
version = "2024.02.06b-1"
description = "A wiki that keeps its pages in files"
data = ["pages", "media"]

[image]
packages = ["dokuwiki", "apache2"]

[container]
command = ["apache2ctl", "-D", "FOREGROUND"]
user = "www-data"
capabilities = ["NET_BIND_SERVICE"]
port = 80

[site]
host = "wiki"

[access]
peers = true
lan = true

[health]
kind = "http"
port = 80
path = "/"

[settings.title]
type = "string"
description = "The title of the wiki"
default = "Our wiki"
"#;

fn key(dir: &Path, name: &str) -> Key {
    Key::new(dir, name)
}

fn sign(key: &Key, file: &Path) {
    key.sign(&[file.to_owned()]);
}

/// Writes an index with one app whose manifest is `manifest`, everything signed by `key`.
fn index(dir: &Path, key: &Key, manifest: &str) {
    std::fs::create_dir_all(dir.join("dokuwiki")).unwrap();
    let manifest_path = dir.join("dokuwiki/manifest.toml");
    std::fs::write(&manifest_path, manifest).unwrap();
    use sha2::Digest;
    let sha256 = hex::encode(sha2::Sha256::digest(manifest.as_bytes()));
    let index = serde_json::json!({"version": 1, "apps": [{"name": "dokuwiki", "version": "2024.02.06b-1",
        "manifest": "dokuwiki/manifest.toml", "sha256": sha256}]});
    std::fs::write(dir.join("index.json"), serde_json::to_string_pretty(&index).unwrap()).unwrap();
    sign(key, &dir.join("index.json"));
    sign(key, &manifest_path);
}

fn open(dir: &Path, key: &Key) -> Result<apps::Index, StoreError> {
    apps::open(dir, &apps::parse_keys(std::slice::from_ref(&key.public)).unwrap())
}

#[test]
fn a_signed_index_opens_and_every_tampering_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (publisher, stranger) = (key(tmp.path(), "publisher"), key(tmp.path(), "stranger"));
    let dir = tmp.path().join("index");
    index(&dir, &publisher, MANIFEST);
    let opened = open(&dir, &publisher).unwrap();
    let app = opened.app("dokuwiki").unwrap();
    assert_eq!((app.manifest.site.host.as_str(), app.manifest.container.port), ("wiki", 80));
    assert_eq!(app.manifest.data, ["pages", "media"]);

    // Nothing is trusted without a key in the config.
    assert!(matches!(apps::open(&dir, &[]), Err(StoreError::NoTrustedKey)));
    // The same index, and only the stranger trusted.
    assert!(matches!(open(&dir, &stranger), Err(StoreError::Untrusted { .. })), "{:?}", open(&dir, &stranger));

    // One flipped byte in the index.
    let mut bytes = std::fs::read(dir.join("index.json")).unwrap();
    bytes[20] ^= 0x01;
    std::fs::write(dir.join("index.json"), &bytes).unwrap();
    let error = open(&dir, &publisher).unwrap_err();
    assert!(matches!(error, StoreError::BadSignature { .. }), "{error}");
    assert!(error.to_string().contains("changed after it was signed"), "{error}");

    // A manifest signed by a key the cell does not trust.
    index(&dir, &publisher, MANIFEST);
    sign(&stranger, &dir.join("dokuwiki/manifest.toml"));
    assert!(matches!(open(&dir, &publisher), Err(StoreError::Untrusted { .. })));

    // A manifest's signature over other content (the signature of the index).
    index(&dir, &publisher, MANIFEST);
    std::fs::copy(dir.join("index.json.minisig"), dir.join("dokuwiki/manifest.toml.minisig")).unwrap();
    assert!(matches!(open(&dir, &publisher), Err(StoreError::BadSignature { .. })));

    // An unsigned manifest.
    index(&dir, &publisher, MANIFEST);
    std::fs::remove_file(dir.join("dokuwiki/manifest.toml.minisig")).unwrap();
    assert!(matches!(open(&dir, &publisher), Err(StoreError::Unsigned { .. })));

    // A manifest changed and signed again, but not the index: its digest no longer matches.
    index(&dir, &publisher, MANIFEST);
    let changed = MANIFEST.replace("Our wiki", "Their wiki");
    std::fs::write(dir.join("dokuwiki/manifest.toml"), &changed).unwrap();
    sign(&publisher, &dir.join("dokuwiki/manifest.toml"));
    assert!(matches!(open(&dir, &publisher), Err(StoreError::Digest { .. })));
}

#[test]
fn an_index_opens_from_a_tar_zst_and_a_damaged_archive_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let publisher = key(tmp.path(), "publisher");
    let dir = tmp.path().join("index");
    index(&dir, &publisher, MANIFEST);
    let archive = tmp.path().join("index.tar.zst");
    let tar = Command::new("tar").args(["--zstd", "-cf"]).arg(&archive).arg("-C").arg(&dir).arg(".").output().unwrap();
    assert!(tar.status.success(), "tar: {}", String::from_utf8_lossy(&tar.stderr));
    let keys = apps::parse_keys(std::slice::from_ref(&publisher.public)).unwrap();
    let scratch = tmp.path().join("scratch");
    let opened = apps::open_archive(&archive, &scratch, &keys).unwrap();
    assert_eq!(opened.apps.len(), 1);
    // A byte flipped in the middle of the archive: zstd's checksum, tar or a signature says no.
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&archive, &bytes).unwrap();
    let error = apps::open_archive(&archive, &scratch, &keys).unwrap_err();
    assert!(
        matches!(error, StoreError::Malformed { .. } | StoreError::BadSignature { .. } | StoreError::Digest { .. }),
        "{error}"
    );
}

#[test]
fn a_manifest_asking_for_more_than_an_app_may_have_is_refused_naming_each_field() {
    let tmp = tempfile::tempdir().unwrap();
    let publisher = key(tmp.path(), "publisher");
    let dir = tmp.path().join("index");
    let greedy = MANIFEST
        .replace("port = 80\n\n[site]", "port = 80\nprivileged = true\nnetwork = \"host\"\nmounts = [{source = \"/etc\", target = \"/etc\"}]\n\n[site]")
        .replace("capabilities = [\"NET_BIND_SERVICE\"]", "capabilities = [\"NET_BIND_SERVICE\", \"SYS_ADMIN\"]")
        .replace("host = \"wiki\"", "host = \"pic\"")
        .replace("data = [\"pages\", \"media\"]", "data = [\"pages\", \"../../etc\"]");
    index(&dir, &publisher, &greedy);
    let error = open(&dir, &publisher).unwrap_err();
    insta::assert_snapshot!(error.to_string().replace(&tmp.path().display().to_string(), "<tmp>"));
}

/// The index kept in this repository (`store/`): its `index.json` is what `pic store index`
/// writes for its manifests, it opens once signed, and `examples/apps.json` carries the same
/// manifests (as `pic store install` puts them into a config).
#[test]
fn the_repository_index_is_current_and_opens_once_signed() {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../store");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let copy = Command::new("cp").arg("-r").arg(&repository).arg(&dir).output().unwrap();
    assert!(copy.status.success());
    apps::write_index(&dir).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("index.json")).unwrap(),
        std::fs::read_to_string(repository.join("index.json")).unwrap(),
        "store/index.json is not current: run `pic store index store`"
    );
    let opened = apps::open(&dir, &[]).map(|_| ()).unwrap_err();
    assert!(matches!(opened, StoreError::NoTrustedKey));
    let publisher = key(tmp.path(), "publisher");
    publisher.sign_index(&dir);
    let index = open(&dir, &publisher).unwrap();
    let names: Vec<&str> = index.apps.iter().map(|a| a.entry.name.as_str()).collect();
    assert_eq!(names, ["dokuwiki", "syncthing", "transmission"]);

    let example: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/apps.json")).unwrap(),
    )
    .unwrap();
    for installed in example["apps"].as_array().unwrap() {
        let name = installed["name"].as_str().unwrap();
        let manifest: apps::Manifest = serde_json::from_value(installed["manifest"].clone()).unwrap();
        assert_eq!(&manifest, &index.app(name).unwrap().manifest, "examples/apps.json's {name} is not store/'s");
    }
}
