//! Helpers shared by the `pic` command-line tests: run the real binary on a temporary state.

#![allow(dead_code)]

pub mod docker;
#[path = "../../src/fake_http.rs"]
pub mod fake_http;
pub mod pebble;
pub mod wait;

use fake_http::Reply;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Runs a daemon or its checker ("$@") where the bundle, certificates and credentials sit at the
/// paths the containers see (`/etc/pic/bundle`, `/run/pic/...`, `/srv`), in a private mount
/// namespace (`unshare --mount`), so that nothing on the machine is touched. Arguments: the
/// bundle, the state's `secrets`, and a scratch folder that holds `/etc`'s changes and `/srv`.
pub const DAEMON_HARNESS: &str = r#"
set -e
bundle=$1; secrets=$2; scratch=$3; shift 3
mkdir -p "$scratch/upper" "$scratch/work" "$scratch/srv"
mount -t tmpfs tmpfs /run
mount --bind "$scratch/srv" /srv
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$scratch/upper,workdir=$scratch/work" /etc
mkdir -p /etc/pic/bundle /run/pic/tls /run/pic/credentials /run/pic/ca
mount --bind "$bundle" /etc/pic/bundle
[ ! -d "$secrets/tls" ] || cp -r "$secrets/tls/." /run/pic/tls/
cp -r "$secrets/credentials/." /run/pic/credentials/
cp "$secrets/ca/ca.crt" /run/pic/ca/
if [ "$1" = postfix ]; then
  # What the mail image's build and entrypoint do (images/mail).
  mkdir -p /srv/queue
  ln -sf /etc/pic/bundle/main.cf /etc/postfix/main.cf
  ln -sf /etc/pic/bundle/master.cf /etc/postfix/master.cf
  mount -t tmpfs tmpfs /var/lib/postfix
  chown postfix /var/lib/postfix
fi
exec "$@"
"#;

pub struct Cell {
    pub dir: tempfile::TempDir,
}

impl Cell {
    pub fn new() -> Cell {
        Cell { dir: tempfile::tempdir().unwrap() }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Runs `pic --state <state> ARGS`.
    pub fn pic(&self, args: &[&str]) -> Output {
        let state = self.state();
        let mut all = vec!["--state", state.to_str().unwrap()];
        all.extend_from_slice(args);
        pic(&all)
    }

    /// Runs `pic` and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.pic(args);
        assert!(out.status.success(), "pic {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `pic --state <state> ARGS` with `input` on its standard input.
    pub fn with_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_pic"))
            .arg("--state")
            .arg(self.state())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Sets a user's password, insisting on success.
    pub fn set_password(&self, user: &str, password: &str) {
        let out = self.with_stdin(&["user", "passwd", user], &format!("{password}\n"));
        assert!(out.status.success(), "pic user passwd {user}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Runs `pic --json` and parses its output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// Writes a config file into the test directory and returns its path.
    pub fn write_config(&self, name: &str, config: &Value) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, serde_json::to_string_pretty(config).unwrap()).unwrap();
        path.to_str().unwrap().to_string()
    }

    pub fn current(&self) -> Option<u64> {
        let target = std::fs::read_link(self.state().join("current")).ok()?;
        target.file_name()?.to_str()?.parse().ok()
    }

    pub fn manifest(&self, n: u64) -> Value {
        let path = self.state().join(format!("generations/{n}/manifest.json"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    pub fn generation_numbers(&self) -> Vec<u64> {
        let mut numbers: Vec<u64> = std::fs::read_dir(self.state().join("generations"))
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
            .collect();
        numbers.sort();
        numbers
    }
}

pub fn pic(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pic")).args(args).env_remove("PIC_STATE").output().unwrap()
}

pub fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cell.json")
}

pub fn example() -> Value {
    serde_json::from_str(&std::fs::read_to_string(example_path()).unwrap()).unwrap()
}

/// The example with one more peer.
pub fn with_peer(mut config: Value, name: &str, key: &str, address: &str) -> Value {
    let peer = serde_json::json!({"name": name, "public_key": key, "address": address});
    config["wireguard"]["peers"].as_array_mut().unwrap().push(peer);
    config
}

/// A distinct valid WireGuard key for test peer `i`.
pub fn key(i: u32) -> String {
    use base64::Engine;
    let mut bytes = [0x42u8; 32];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Builds the service images into Docker once per test process (`pic images build`; layers are
/// cached in target/images, so only changed definitions are built). The lock is a copy with
/// `--update-lock`, so that a Debian point release does not fail the tests; `make images` holds
/// builds to the committed lock.
pub fn build_images() {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let cache = workspace.join("target/images");
        std::fs::create_dir_all(&cache).unwrap();
        let lock = cache.join("test-packages.lock.json");
        let _ = std::fs::copy(workspace.join("images/packages.lock.json"), &lock);
        let out = Command::new(env!("CARGO_BIN_EXE_pic"))
            .current_dir(&workspace)
            .args(["images", "build", "--cache", cache.to_str().unwrap(), "--lock", lock.to_str().unwrap()])
            .arg("--update-lock")
            .output()
            .unwrap();
        assert!(out.status.success(), "pic images build: {}", String::from_utf8_lossy(&out.stderr));
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    });
}
