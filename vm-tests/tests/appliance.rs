//! Tier 5: the flashable disk image (`make image`) booted in QEMU (TCG) and driven like a NixOS
//! test. Needs `target/pic.img` (or `$PIC_IMAGE`), qemu-system-x86, ovmf and dig.
//!
//! One machine lives through the whole story, because every boot under TCG costs minutes: first
//! boot and the wizard through Caddy, the read-only root, setup through the API, a config change
//! and a peer (its name through the cell's DNS on a forwarded port, its key in the kernel's
//! WireGuard interface), a reboot, a rollback and another reboot, and a power cut in the middle
//! of a switch. The figures (boot to API, first activation, image size) are printed at the end
//! and written to `target/vm-test-figures.json`.
//!
//! A second machine is updated: bundles refused (the GPT and the ESP unchanged), one applied and
//! confirmed after a real firmware restart, a broken one tried three times and fallen back from,
//! and power cuts while one is written (`target/vm-test-update-figures.json`). It needs the
//! bundle `make vm-test` builds beside the image (`$PIC_UPDATE_BUNDLE`) and its signing key
//! (`$PIC_UPDATE_KEY`). A third boots on a disk too small with the cable out.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use pic_vm_tests::cell::*;
#[path = "../../builder/tests/support/minisign.rs"]
mod minisign;
use pic_vm_tests::{Machine, Options};
use serde_json::{Value, json};

#[test]
fn the_appliance_is_set_up_changed_rebooted_rolled_back_and_survives_a_power_cut() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (baseline, analyze) = baseline_boot(dir.path())?;
    eprintln!("baseline: multi-user without PIC and Docker after {baseline:.1} s\n{analyze}");
    let options = Options {
        forwards: vec![(80, free_tcp_port()), (443, free_tcp_port()), (53, free_tcp_port())],
        ..Options::default()
    };
    let mut cell = Machine::boot("cell", &image(), dir.path(), options)?;
    let result = story(&mut cell, baseline);
    if result.is_err() {
        // What pic serve said is the first thing to read when the story breaks.
        let report = "docker ps -a; journalctl -b -u pic --no-pager | tail -n 60";
        if let Ok((_, journal)) = cell.execute(report) {
            eprintln!("--- containers and the journal of pic.service ---\n{journal}");
        }
    }
    result
}

