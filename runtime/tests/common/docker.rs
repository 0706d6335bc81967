//! The cell in a real Docker engine, for the tier 3 test and `make bench`: `pic serve` with its
//! containers on a temporary state, an admin session, and the clients' helpers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::Cell;
pub use super::wait::{SERVE_START, wait_for, wait_until};

pub const PASSWORD: &str = "correct horse battery";
pub const PORT: u16 = 3811;
pub const PROXY: &str = "172.20.0.2";
pub const DNS: &str = "172.20.0.3";
pub const NTP: &str = "172.20.0.5";
pub const MAIL: &str = "172.20.0.7";
/// The host's address on the cell network, where the test's upstream resolver answers.
pub const GATEWAY: &str = "172.20.0.1";
pub const SERVICES: &[&str] = &["calendar", "dhcp", "dns", "files", "mail", "ntp", "proxy"];

/// `pic serve --health-timeout`: how long a changed service has to pass its probe.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// `pic serve --monitor-interval`: how often the monitor looks at the containers.
pub const MONITOR_INTERVAL: Duration = Duration::from_secs(2);
/// Creating and starting one container on a busy machine (0.2–0.5 s measured on an idle one).
pub const CONTAINER_START: Duration = Duration::from_secs(10);

/// How long until every service of a first activation is healthy: each container made and
/// started one after another, then the health gate's own limit.
pub fn activation_limit() -> Duration {
    CONTAINER_START * SERVICES.len() as u32 + HEALTH_TIMEOUT
}

/// How long until the monitor has put a container right: its next look, a new start, the probe.
pub fn monitor_limit() -> Duration {
    MONITOR_INTERVAL + CONTAINER_START + HEALTH_TIMEOUT
}

pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// Runs a program and insists on success; returns its standard output.
pub fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A helper process of a test, ended with the test (also when it fails).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn dig(name: &str) -> String {
    ok("dig", &["+short", "+time=2", "+tries=1", &format!("@{DNS}"), name]).trim().to_owned()
}

/// Removes every container and network PIC made on this engine.
pub fn clean_docker() {
    let ids = ok("docker", &["ps", "-aq", "--filter", "label=pic.service"]);
    for id in ids.split_whitespace() {
        run("docker", &["rm", "-f", id]);
    }
    run("docker", &["network", "rm", "cell-network"]);
}

/// Container name → (id, start time): what a recreate or restart changes.
pub fn container_starts() -> BTreeMap<String, String> {
    let out = ok("docker", &["ps", "-a", "--filter", "label=pic.service", "--format", "{{.Names}}"]);
    out.split_whitespace()
        .map(|name| {
            let started = ok("docker", &["inspect", "-f", "{{.Id}} {{.State.StartedAt}}", name]);
            (name.to_owned(), started.trim().to_owned())
        })
        .collect()
}

pub struct Running {
    pub cell: Cell,
    pub serve: Child,
    pub upstream: Option<Child>,
    pub jar: PathBuf,
    pub csrf: String,
    pub ca: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.serve.kill();
        let _ = self.serve.wait();
        if let Some(mut upstream) = self.upstream.take() {
            let _ = upstream.kill();
            let _ = upstream.wait();
        }
        if std::thread::panicking() {
            let log = self.cell.state().join("logs/api.log");
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("--- pic serve log (last lines) ---");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
        clean_docker();
    }
}

