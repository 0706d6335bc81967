//! Tier 3: apps from the service store in a real Docker engine. The repository's index
//! (`store/`) is signed with a key made here and trusted by the cell; `pic store install` builds
//! each app's image from Debian packages and switches to a generation with it, and `pic serve`
//! starts it behind its health gate. Real clients then use each app through Caddy with the cell
//! CA: a DokuWiki page saved and read back over its JSON-RPC API, Syncthing's REST API with the
//! key the cell made, a torrent added over Transmission's RPC with the password the cell made.
//! An app that never becomes healthy is rolled back alone by the health gate. Rollback takes an app away without touching its data, switching forward brings it back with
//! it; an update and its rollback; remove keeps the data, purge moves it under backups/. A
//! tampered index, an untrusted key and manifests asking for privileged mode or the host's /etc
//! are refused with the reason and change nothing (the state directory hashed before and after).
//!
//! Needs root, a Docker engine at /var/run/docker.sock and Debian's minisign (`make test`).

mod common;
#[path = "../../builder/tests/support/minisign.rs"]
mod minisign;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::docker::*;
use minisign::Key;
use serde_json::json;

const WIKI: &str = "wiki.home.cell";

#[test]
fn apps_install_run_roll_back_update_and_leave_their_data() {
    common::build_images();
    let cell = start_cell();
    cell.wait_all_healthy("every service is healthy");
    let tmp = tempfile::tempdir().unwrap();
    let key = Key::new(tmp.path(), "publisher");
    let index = tmp.path().join("index");
    copy_store(&index);
    key.sign_index(&index);
    let trusted = key.public.clone();
    let index_text = index.to_str().unwrap().to_owned();
    cell.change_config(|c| c["store"] = json!({"index": index_text, "trusted_keys": [trusted]}));

    refusals(&cell, &key, tmp.path());
    rolled_back_alone(&cell, &key, tmp.path());

    // Install: a new generation with the app, started by pic serve and healthy.
    let before = cell.cell.current().unwrap();
    let installed = store(&cell, &["install", "dokuwiki", "--set", "title=Family wiki"]);
    assert!(installed.contains("installed dokuwiki"), "{installed}");
    let with_wiki = cell.cell.current().unwrap();
    assert!(with_wiki > before, "a new generation: {with_wiki} after {before}");
    wait_app(&cell, "app-dokuwiki", "running healthy");
    let least = ok(
        "docker",
        &[
            "inspect",
            "-f",
            "{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.Config.User}}",
            "pic-app-dokuwiki",
        ],
    );
    assert_eq!(least.trim(), "true [ALL] www-data");
    save_page(&cell, "start", "Written through the cell's proxy");
    assert_eq!(read_page(&cell, "start"), "Written through the cell's proxy");
    let (_, page) = cell.https_status(WIKI, &["https://wiki.home.cell/doku.php?id=start"]);
    assert!(page.contains("Family wiki"), "the title setting reaches the app: {}", &page[..page.len().min(400)]);
    let data = cell.cell.state().join("data/app-dokuwiki");
    let page_file = data.join("wiki/pages/start.txt");
    assert!(page_file.exists(), "the page is in the app's data folder");

    // Rollback: the app is gone, its data untouched.
    // What the person wrote: DokuWiki itself may still write its caches, index and metadata
    // until its container is stopped.
    let written = data.join("wiki/pages");
    let data_hash = tree_hash(&written);
    cell.ok_text(&["rollback"]);
    wait_app(&cell, "app-dokuwiki", "absent");
    assert_eq!(tree_hash(&written), data_hash, "a rollback leaves the app's data alone");
    // Caddy has no site (nor certificate) for the name any more.
    let gone = cell.https(WIKI, &["https://wiki.home.cell/doku.php"]);
    let answer = String::from_utf8_lossy(&gone.stdout).into_owned();
    assert!(!gone.status.success() || !answer.ends_with("200"), "the wiki still answers: {answer}");

    // Forward again: the app is back, with its page.
    cell.ok_text(&["switch", &with_wiki.to_string()]);
    wait_app(&cell, "app-dokuwiki", "running healthy");
    assert_eq!(read_page(&cell, "start"), "Written through the cell's proxy");

    // Update to a newer manifest, then roll the update back.
    let old_image = image_of("pic-app-dokuwiki");
    let manifest = index.join("dokuwiki/manifest.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let newer = text
        .replace("version = \"2024.02.06b-9\"", "version = \"2024.02.06b-9+pic1\"")
        .replace("// The JSON-RPC API", "// Version pic1.\n// The JSON-RPC API");
    std::fs::write(&manifest, newer).unwrap();
    cell.ok_text(&["store", "index", index.to_str().unwrap()]);
    key.sign_index(&index);
    let updated = store(&cell, &["update", "dokuwiki"]);
    assert!(updated.contains("2024.02.06b-9+pic1"), "{updated}");
    wait_for(
        "the updated DokuWiki runs",
        SERVE_START + HEALTH_TIMEOUT,
        Duration::from_millis(500),
        || (image_of("pic-app-dokuwiki"), app_state(&cell, "app-dokuwiki")),
        |(image, state)| *image != old_image && state == "running healthy",
    );
    assert_eq!(read_page(&cell, "start"), "Written through the cell's proxy", "an update keeps the data");
    cell.ok_text(&["rollback"]);
    wait_for(
        "the rolled-back DokuWiki runs its old image",
        SERVE_START + HEALTH_TIMEOUT,
        Duration::from_millis(500),
        || (image_of("pic-app-dokuwiki"), app_state(&cell, "app-dokuwiki")),
        |(image, state)| *image == old_image && state == "running healthy",
    );
    assert_eq!(read_page(&cell, "start"), "Written through the cell's proxy");

    syncthing(&cell);
    transmission(&cell);

    // Remove keeps the data; purge moves it under backups/ and deletes the app's secrets.
    let removed = store(&cell, &["remove", "transmission"]);
    assert!(removed.contains("data is kept"), "{removed}");
    wait_app(&cell, "app-transmission", "absent");
    assert!(cell.cell.state().join("data/app-transmission/transmission/config/settings.json").exists());
    let purged = store(&cell, &["remove", "syncthing", "--purge"]);
    assert!(purged.contains("moved to"), "{purged}");
    wait_app(&cell, "app-syncthing", "absent");
    assert!(!cell.cell.state().join("data/app-syncthing").exists());
    let saved: Vec<PathBuf> = std::fs::read_dir(cell.cell.state().join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("app-syncthing-purged-"))
        .collect();
    assert_eq!(saved.len(), 1, "the purged data is saved under backups/");
    assert!(saved[0].join("syncthing/config/config.xml").exists(), "Syncthing's config is in the saved data");
    assert!(!cell.cell.state().join("secrets/credentials/app-syncthing.api_key").exists());
}

/// What the cell refuses, each before anything changes: a flipped byte in the index, an index
/// signed by a key the cell does not trust, a manifest asking for privileged mode, one mounting
/// the host's /etc (both signed by the trusted key).
fn refusals(cell: &Running, key: &Key, tmp: &Path) {
    let state = cell.cell.state();
    let before = tree_hash(&state);
    let attempt = |index: &Path, why: &str| {
        let out = cell.cell.pic(&[
            "store",
            "install",
            "dokuwiki",
            "--index",
            index.to_str().unwrap(),
            "--lock",
            &test_lock(),
            "--cache",
            &image_cache(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{why}: installed anyway");
        assert_eq!(tree_hash(&state), before, "{why}: the state directory changed");
        stderr
    };

    let flipped = tmp.join("flipped");
    copy_store(&flipped);
    key.sign_index(&flipped);
    let mut bytes = std::fs::read(flipped.join("index.json")).unwrap();
    bytes[30] ^= 0x01;
    std::fs::write(flipped.join("index.json"), &bytes).unwrap();
    let said = attempt(&flipped, "a flipped byte");
    assert!(said.contains("changed after it was signed"), "{said}");

    let stranger = Key::new(tmp, "stranger");
    let foreign = tmp.join("foreign");
    copy_store(&foreign);
    stranger.sign_index(&foreign);
    let said = attempt(&foreign, "an untrusted key");
    assert!(said.contains("does not trust"), "{said}");

    for (name, change, field) in [
        ("privileged", "user = \"www-data\"\nprivileged = true", "container.privileged"),
        ("etc", "source = \"wiki\", target = \"/srv/wiki\"", "container.mounts[0].source"),
    ] {
        let greedy = tmp.join(name);
        copy_store(&greedy);
        let manifest = greedy.join("dokuwiki/manifest.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let text = match name {
            "etc" => text.replace(change, "source = \"/etc\", target = \"/srv/wiki\""),
            _ => text.replace("user = \"www-data\"", change),
        };
        std::fs::write(&manifest, text).unwrap();
        write_index_unchecked(&greedy);
        key.sign_index(&greedy);
        let said = attempt(&greedy, name);
        assert!(said.contains(field), "{name}: {said}");
    }
}

/// An app that never becomes healthy (its probe asks a port nothing listens on) is rolled back
/// by `pic serve`'s health gate: the generation before it is current again, the app's container
/// is gone, and the cell's own services kept serving.
fn rolled_back_alone(cell: &Running, key: &Key, tmp: &Path) {
    let sick = tmp.join("sick");
    copy_store(&sick);
    let manifest = sick.join("dokuwiki/manifest.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text.replace("kind = \"http\"\nport = 8080\npath = \"/doku.php\"", "kind = \"tcp\"\nport = 9");
    assert!(text.contains("port = 9\n"), "the probe was changed");
    std::fs::write(&manifest, text).unwrap();
    cell.ok_text(&["store", "index", sick.to_str().unwrap()]);
    key.sign_index(&sick);
    let before = cell.cell.current().unwrap();
    store(cell, &["install", "dokuwiki", "--index", sick.to_str().unwrap()]);
    assert_eq!(cell.cell.current().unwrap(), before + 1);
    wait_for(
        "the unhealthy app's generation is rolled back",
        monitor_limit() + HEALTH_TIMEOUT,
        Duration::from_millis(500),
        || (cell.cell.current().unwrap(), app_state(cell, "app-dokuwiki")),
        |(current, state)| *current == before && state == "absent",
    );
    let failed = std::fs::read_to_string(cell.cell.state().join("failed.json")).unwrap();
    assert!(failed.contains("app-dokuwiki"), "the failure names the app: {failed}");
    assert_eq!(dig("calendar.home.cell"), PROXY, "DNS answered throughout");
}

/// A service-labelled image no service runs.
const STALE: &str = "pic-test/stale:leftover";

/// Syncthing's REST API through Caddy with the key the cell made (a secret setting); without it,
/// refused.
fn syncthing(cell: &Running) {
    // Installed as the appliance does it: its build cache empty at first (the base layer is
    // taken from the service images in Docker, not bootstrapped), a lock of its own, and the
    // archive's current packages rather than the repository's pins (`/etc/environment` there).
    let device = tempfile::tempdir().unwrap();
    let cache = device.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    // Only the downloaded packages are shared with the other builds, so that nothing is fetched twice.
    std::os::unix::fs::symlink(Path::new(&image_cache()).join("apt"), cache.join("apt")).unwrap();
    let lock = device.path().join("packages.lock.json");
    // A leftover the size of nothing, labelled as a service image but not under the service's
    // tag (as images an earlier load replaced are): the base must not be taken from it.
    let empty = device.path().join("empty.tar");
    ok("tar", &["-cf", empty.to_str().unwrap(), "-T", "/dev/null"]);
    ok("docker", &["import", "--change", "LABEL pic.image=ntp", empty.to_str().unwrap(), STALE]);
    let (out, stderr) = pic_store(
        cell,
        &["install", "syncthing"],
        &[
            ("PIC_IMAGES_CACHE", cache.to_str().unwrap()),
            ("PIC_IMAGES_LOCK", lock.to_str().unwrap()),
            ("PIC_IMAGES_UPDATE_LOCK", "true"),
            ("PIC_LOG", "info"),
        ],
    );
    assert!(out.contains("installed syncthing"), "{out}");
    assert!(stderr.contains("the base layer of app images taken from Docker"), "{stderr}");
    wait_app(cell, "app-syncthing", "running healthy");
    let services_base = ok("docker", &["image", "inspect", "-f", "{{index .RootFS.Layers 0}}", "pic/dns:latest"]);
    let app_base =
        ok("docker", &["image", "inspect", "-f", "{{index .RootFS.Layers 0}}", &image_of("pic-app-syncthing")]);
    assert_eq!(app_base, services_base, "the app's image is built over the services' base layer");
    ok("docker", &["image", "rm", STALE]);
    let taken = cache.join("layers").join(format!("{}.tar", services_base.trim().trim_start_matches("sha256:")));
    assert!(taken.exists(), "the base layer from Docker is in the build cache: {}", taken.display());
    let recorded: serde_json::Value = serde_json::from_slice(&std::fs::read(&lock).unwrap()).unwrap();
    let entries: Vec<&String> = recorded["images"].as_object().unwrap().keys().collect();
    assert!(
        entries.iter().any(|e| *e == "base") && entries.iter().any(|e| e.starts_with("app-syncthing@")),
        "{entries:?}"
    );
    let key = std::fs::read_to_string(cell.cell.state().join("secrets/credentials/app-syncthing.api_key")).unwrap();
    let header = format!("X-API-Key: {key}");
    let (code, body) =
        cell.https_status("sync.home.cell", &["-H", &header, "https://sync.home.cell/rest/system/status"]);
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(status["myID"].as_str().is_some_and(|id| id.len() > 50), "{status}");
    let (code, _) = cell.https_status("sync.home.cell", &["https://sync.home.cell/rest/system/status"]);
    assert_eq!(code, 403, "the REST API without its key");
}

/// A torrent added over Transmission's RPC (its session-id handshake, the password the cell made)
/// and listed back.
fn transmission(cell: &Running) {
    store(cell, &["install", "transmission"]);
    wait_app(cell, "app-transmission", "running healthy");
    let password =
        std::fs::read_to_string(cell.cell.state().join("secrets/credentials/app-transmission.rpc_password")).unwrap();
    let user = format!("admin:{password}");
    let url = "https://torrents.home.cell/transmission/rpc";
    let (code, _) = cell.https_status("torrents.home.cell", &["-u", "admin:wrong", url]);
    assert_eq!(code, 401, "a wrong password");
    let handshake = cell.https("torrents.home.cell", &["-u", &user, "-D", "-", "-o", "/dev/null", url]);
    let head = String::from_utf8_lossy(&handshake.stdout).into_owned();
    let session = head
        .lines()
        .find_map(|l| l.strip_prefix("x-transmission-session-id: "))
        .unwrap_or_else(|| panic!("no session id: {head}"))
        .trim()
        .to_owned();
    let session = format!("X-Transmission-Session-Id: {session}");
    let rpc = |request: serde_json::Value| {
        let body = request.to_string();
        let (code, text) =
            cell.https_status("torrents.home.cell", &["-u", &user, "-H", &session, "--data", &body, url]);
        assert_eq!(code, 200, "{text}");
        serde_json::from_str::<serde_json::Value>(&text).unwrap()
    };
    let magnet = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=pic-test";
    let added = rpc(json!({"method": "torrent-add", "arguments": {"filename": magnet, "paused": true}}));
    assert_eq!(added["result"], "success", "{added}");
    let listed = rpc(json!({"method": "torrent-get", "arguments": {"fields": ["name", "hashString"]}}));
    let torrents = listed["arguments"]["torrents"].as_array().cloned().unwrap_or_default();
    assert!(torrents.iter().any(|t| t["hashString"] == "0123456789abcdef0123456789abcdef01234567"), "{listed}");
}

fn save_page(cell: &Running, page: &str, text: &str) {
    let body = json!({"page": page, "text": text, "summary": "from the test"}).to_string();
    let (code, answer) = cell.https_status(
        WIKI,
        &[
            "-H",
            "content-type: application/json",
            "--data",
            &body,
            "https://wiki.home.cell/lib/exe/jsonrpc.php/core.savePage",
        ],
    );
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains("\"result\":true"), "{answer}");
}

fn read_page(cell: &Running, page: &str) -> String {
    let (code, text) = cell.https_status(WIKI, &[&format!("https://wiki.home.cell/doku.php?id={page}&do=export_raw")]);
    assert_eq!(code, 200, "{text}");
    text.trim().to_owned()
}

/// `pic store …` with the tests' image cache and package lock; its standard output.
fn store(cell: &Running, args: &[&str]) -> String {
    let mut all = args.to_vec();
    let (lock, cache) = (test_lock(), image_cache());
    if matches!(args[0], "install" | "update") {
        all.extend(["--lock", &lock, "--cache", &cache]);
    }
    pic_store(cell, &all, &[]).0
}

/// `pic store ARGS` with `env`, which must succeed: its standard output and error.
fn pic_store(cell: &Running, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let state = cell.cell.state();
    let out: Output = Command::new(env!("CARGO_BIN_EXE_pic"))
        .current_dir(&workspace)
        .args(["--state", state.to_str().unwrap(), "store"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "pic store {args:?}: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

fn test_lock() -> String {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    workspace.join("target/images/test-packages.lock.json").to_string_lossy().into_owned()
}

fn image_cache() -> String {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    workspace.join("target/images").to_string_lossy().into_owned()
}

/// `state health` of an app's container as `pic containers list` says, or `absent`.
fn app_state(cell: &Running, service: &str) -> String {
    let out = cell.cell.pic(&["--json", "containers", "list", "--publish", "none"]);
    let list = serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap_or_default();
    list.iter()
        .find(|c| c["service"] == service)
        .map_or("absent".to_owned(), |c| format!("{} {}", c["state"], c["health"]).replace('"', ""))
}

/// Waits until `pic serve` has activated the current generation and the app is in `state`: the
/// monitor's next look, a container start and the health gate.
fn wait_app(cell: &Running, service: &str, state: &str) {
    wait_for(
        &format!("{service} is {state}"),
        monitor_limit() + CONTAINER_START,
        Duration::from_millis(500),
        || app_state(cell, service),
        |s| s == state,
    );
}

/// The image a container runs, or `absent` (an activation recreates it: removed, then made).
fn image_of(container: &str) -> String {
    let out = run("docker", &["inspect", "-f", "{{.Config.Image}}", container]);
    if out.status.success() { String::from_utf8_lossy(&out.stdout).trim().to_owned() } else { "absent".into() }
}

/// A hash of every file under `dir` (path and content), logs aside.
fn tree_hash(dir: &Path) -> String {
    let script = "find . -path ./logs -prune -o -type f -print0 | sort -z | xargs -0 -r sha256sum | sha256sum";
    let out = Command::new("sh").args(["-c", script]).current_dir(dir).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn copy_store(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../store");
    let out = Command::new("cp").arg("-r").arg(&from).arg(to).output().unwrap();
    assert!(out.status.success(), "cp: {}", String::from_utf8_lossy(&out.stderr));
}

/// Rewrites index.json's digests without checking the manifests (as a careless or hostile
/// publisher would): the cell's own checks must refuse them.
fn write_index_unchecked(dir: &Path) {
    let path = dir.join("index.json");
    let mut index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for app in index["apps"].as_array_mut().unwrap() {
        use sha2::Digest;
        let manifest = std::fs::read(dir.join(app["manifest"].as_str().unwrap())).unwrap();
        app["sha256"] = json!(hex::encode(sha2::Sha256::digest(&manifest)));
    }
    std::fs::write(&path, serde_json::to_string_pretty(&index).unwrap()).unwrap();
}