fn story(cell: &mut Machine, baseline: f64) -> Result<()> {
    let mut figures = serde_json::Map::new();
    figures.insert("baseline_boot_s".into(), json!(baseline));
    let image_bytes = std::fs::metadata(image())?.len();
    figures.insert("image_raw_mb".into(), json!(image_bytes as f64 / 1e6));
    let mut compressed = image().into_os_string();
    compressed.push(".zst");
    if let Ok(meta) = std::fs::metadata(&compressed) {
        figures.insert("image_zstd_mb".into(), json!(meta.len() as f64 / 1e6));
    }

    // First boot: port 80 answers with the progress page from the moment `pic serve` runs, then
    // the wizard; the console shows the same steps, then the address to open.
    let (progress_page, first_boot) = port_80_until_the_web_ui(cell, FIRST_BOOT_WIZARD)?;
    figures.insert("first_boot_progress_page_s".into(), json!(progress_page));
    figures.insert("first_boot_to_wizard_s".into(), json!(first_boot));
    figures.insert("first_boot_per_baseline".into(), json!(first_boot / baseline));
    cell.wait_for_console(r"Starting: [0-3] of 3 steps done", PROMPT_CHANGE)?;
    cell.wait_for_console(r"\[ ok \] Data partition: [0-9.]+ GB, [0-9.]+ GB free", PROMPT_CHANGE)?;
    cell.wait_for_console(r"\[ ok \] Service images: 8 of 8 ready", PROMPT_CHANGE)?;
    cell.wait_for_console(r"\[ ok \] Services: ", PROMPT_CHANGE)?;
    cell.wait_for_console(r"Open http://10\.0\.2\.15/ in a browser to set up this cell\.", PROMPT_CHANGE)?;
    // Port 80 is pic serve's; the setup proxy (Caddy) serves HTTPS.
    cell.succeed("ss -Htlnp 'sport = :80' | grep -q '\"pic\"'")?;
    cell.wait_until_succeeds("curl -skf https://127.0.0.1/api/setup/status", CADDY_ANSWERS)?;
    let blame = cell.succeed(
        "systemd-analyze critical-chain pic.service --no-pager; systemd-analyze blame --no-pager | head -n 12",
    )?;
    eprintln!("first boot, where the time went:\n{blame}");
    let status = expect(cell.http("GET", 80, "/api/setup/status", None, &[])?, 200, "setup status")?;
    ensure!(status["complete"] == false, "{status}");
    let (code, page) = cell.http("GET", 80, "/", None, &[])?;
    ensure!(code == 200 && page.contains("<html"), "the web UI through port 80: {code}");
    let (code, _) = cell.https(443, "/api/setup/status")?;
    ensure!(code == 200, "the wizard over HTTPS: {code}");

    // Nothing writes the root; the data partition grew into the disk.
    cell.succeed("findmnt -n -o OPTIONS / | grep -qw ro")?;
    cell.fail("touch /usr/bin/written")?;
    cell.fail("touch /etc/written")?;
    cell.succeed("touch /var/lib/pic/written && rm /var/lib/pic/written")?;
    let size = cell.succeed("df --output=size -BM /var | tail -n 1")?;
    let megabytes: u64 = size.trim().trim_end_matches('M').parse()?;
    ensure!(megabytes > 4000, "the data partition did not grow: {megabytes} MB");
    // Slot B is not in the image: systemd-repart made it, empty, at the end of the disk.
    let slot_b = cell.succeed("lsblk -bno SIZE /dev/disk/by-partlabel/pic-root-b")?;
    let slot_a = cell.succeed("lsblk -bno SIZE /dev/disk/by-partlabel/pic-root-a")?;
    ensure!(slot_b.trim() == slot_a.trim(), "slot B is {slot_b} bytes, slot A {slot_a}");
    cell.succeed(
        "b=$(readlink -f /dev/disk/by-partlabel/pic-root-b) d=$(findmnt -no SOURCE /var) && \
         test \"$(cat /sys/class/block/${b##*/}/start)\" -gt \"$(cat /sys/class/block/${d##*/}/start)\"",
    )?;

    // Setup through the API, every service on: generation 1, activated after the answer (the
    // answer goes out through the setup proxy that the activation replaces).
    let setup = json!({"cell_name": "vmcell", "admin_password": PASSWORD, "services": SERVICES}).to_string();
    let started = Instant::now();
    let done = expect(cell.http("POST", 80, "/api/setup", Some(&setup), &[])?, 200, "setup")?;
    ensure!(done["generation"] == 1, "{done}");
    wait_until_ready(cell, SETUP_READY)?;
    let admin = Admin::log_in(cell)?;
    admin.wait_all_healthy(cell, ALL_HEALTHY)?;
    let first_activation = started.elapsed().as_secs_f64();
    figures.insert("first_activation_s".into(), json!(first_activation));
    eprintln!("setup, where the time went (pic serve's log):\n{}", activation_timeline(cell)?);
    every_activation_succeeded(cell)?;
    figures.insert("memory_mb".into(), memory(cell)?);
    // The cell's own Caddy took ports 80 and 443 from the setup proxy: the LAN address answers
    // HTTPS with the cell CA's certificate for it, plain HTTP only redirects there, and the
    // console says so.
    cell.fail("docker inspect pic-setup-proxy")?;
    cell.succeed("docker inspect -f '{{.State.Running}}' pic-proxy | grep -qx true")?;
    cell.succeed("curl -sf --cacert /var/lib/pic/secrets/ca/ca.crt https://10.0.2.15/health")?;
    let redirect = cell.succeed("curl -s -o /dev/null -w '%{http_code} %{redirect_url}' http://10.0.2.15/login")?;
    ensure!(redirect.trim() == "308 https://10.0.2.15/login", "plain HTTP after setup: {redirect}");
    cell.wait_for_console(r"Open https://10\.0\.2\.15/ in a browser to manage this cell\.", PROMPT_CHANGE)?;
    cell.wait_for_console(r"SHA-256 fingerprint is", PROMPT_CHANGE)?;

    // A config change: the LAN (QEMU's user network) may use the cell's DNS. Generation 2.
    let (_, text) = admin.call(cell, "GET", "/api/config", None)?;
    let mut config: Value = serde_json::from_str(&text)?;
    config["services"]["dns"]["allowed_networks"] = json!(["10.0.2.0/24"]);
    let etag = etag_of(cell)?;
    let answer = cell.http(
        "PUT",
        443,
        "/api/config",
        Some(&config.to_string()),
        &[&format!("x-csrf-token: {}", admin.csrf), &format!("if-match: {etag}")],
    )?;
    expect(answer, 200, "PUT /api/config")?;
    ensure!(admin.current(cell)? == 2, "the config change is not generation 2");

    // A peer (generation 3): its name resolves through the cell's DNS on the forwarded port,
    // and the kernel's WireGuard interface has its key.
    let peer = admin.json(cell, "POST", "/api/peers", Some(&json!({"name": "phone"})))?;
    ensure!(peer["generation"] == 3, "{peer}");
    let address = peer["peer"]["address"].as_str().context("the peer's address")?.to_owned();
    let key = peer["peer"]["public_key"].as_str().context("the peer's key")?.to_owned();
    ensure!(cell.dig("phone.vmcell.cell")? == address, "phone.vmcell.cell does not resolve to {address}");
    let peers = cell.succeed("wg show wg0 peers")?;
    ensure!(peers.contains(&key), "wg0 lacks the peer: {peers}");
    cell.succeed("lsmod | grep -qw wireguard")?;

    // Reboot: port 80 answers with the progress page while the containers start (the ruleset
    // holds the ports back until the proxy runs), then the web UI through Caddy; still
    // generation 3, every service healthy, the peer still there.
    cell.reboot(POWER_CYCLE)?;
    let (progress_page, ui) = port_80_until_the_web_ui(cell, REBOOT_UI)?;
    figures.insert("reboot_progress_page_s".into(), json!(progress_page));
    figures.insert("reboot_to_ui_s".into(), json!(ui));
    cell.succeed("docker inspect -f '{{.State.Running}}' pic-proxy | grep -qx true")?;
    // The API answers on port 80 from the first progress page on (the front door serves it).
    let reboot = progress_page;
    figures.insert("reboot_to_api_s".into(), json!(reboot));
    figures.insert("reboot_per_baseline".into(), json!(reboot / baseline));
    let journal = cell.succeed(
        "systemd-analyze critical-chain pic.service --no-pager; \
         journalctl -b -o short-monotonic --no-pager -u pic -u docker | grep -v ' level=info' | head -n 60",
    )?;
    eprintln!("reboot, where the time went:\n{journal}");
    let admin = Admin::log_in(cell)?;
    ensure!(admin.current(cell)? == 3, "after a reboot the cell is not on generation 3");
    admin.wait_all_healthy(cell, ALL_HEALTHY)?;
    every_activation_succeeded(cell)?;
    ensure!(cell.dig("phone.vmcell.cell")? == address, "after a reboot the peer's name is gone");
    ensure!(cell.succeed("wg show wg0 peers")?.contains(&key), "after a reboot wg0 lacks the peer");

    // Rollback: generation 2, without the peer; another reboot keeps it.
    admin.json(cell, "POST", "/api/rollback", None)?;
    ensure!(admin.current(cell)? == 2, "the rollback did not reach generation 2");
    cell.wait_until_succeeds("! wg show wg0 peers | grep -q .", PROMPT_CHANGE)?;
    cell.reboot(POWER_CYCLE)?;
    boot_to_api(cell)?;
    let admin = Admin::log_in(cell)?;
    ensure!(admin.current(cell)? == 2, "after a reboot the rollback is undone");
    admin.wait_all_healthy(cell, ALL_HEALTHY)?;
    ensure!(cell.dig("phone.vmcell.cell")?.is_empty(), "the rolled-back peer still resolves");

    // Power cut in the middle of a switch to generation 3: the new `current` link is made but
    // not yet renamed into place when the power goes.
    cell.succeed(
        "PIC_FAULT_PAUSE_AT='current link made' setsid pic --state /var/lib/pic switch 3 \
         >/run/switch.log 2>&1 </dev/null & true",
    )?;
    cell.wait_until_succeeds("grep -q 'paused at' /run/switch.log", PROMPT_CHANGE)?;
    cell.crash()?;
    cell.start()?;
    boot_to_api(cell)?;
    let verify = cell.succeed("pic --state /var/lib/pic verify")?;
    ensure!(verify.contains("all match"), "pic verify after the power cut: {verify}");
    let admin = Admin::log_in(cell)?;
    let current = admin.current(cell)?;
    ensure!(current == 2, "after the power cut the cell is on generation {current}, not the complete 2");
    admin.wait_all_healthy(cell, ALL_HEALTHY)?;
    let store_seconds = store_offline(cell, &admin)?;
    figures.insert("store_offline_install_s".into(), json!(store_seconds));
    cell.shutdown(POWER_CYCLE)?;

    eprintln!("figures: {}", serde_json::to_string_pretty(&figures)?);
    let out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/vm-test-figures.json"));
    std::fs::write(out, serde_json::to_string_pretty(&figures)? + "\n")?;
    Ok(())
}

