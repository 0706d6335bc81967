//! The `pic` command line end to end, on temporary state directories.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Cell, example, example_path, key, pic, with_peer};

fn init_and_switch(cell: &Cell) {
    cell.ok(&["init", "--config", example_path().to_str().unwrap()]);
    cell.ok(&["switch"]);
}

#[test]
fn new_user_walkthrough() {
    let cell = Cell::new();
    init_and_switch(&cell);
    let generations = cell.json(&["generations"]);
    assert_eq!(generations[0]["number"], 1);
    assert_eq!(generations[0]["current"], true);

    // One more peer: generation 2, in which only the bundles that depend on peers changed (the
    // proxy's too: its sites admit the devices of the VPN by address).
    let new_key = key(7);
    let bigger = cell.write_config("bigger.json", &with_peer(example(), "carol-phone", &new_key, "10.8.0.9"));
    let switched = cell.json(&["switch", "--config", &bigger]);
    assert_eq!(switched["to"], 2);
    assert_eq!(switched["build"]["changed_services"], serde_json::json!(["dns", "firewall", "proxy", "wireguard"]));
    let (m1, m2) = (cell.manifest(1), cell.manifest(2));
    assert_eq!(m2["parent"], 1);
    assert_eq!(m1["services"]["calendar"], m2["services"]["calendar"]);
    assert_ne!(m1["services"]["wireguard"], m2["services"]["wireguard"]);
    assert_ne!(m1["services"]["dns"], m2["services"]["dns"]);

    let diff = cell.ok(&["diff", "1", "2"]);
    assert!(diff.contains(&format!("+PublicKey = {new_key}")), "{diff}");
    assert!(diff.contains("+    local-data: 'carol-phone.home.cell. 300 IN A 10.8.0.9'"), "{diff}");
    assert!(diff.contains("+\t\tnot remote_ip 10.8.0.2/32 10.8.0.9/32"), "carol-phone is admitted to files: {diff}");
    assert!(!diff.contains("== calendar"), "{diff}");

    // Rollback: generation 1 is current and its config is the desired one again.
    cell.ok(&["rollback"]);
    assert_eq!(cell.current(), Some(1));
    let desired = std::fs::read_to_string(cell.state().join("cell_config.json")).unwrap();
    let gen1 = std::fs::read_to_string(cell.state().join("generations/1/config.json")).unwrap();
    assert_eq!(desired, gen1);

    // A peer named `evil\n}` is refused with exit 2, naming the field, and changes nothing.
    let evil = cell.write_config("evil.json", &with_peer(example(), "evil\n}", &key(8), "10.8.0.10"));
    let out = cell.pic(&["switch", "--config", &evil]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wireguard.peers[3].name"), "{stderr}");
    assert_eq!(cell.current(), Some(1));
    assert_eq!(cell.generation_numbers(), vec![1, 2]);
    assert_eq!(std::fs::read_to_string(cell.state().join("cell_config.json")).unwrap(), desired);
    cell.ok(&["verify"]);
}

#[test]
fn an_unchanged_config_creates_no_generation() {
    let cell = Cell::new();
    init_and_switch(&cell);
    let again = cell.json(&["switch"]);
    assert_eq!(again["build"]["created"], false);
    assert_eq!(again["build"]["generation"], 1);
    let built = cell.json(&["build", "--config", example_path().to_str().unwrap()]);
    assert_eq!(built["created"], false);
    assert_eq!(cell.generation_numbers(), vec![1]);
}

#[test]
fn build_makes_a_generation_without_switching() {
    let cell = Cell::new();
    init_and_switch(&cell);
    let file = cell.write_config("more.json", &with_peer(example(), "dave", &key(1), "10.8.0.20"));
    let built = cell.json(&["build", "--config", &file]);
    assert_eq!((built["generation"].as_u64(), built["created"].as_bool()), (Some(2), Some(true)));
    assert_eq!(cell.current(), Some(1));
    // Building it again reports the generation just built.
    assert_eq!(cell.json(&["build"])["generation"], 2);
    cell.ok(&["switch", "2"]);
    assert_eq!(cell.current(), Some(2));
}

#[test]
fn gc_keeps_the_newest_the_current_and_the_one_before_it() {
    let cell = Cell::new();
    init_and_switch(&cell);
    for i in 2..=5u32 {
        let file = cell
            .write_config("c.json", &with_peer(example(), &format!("p{i}"), &key(i), &format!("10.8.0.{}", 20 + i)));
        cell.ok(&["switch", "--config", &file]);
    }
    cell.ok(&["switch", "3"]);
    let report = cell.json(&["gc", "--keep", "1"]);
    assert_eq!(report["removed_generations"], serde_json::json!([1, 4]));
    assert_eq!(cell.generation_numbers(), vec![2, 3, 5]);
    // Every store path left is referenced by a kept generation, and all of them are there.
    let mut referenced: Vec<String> = [2, 3, 5]
        .iter()
        .flat_map(|n| {
            let m = cell.manifest(*n);
            m["services"]
                .as_object()
                .unwrap()
                .values()
                .map(|e| e["store_path"].as_str().unwrap().trim_start_matches("store/").to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    referenced.sort();
    referenced.dedup();
    let mut present: Vec<String> = std::fs::read_dir(cell.state().join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    present.sort();
    assert_eq!(present, referenced);
    cell.ok(&["verify"]);
    cell.ok(&["rollback"]);
    assert_eq!(cell.current(), Some(2));

    assert_eq!(cell.pic(&["gc", "--keep", "0"]).status.code(), Some(2));
    assert_eq!(cell.pic(&["gc"]).status.code(), Some(2), "gc without --keep or --max-store");
    // By size: what must stay stays (the current one, 2 after the rollback; none is before it),
    // and the report says it is still above the limit.
    let report = cell.json(&["gc", "--max-store", "0"]);
    assert_eq!(report["over_limit"], true, "{report}");
    assert_eq!(cell.generation_numbers(), vec![2]);
}

#[test]
fn verify_names_a_tampered_bundle() {
    let cell = Cell::new();
    init_and_switch(&cell);
    let wireguard = cell.manifest(1)["services"]["wireguard"]["store_path"].as_str().unwrap().to_string();
    let file = cell.state().join(&wireguard).join("wg0.conf");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("[Peer]\nPublicKey = intruder\n");
    std::fs::write(&file, text).unwrap();

    let out = cell.pic(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("MISMATCH {wireguard}")), "{stdout}");
    assert!(!stdout.contains("-dns"), "only the tampered bundle is named: {stdout}");
}

#[test]
fn private_keys_never_reach_the_store_or_generations() {
    let cell = Cell::new();
    init_and_switch(&cell);
    let secrets = cell.state().join("secrets");
    assert_eq!(std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777, 0o700);
    let key_path = secrets.join("wireguard/server.key");
    assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);
    let private = std::fs::read_to_string(&key_path).unwrap().trim().to_string();
    let public = std::fs::read_to_string(secrets.join("wireguard/server.pub")).unwrap().trim().to_string();
    assert_eq!(private.len(), 44);

    let mut scanned = 0;
    let mut found_public = false;
    let mut stack =
        vec![cell.state().join("store"), cell.state().join("generations"), cell.state().join("cell_config.json")];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains(&private), "{} contains the private key", path.display());
            assert!(!text.contains("PRIVATE KEY"), "{} contains a PEM private key", path.display());
            found_public |= text.contains(&public);
            scanned += 1;
        }
    }
    assert!(scanned >= 5, "scanned {scanned} files");
    // The CA and TLS keys exist, in secrets/ only.
    assert!(std::fs::read_to_string(secrets.join("ca/ca.key")).unwrap().contains("PRIVATE KEY"));
    assert!(std::fs::read_to_string(secrets.join("tls/pic.home.cell/key.pem")).unwrap().contains("PRIVATE KEY"));
    // The scan can see keys at all: the public half is rendered.
    assert!(found_public);
}