impl Running {
    /// An API call as the logged-in admin: (status, body).
    pub fn api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
        let url = format!("http://127.0.0.1:{PORT}{path}");
        let jar = self.jar.to_str().unwrap();
        let header = format!("x-csrf-token: {}", self.csrf);
        let mut args = vec!["-s", "-w", "\n%{http_code}", "-X", method, "-b", jar, "-c", jar, "-H", &header];
        let text = body.map(|b| b.to_string());
        if let Some(text) = &text {
            args.extend(["-H", "content-type: application/json", "--data", text]);
        }
        args.push(&url);
        let out = String::from_utf8_lossy(&run("curl", &args).stdout).into_owned();
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    pub fn api_json(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (code, text) = self.api(method, path, body);
        assert!((200..300).contains(&code), "{method} {path}: {code} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Replaces the config through the API (with its ETag) and returns the new generation.
    pub fn change_config(&self, change: impl FnOnce(&mut Value)) -> u64 {
        let url = format!("http://127.0.0.1:{PORT}/api/config");
        let jar = self.jar.to_str().unwrap();
        let out = ok("curl", &["-s", "-D", "-", "-b", jar, &url]);
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        let etag = head.lines().find_map(|l| l.strip_prefix("etag: ")).expect("an ETag").trim().to_owned();
        let mut config: Value = serde_json::from_str(body).unwrap();
        change(&mut config);
        let header = format!("x-csrf-token: {}", self.csrf);
        let if_match = format!("if-match: {etag}");
        let text = config.to_string();
        let out = ok(
            "curl",
            &[
                "-s",
                "-w",
                "\n%{http_code}",
                "-X",
                "PUT",
                "-b",
                jar,
                "-H",
                &header,
                "-H",
                &if_match,
                "-H",
                "content-type: application/json",
                "--data",
                &text,
                &url,
            ],
        );
        let (body, code) = out.rsplit_once('\n').unwrap();
        assert_eq!(code.trim(), "200", "PUT /api/config: {body}");
        self.cell.current().unwrap()
    }

    pub fn https(&self, host: &str, args: &[&str]) -> Output {
        let resolve = format!("{host}:443:{PROXY}");
        let ca = self.ca.to_str().unwrap();
        let mut all = vec!["-s", "--max-time", "10", "--cacert", ca, "--resolve", &resolve, "-w", "\n%{http_code}"];
        all.extend_from_slice(args);
        run("curl", &all)
    }

    /// The status of an HTTPS request through the proxy (certificate verified with the cell CA).
    pub fn https_status(&self, host: &str, args: &[&str]) -> (u16, String) {
        let out = self.https(host, args);
        assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap(), body.to_owned())
    }

    pub fn containers(&self) -> Vec<Value> {
        self.api_json("GET", "/api/containers", None).as_array().unwrap().clone()
    }

    /// Each service's container state and health, as `pic containers list` says.
    pub fn health(&self) -> BTreeMap<String, String> {
        let out = self.cell.pic(&["--json", "containers", "list", "--publish", "none"]);
        let list = serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap_or_default();
        SERVICES
            .iter()
            .map(|s| {
                let c = list.iter().find(|c| c["service"] == *s);
                let state = c.map_or("absent".to_owned(), |c| format!("{} {}", c["state"], c["health"]));
                (s.to_string(), state.replace('"', ""))
            })
            .collect()
    }

    /// Waits until every service is healthy, within a first activation's limit.
    pub fn wait_all_healthy(&self, what: &str) {
        let healthy = |h: &BTreeMap<String, String>| h.values().all(|s| s.ends_with(" healthy"));
        wait_for(what, activation_limit(), Duration::from_millis(500), || self.health(), healthy);
    }
}

pub fn start_cell() -> Running {
    clean_docker();
    let cell = Cell::new();
    let mut config = super::example();
    config["services"]["dns"]["upstreams"] = json!([GATEWAY]);
    config["services"]["webmail"]["enabled"] = json!(false);
    let path = cell.write_config("cell.json", &config);
    cell.ok(&["init", "--config", &path]);
    cell.ok(&["switch"]);
    cell.set_password("alice", PASSWORD);
    cell.set_password("bob", PASSWORD);
    let ca = cell.dir.path().join("ca.crt");
    std::fs::write(&ca, cell.ok(&["ca", "export"])).unwrap();
    let serve = spawn_serve(&cell);
    let jar = cell.dir.path().join("cookies");
    let mut running = Running { cell, serve, upstream: None, jar, csrf: String::new(), ca };
    running.log_in();
    running
}

/// `pic serve` on the cell's state, as the tests run it.
fn spawn_serve(cell: &Cell) -> Child {
    let state = cell.state();
    Command::new(env!("CARGO_BIN_EXE_pic"))
        .args(["--state", state.to_str().unwrap(), "serve", "--listen", &format!("127.0.0.1:{PORT}")])
        .args(["--wireguard", "off", "--publish", "none"])
        .args(["--health-timeout", &HEALTH_TIMEOUT.as_secs().to_string()])
        .args(["--monitor-interval", &MONITOR_INTERVAL.as_secs().to_string()])
        // The fake DNS provider's records are in Pebble's DNS at once.
        .args(["--dns-propagation", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

impl Running {
    pub fn ok_text(&self, args: &[&str]) -> String {
        self.cell.ok(args)
    }

    /// Waits for `pic serve` to answer and logs in as alice.
    fn log_in(&mut self) {
        wait_until("pic serve answers", SERVE_START, || {
            run("curl", &["-sf", &format!("http://127.0.0.1:{PORT}/health")]).status.success()
        });
        let login = json!({"username": "alice", "password": PASSWORD});
        let body = self.api_json("POST", "/api/auth/login", Some(&login));
        self.csrf = body["csrf_token"].as_str().unwrap().to_owned();
    }

    /// Stops `pic serve` (the containers keep running).
    pub fn stop_serve(&mut self) {
        let _ = self.serve.kill();
        let _ = self.serve.wait();
    }

    /// Starts `pic serve` again and logs in.
    pub fn start_serve(&mut self) {
        self.serve = spawn_serve(&self.cell);
        self.log_in();
    }
}

/// Devices of the VPN without WireGuard: a network namespace whose addresses in the VPN subnet
/// are routed to the host as the WireGuard interface would route them (no NAT, so the cell's
/// containers see the device's own address). Removed again when dropped.
pub struct VpnDevices {
    namespace: String,
    host_link: String,
    /// The `DOCKER-USER` rule that lets the link's traffic reach the cell network (Docker's own
    /// FORWARD chain drops what it does not know; on the appliance the published ports open it).
    forward_rule: Vec<String>,
}

impl VpnDevices {
    /// `addresses` inside `subnet`; the host takes `gateway` (the cell's VPN address).
    pub fn new(subnet_prefix: u8, gateway: &str, addresses: &[&str]) -> VpnDevices {
        let id = std::process::id() % 10_000;
        let (namespace, host_link, device_link) = (format!("pic-vpn-{id}"), format!("pvh{id}"), format!("pvd{id}"));
        let forward_rule: Vec<String> =
            ["DOCKER-USER", "-i", &host_link, "-j", "ACCEPT"].iter().map(|s| s.to_string()).collect();
        let devices = VpnDevices { namespace: namespace.clone(), host_link: host_link.clone(), forward_rule };
        let host_address = format!("{gateway}/{subnet_prefix}");
        ok("ip", &["netns", "add", &namespace]);
        ok("ip", &["link", "add", &host_link, "type", "veth", "peer", "name", &device_link, "netns", &namespace]);
        ok("ip", &["address", "add", &host_address, "dev", &host_link]);
        ok("ip", &["link", "set", &host_link, "up"]);
        for address in addresses {
            let with_prefix = format!("{address}/{subnet_prefix}");
            ok("ip", &["-n", &namespace, "address", "add", &with_prefix, "dev", &device_link]);
        }
        ok("ip", &["-n", &namespace, "link", "set", &device_link, "up"]);
        ok("ip", &["-n", &namespace, "link", "set", "lo", "up"]);
        ok("ip", &["-n", &namespace, "route", "add", "default", "via", gateway]);
        let mut insert = vec!["-I"];
        insert.extend(devices.forward_rule.iter().map(String::as_str));
        ok("iptables", &insert);
        devices
    }

    /// An HTTPS request through the cell's proxy from `source`: (status, body).
    pub fn https(&self, running: &Running, source: &str, host: &str, args: &[&str]) -> (u16, String) {
        let resolve = format!("{host}:443:{PROXY}");
        let ca = running.ca.to_str().unwrap();
        let mut all = vec!["netns", "exec", &self.namespace, "curl", "-s", "--max-time", "10", "--interface", source];
        all.extend(["--cacert", ca, "--resolve", &resolve, "-w", "\n%{http_code}"]);
        all.extend_from_slice(args);
        let out = run("ip", &all);
        assert!(out.status.success(), "curl from {source} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap(), body.to_owned())
    }
}

impl Drop for VpnDevices {
    fn drop(&mut self) {
        let mut delete = vec!["-D"];
        delete.extend(self.forward_rule.iter().map(String::as_str));
        run("iptables", &delete);
        run("ip", &["link", "del", &self.host_link]);
        run("ip", &["netns", "del", &self.namespace]);
    }
}
