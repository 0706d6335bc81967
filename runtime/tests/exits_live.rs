//! Exits live: a cell in a network namespace with `pic serve` (wireguard-go, its firewall), its
//! DNS (unbound), calendar (Radicale) and proxy (Caddy) in namespaces on its bridge, two devices
//! of its VPN, "the internet" (a router namespace with a web server that records who asks) and
//! a VPN provider (wireguard-go, NAT, and a DNS server that records what it is asked). The
//! phone is sent through the provider's exit, the laptop is not; no packet leaves the machine.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::wait::{wait_for, wait_until};
use serde_json::{Value, json};

const PASSWORD: &str = "alice-password-1";

/// A WireGuard handshake through a busy machine (a retry comes after 5 s).
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(30);
/// A daemon's start on a busy machine.
const DAEMON_START: Duration = Duration::from_secs(30);
/// `pic serve` looks at its exits every 5 s; a missing tunnel is made again at the next look,
/// and then needs its handshake.
const REPAIR_LIMIT: Duration = Duration::from_secs(45);

/// The web server on "the internet": answers every request with the address it came from, and
/// appends that address to the file given.
const WEB: &str = r#"
import http.server, sys
log = sys.argv[1]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(log, "a") as f:
            f.write(self.client_address[0] + "\n")
        body = self.client_address[0].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("10.250.0.10", 80), Handler).serve_forever()
"#;

/// The provider's DNS server (at the address given second): answers every A question with the
/// web server's address and appends each name it was asked to the file given first.
const PROVIDER_DNS: &str = r#"
import socket, struct, sys
log = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[2], 53))
while True:
    data, peer = s.recvfrom(512)
    labels, i = [], 12
    while data[i]:
        labels.append(data[i + 1:i + 1 + data[i]].decode()); i += 1 + data[i]
    question = data[12:i + 5]
    with open(log, "a") as f:
        f.write(".".join(labels) + "\n")
    header = data[:2] + b"\x81\x80" + struct.pack(">HHHH", 1, 1, 0, 0)
    answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton("10.250.0.10")
    s.sendto(header + question + answer, peer)
"#;

/// The cell's services that run here, at their default addresses.
const SERVICES: [(&str, &str); 3] = [("proxy", "172.20.0.2"), ("dns", "172.20.0.3"), ("calendar", "172.20.0.8")];

/// Namespaces, processes and files of the test; all go when it ends, also when it fails.
struct Lab {
    id: u32,
    dir: tempfile::TempDir,
    namespaces: Vec<String>,
    children: Vec<Child>,
    /// wireguard-go's interfaces outside `pic serve`'s mount namespace (their control sockets).
    interfaces: Vec<String>,
}

impl Lab {
    fn ns(&self, role: &str) -> String {
        format!("px{role}{}", self.id)
    }

    fn add_ns(&mut self, role: &str) -> String {
        let ns = self.ns(role);
        run("ip", &["netns", "add", &ns]);
        run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        self.namespaces.push(ns.clone());
        ns
    }

    /// A veth pair between two namespaces, each end named and addressed (an empty address: none).
    fn wire(&self, (a, a_if, a_addr): (&str, &str, &str), (b, b_if, b_addr): (&str, &str, &str)) {
        run("ip", &["-n", a, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b]);
        for (ns, name, address) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
            if !address.is_empty() {
                run("ip", &["-n", ns, "address", "add", address, "dev", name]);
            }
            run("ip", &["-n", ns, "link", "set", name, "up"]);
        }
    }

    fn spawn(&mut self, ns: &str, program: &str, args: &[&str], log: &str) {
        let out = std::fs::File::create(self.dir.path().join(log)).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".log") {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(12).collect();
                all += &format!("--- {name}:\n{}\n", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            }
        }
        all
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let pids = Command::new("ip").args(["netns", "pids", ns]).output().map(|o| o.stdout).unwrap_or_default();
            for pid in String::from_utf8_lossy(&pids).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        for interface in &self.interfaces {
            let _ = std::fs::remove_file(format!("/var/run/wireguard/{interface}.sock"));
        }
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn exec_in(ns: &str, program: &str, args: &[&str]) -> Output {
    Command::new("ip").args(["netns", "exec", ns, program]).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A WireGuard key pair (private, public) from `wg`.
fn keypair() -> (String, String) {
    let private = run("wg", &["genkey"]).trim().to_owned();
    let mut child = Command::new("wg").arg("pubkey").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(private.as_bytes()).unwrap();
    let public = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap().trim().to_owned();
    (private, public)
}

/// A call to the cell's API from its namespace (admin `alice`, cookies in the lab's folder).
fn api(lab: &Lab, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let jar = lab.dir.path().join("cookies");
    let jar = jar.to_str().unwrap();
    let csrf = std::fs::read_to_string(lab.dir.path().join("csrf")).unwrap_or_default();
    let header = format!("x-csrf-token: {csrf}");
    let url = format!("http://127.0.0.1:3000{path}");
    let mut args = vec!["-s", "-w", "\n%{http_code}", "-X", method, "-b", jar, "-c", jar, "-H", &header];
    let body = body.map(|b| b.to_string());
    if let Some(body) = &body {
        args.extend(["-H", "content-type: application/json", "--data", body]);
    }
    args.push(&url);
    let out = text(&exec_in(&lab.ns("c"), "curl", &args));
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())))
}