#[test]
fn exit_codes_follow_the_contract() {
    let cell = Cell::new();
    assert_eq!(pic(&["no-such-command"]).status.code(), Some(2));
    assert_eq!(cell.pic(&["switch"]).status.code(), Some(1), "uninitialized state is a failure, not bad input");
    init_and_switch(&cell);
    assert_eq!(cell.pic(&["switch", "99"]).status.code(), Some(2));
    assert_eq!(cell.pic(&["diff", "1", "42"]).status.code(), Some(2));
    assert_eq!(cell.pic(&["validate", example_path().to_str().unwrap()]).status.code(), Some(0));
    let bad = cell.write_config("bad.json", &serde_json::json!({"version": 2, "cell": {"name": "x"}}));
    assert_eq!(cell.pic(&["validate", &bad]).status.code(), Some(2));
    assert_eq!(cell.pic(&["rollback"]).status.code(), Some(2), "nothing before generation 1");
}

#[test]
fn json_errors_list_every_problem() {
    let cell = Cell::new();
    let mut config = example();
    config["cell"]["name"] = "Bad Name".into();
    config["wireguard"]["peers"][0]["address"] = "10.9.9.9".into();
    let file = cell.write_config("bad.json", &config);
    let out = cell.pic(&["--json", "validate", &file]);
    assert_eq!(out.status.code(), Some(2));
    let error: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(error["error"]["code"], "invalid_config");
    let paths: Vec<&str> =
        error["error"]["details"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["cell.name", "wireguard.peers[0].address"]);
    assert!(error["error"]["details"][0]["hint"].as_str().unwrap().contains("lowercase"));
}

