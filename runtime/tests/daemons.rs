//! Tier 2: every rendered file is checked by its own daemon's validator (caddy, unbound,
//! dnsmasq, chrony, postfix, dovecot, radicale, apache2, php, nft, wg-quick), for every example
//! config, and the credential files are checked by the daemons' own password tools.
//!
//! Each check runs in a private mount namespace where the bundle, certificates and credentials
//! sit at the paths the containers will see (`/etc/pic/bundle`, `/run/pic/...`, `/srv`), so
//! nothing on the machine is touched. `make test` installs the Debian packages these need.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::Cell;

/// The validators, per service: each must accept what we render.
const CHECKS: &[(&str, &[&str])] = &[
    ("proxy", &["caddy", "validate", "--config", "/etc/pic/bundle/Caddyfile", "--adapter", "caddyfile"]),
    ("dns", &["unbound-checkconf", "/etc/pic/bundle/unbound.conf"]),
    ("dhcp", &["dnsmasq", "--test", "--conf-file=/etc/pic/bundle/dnsmasq.conf"]),
    ("mail", &["postfix", "-c", "/etc/pic/bundle", "check"]),
    ("calendar", &["radicale", "--config", "/etc/pic/bundle/radicale.conf", "--verify-storage"]),
    ("files", &["apache2", "-t", "-f", "/etc/pic/bundle/httpd.conf"]),
    (
        "webmail",
        &[
            "php",
            "-r",
            "include '/etc/pic/bundle/config.inc.php'; exit(isset($config['imap_host'], $config['des_key']) ? 0 : 1);",
        ],
    ),
    // The ruleset is checked inside a network namespace of its own: never against this machine's.
    ("firewall", &["unshare", "--net", "nft", "--check", "--file", "/etc/pic/bundle/ruleset.nft"]),
    ("wireguard", &["wg-quick", "strip", "/etc/pic/bundle/wg0.conf"]),
    // The firewall inside the example's OpenVPN exit's container.
    ("exit-office", &["unshare", "--net", "nft", "--check", "--file", "/etc/pic/bundle/exit.nft"]),
    // The example's Tor exit: its firewall and Tor's own check of its torrc.
    ("exit-tor", &["unshare", "--net", "nft", "--check", "--file", "/etc/pic/bundle/exit.nft"]),
    // (Its data folder belongs to debian-tor, as the cell hands it to the image's data user.)
    ("exit-tor", &["sh", "-c", "chown debian-tor /srv && exec tor --verify-config -f /etc/pic/bundle/torrc"]),
];

/// Checkers whose daemon differs between this machine's Debian and the images' suite run in the
/// service's image (built by `make images`): the version that will run is the one that checks.
/// (chrony also cannot be installed beside a machine's systemd-timesyncd: both are its time
/// daemon.)
const IMAGE_CHECKS: &[(&str, &str, &[&str])] = &[
    ("mail", "pic/mail:latest", &["doveconf", "-n", "-c", "/etc/pic/bundle/dovecot.conf"]),
    ("ntp", "pic/ntp:latest", &["chronyd", "-p", "-f", "/etc/pic/bundle/chrony.conf"]),
];

