//! Tier 5: the flashable disk image (`make image`) booted in QEMU (TCG) and driven like a NixOS
//! test. Needs `target/pic.img` (or `$PIC_IMAGE`), qemu-system-x86, ovmf and dig.
//!
//! One machine lives through the whole story, because every boot under TCG costs minutes: first
//! boot and the wizard through Caddy, the read-only root, setup through the API, a config change
//! and a peer (its name through the cell's DNS on a forwarded port, its key in the kernel's
//! WireGuard interface), a reboot, a rollback and another reboot, and a power cut in the middle
//! of a switch. The figures (boot to API, first activation, image size) are printed at the end
//! and written to `target/vm-test-figures.json`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use pic_vm_tests::{Machine, Options};
use serde_json::{Value, json};

/// How much slower than an idle machine of this kind a busy one runs a TCG guest: the busiest
/// run measured took 3.3 times the idle figures. Every budget below is an idle figure measured
/// under TCG (2 cores, no KVM) times this.
const BUSY: u32 = 5;
const fn idle_secs(s: u64) -> Duration {
    Duration::from_secs(s * BUSY as u64)
}
/// Power-on to the console's `Open http://…` line: ~50 s.
const CONSOLE_ADDRESS: Duration = idle_secs(60);
/// Power-on to `pic serve` answering, a first boot loading 579 MB of images included: 124 s.
const BOOT_TO_API: Duration = idle_secs(130);
/// `pic serve` answering to Caddy answering on port 80 (the setup proxy or the cell's): ~3 s,
/// Docker starting the container after a boot included: 60 s.
const CADDY_ANSWERS: Duration = idle_secs(60);
/// Setup (or a reboot) to every service healthy: 34 s; up to 74 s on a first activation.
const ALL_HEALTHY: Duration = idle_secs(120);
/// Setup to `ready`: the first activation, loading images that were not yet loaded.
const SETUP_READY: Duration = idle_secs(180);
/// A command the agent runs that changes state at once (a peer off wg0, a switch pausing): ~1 s.
const PROMPT_CHANGE: Duration = idle_secs(20);
/// A clean shutdown or the reboot command to the next power-on: ~10 s.
const POWER_CYCLE: Duration = idle_secs(60);
const PASSWORD: &str = "correct horse battery staple";
/// Every service the wizard offers.
const SERVICES: [&str; 8] = ["proxy", "dns", "dhcp", "ntp", "mail", "calendar", "files", "webmail"];

fn image() -> PathBuf {
    std::env::var_os("PIC_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/pic.img")))
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The cell as its admin sees it through the forwarded port 80: a session and its CSRF token.
struct Admin {
    csrf: String,
}

impl Admin {
    fn log_in(cell: &mut Machine) -> Result<Admin> {
        let login = json!({"username": "admin", "password": PASSWORD}).to_string();
        let body = expect(cell.http("POST", 80, "/api/auth/login", Some(&login), &[])?, 200, "login")?;
        let csrf = body["csrf_token"].as_str().context("no csrf_token")?.to_owned();
        Ok(Admin { csrf })
    }

    fn call(&self, cell: &mut Machine, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, String)> {
        let header = format!("x-csrf-token: {}", self.csrf);
        let text = body.map(Value::to_string);
        cell.http(method, 80, path, text.as_deref(), &[&header])
    }

    fn json(&self, cell: &mut Machine, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let answer = self.call(cell, method, path, body)?;
        expect(answer, 0, &format!("{method} {path}"))
    }

    /// The current generation's number.
    fn current(&self, cell: &mut Machine) -> Result<u64> {
        let list = self.json(cell, "GET", "/api/generations", None)?;
        list.as_array()
            .and_then(|gens| gens.iter().find(|g| g["current"] == true))
            .and_then(|g| g["number"].as_u64())
            .context("no current generation")
    }