/// The service store on the device: the repository's index, signed here, and its key in the
/// config (a generation). An install takes the base layer of the app's image from Docker's store
/// (Docker 26 here, whose archive layout differs from the build machine's), then needs Debian's
/// archive, which this VM cannot reach: it fails at once saying so, and the cell stays on its
/// generation with no app image. Returns how long the install took to fail.
fn store_offline(cell: &mut Machine, admin: &Admin) -> Result<f64> {
    let tmp = tempfile::tempdir()?;
    let index = tmp.path().join("index");
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../store"))
        .arg(&index)
        .status()?;
    ensure!(copied.success(), "copying store/");
    let key = minisign::Key::new(tmp.path(), "publisher");
    key.sign_index(&index);
    let tar = std::process::Command::new("tar").arg("czf").arg("-").arg("-C").arg(&index).arg(".").output()?;
    ensure!(tar.status.success(), "tar of the index");
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &tar.stdout);
    cell.succeed(&format!("mkdir -p /var/tmp/store && echo {encoded} | base64 -d | tar xzf - -C /var/tmp/store"))?;
    let (_, text) = admin.call(cell, "GET", "/api/config", None)?;
    let mut config: Value = serde_json::from_str(&text)?;
    config["store"] = json!({"index": "/var/tmp/store", "trusted_keys": [key.public]});
    let etag = etag_of(cell)?;
    let answer = cell.http(
        "PUT",
        443,
        "/api/config",
        Some(&config.to_string()),
        &[&format!("x-csrf-token: {}", admin.csrf), &format!("if-match: {etag}")],
    )?;
    expect(answer, 200, "PUT /api/config with the store")?;
    let generation = admin.current(cell)?;
    let listed = cell.succeed("set -a; . /etc/environment; pic store list")?;
    ensure!(listed.contains("syncthing"), "pic store list: {listed}");
    let started = Instant::now();
    // A login shell's environment (pam_env reads /etc/environment), as pic.service's.
    let (code, out) = cell.execute(&format!(
        "set -a; . /etc/environment; PIC_LOG=info timeout {} pic store install syncthing",
        STORE_OFFLINE.as_secs()
    ))?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("pic store install syncthing without Debian's archive ({seconds:.1} s, exit {code}):\n{out}");
    ensure!(code == 1, "the install without the archive: exit {code}: {out}");
    ensure!(
        out.contains("the base layer of app images taken from Docker"),
        "the base was not taken from Docker: {out}"
    );
    ensure!(out.contains("Debian's archive cannot be reached"), "the failure does not say what failed: {out}");
    cell.succeed("test -s /var/cache/pic/images/layers/$(docker image inspect -f '{{index .RootFS.Layers 0}}' pic/dns:latest | cut -d: -f2).tar")?;
    ensure!(admin.current(cell)? == generation, "a failed install changed the generation");
    cell.succeed("test -z \"$(docker image ls -q 'pic/app-*')\"")?;
    Ok(seconds)
}