#[test]
fn schema_is_the_committed_one() {
    let out = pic(&["schema"]);
    assert!(out.status.success());
    let committed =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../builder/schema/cell-config.schema.json")).unwrap();
    assert_eq!(out.stdout, committed);
}

#[test]
fn migrate_prints_rewrites_and_refuses_a_newer_version() {
    let cell = Cell::new();
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/../builder/tests/migrations/v1/public.json");
    let v1 = std::fs::read_to_string(golden).unwrap();
    let file = cell.dir.path().join("cell.json");
    std::fs::write(&file, &v1).unwrap();
    let path = file.to_str().unwrap();
    let printed = cell.ok(&["migrate", "--dry-run", path]);
    assert!(printed.starts_with("{\n  \"version\": 2,"), "{printed}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), v1, "a dry run changed the file");
    let snapshot = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../builder/tests/snapshots/migrations__v1_public.snap"
    ))
    .unwrap();
    assert!(snapshot.ends_with(&printed), "the dry run differs from the golden file");

    cell.ok(&["migrate", path]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), printed);
    assert_eq!(std::fs::read_to_string(cell.dir.path().join("cell.json.v1")).unwrap(), v1);
    assert!(cell.ok(&["migrate", path]).contains("already version 2"));

    let newer = cell.write_config("newer.json", &serde_json::json!({ "version": 3, "cell": { "name": "home" } }));
    let out = cell.pic(&["migrate", "--dry-run", &newer]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("config version 3 was written by a newer PIC") && stderr.contains("up to 2"), "{stderr}");
}

#[test]
fn logs_of_every_service_are_searched_from_the_command_line() {
    let cell = Cell::new();
    cell.ok(&["init"]);
    let logs = cell.state().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let line = |t: &str, level: &str, message: &str| {
        serde_json::json!({"timestamp": t, "level": level, "fields": {"message": message}}).to_string() + "\n"
    };
    std::fs::write(
        logs.join("api.log"),
        line("2026-12-01T03:00:00Z", "INFO", "listening") + &line("2026-12-01T03:02:00Z", "WARN", "disk nearly full"),
    )
    .unwrap();
    std::fs::write(logs.join("dns.log"), line("2026-12-01T03:01:00Z", "DEBUG", "debug: module config")).unwrap();
    let all = cell.ok(&["logs"]);
    let order: Vec<&str> = all.lines().map(|l| l.split_whitespace().nth(1).unwrap()).collect();
    assert_eq!(order, ["api", "dns", "api"], "{all}");
    assert!(all.lines().nth(1).unwrap().ends_with("DEBUG debug: module config"), "{all}");
    let warnings = cell.ok(&["logs", "--level", "warn"]);
    assert_eq!(warnings.lines().count(), 1, "{warnings}");
    assert!(warnings.contains("disk nearly full"));
    let dns = cell.json(&["logs", "--service", "dns", "-q", "module"]);
    assert_eq!(dns.as_array().unwrap().len(), 1, "{dns}");
    assert_eq!(dns[0]["service"], "dns");
    let since = cell.ok(&["logs", "--since", "2026-12-01T03:01:30Z"]);
    assert_eq!(since.lines().count(), 1, "{since}");
    let loud = cell.pic(&["logs", "--level", "loud"]);
    assert_eq!(loud.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&loud.stderr).contains("use error, warn, info or debug"));
}