    /// Waits until every service's container is running and healthy; returns how long it took.
    fn wait_all_healthy(&self, cell: &mut Machine, limit: Duration) -> Result<f64> {
        let started = Instant::now();
        loop {
            let containers = self.json(cell, "GET", "/api/containers", None)?;
            let unhealthy: Vec<String> = SERVICES
                .iter()
                .filter(|s| {
                    !containers.as_array().is_some_and(|list| {
                        list.iter().any(|c| c["service"] == **s && c["health"] == "healthy" && c["state"] == "running")
                    })
                })
                .map(|s| s.to_string())
                .collect();
            if unhealthy.is_empty() {
                return Ok(started.elapsed().as_secs_f64());
            }
            if started.elapsed() > limit {
                bail!("not healthy after {limit:?}: {unhealthy:?}\n{containers:#}");
            }
            std::thread::sleep(Duration::from_secs(5));
        }
    }
}

/// The JSON body of an answer with the expected status (0: any 2xx).
fn expect((status, body): (u16, String), want: u16, what: &str) -> Result<Value> {
    let ok = if want == 0 { (200..300).contains(&status) } else { status == want };
    ensure!(ok, "{what}: HTTP {status}: {body}");
    Ok(serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Waits for pic serve to answer through Caddy on port 80 after a boot; returns seconds since
/// power-on.
fn boot_to_api(cell: &mut Machine) -> Result<f64> {
    cell.wait_for_console(r"Open http://[0-9.]+/ ", CONSOLE_ADDRESS)?;
    cell.wait_for_unit("pic.service", BOOT_TO_API)?;
    cell.wait_until_succeeds("curl -sf http://127.0.0.1:3000/health", BOOT_TO_API)?;
    cell.wait_until_succeeds("curl -sf http://127.0.0.1/health", CADDY_ANSWERS)?;
    let (status, _) = cell.wait_for_http(80, "/health", CADDY_ANSWERS)?;
    ensure!(status == 200, "GET /health through Caddy: {status}");
    Ok(cell.uptime())
}

/// The same image booted without PIC and Docker (their units leave themselves out when given the
/// `pic.baseline` credential), timed from power-on to multi-user as the cell's boots are timed:
/// the cell's figures are compared with it, measured in the same run, so that the machine's load
/// weighs on both alike.
fn baseline_boot(dir: &Path) -> Result<(f64, String)> {
    let options = Options { credentials: vec![("pic.baseline".into(), "1".into())], ..Options::default() };
    let mut machine = Machine::boot("baseline", &image(), dir, options)?;
    machine.wait_until_succeeds("systemctl is-active multi-user.target", BOOT_TO_API)?;
    let seconds = machine.uptime();
    machine.succeed("! systemctl is-active --quiet docker.service && ! systemctl is-active --quiet pic.service")?;
    let analyze = machine.succeed("systemd-analyze time")?;
    machine.crash()?;
    Ok((seconds, analyze))
}

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

    // First boot: the wizard through the setup proxy (Caddy) on ports 80 and 443.
    let first_boot = boot_to_api(cell)?;
    figures.insert("first_boot_to_api_s".into(), json!(first_boot));
    figures.insert("first_boot_per_baseline".into(), json!(first_boot / baseline));
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
    figures.insert("memory_mb".into(), memory(cell)?);
    // The cell's own Caddy took ports 80 and 443 from the setup proxy.
    cell.fail("docker inspect pic-setup-proxy")?;
    cell.succeed("docker inspect -f '{{.State.Running}}' pic-proxy | grep -qx true")?;

    // A config change: the LAN (QEMU's user network) may use the cell's DNS. Generation 2.
    let (_, text) = admin.call(cell, "GET", "/api/config", None)?;
    let mut config: Value = serde_json::from_str(&text)?;
    config["services"]["dns"]["allowed_networks"] = json!(["10.0.2.0/24"]);
    let etag = etag_of(cell)?;
    let answer = cell.http(
        "PUT",
        80,
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

    // Reboot: still generation 3, every service healthy, the peer still there.
    cell.reboot(POWER_CYCLE)?;
    let reboot = boot_to_api(cell)?;
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
    cell.shutdown(POWER_CYCLE)?;

    eprintln!("figures: {}", serde_json::to_string_pretty(&figures)?);
    let out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/vm-test-figures.json"));
    std::fs::write(out, serde_json::to_string_pretty(&figures)? + "\n")?;
    Ok(())
}

/// What the running cell uses of the guest's memory, in MB: each container, the Docker daemons
/// and `pic serve`, each from its cgroup as what it cannot give back (anonymous memory and tmpfs;
/// the page cache it also holds is reported beside it, since the kernel drops that when memory
/// runs short), the kernel's own (slab, stacks, page tables: counted once, here, and not in the
/// cgroups it is charged to), their sum, and all the guest has in use (MemTotal − MemAvailable).
fn memory(cell: &mut Machine) -> Result<Value> {
    let script = r#"
        stat() { awk '/^(anon|shmem) / {r += $2} /^file / {f = $2} /^shmem / {s = $2}
                      END {print r, f - s}' "$1/memory.stat"; }
        docker ps --no-trunc --format '{{.ID}} {{.Names}}' | while read -r id name; do
            echo "container $name $(stat /sys/fs/cgroup/system.slice/docker-$id.scope)"
        done
        for unit in docker containerd pic; do echo "unit $unit $(stat /sys/fs/cgroup/system.slice/$unit.service)"; done
        awk '/^(Slab|KernelStack|PageTables):/ {k += $2} /^MemTotal:/ {t = $2} /^MemAvailable:/ {a = $2}
             END {print "kernel all " k * 1024 " 0"; print "guest used " (t - a) * 1024 " 0"}' /proc/meminfo
    "#;
    let output = cell.succeed(script)?;
    let mb = |bytes: &str| bytes.trim().parse::<f64>().map(|b| (b / 1e6 * 10.0).round() / 10.0);
    let (mut containers, mut units) = (serde_json::Map::new(), serde_json::Map::new());
    let (mut kernel, mut used, mut cache) = (0.0, 0.0, 0.0);
    for line in output.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [kind, name, resident, page_cache] = parts[..] else { bail!("memory: an odd line {line:?} in\n{output}") };
        let value = mb(resident).with_context(|| format!("memory: {line:?}"))?;
        cache += mb(page_cache).with_context(|| format!("memory: {line:?}"))?;
        match kind {
            "container" => {
                containers.insert(name.to_owned(), json!(value));
            }
            "unit" => {
                units.insert(name.to_owned(), json!(value));
            }
            "kernel" => kernel = value,
            _ => used = value,
        }
    }
    let round = |mb: f64| (mb * 10.0).round() / 10.0;
    let sum = |m: &serde_json::Map<String, Value>| round(m.values().filter_map(Value::as_f64).sum::<f64>());
    let cell_total = sum(&containers) + sum(&units) + kernel;
    Ok(json!({
        "containers": containers, "containers_total": sum(&containers), "daemons_and_pic_serve": units,
        "kernel": kernel, "cell_total": round(cell_total), "page_cache_of_the_cell": round(cache),
        "guest_used": used,
    }))
}

/// Waits until setup status says the cell's services run (`ready`), as the wizard does; while
/// the cell's Caddy takes over from the setup proxy, a request may fail.
fn wait_until_ready(cell: &mut Machine, limit: Duration) -> Result<()> {
    let started = Instant::now();
    let mut seen: Vec<String> = Vec::new();
    loop {
        let answer = cell.http("GET", 80, "/api/setup/status", None, &[]);
        if let Ok((200, body)) = &answer
            && serde_json::from_str::<Value>(body).is_ok_and(|s| s["ready"] == true)
        {
            return Ok(());
        }
        let now = match answer {
            Ok((status, body)) => format!("HTTP {status} {body}"),
            Err(e) => format!("no answer: {e:#}"),
        };
        if seen.last().is_none_or(|last| !last.ends_with(&now)) {
            seen.push(format!("at {:>6.1} s: {now}", started.elapsed().as_secs_f64()));
        }
        ensure!(
            started.elapsed() < limit,
            "the cell was not ready {limit:?} after setup; it said:\n{}",
            seen.join("\n")
        );
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// The ETag of `GET /api/config`, for the If-Match of a PUT.
fn etag_of(cell: &mut Machine) -> Result<String> {
    let headers = cell.http_headers(80, "/api/config")?;
    headers
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("etag:").map(|e| e.trim().to_owned()))
        .context("no ETag on GET /api/config")
}