/// The ETag of `GET /api/config`, for the If-Match of a PUT.
fn etag_of(cell: &mut Machine) -> Result<String> {
    let headers = cell.http_headers(443, "/api/config")?;
    headers
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("etag:").map(|e| e.trim().to_owned()))
        .context("no ETag on GET /api/config")
}

/// The image written to a disk of its own size, booted with the network cable out: the console
/// says the disk is too small (with the sizes) and that there is no address; with the cable in,
/// the address line comes and port 80 serves the same message; no container was started.
#[test]
fn a_disk_too_small_and_a_missing_cable_are_told_on_the_console_and_at_the_address() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let options =
        Options { disk_gib: None, link_up: false, forwards: vec![(80, free_tcp_port())], ..Options::default() };
    let mut cell = Machine::boot("small", &image(), dir.path(), options)?;
    cell.wait_for_console(r"PIC cannot start:", TOO_SMALL_MESSAGE)?;
    let too_small = cell.uptime();
    let message =
        cell.wait_for_console(r"The disk is [0-9.]+ [MG]B; PIC needs a disk of at least [0-9.]+ GB\.", PROMPT_CHANGE)?;
    cell.wait_for_console(r"No network address after [0-9]+ s: check the network cable", NO_ADDRESS_MESSAGE)?;
    let no_address = cell.uptime();
    cell.set_link(true)?;
    cell.wait_for_console(r"Open http://10\.0\.2\.15/ in a browser to read this message\.", ADDRESS_LINE)?;
    let (status, page) = cell.get_quietly(80, "/", std::time::Duration::from_secs(30))?;
    ensure!(status == 503 && page.contains("PIC cannot start") && page.contains(&message), "port 80: {status}: {page}");
    let status = expect(cell.http("GET", 80, "/api/setup/status", None, &[])?, 200, "setup status")?;
    ensure!(
        status["device"]["phase"] == "blocked" && status["device"]["problem"]["code"] == "disk_too_small",
        "{status}"
    );
    // Nothing half-started: no container, no state laid out.
    cell.succeed("test -z \"$(docker ps -aq)\" && ! test -e /var/lib/pic/current")?;
    eprintln!("too small: the console said so {too_small:.1} s after power-on; no address: {no_address:.1} s");
    let out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/vm-test-small-disk.json"));
    let figures = json!({"too_small_message_s": too_small, "no_address_message_s": no_address, "message": message});
    std::fs::write(out, serde_json::to_string_pretty(&figures)? + "\n")?;
    cell.crash()
}