/// A device of the cell: its namespace on the cell's LAN, wireguard-go with the config the API
/// gives for `name`, everything routed into the tunnel.
fn device(lab: &mut Lab, name: &str, lan_address: &str) -> String {
    let ns = lab.add_ns(&format!("d{name}"));
    let (cell, port) = (lab.ns("c"), format!("l-{name}"));
    lab.wire((&cell, &port, ""), (&ns, "lan", &format!("{lan_address}/24")));
    run("ip", &["-n", &cell, "link", "set", &port, "master", "lan"]);
    let (code, config) = api(lab, "GET", &format!("/api/peers/{name}/config"), None);
    assert_eq!(code, 200, "{config}");
    let config = config.as_str().unwrap().to_owned();
    let address = config
        .lines()
        .find(|l| l.starts_with("Address"))
        .and_then(|l| l.split_once('='))
        .map(|(_, v)| v.trim().split('/').next().unwrap().to_owned())
        .unwrap();
    let path = lab.dir.path().join(format!("{name}.conf"));
    std::fs::write(&path, &config).unwrap();
    let stripped = lab.dir.path().join(format!("{name}-stripped.conf"));
    std::fs::write(&stripped, run("wg-quick", &["strip", path.to_str().unwrap()])).unwrap();
    let interface = format!("wgd{name}{}", lab.id);
    let out = exec_in(&ns, "wireguard-go", &[&interface]);
    assert!(out.status.success(), "wireguard-go: {}", text(&out));
    lab.interfaces.push(interface.clone());
    for args in [
        vec!["wg", "setconf", &interface, stripped.to_str().unwrap()],
        vec!["ip", "address", "add", &format!("{address}/32"), "dev", &interface],
        vec!["ip", "link", "set", &interface, "up"],
        vec!["ip", "route", "add", "default", "dev", &interface],
    ] {
        let out = exec_in(&ns, args[0], &args[1..]);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    ns
}

/// What the web server on "the internet" says the request came from, or the failure.
fn whoami(ns: &str) -> String {
    let out = exec_in(ns, "curl", &["-s", "--max-time", "4", "http://10.250.0.10/"]);
    if out.status.success() { String::from_utf8_lossy(&out.stdout).into_owned() } else { "no answer".into() }
}

/// Packets of `source` that left the cell through its uplink (counted before the masquerade).
fn on_uplink(cell: &str, rule: &str) -> u64 {
    let listed = text(&exec_in(cell, "nft", &["list", "chain", "inet", "probe", "uplink"]));
    let line = listed.lines().find(|l| l.contains(rule)).unwrap_or_else(|| panic!("{rule}:\n{listed}"));
    line.split("packets ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap()
}

/// The namespaces every test here has: the cell (with its bridge, LAN and services'
/// namespaces, `pic serve` running and logged in), "the internet" with its web server, and the
/// provider's namespace on it (empty: each test runs its own server there).
struct World {
    lab: Lab,
    cell: String,
    provider: String,
    state: PathBuf,
}

fn world() -> World {
    // Tests of this file run side by side in one process: each lab names its own namespaces.
    static LABS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = LABS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut lab = Lab {
        id: (std::process::id() % 10_000) * 10 + n,
        dir: tempfile::tempdir().unwrap(),
        namespaces: Vec::new(),
        children: Vec::new(),
        interfaces: Vec::new(),
    };
    let (cell, internet, provider) = (lab.add_ns("c"), lab.add_ns("i"), lab.add_ns("p"));

    // "The internet": a router with the web server, the cell's uplink and the provider on it.
    lab.wire((&internet, "to-cell", "10.250.1.1/24"), (&cell, "wan", "10.250.1.2/24"));
    lab.wire((&internet, "to-prov", "10.250.2.1/24"), (&provider, "wan", "10.250.2.2/24"));
    run("ip", &["-n", &internet, "address", "add", "10.250.0.10/32", "dev", "lo"]);
    run("ip", &["-n", &cell, "route", "add", "default", "via", "10.250.1.1"]);
    run("ip", &["-n", &provider, "route", "add", "default", "via", "10.250.2.1"]);
    let web_log = lab.dir.path().join("web-sources");
    lab.spawn(&internet, "python3", &["-c", WEB, web_log.to_str().unwrap()], "web.log");
    // The provider forwards its tunnel's traffic out as itself.
    for args in [
        vec!["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
        vec![
            "nft",
            "add table ip nat; add chain ip nat post { type nat hook postrouting priority srcnat; }; add rule ip nat post oifname \"wan\" masquerade",
        ],
    ] {
        let out = exec_in(&provider, args[0], &args[1..]);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }

    // The cell: its bridge, its LAN (devices), its services' namespaces.
    let state_dir = lab.dir.path().join("state");
    let config = json!({
        "version": 2,
        "cell": {"name": "home"},
        "network": {"subnet": "172.20.0.0/24"},
        "wireguard": {"subnet": "10.8.0.0/24", "endpoint": "10.202.0.1:51820"},
        "services": {"proxy": {"enabled": true}, "dns": {"enabled": true, "upstreams": []},
                     "calendar": {"enabled": true, "users": ["alice"]}},
        "users": [{"name": "alice", "role": "admin"}]
    });
    let config_file = lab.dir.path().join("cell.json");
    std::fs::write(&config_file, config.to_string()).unwrap();
    let pic = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pic")).arg("--state").arg(&state_dir).args(args).output().unwrap();
        assert!(out.status.success(), "pic {args:?}: {}", text(&out));
    };
    pic(&["init", "--config", config_file.to_str().unwrap()]);
    let mut passwd = Command::new(env!("CARGO_BIN_EXE_pic"))
        .arg("--state")
        .arg(&state_dir)
        .args(["user", "passwd", "alice"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    passwd.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
    assert!(passwd.wait().unwrap().success());
    pic(&["switch"]);
    for args in [
        vec!["link", "add", "pic0", "type", "bridge"],
        vec!["address", "add", "172.20.0.1/24", "dev", "pic0"],
        vec!["link", "set", "pic0", "up"],
        vec!["link", "add", "lan", "type", "bridge"],
        vec!["address", "add", "10.202.0.1/24", "dev", "lan"],
        vec!["link", "set", "lan", "up"],
    ] {
        let mut all = vec!["-n", cell.as_str()];
        all.extend(args);
        run("ip", &all);
    }
    run("ip", &["netns", "exec", &cell, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    for (service, address) in SERVICES {
        on_cell_network(&mut lab, &cell, &format!("s{service}"), address);
    }

    // pic serve, with wireguard-go's control sockets in a mount namespace of its own.
    let script = "mkdir -p /run/wireguard && mount -t tmpfs tmpfs /run/wireguard && exec \"$@\"";
    let serve_log = std::fs::File::create(lab.dir.path().join("serve.log")).unwrap();
    let serve = Command::new("ip")
        .args(["netns", "exec", &cell, "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(env!("CARGO_BIN_EXE_pic"))
        .arg("--state")
        .arg(&state_dir)
        .args(["serve", "--listen", "0.0.0.0:3000", "--wireguard", "userspace", "--wireguard-interface", "wg0"])
        .args(["--firewall", "--no-containers"])
        .stdin(Stdio::null())
        .stdout(serve_log.try_clone().unwrap())
        .stderr(serve_log)
        .spawn()
        .unwrap();
    lab.children.push(serve);
    wait_until("pic serve answers", common::wait::SERVE_START, || {
        text(&exec_in(&cell, "curl", &["-s", "http://127.0.0.1:3000/health"])).contains("ok")
    });
    let (code, body) = api(&lab, "POST", "/api/auth/login", Some(json!({"username": "alice", "password": PASSWORD})));
    assert_eq!(code, 200, "{body}");
    std::fs::write(lab.dir.path().join("csrf"), body["csrf_token"].as_str().unwrap()).unwrap();
    World { lab, cell, provider, state: state_dir }
}

/// A namespace on the cell's bridge at `address`, as a container is on the cell network.
fn on_cell_network(lab: &mut Lab, cell: &str, role: &str, address: &str) -> String {
    let ns = lab.add_ns(role);
    let port = format!("v-{role}");
    lab.wire((cell, &port, ""), (&ns, "eth0", &format!("{address}/24")));
    run("ip", &["-n", cell, "link", "set", &port, "master", "pic0"]);
    run("ip", &["-n", &ns, "route", "add", "default", "via", "172.20.0.1"]);
    ns
}

/// The cell's services, on the current generation (the proxy admits devices by it).
fn start_services(lab: &mut Lab, state: &Path) {
    let current = current_bundles(state);
    for (service, _) in SERVICES {
        let ns = lab.ns(&format!("s{service}"));
        let scratch = lab.dir.path().join(format!("run-{service}"));
        std::fs::create_dir_all(&scratch).unwrap();
        let command: &[&str] = match service {
            "proxy" => &["caddy", "run", "--config", "/etc/pic/bundle/Caddyfile", "--adapter", "caddyfile"],
            "dns" => &["unbound", "-d", "-c", "/etc/pic/bundle/unbound.conf"],
            _ => &["radicale", "--config", "/etc/pic/bundle/radicale.conf"],
        };
        let mut args = vec!["--mount", "--propagation", "private", "sh", "-c", common::DAEMON_HARNESS, "harness"];
        let (bundle, secrets) = (current[service].clone(), state.join("secrets"));
        args.extend([bundle.to_str().unwrap(), secrets.to_str().unwrap(), scratch.to_str().unwrap()]);
        args.extend(command);
        lab.spawn(&ns, "unshare", &args, &format!("{service}.log"));
    }
}

/// Counts what leaves through the cell's uplink, before the masquerade: the phone's packets
/// (10.8.0.2), DNS queries, and the laptop's (10.8.0.3).
fn count_uplink(cell: &str) {
    let probe = "add table inet probe; add chain inet probe uplink { type filter hook postrouting priority -300; }; \
                 add rule inet probe uplink oifname \"wan\" ip saddr 10.8.0.2 counter comment \"phone\"; \
                 add rule inet probe uplink oifname \"wan\" udp dport 53 counter comment \"dns\"; \
                 add rule inet probe uplink oifname \"wan\" ip saddr 10.8.0.3 counter comment \"laptop\"";
    let out = exec_in(cell, "nft", &[probe]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn an_exit_carries_its_devices_and_nothing_leaks_when_it_is_down() {
    let World { mut lab, cell, provider, state: state_dir } = world();

    // The provider: WireGuard at 10.250.2.2:51820, its tunnel 10.64.0.0/24 masqueraded out.
    let (cell_private, cell_public) = keypair();
    let (provider_private, provider_public) = keypair();
    let provider_conf = lab.dir.path().join("provider.conf");
    std::fs::write(
        &provider_conf,
        format!("[Interface]\nPrivateKey = {provider_private}\nListenPort = 51820\n\n[Peer]\nPublicKey = {cell_public}\nAllowedIPs = 10.64.0.2/32\n"),
    )
    .unwrap();
    let provider_if = format!("wgprov{}", lab.id);
    let out = exec_in(&provider, "wireguard-go", &[&provider_if]);
    assert!(out.status.success(), "{}", text(&out));
    lab.interfaces.push(provider_if.clone());
    for args in [
        vec!["wg", "setconf", &provider_if, provider_conf.to_str().unwrap()],
        vec!["ip", "address", "add", "10.64.0.1/24", "dev", &provider_if],
        vec!["ip", "link", "set", &provider_if, "up"],
    ] {
        let out = exec_in(&provider, args[0], &args[1..]);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    let dns_log = lab.dir.path().join("provider-dns-names");
    lab.spawn(&provider, "python3", &["-c", PROVIDER_DNS, dns_log.to_str().unwrap(), "10.64.0.1"], "provider-dns.log");

    // The exit, from the provider's file; the phone through it, the laptop not.
    let file = format!(
        "[Interface]\nPrivateKey = {cell_private}\nAddress = 10.64.0.2/32\nDNS = 10.64.0.1\n\n[Peer]\nPublicKey = {provider_public}\nAllowedIPs = 0.0.0.0/0\nEndpoint = 10.250.2.2:51820\n"
    );
    let (code, body) = api(&lab, "POST", "/api/exits", Some(json!({"name": "provider", "wireguard": file})));
    assert_eq!(code, 201, "{body}");
    for (name, exit) in [("phone", json!("provider")), ("laptop", Value::Null)] {
        let (code, body) =
            api(&lab, "POST", "/api/peers", Some(json!({"name": name, "routing": "full", "exit": exit})));
        assert_eq!(code, 201, "{body}");
    }
    let phone = device(&mut lab, "phone", "10.202.0.2");
    let laptop = device(&mut lab, "laptop", "10.202.0.3");
    start_services(&mut lab, &state_dir);

    wait_for(
        "the exit is up",
        HANDSHAKE_LIMIT,
        Duration::from_millis(500),
        || api(&lab, "GET", "/api/exits", None).1[0]["status"].clone(),
        |status| status["up"] == json!(true),
    );

    count_uplink(&cell);

    // Each goes out its own way: the phone as the provider, the laptop as the cell.
    assert_eq!(
        wait_for(
            "the phone reaches the internet",
            HANDSHAKE_LIMIT,
            Duration::from_millis(500),
            || whoami(&phone),
            |s| s != "no answer"
        ),
        "10.250.2.2",
        "{}",
        lab.logs()
    );
    assert_eq!(whoami(&laptop), "10.250.1.2");
    // Names: the internet's from the provider's DNS (whatever server the phone asked), the cell's
    // from the cell's DNS; both devices reach the cell's calendar through its proxy.
    let dig = |ns: &str, server: &str, name: &str| {
        text(&exec_in(ns, "dig", &["+short", "+time=3", "+tries=1", &format!("@{server}"), name])).trim().to_owned()
    };
    // The forwarder listens within moments of the exit's generation (it looks every 2 s).
    let answer = wait_for(
        "the phone's names are answered through the exit",
        DAEMON_START,
        Duration::from_millis(500),
        || dig(&phone, "9.9.9.9", "example.org"),
        |a| a == "10.250.0.10",
    );
    assert_eq!(answer, "10.250.0.10");
    assert!(
        std::fs::read_to_string(&dns_log).unwrap_or_default().contains("example.org"),
        "the provider's DNS was not asked"
    );
    for device in [&phone, &laptop] {
        reaches_cell_services(&lab, device, &state_dir);
    }
    // DNS over TCP too (a client's retry for a large answer), through the same forwarder.
    let over_tcp =
        text(&exec_in(&phone, "dig", &["+short", "+tcp", "+time=3", "+tries=1", "@172.20.0.3", "calendar.home.cell"]));
    assert_eq!(over_tcp.trim(), "172.20.0.2", "over TCP");
    // The test an admin runs from the web UI: the provider's DNS asked through the exit.
    let (code, tested) = api(&lab, "POST", "/api/exits/provider/test", None);
    assert_eq!((code, &tested["ok"]), (200, &json!(true)), "{tested}");
    assert_eq!(on_uplink(&cell, "phone"), 0, "the phone's packets left through the uplink");
    assert_eq!(on_uplink(&cell, "dns"), 0, "a DNS query left through the uplink");

    // The kill switch, the provider's server silent: the phone gets nothing out, no name is
    // answered through the exit, nothing of it (DNS included) takes the uplink, and the test
    // says so; the laptop is untouched.
    run("ip", &["-n", &provider, "link", "set", &provider_if, "down"]);
    assert_eq!(whoami(&phone), "no answer");
    let answer = dig(&phone, "9.9.9.9", "example.net");
    assert!(!answer.contains("10.250.0.10"), "a name was answered with the exit down: {answer}");
    assert_eq!(whoami(&laptop), "10.250.1.2");
    let (_, tested) = api(&lab, "POST", "/api/exits/provider/test", None);
    assert_eq!(tested["ok"], json!(false), "the test passed with the provider's server down: {tested}");
    assert_eq!(on_uplink(&cell, "phone"), 0, "the phone's packets left through the uplink with the server down");
    assert_eq!(on_uplink(&cell, "dns"), 0, "a DNS query left through the uplink with the server down");
    run("ip", &["-n", &provider, "link", "set", &provider_if, "up"]);
    let back = wait_for(
        "the phone's traffic flows again once the server is back",
        REPAIR_LIMIT,
        Duration::from_secs(1),
        || whoami(&phone),
        |s| s == "10.250.2.2",
    );
    assert_eq!(back, "10.250.2.2");

    // The exit's interface removed: until pic serve makes it again (within seconds) the phone
    // gets nothing out; it never goes out as the cell; then it flows again without a restart.
    run("ip", &["-n", &cell, "link", "del", "x-provider"]);
    let meanwhile = whoami(&phone);
    assert!(meanwhile == "no answer" || meanwhile == "10.250.2.2", "the phone went out as {meanwhile}");
    assert_eq!(on_uplink(&cell, "phone"), 0, "the phone's packets left through the uplink without the exit");
    assert_eq!(on_uplink(&cell, "dns"), 0, "a DNS query left through the uplink without the exit");
    let back = wait_for(
        "the phone goes out through the exit again",
        REPAIR_LIMIT,
        Duration::from_secs(1),
        || whoami(&phone),
        |s| s == "10.250.2.2",
    );
    assert_eq!(back, "10.250.2.2");
    assert!(on_uplink(&cell, "laptop") > 0, "the counters count: the laptop's packets were seen");
    assert_eq!(on_uplink(&cell, "phone"), 0);

    // The log says the exit went down (its tunnel missing) and came back.
    let states: Vec<Value> = std::fs::read_to_string(state_dir.join("logs/api.log"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["fields"]["message"] == "exit state")
        .map(|e| e["fields"]["up"].clone())
        .collect();
    assert!(states.windows(2).any(|w| w == [json!(false), json!(true)]), "{states:?}");
}

/// The current generation's bundle folder of each service.
fn current_bundles(state: &Path) -> std::collections::BTreeMap<String, PathBuf> {
    let target = std::fs::read_link(state.join("current")).unwrap();
    let number = target.file_name().unwrap().to_str().unwrap().to_owned();
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(state.join(format!("generations/{number}/manifest.json"))).unwrap(),
    )
    .unwrap();
    manifest["services"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, entry)| (name.clone(), state.join(entry["store_path"].as_str().unwrap())))
        .collect()
}

/// A small PKI for an OpenVPN server and client, made with openssl: (ca, server cert, server
/// key, client cert, client key) as PEM files in `dir`.
fn pki(dir: &Path) -> [PathBuf; 5] {
    let at = |name: &str| dir.join(name);
    let ssl = |args: &[&str]| run("openssl", args);
    let key = |name: &str| {
        ssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-out",
            at(name).to_str().unwrap(),
        ])
    };
    key("ca.key");
    ssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        at("ca.key").to_str().unwrap(),
        "-subj",
        "/CN=provider CA",
        "-days",
        "2",
        "-out",
        at("ca.crt").to_str().unwrap(),
    ]);
    for (who, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
        key(&format!("{who}.key"));
        let csr = at(&format!("{who}.csr"));
        ssl(&[
            "req",
            "-new",
            "-key",
            at(&format!("{who}.key")).to_str().unwrap(),
            "-subj",
            &format!("/CN={who}"),
            "-out",
            csr.to_str().unwrap(),
        ]);
        let ext = at(&format!("{who}.ext"));
        std::fs::write(&ext, format!("extendedKeyUsage={usage}\nkeyUsage=digitalSignature\n")).unwrap();
        ssl(&[
            "x509",
            "-req",
            "-in",
            csr.to_str().unwrap(),
            "-CA",
            at("ca.crt").to_str().unwrap(),
            "-CAkey",
            at("ca.key").to_str().unwrap(),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext.to_str().unwrap(),
            "-out",
            at(&format!("{who}.crt")).to_str().unwrap(),
        ]);
    }
    [at("ca.crt"), at("server.crt"), at("server.key"), at("client.crt"), at("client.key")]
}

#[test]
fn an_openvpn_exit_runs_in_its_container_and_nothing_leaks_when_it_is_down() {
    let World { mut lab, cell, provider, state } = world();
    let [ca, server_cert, server_key, client_cert, client_key] = pki(lab.dir.path());

    // The provider: Debian's OpenVPN server at 10.250.2.2:1194, its tunnel 10.66.0.0/24.
    let server_conf = lab.dir.path().join("server.conf");
    std::fs::write(
        &server_conf,
        format!(
            "dev tun\nproto udp\nlocal 10.250.2.2\nport 1194\ntopology subnet\nserver 10.66.0.0 255.255.255.0\n\
             ca {}\ncert {}\nkey {}\ndh none\nkeepalive 2 10\nverb 3\n",
            ca.display(),
            server_cert.display(),
            server_key.display()
        ),
    )
    .unwrap();
    let start_server = |lab: &mut Lab| {
        lab.spawn(&provider, "openvpn", &["--config", server_conf.to_str().unwrap()], "openvpn-server.log");
        wait_until("the provider's OpenVPN server has its tunnel", DAEMON_START, || {
            text(&exec_in(&provider, "ip", &["-4", "-brief", "address"])).contains("10.66.0.1")
        });
    };
    start_server(&mut lab);
    let dns_log = lab.dir.path().join("provider-dns-names");
    lab.spawn(&provider, "python3", &["-c", PROVIDER_DNS, dns_log.to_str().unwrap(), "10.66.0.1"], "provider-dns.log");

    // A file that would run a program is refused at its line; the provider's file as it is, taken.
    let read = |path: &Path| std::fs::read_to_string(path).unwrap();
    let ovpn = format!(
        "client\ndev tun\nproto udp\nremote 10.250.2.2 1194\nnobind\nremote-cert-tls server\n<ca>\n{}</ca>\n<cert>\n{}</cert>\n<key>\n{}</key>\n",
        read(&ca),
        read(&client_cert),
        read(&client_key)
    );
    let evil = ovpn.replace("nobind", "nobind\nup /bin/sh");
    let (code, body) =
        api(&lab, "POST", "/api/exits", Some(json!({"name": "office", "openvpn": evil, "dns": "10.66.0.1"})));
    assert_eq!(code, 422, "{body}");
    assert!(body.to_string().contains("line 6: `up` runs a program"), "{body}");
    let (code, body) =
        api(&lab, "POST", "/api/exits", Some(json!({"name": "office", "openvpn": ovpn, "dns": "10.66.0.1"})));
    assert_eq!(code, 201, "{body}");
    let (_, config) = api(&lab, "GET", "/api/config", None);
    let address = config["connectivity"]["exits"][0]["openvpn"]["address"].as_str().unwrap().to_owned();
    for (name, exit) in [("phone", json!("office")), ("laptop", Value::Null)] {
        let (code, body) =
            api(&lab, "POST", "/api/peers", Some(json!({"name": name, "routing": "full", "exit": exit})));
        assert_eq!(code, 201, "{body}");
    }

    // The exit's container: a namespace at its address on the cell network, running the image's
    // entrypoint on the current generation's bundle, with the exit's secrets where the
    // container mounts them and forwarding on (as the container's spec asks of Docker).
    let container = on_cell_network(&mut lab, &cell, "xoffice", &address);
    run("ip", &["netns", "exec", &container, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    let bundle = current_bundles(&state)["exit-office"].clone();
    let spec: Value = serde_json::from_str(&read(&bundle.join("container.json"))).unwrap();
    assert_eq!(spec["devices"], json!(["/dev/net/tun"]), "{spec}");
    assert!(!read(&bundle.join("openvpn.conf")).contains("BEGIN"), "the provider's keys are in the store");
    let entrypoint =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/openvpn/rootfs/usr/local/bin/pic-exit-openvpn");
    let secrets = state.join("secrets/exits/office");
    let script = "mount -t tmpfs tmpfs /run && mkdir -p /run/pic/exit && mount --bind \"$1\" /run/pic/exit && exec \"$2\" \"$3\"";
    lab.spawn(
        &container,
        "unshare",
        &[
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            secrets.to_str().unwrap(),
            entrypoint.to_str().unwrap(),
            bundle.to_str().unwrap(),
        ],
        "exit-office.log",
    );

    let phone = device(&mut lab, "phone", "10.202.0.2");
    let laptop = device(&mut lab, "laptop", "10.202.0.3");
    start_services(&mut lab, &state);
    count_uplink(&cell);

    // The phone goes out as the provider, the laptop as the cell; the phone's names through the exit.
    let out = wait_for(
        "the phone goes out through the OpenVPN exit",
        DAEMON_START,
        Duration::from_secs(1),
        || whoami(&phone),
        |s| s != "no answer",
    );
    assert_eq!(out, "10.250.2.2", "{}", lab.logs());
    assert_eq!(whoami(&laptop), "10.250.1.2");
    let dig = |server: &str, name: &str| {
        text(&exec_in(&phone, "dig", &["+short", "+time=3", "+tries=1", &format!("@{server}"), name])).trim().to_owned()
    };
    let answer = wait_for(
        "the phone's names go through the exit",
        DAEMON_START,
        Duration::from_millis(500),
        || dig("9.9.9.9", "example.org"),
        |a| a == "10.250.0.10",
    );
    assert_eq!(answer, "10.250.0.10");
    assert!(read(&dns_log).contains("example.org"));
    reaches_cell_services(&lab, &phone, &state);
    wait_for(
        "the exit shows up (its provider's DNS answers through it)",
        Duration::from_secs(20),
        Duration::from_millis(500),
        || api(&lab, "GET", "/api/exits", None).1[0]["status"]["up"].clone(),
        |up| *up == json!(true),
    );
    assert_eq!(on_uplink(&cell, "phone"), 0, "the phone's packets left through the uplink");
    assert_eq!(on_uplink(&cell, "dns"), 0, "a DNS query left through the uplink");

    // The provider's server stops: the phone gets nothing out and nothing of it takes the
    // uplink; back when the server is back, without a restart of anything on the cell.
    kill_named(&provider, "openvpn");
    assert_eq!(whoami(&phone), "no answer");
    let answer = dig("9.9.9.9", "example.net");
    assert!(!answer.contains("10.250.0.10"), "a name was answered with the exit down: {answer}");
    assert_eq!(whoami(&laptop), "10.250.1.2");
    assert_eq!(on_uplink(&cell, "phone"), 0, "the phone's packets left through the uplink with the server down");
    assert_eq!(on_uplink(&cell, "dns"), 0, "a DNS query left through the uplink with the server down");
    start_server(&mut lab);
    // The client notices the lost server within its keepalive (10 s) and connects again.
    let back = wait_for(
        "the phone's traffic flows again",
        Duration::from_secs(60),
        Duration::from_secs(1),
        || whoami(&phone),
        |s| s == "10.250.2.2",
    );
    assert_eq!(back, "10.250.2.2");
    assert_eq!(on_uplink(&cell, "phone"), 0);
    assert!(on_uplink(&cell, "laptop") > 0, "the counters count: the laptop's packets were seen");
}

/// Kills the processes named `name` in the namespace.
fn kill_named(ns: &str, name: &str) {
    let pids = run("ip", &["netns", "pids", ns]);
    for pid in pids.split_whitespace() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == name {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
}

/// The device resolves the cell's calendar by the cell's DNS and gets a CalDAV answer from it
/// through the cell's proxy: an exit leaves the cell's own services local.
fn reaches_cell_services(lab: &Lab, device: &str, state: &Path) {
    let dig = || text(&exec_in(device, "dig", &["+short", "+time=3", "+tries=1", "@172.20.0.3", "calendar.home.cell"]));
    let answer =
        wait_for("the cell's names resolve on the device", DAEMON_START, Duration::from_millis(500), dig, |a| {
            a.trim() == "172.20.0.2"
        });
    assert_eq!(answer.trim(), "172.20.0.2");
    let ca = state.join("secrets/ca/ca.crt");
    let credentials = format!("alice:{PASSWORD}");
    let propfind = || {
        let args = [
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "4",
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            "calendar.home.cell:443:172.20.0.2",
            "-u",
            &credentials,
            "-X",
            "PROPFIND",
            "-H",
            "Depth: 0",
            "https://calendar.home.cell/alice/",
        ];
        text(&exec_in(device, "curl", &args))
    };
    let code =
        wait_for("the cell's calendar answers the device", DAEMON_START, Duration::from_millis(500), propfind, |c| {
            c == "207"
        });
    assert_eq!(code, "207", "{}", lab.logs());
}

/// Whether a TCP connection from `ns` to `address:port` is accepted within 3 s.
fn connects(ns: &str, address: &str, port: u16) -> bool {
    let probe = format!("echo > /dev/tcp/{address}/{port}");
    exec_in(ns, "timeout", &["3", "bash", "-c", &probe]).status.success()
}

/// The packets counted by the rule with this comment in the Tor exit container's firewall.
fn into_tor(container: &str, comment: &str) -> u64 {
    let listed = text(&exec_in(container, "nft", &["list", "chain", "ip", "exit", "prerouting"]));
    let line = listed.lines().find(|l| l.contains(comment)).unwrap_or_else(|| panic!("{comment}:\n{listed}"));
    line.split("packets ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap()
}

#[test]
fn a_tor_exit_takes_tcp_and_names_and_nothing_else_leaves() {
    let World { mut lab, cell, state, .. } = world();
    let (code, body) = api(&lab, "POST", "/api/exits", Some(json!({"name": "tor", "tor": true})));
    assert_eq!(code, 201, "{body}");
    let (_, config) = api(&lab, "GET", "/api/config", None);
    let address = config["connectivity"]["exits"][0]["tor"]["address"].as_str().unwrap().to_owned();
    for (name, exit) in [("phone", json!("tor")), ("laptop", Value::Null)] {
        let (code, body) =
            api(&lab, "POST", "/api/peers", Some(json!({"name": name, "routing": "full", "exit": exit})));
        assert_eq!(code, 201, "{body}");
    }

    // The exit's container: a namespace at its address running the image's entrypoint (the
    // firewall that redirects into Tor, then Debian's Tor) on the current generation's bundle.
    // Its network reaches no Tor relay (nothing here leaves the machine): Tor never bootstraps.
    let container = on_cell_network(&mut lab, &cell, "xtor", &address);
    let bundle = current_bundles(&state)["exit-tor"].clone();
    let entrypoint = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/tor/rootfs/usr/local/bin/pic-exit-tor");
    let scratch = lab.dir.path().join("run-exit-tor");
    // Its data folder belongs to debian-tor, as the cell hands it to the image's data user.
    std::fs::create_dir_all(scratch.join("srv")).unwrap();
    run("chown", &["debian-tor:debian-tor", scratch.join("srv").to_str().unwrap()]);
    let secrets = state.join("secrets");
    let mut args = vec!["--mount", "--propagation", "private", "sh", "-c", common::DAEMON_HARNESS, "harness"];
    args.extend([bundle.to_str().unwrap(), secrets.to_str().unwrap(), scratch.to_str().unwrap()]);
    args.push(entrypoint.to_str().unwrap());
    lab.spawn(&container, "unshare", &args, "exit-tor.log");

    let phone = device(&mut lab, "phone", "10.202.0.2");
    let laptop = device(&mut lab, "laptop", "10.202.0.3");
    start_services(&mut lab, &state);
    count_uplink(&cell);

    // The phone's TCP reaches Tor's TransPort (which accepts it; with no relay it goes no
    // further): the web server on "the internet" never hears of it.
    wait_until("the phone's TCP is taken by Tor", DAEMON_START, || connects(&phone, "10.250.0.10", 80));
    assert!(into_tor(&container, "TCP into Tor") > 0);
    assert_eq!(whoami(&phone), "no answer", "{}", lab.logs());
    // Its names go to Tor's DNSPort (unanswered without a relay), whatever server it asks.
    // (The forwarder listens within moments of the exit's generation: it looks every 2 s.)
    let ask = || text(&exec_in(&phone, "dig", &["+short", "+time=3", "+tries=1", "@9.9.9.9", "example.org"]));
    wait_until("the phone's names reach Tor", DAEMON_START, || {
        let answer = ask();
        assert!(!answer.contains("10.250.0.10"), "{answer}");
        into_tor(&container, "names into Tor") > 0
    });
    // Its UDP and ICMP go nowhere.
    let _ = exec_in(&phone, "bash", &["-c", "echo x > /dev/udp/10.250.0.10/9"]);
    let ping = exec_in(&phone, "ping", &["-c", "1", "-W", "2", "10.250.0.10"]);
    assert!(!ping.status.success(), "the phone pinged the internet past Tor");
    // The laptop is untouched; nothing of the phone took the uplink.
    assert_eq!(whoami(&laptop), "10.250.1.2");
    assert_eq!(on_uplink(&cell, "phone"), 0, "the phone's packets left through the uplink");
    assert_eq!(on_uplink(&cell, "dns"), 0, "a DNS query left through the uplink");
    let web = std::fs::read_to_string(lab.dir.path().join("web-sources")).unwrap_or_default();
    assert!(web.lines().all(|source| source == "10.250.1.2"), "the web server heard from more than the laptop: {web}");
}