#[test]
fn render_writes_bundles_without_touching_the_store() {
    let cell = Cell::new();
    cell.ok(&["init"]);
    let out = cell.dir.path().join("out");
    cell.ok(&["render", "--config", example_path().to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(std::fs::read_to_string(out.join("wireguard/wg0.conf")).unwrap().contains("[Peer]"));
    assert!(out.join("dns/unbound.conf").exists() && out.join("proxy/Caddyfile").exists());
    assert_eq!(std::fs::read_dir(cell.state().join("store")).unwrap().count(), 0);
}

#[test]
fn concurrent_writers_take_turns() {
    let cell = Cell::new();
    init_and_switch(&cell);
    let files: Vec<String> = (0..6u32)
        .map(|i| {
            cell.write_config(
                &format!("c{i}.json"),
                &with_peer(example(), &format!("w{i}"), &key(100 + i), &format!("10.8.0.{}", 50 + i)),
            )
        })
        .collect();
    let state = cell.state();
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            std::process::Command::new(env!("CARGO_BIN_EXE_pic"))
                .args(["--state", state.to_str().unwrap(), "switch", "--config", f])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(cell.generation_numbers(), (1..=7).collect::<Vec<_>>());
    cell.ok(&["verify"]);
    // Whichever writer went last, its generation is current and its config is the desired one.
    let current = cell.current().unwrap();
    let desired = std::fs::read_to_string(state.join("cell_config.json")).unwrap();
    assert_eq!(desired, std::fs::read_to_string(state.join(format!("generations/{current}/config.json"))).unwrap());
}

#[test]
fn a_device_s_access_list_is_set_from_the_command_line() {
    let cell = Cell::new();
    init_and_switch(&cell);
    let added = cell.json(&["peer", "add", "tv", "--access", "dns,calendar"]);
    assert_eq!(added["peer"]["access"], serde_json::json!(["dns", "calendar"]));
    let changed = cell.json(&["peer", "access", "tv", "dns", "files"]);
    assert_eq!(changed["peer"]["access"], serde_json::json!(["dns", "files"]));
    let caddyfile = |cell: &Cell| {
        let current = cell.current().unwrap();
        let store = cell.manifest(current)["services"]["proxy"]["store_path"].as_str().unwrap().to_owned();
        std::fs::read_to_string(cell.state().join(store).join("Caddyfile")).unwrap()
    };
    assert!(caddyfile(&cell).contains("@denied"), "the proxy's sites carry the device's list");
    let all = cell.json(&["peer", "access", "tv", "--all"]);
    assert!(all["peer"].get("access").is_none(), "{all}");

    let generations = cell.generation_numbers();
    let wrong = cell.pic(&["peer", "access", "tv", "dns", "nonsense"]);
    assert_eq!(wrong.status.code(), Some(2), "an unknown service is invalid input");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("access[1]") && stderr.contains("nonsense"), "{stderr}");
    assert_eq!(cell.generation_numbers(), generations, "a refused list changes nothing");
    let listed = String::from_utf8(cell.pic(&["peer", "list"]).stdout).unwrap();
    assert!(
        listed.contains("ACCESS") && listed.lines().any(|l| l.starts_with("tv ") && l.ends_with("all")),
        "{listed}"
    );
}

#[test]
fn ddns_credentials_are_checked_and_kept_in_secrets_only() {
    let cell = Cell::new();
    init_and_switch(&cell);
    // Not in ddns mode: a credential has nowhere to go.
    assert_eq!(cell.with_stdin(&["ddns", "credential"], "x\n").status.code(), Some(2));
    let mut config = example();
    config["cell"]["domain"] = serde_json::json!({"mode": "ddns", "provider": "duckdns", "name": "mycell.duckdns.org",
        "acme_email": "owner@example.org"});
    let path = cell.write_config("ddns.json", &config);
    cell.ok(&["switch", "--config", &path]);
    // Without a credential no certificate is asked for (and nothing is sent).
    let held = cell.pic(&["ddns", "certificate"]);
    assert_eq!(held.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&held.stdout).contains("no duckdns credential"), "{held:?}");
    let refused = cell.with_stdin(&["ddns", "credential"], "not-a-token\n");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("credential"), "{refused:?}");
    let token = "a7c4d0ad-114e-40ef-ba1d-d217904a50f2";
    assert!(cell.with_stdin(&["ddns", "credential"], &format!("{token}\n")).status.success());
    let kept = cell.state().join("secrets/ddns/duckdns");
    assert_eq!(std::fs::read_to_string(&kept).unwrap().trim(), token);
    assert_eq!(std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777, 0o600);
    let status = cell.json(&["ddns", "status"]);
    assert_eq!(status["updates"], 0, "{status}");
    let found = std::process::Command::new("grep").args(["-rl", token]).arg(cell.state()).output().unwrap();
    let found = String::from_utf8_lossy(&found.stdout);
    assert!(found.lines().all(|f| f.ends_with("/secrets/ddns/duckdns")), "the token is outside secrets/: {found}");
}