/// The bundles the update part of the story uploads: the one `make vm-test` built (a higher
/// version from the same tree), and from its payloads, signed again, bundles that must be refused
/// (another key, another architecture, an older version), a broken version (its Docker masked on
/// the kernel command line, so its boot check fails) and a spare one for the power cuts.
struct Bundles {
    good: PathBuf,
    version: String,
    bad_signature: PathBuf,
    other_architecture: PathBuf,
    older: PathBuf,
    broken: PathBuf,
    broken_version: String,
    spare: PathBuf,
    spare_version: String,
}

impl Bundles {
    fn make(dir: &Path) -> Result<Bundles> {
        use pic_builder::update::bundle::{self, Bundle, SigningKey};
        std::fs::create_dir_all(dir)?;
        let target = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target"));
        let good =
            std::env::var_os("PIC_UPDATE_BUNDLE").map_or_else(|| target.join("vm-test-update.picupd"), PathBuf::from);
        let key_path =
            std::env::var_os("PIC_UPDATE_KEY").map_or_else(|| target.join("test-update-signing.key"), PathBuf::from);
        let key =
            bundle::signing_key(&key_path, false).with_context(|| format!("{} (make vm-test)", key_path.display()))?;
        let opened = Bundle::open(&good, &bundle::public_key(&key))
            .with_context(|| format!("{} (make vm-test)", good.display()))?;
        let mut payloads = Vec::new();
        for name in bundle::PAYLOADS {
            let (mut reader, _, _) = opened.payload(name)?;
            let path = dir.join(name);
            std::io::copy(&mut reader, &mut std::fs::File::create(&path)?)?;
            payloads.push((name.to_owned(), path));
        }
        let version = opened.manifest.version.to_string();
        let make = |file: &str, change: &dyn Fn(&mut bundle::Manifest), key: &SigningKey| -> Result<PathBuf> {
            let mut manifest = opened.manifest.clone();
            change(&mut manifest);
            let path = dir.join(file);
            bundle::write_members(&manifest, &bundle::sign(&manifest, key), &payloads, &path)?;
            Ok(path)
        };
        // The bundles that must be refused need no real payloads (each is whole and matches its
        // manifest, so only what is tested refuses it): small, they upload in a moment.
        let small = |file: &str, change: &dyn Fn(&mut bundle::Manifest), key: &SigningKey| -> Result<PathBuf> {
            let parts = dir.join(format!("{file}.parts"));
            std::fs::create_dir_all(&parts)?;
            let (root, kernel, initrd) = (parts.join("root"), parts.join("kernel"), parts.join("initrd"));
            for part in [&root, &kernel, &initrd] {
                std::fs::write(part, file)?;
            }
            let mut manifest = opened.manifest.clone();
            change(&mut manifest);
            let path = dir.join(file);
            bundle::write(&bundle::Parts { root: &root, kernel: &kernel, initrd: &initrd }, manifest, key, &path)?;
            Ok(path)
        };
        let stranger = SigningKey::from_bytes(&[9u8; 32]);
        let broken_version = format!("{version}.1");
        let spare_version = format!("{version}.2");
        Ok(Bundles {
            bad_signature: small("stranger.picupd", &|_| {}, &stranger)?,
            other_architecture: small("aarch64.picupd", &|m| m.architecture = "aarch64".into(), &key)?,
            older: small("older.picupd", &|m| m.version = "1".parse().unwrap(), &key)?,
            broken: make(
                "broken.picupd",
                &|m| {
                    m.version = broken_version.parse().unwrap();
                    m.cmdline.push_str(" systemd.mask=docker.service systemd.mask=docker.socket");
                },
                &key,
            )?,
            spare: make("spare.picupd", &|m| m.version = spare_version.parse().unwrap(), &key)?,
            good,
            version,
            broken_version,
            spare_version,
        })
    }
}