fn check_in_image(image: &str, bundle: &Path, secrets: &Path, command: &[&str]) -> (bool, String) {
    common::build_images();
    let mount = |host: &Path, target: &str| format!("{}:{target}:ro", host.display());
    let out = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "--cap-drop", "ALL"])
        .args(["-v", &mount(bundle, "/etc/pic/bundle")])
        .args(["-v", &mount(&secrets.join("credentials"), "/run/pic/credentials")])
        .args(["-v", &mount(&secrets.join("tls"), "/run/pic/tls")])
        .arg(image)
        .args(command)
        .output()
        .unwrap_or_else(|e| panic!("docker run {image}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("Unable to find image"), "{image} is missing: `make images` builds it");
    (out.status.success(), text)
}

/// Every check of `service`: (command, accepted, output).
fn checks_of(service: &str, bundle: &Path, secrets: &Path) -> Vec<(String, bool, String)> {
    let host = CHECKS.iter().filter(|(s, _)| *s == service).map(|(_, command)| {
        let (ok, text) = check(bundle, secrets, command);
        (format!("{command:?}"), ok, text)
    });
    let images = IMAGE_CHECKS.iter().filter(|(s, _, _)| *s == service).map(|(_, image, command)| {
        let (ok, text) = check_in_image(image, bundle, secrets, command);
        (format!("{command:?} in {image}"), ok, text)
    });
    host.chain(images).collect()
}

fn check(bundle: &Path, secrets: &Path, command: &[&str]) -> (bool, String) {
    let scratch = tempfile::tempdir().unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", common::DAEMON_HARNESS, "harness"])
        .arg(bundle)
        .arg(secrets)
        .arg(scratch.path())
        .args(command)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {command:?} in a mount namespace: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Builds an example into a fresh cell (with passwords for its users) and returns the cell.
fn cell_for(example: &str, users: &[&str]) -> Cell {
    let cell = Cell::new();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(example);
    cell.ok(&["init", "--config", config.to_str().unwrap()]);
    for user in users {
        cell.set_password(user, &format!("{user}-secret-pw"));
    }
    cell.ok(&["switch"]);
    cell
}

#[test]
fn every_daemon_accepts_what_is_rendered_for_every_example() {
    let mut failures = Vec::new();
    let mut checked = 0;
    let examples = [
        ("cell.json", &["alice", "bob"][..]),
        ("public.json", &["carol"][..]),
        ("ddns.json", &["dana"][..]),
        ("apps.json", &["alice", "bob"][..]),
        ("exits.json", &["alice", "bob"][..]),
    ];
    for (example, users) in examples {
        let cell = cell_for(example, users);
        let manifest = cell.manifest(cell.current().unwrap());
        let secrets = cell.state().join("secrets");
        for (service, entry) in manifest["services"].as_object().unwrap() {
            let bundle = cell.state().join(entry["store_path"].as_str().unwrap());
            for (command, ok, output) in checks_of(service, &bundle, &secrets) {
                checked += 1;
                if !ok {
                    failures.push(format!("{example} {service}: {command} refused it:\n{output}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(checked >= 13, "only {checked} checks ran");
}

#[test]
fn the_checks_can_fail() {
    let cell = cell_for("cell.json", &[]);
    let manifest = cell.manifest(1);
    let secrets = cell.state().join("secrets");
    let broken = tempfile::tempdir().unwrap();
    for (service, file, garbage) in [
        ("dns", "unbound.conf", "server:\n    no-such-option: yes\n"),
        ("mail", "dovecot.conf", "no_such_setting = 1\n"),
        ("firewall", "ruleset.nft", "table inet pic { chain input { tcp dport 22 accpt } }\n"),
        ("proxy", "Caddyfile", "bad.example { no_such_directive }\n"),
    ] {
        let source = cell.state().join(manifest["services"][service]["store_path"].as_str().unwrap());
        let dir = broken.path().join(service);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&source).unwrap() {
            let entry = entry.unwrap();
            std::fs::write(dir.join(entry.file_name()), std::fs::read(entry.path()).unwrap()).unwrap();
        }
        let mut text = std::fs::read_to_string(dir.join(file)).unwrap();
        text.push_str(garbage);
        std::fs::write(dir.join(file), text).unwrap();
        let results = checks_of(service, &dir, &secrets);
        let ok = results.iter().all(|(_, ok, _)| *ok);
        let output: String = results.into_iter().map(|(_, _, text)| text).collect();
        assert!(!ok, "{service}: a broken {file} was accepted:\n{output}");
    }
}

#[test]
fn daemons_accept_the_password_hashes() {
    let cell = cell_for("cell.json", &["alice", "bob"]);
    let credentials = cell.state().join("secrets/credentials");
    let dovecot = std::fs::read_to_string(credentials.join("dovecot.passwd")).unwrap();
    let alice = dovecot.lines().find(|l| l.starts_with("alice@home.cell:")).expect("alice's mailbox can log in");
    let hash = alice.split_once(':').unwrap().1;
    // dovecot's own password check, in the mail image (the dovecot that will run).
    common::build_images();
    let doveadm = |password: &str| {
        let args = ["run", "--rm", "--network", "none", "pic/mail:latest", "doveadm", "pw", "-t", hash, "-p", password];
        Command::new("docker").args(args).output().unwrap().status.success()
    };
    assert!(doveadm("alice-secret-pw"), "dovecot refuses alice's hash");
    assert!(!doveadm("wrong-password"), "dovecot accepts a wrong password");

    for file in ["webdav.htpasswd", "radicale.htpasswd"] {
        let path = credentials.join(file);
        let htpasswd = |user: &str, password: &str| {
            Command::new("htpasswd").arg("-vb").arg(&path).args([user, password]).output().unwrap().status.success()
        };
        assert!(htpasswd("bob", "bob-secret-pw"), "{file}: apache refuses bob's hash");
        assert!(!htpasswd("bob", "alice-secret-pw"), "{file}: apache accepts a wrong password");
    }
    let radicale = Command::new("/usr/bin/python3")
        .args(["-c", "import bcrypt,sys; h=open(sys.argv[1]).read().split('\\n')[0].split(':',1)[1]; sys.exit(0 if bcrypt.checkpw(b'alice-secret-pw', h.encode()) else 1)"])
        .arg(credentials.join("radicale.htpasswd"))
        .output()
        .unwrap();
    assert!(
        radicale.status.success(),
        "radicale's bcrypt refuses alice: {}",
        String::from_utf8_lossy(&radicale.stderr)
    );
}