/// `pic store list|show` read an index only through the keys the config trusts; a flipped byte
/// is refused with the reason (exit 1) and changes nothing.
#[test]
fn the_store_lists_a_signed_index_and_refuses_a_tampered_one() {
    let cell = Cell::new();
    let dir = cell.dir.path();
    let minisign = |args: &[&str]| {
        let out = std::process::Command::new("minisign").args(args).output().expect("minisign (make test installs it)");
        assert!(out.status.success(), "minisign {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let (public, secret) = (dir.join("test.pub"), dir.join("test.key"));
    minisign(&["-G", "-W", "-p", public.to_str().unwrap(), "-s", secret.to_str().unwrap()]);
    let key = std::fs::read_to_string(&public).unwrap().lines().nth(1).unwrap().to_owned();
    let index = dir.join("index");
    std::fs::create_dir_all(index.join("wiki")).unwrap();
    let manifest = "name = \"wiki\"\nversion = \"1.0\"\ndescription = \"A wiki\"\ndata = [\"pages\"]\n\
        [image]\npackages = [\"dokuwiki\"]\n[container]\ncommand = [\"run-wiki\"]\nuser = \"www-data\"\nport = 8080\n\
        [site]\nhost = \"wiki\"\n[health]\nkind = \"tcp\"\nport = 8080\n";
    std::fs::write(index.join("wiki/manifest.toml"), manifest).unwrap();
    use sha2::Digest;
    let sha256 = hex::encode(sha2::Sha256::digest(manifest.as_bytes()));
    let listing = serde_json::json!({"version": 1, "apps": [{"name": "wiki", "version": "1.0",
        "manifest": "wiki/manifest.toml", "sha256": sha256}]});
    std::fs::write(index.join("index.json"), listing.to_string()).unwrap();
    for file in ["index.json", "wiki/manifest.toml"] {
        minisign(&["-S", "-W", "-s", secret.to_str().unwrap(), "-m", index.join(file).to_str().unwrap()]);
    }
    let mut config = example();
    config["store"] = serde_json::json!({"index": index, "trusted_keys": [key]});
    let path = cell.write_config("store.json", &config);
    cell.ok(&["init", "--config", &path]);
    cell.ok(&["switch"]);

    let listed = cell.json(&["store", "list"]);
    assert_eq!(listed[0]["name"], "wiki", "{listed}");
    let shown = cell.json(&["store", "show", "wiki"]);
    assert_eq!(shown["reached_by"], serde_json::json!(["devices of the VPN"]), "{shown}");

    // The same index as a .tar.zst, downloaded over HTTP (a server on loopback).
    let web = dir.join("web");
    std::fs::create_dir_all(&web).unwrap();
    let tar = std::process::Command::new("tar")
        .args(["--zstd", "-cf", web.join("index.tar.zst").to_str().unwrap(), "-C", index.to_str().unwrap(), "."])
        .output()
        .unwrap();
    assert!(tar.status.success(), "{tar:?}");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = std::process::Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory", web.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/index.tar.zst");
    // Python's server listens within a second; its limit allows for a busy machine.
    common::wait::wait_until("the index's HTTP server listens", std::time::Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let fetched = cell.json(&["store", "list", "--index", &url]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(fetched[0]["name"], "wiki", "{fetched}");

    let mut bytes = std::fs::read(index.join("index.json")).unwrap();
    bytes[5] ^= 0x20;
    std::fs::write(index.join("index.json"), bytes).unwrap();
    let before = cell.ok(&["--json", "generations"]);
    let refused = cell.pic(&["store", "list"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("changed after it was signed"), "{refused:?}");
    assert_eq!(cell.ok(&["--json", "generations"]), before);
}