/// Updates of a set-up cell (its DNS and proxy): refused bundles change nothing on the disk; the
/// good one is uploaded, the device restarts into it (a new QEMU process, from the firmware) and
/// confirms it, with the cell's generations, peers and data all there; a broken one is tried three
/// times and the device comes back by itself, saying why; power cuts while a bundle is written
/// leave the running version booting, and the bundle applies afterwards.
#[test]
fn a_flashed_device_is_updated_falls_back_from_a_broken_version_and_survives_power_cuts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bundles = Bundles::make(&dir.path().join("bundles"))?;
    let options = Options {
        forwards: vec![(80, free_tcp_port()), (443, free_tcp_port())],
        // The bundle the power cuts interrupt, as a second disk (/dev/vdb) for `pic update apply`.
        drives: vec![bundles.spare.clone()],
        ..Options::default()
    };
    let mut cell = Machine::boot("updated", &image(), dir.path(), options)?;
    let mut figures = serde_json::Map::new();
    let result = updates(&mut cell, &bundles, &mut figures);
    if result.is_err() {
        let report = "ls -l /efi/loader/entries; pic --state /var/lib/pic update status; cat /var/lib/pic/updates/last-check.json; \
                      journalctl -b -u pic -u pic-boot-check -u systemd-bless-boot --no-pager | tail -n 60; \
                      docker logs --tail 20 pic-proxy 2>&1; tail -n 20 /var/lib/pic/logs/api.log";
        if let Ok((_, journal)) = cell.execute(report) {
            eprintln!(
                "--- the boot entries, the slots and the journal of pic.service and the boot check ---\n{journal}"
            );
        }
    }
    result?;
    cell.shutdown(POWER_CYCLE)?;
    eprintln!("figures: {}", serde_json::to_string_pretty(&figures)?);
    let out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/vm-test-update-figures.json"));
    std::fs::write(out, serde_json::to_string_pretty(&figures)? + "\n")?;
    Ok(())
}

