//! Minisign keys for tests of the service store, made and used by Debian's `minisign` (what a
//! publisher signs an index with). Shared by path with the runtime's tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A key pair without a password.
pub struct Key {
    /// The base64 line of `<name>.pub`: what `store.trusted_keys` holds.
    pub public: String,
    pub secret: PathBuf,
}

impl Key {
    pub fn new(dir: &Path, name: &str) -> Key {
        let (public, secret) = (dir.join(format!("{name}.pub")), dir.join(format!("{name}.key")));
        let out = Command::new("minisign")
            .args(["-G", "-W", "-f", "-p"])
            .arg(&public)
            .arg("-s")
            .arg(&secret)
            .output()
            .expect("minisign (Debian's package; make test installs it)");
        assert!(out.status.success(), "minisign -G: {}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(&public).unwrap();
        Key { public: text.lines().nth(1).unwrap().to_owned(), secret }
    }

    /// Signs `files` (`<file>.minisig` beside each).
    pub fn sign(&self, files: &[PathBuf]) {
        let out = Command::new("minisign").args(["-S", "-W", "-s"]).arg(&self.secret).arg("-m").args(files).output();
        let out = out.unwrap();
        assert!(out.status.success(), "minisign -S: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Signs the index in `dir`: `index.json` and every app folder's `manifest.toml`.
    pub fn sign_index(&self, dir: &Path) {
        let mut files = vec![dir.join("index.json")];
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let manifest = entry.path().join("manifest.toml");
            if manifest.exists() {
                files.push(manifest);
            }
        }
        self.sign(&files);
    }
}