fn updates(cell: &mut Machine, bundles: &Bundles, figures: &mut serde_json::Map<String, Value>) -> Result<()> {
    port_80_until_the_web_ui(cell, FIRST_BOOT_WIZARD)?;
    let setup = json!({"cell_name": "vmcell", "admin_password": PASSWORD, "services": ["proxy", "dns"]}).to_string();
    expect(cell.http("POST", 80, "/api/setup", Some(&setup), &[])?, 200, "setup")?;
    wait_until_ready(cell, SETUP_READY)?;
    let admin = Admin::log_in(cell)?;
    let mut csrf = format!("x-csrf-token: {}", admin.csrf);
    let peer = admin.json(cell, "POST", "/api/peers", Some(&json!({"name": "laptop"})))?;
    let peer_key = peer["peer"]["public_key"].as_str().context("the peer's key")?.to_owned();
    cell.succeed("echo kept > /var/lib/pic/update-marker")?;
    let generations = admin.json(cell, "GET", "/api/generations", None)?;
    let status = admin.json(cell, "GET", "/api/updates", None)?;
    ensure!(
        status["supported"] == true
            && status["booted_slot"] == "a"
            && status["boot"] == "good"
            && status["ready"] == true,
        "before any update: {status}"
    );
    let first = status["version"].as_str().context("the running version")?.to_owned();

    // Refused bundles: a 422 naming why, and not a byte written to the GPT or the ESP.
    let esp = cell.succeed(
        "d=$(basename $(readlink -f /dev/disk/by-partlabel/pic-esp)); echo $(cat /sys/class/block/$d/start) $(cat /sys/class/block/$d/size)",
    )?;
    let mut sectors = esp.split_whitespace().map(|n| n.parse::<i64>());
    let (start, size) = (sectors.next().context("ESP start")??, sectors.next().context("ESP size")??);
    let ranges = [(0, 1 << 20), (-(1 << 20), 1 << 20), (start * 512, size as u64 * 512)];
    cell.succeed("sync")?;
    let before = cell.disk_hashes(&ranges)?;
    for (file, code) in [
        (&bundles.bad_signature, "bad_signature"),
        (&bundles.other_architecture, "wrong_architecture"),
        (&bundles.older, "not_newer"),
    ] {
        let (status, body) = cell.upload(443, "/api/updates", file, &[&csrf])?;
        ensure!(status == 422 && body.contains(code), "{}: HTTP {status}: {body}", file.display());
    }
    cell.succeed("sync; ! ls /var/lib/pic/updates/.tmp-* 2>/dev/null")?;
    ensure!(cell.disk_hashes(&ranges)? == before, "a refused bundle changed the GPT or the ESP");

    // The good one: uploaded, written into slot B, started by a restart of the machine.
    let started = Instant::now();
    let applied = expect(cell.upload(443, "/api/updates", &bundles.good, &[&csrf])?, 200, "the update")?;
    let apply_seconds = started.elapsed().as_secs_f64();
    ensure!(applied["version"] == bundles.version.as_str() && applied["slot"] == "b", "{applied}");
    ensure!(apply_seconds < UPDATE_APPLY.as_secs_f64(), "the upload and write took {apply_seconds:.0} s");
    figures.insert("update_bundle_mb".into(), json!(std::fs::metadata(&bundles.good)?.len() as f64 / 1e6));
    figures.insert("update_upload_and_apply_s".into(), json!(apply_seconds));
    figures.insert("update_write_s".into(), applied["seconds"].clone());
    let started = Instant::now();
    expect(admin.call(cell, "POST", "/api/updates/reboot", None)?, 202, "the restart")?;
    cell.wait_for_power_off(POWER_CYCLE)?;
    cell.start()?;
    boot_to_api(cell)?;
    cell.wait_until_succeeds(&format!("test -f /efi/loader/entries/pic-{}.conf", bundles.version), UPDATE_CONFIRMED)?;
    let downtime = started.elapsed().as_secs_f64();
    figures.insert("update_reboot_to_confirmed_s".into(), json!(downtime));
    let admin = Admin::log_in(cell)?;
    csrf = format!("x-csrf-token: {}", admin.csrf);
    let status = admin.json(cell, "GET", "/api/updates", None)?;
    ensure!(
        status["version"] == bundles.version.as_str() && status["booted_slot"] == "b" && status["boot"] == "good",
        "after the update: {status}"
    );
    ensure!(status["slots"][0]["version"] == first.as_str() && status["slots"][0]["state"] == "good", "{status}");
    ensure!(
        admin.json(cell, "GET", "/api/generations", None)? == generations,
        "the generations changed with the update"
    );
    cell.succeed("grep -qx kept /var/lib/pic/update-marker")?;
    cell.succeed("grep -q IMAGE_VERSION=  /usr/lib/os-release")?;
    ensure!(cell.succeed("wg show wg0 peers")?.contains(&peer_key), "after the update wg0 lacks the peer");
    wait_until_ready(cell, ALL_HEALTHY)?;

    // A broken version (Docker masked): three tries, each ended by its failing boot check, then
    // the device is back on the good one by itself, and says why.
    let applied = expect(cell.upload(443, "/api/updates", &bundles.broken, &[&csrf])?, 200, "the broken update")?;
    ensure!(applied["slot"] == "a", "{applied}");
    expect(admin.call(cell, "POST", "/api/updates/reboot", None)?, 202, "the restart")?;
    cell.wait_for_power_off(POWER_CYCLE)?;
    for attempt in 1..=3 {
        cell.start()?;
        cell.note(&format!("try {attempt} of the broken version"));
        cell.wait_for_power_off(FAILED_TRY)?;
    }
    cell.start()?;
    boot_to_api(cell)?;
    let admin = Admin::log_in(cell)?;
    csrf = format!("x-csrf-token: {}", admin.csrf);
    let status = admin.json(cell, "GET", "/api/updates", None)?;
    ensure!(
        status["version"] == bundles.version.as_str() && status["booted_slot"] == "b",
        "after the fallback: {status}"
    );
    ensure!(
        status["slots"][0]["state"] == "bad" && status["slots"][0]["version"] == bundles.broken_version.as_str(),
        "{status}"
    );
    let rejected = status["rejected"].as_array().context("rejected")?;
    ensure!(
        rejected.iter().any(|r| r["version"] == bundles.broken_version.as_str()
            && r["reason"].as_str().is_some_and(|t| t.contains("Docker cannot run"))),
        "the rejection is not reported with its reason: {status}"
    );
    cell.succeed(&format!("test -f /efi/loader/entries/pic-{}+0-3.conf", bundles.broken_version))?;
    // No loop: the good version is not on trial, so nothing checks it or restarts it.
    cell.succeed("systemctl is-active pic.service && ! systemctl is-active pic-boot-check.service")?;
    ensure!(cell.running(), "the machine restarted again after falling back");
    // A rejected version stays refused.
    let (code, body) = cell.upload(443, "/api/updates", &bundles.broken, &[&csrf])?;
    ensure!(code == 422 && body.contains("rejected_before"), "the rejected version again: HTTP {code}: {body}");

    // Power cuts while the spare bundle is written (from the second disk, by the CLI): the
    // running version boots every time, slot A holds nothing bootable; then it applies.
    // On the disk before the first power cut, which would otherwise take it back with it.
    cell.succeed("cp /dev/vdb /var/tmp/spare.picupd && sync")?;
    for point in ["update: old entry removed", "update: root half written", "update: boot file written"] {
        cell.succeed(&format!(
            "PIC_FAULT_PAUSE_AT='{point}' setsid pic --state /var/lib/pic update apply /var/tmp/spare.picupd \
             >/run/apply.log 2>&1 </dev/null & true"
        ))?;
        cell.wait_until_succeeds("grep 'paused at' /run/apply.log || { cat /run/apply.log; false; }", APPLY_PAUSE)?;
        cell.crash()?;
        cell.start()?;
        boot_to_api(cell)?;
        let admin = Admin::log_in(cell)?;
        let status = admin.json(cell, "GET", "/api/updates", None)?;
        ensure!(
            status["version"] == bundles.version.as_str()
                && status["booted_slot"] == "b"
                && status["slots"][0]["state"] == "empty",
            "after a power cut at {point:?}: {status}"
        );
    }
    let out = cell.succeed("pic --state /var/lib/pic update apply /var/tmp/spare.picupd")?;
    ensure!(out.contains(&format!("version {} written into slot a", bundles.spare_version)), "{out}");
    let out = cell.succeed("pic --state /var/lib/pic update status")?;
    ensure!(out.contains("on trial, 3 tries left"), "{out}");
    Ok(())
}

/// No step of an activation failed in this boot (a failure is only logged, and the next
/// activation may hide it: the firewall held its ports back, then published them).
fn every_activation_succeeded(cell: &mut Machine) -> Result<()> {
    cell.succeed("! journalctl -b -u pic --no-pager | grep -m 5 -E 'activation failed|activation task failed'")?;
    Ok(())
}

/// The steps of setup and the activations after it from `pic serve`'s log (JSON lines), each
/// with its time since the first: the generation built, the containers made, each service's
/// first answer, the health gate.
fn activation_timeline(cell: &mut Machine) -> Result<String> {
    let lines = cell.succeed(
        "grep -h -E '\"message\":\"(setup: |activating|container made|containers activated|healthy|health gate done|firewall loaded)' \
         /var/lib/pic/logs/api.log | tail -n 40",
    )?;
    let lines: Vec<Value> = lines.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    // From setup's own line when there is one (the boot's activation came before).
    let first = lines
        .iter()
        .rposition(|l| l["fields"]["message"].as_str().is_some_and(|m| m.starts_with("setup: ")))
        .unwrap_or(0);
    let mut start = None;
    let mut out = String::new();
    for line in &lines[first..] {
        let Some(at) = line["timestamp"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()) else { continue };
        let since = at.duration_since(*start.get_or_insert(at)).as_secs_f64();
        let mut fields = line["fields"].as_object().cloned().unwrap_or_default();
        let message = fields.remove("message").and_then(|m| m.as_str().map(str::to_owned)).unwrap_or_default();
        let rest: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!("  +{since:6.2} s  {message} {}\n", rest.join(" ")));
    }
    Ok(out)
}
