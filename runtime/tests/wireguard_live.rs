//! Peers applied live: `pic serve` manages a WireGuard interface (wireguard-go, as the machines
//! that run the tests have no kernel module) in a network namespace of its own, and a device in
//! a second namespace connects with the config the API hands out. Adding and removing other
//! peers while the device pings the cell loses no packet: the interface is never restarted.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::docker::KillOnDrop;
use serde_json::{Value, json};

const PASSWORD: &str = "admin-password-1";

/// Two namespaces joined by a veth pair: the cell at 10.200.0.1, the device at 10.200.0.2.
struct Net {
    id: u32,
    cell: String,
    device: String,
    serve: Option<Child>,
}

impl Net {
    fn new() -> Net {
        let id = std::process::id() % 100_000;
        let net = Net { id, cell: format!("pic-cell-{id}"), device: format!("pic-dev-{id}"), serve: None };
        let (vc, vd) = (format!("vc{id}"), format!("vd{id}"));
        for args in [
            vec!["netns", "add", &net.cell],
            vec!["netns", "add", &net.device],
            vec!["link", "add", &vc, "type", "veth", "peer", "name", &vd],
            vec!["link", "set", &vc, "netns", &net.cell],
            vec!["link", "set", &vd, "netns", &net.device],
            vec!["-n", &net.cell, "address", "add", "10.200.0.1/24", "dev", &vc],
            vec!["-n", &net.device, "address", "add", "10.200.0.2/24", "dev", &vd],
            vec!["-n", &net.cell, "link", "set", &vc, "up"],
            vec!["-n", &net.device, "link", "set", &vd, "up"],
            vec!["-n", &net.cell, "link", "set", "lo", "up"],
            vec!["-n", &net.device, "link", "set", "lo", "up"],
        ] {
            run("ip", &args);
        }
        net
    }

    /// `wg0`, the name the rendered firewall rules match (as on the appliance); it is the cell
    /// namespace's own, though wireguard-go's control socket is shared by every namespace.
    fn cell_interface(&self) -> String {
        "wg0".to_owned()
    }

    fn device_interface(&self) -> String {
        format!("wgd{}", self.id)
    }

    fn in_ns(&self, ns: &str, program: &str, args: &[&str]) -> std::process::Output {
        Command::new("ip").args(["netns", "exec", ns, program]).args(args).output().unwrap()
    }

    /// An API call from inside the cell's namespace (the server listens on its loopback).
    fn api(&self, jar: &Path, csrf: &str, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
        let url = format!("http://127.0.0.1:3000{path}");
        let jar = jar.to_str().unwrap();
        let mut args = vec!["-s", "-w", "\n%{http_code}", "-X", method, "-b", jar, "-c", jar, "-H"];
        let header = format!("x-csrf-token: {csrf}");
        args.push(&header);
        let body_text = body.map(|b| b.to_string());
        if let Some(text) = &body_text {
            args.extend(["-H", "content-type: application/json", "--data", text]);
        }
        args.push(&url);
        let out = self.in_ns(&self.cell, "curl", &args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(mut child) = self.serve.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // wireguard-go outlives the process that started it; it serves only our two interfaces.
        for iface in [self.cell_interface(), self.device_interface()] {
            let _ = Command::new("pkill").args(["-f", &format!("wireguard-go {iface}$")]).status();
            let _ = std::fs::remove_file(format!("/var/run/wireguard/{iface}.sock"));
        }
        for ns in [&self.cell, &self.device] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (transmitted, received) from ping's summary.
fn ping_counts(output: &str) -> (u32, u32) {
    let line = output.lines().find(|l| l.contains("packets transmitted")).unwrap_or_else(|| panic!("{output}"));
    let numbers: Vec<u32> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect();
    (numbers[0], numbers[1])
}

#[test]
fn peers_are_applied_live_without_losing_a_packet() {
    let cell = common::Cell::new();
    let dir = &cell.dir;
    let state = cell.state();
    let net = Net::new();
    let mut net = net;

    // A small cell whose VPN endpoint is the cell namespace's address.
    let config = json!({
        "version": 2,
        "cell": {"name": "live"},
        "network": {"subnet": "172.20.0.0/24"},
        "wireguard": {"subnet": "10.8.0.0/24", "endpoint": "10.200.0.1:51820"},
        // Mail's address and port, for the access rules (no container: a listener stands in).
        "services": {"mail": {"enabled": true, "domains": ["live.cell"]}},
        "users": [{"name": "admin", "role": "admin"}]
    });
    let config_file = dir.path().join("cell.json");
    std::fs::write(&config_file, config.to_string()).unwrap();
    cell.ok(&["init", "--config", config_file.to_str().unwrap()]);
    cell.set_password("admin", PASSWORD);
    cell.ok(&["switch"]);

    let cell_if = net.cell_interface();
    let serve = Command::new("ip")
        .args(["netns", "exec", &net.cell, env!("CARGO_BIN_EXE_pic"), "--state"])
        .arg(&state)
        .args(["serve", "--listen", "127.0.0.1:3000", "--wireguard", "userspace", "--wireguard-interface", &cell_if])
        .args(["--firewall", "--no-containers"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    net.serve = Some(serve);
    common::wait::wait_for(
        "pic serve answers in the cell's namespace",
        common::wait::SERVE_START,
        Duration::from_millis(100),
        || {
            String::from_utf8_lossy(&net.in_ns(&net.cell, "curl", &["-s", "http://127.0.0.1:3000/health"]).stdout)
                .into_owned()
        },
        |body| !body.is_empty(),
    );
    // The interface exists and carries the cell's address once serve has started.
    let address = String::from_utf8_lossy(&net.in_ns(&net.cell, "ip", &["-brief", "address", "show", &cell_if]).stdout)
        .into_owned();
    assert!(address.contains("10.8.0.1/24"), "{address}");

    let jar = dir.path().join("cookies");
    let (code, body) =
        net.api(&jar, "", "POST", "/api/auth/login", Some(json!({"username": "admin", "password": PASSWORD})));
    assert_eq!(code, 200, "{body}");
    let csrf = serde_json::from_str::<Value>(&body).unwrap()["csrf_token"].as_str().unwrap().to_string();

    let (code, body) = net.api(&jar, &csrf, "POST", "/api/peers", Some(json!({"name": "phone"})));
    assert_eq!(code, 201, "{body}");
    let (code, client_config) = net.api(&jar, &csrf, "GET", "/api/peers/phone/config", None);
    assert_eq!(code, 200);

    // The device: wireguard-go with the config the API gave, stripped of wg-quick's own keys.
    let dev_if = net.device_interface();
    let conf_path = dir.path().join(format!("{dev_if}.conf"));
    std::fs::write(&conf_path, &client_config).unwrap();
    let stripped = run("wg-quick", &["strip", conf_path.to_str().unwrap()]);
    let stripped_path = dir.path().join("stripped.conf");
    std::fs::write(&stripped_path, stripped).unwrap();
    let out = net.in_ns(&net.device, "wireguard-go", &[&dev_if]);
    assert!(out.status.success(), "wireguard-go: {}", String::from_utf8_lossy(&out.stderr));
    for args in [
        vec!["wg", "setconf", &dev_if, stripped_path.to_str().unwrap()],
        vec!["ip", "address", "add", "10.8.0.2/32", "dev", &dev_if],
        vec!["ip", "link", "set", &dev_if, "up"],
        vec!["ip", "route", "add", "10.8.0.0/24", "dev", &dev_if],
    ] {
        let out = net.in_ns(&net.device, args[0], &args[1..]);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    // The tunnel carries traffic to the cell's VPN address.
    let ping = net.in_ns(&net.device, "ping", &["-c", "3", "-W", "3", "10.8.0.1"]);
    let (sent, received) = ping_counts(&String::from_utf8_lossy(&ping.stdout));
    assert!(received > 0, "no reply through the tunnel ({received}/{sent})");

    // While the device pings steadily, other peers come and go.
    let flow = Command::new("ip")
        // A deadline rather than a per-reply timeout: a reply delayed by a busy machine still counts,
        // a lost one does not.
        .args(["netns", "exec", &net.device, "ping", "-i", "0.02", "-c", "200", "-w", "20", "10.8.0.1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    for i in 0..3 {
        let (code, body) = net.api(&jar, &csrf, "POST", "/api/peers", Some(json!({"name": format!("guest{i}")})));
        assert_eq!(code, 201, "{body}");
    }
    for i in 0..3 {
        let (code, body) = net.api(&jar, &csrf, "DELETE", &format!("/api/peers/guest{i}"), None);
        assert_eq!(code, 200, "{body}");
    }
    let output = flow.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let (sent, received) = ping_counts(&text);
    let answered: Vec<u32> =
        text.lines().filter_map(|l| l.split("icmp_seq=").nth(1)?.split_whitespace().next()?.parse().ok()).collect();
    let missing: Vec<u32> = (1..=sent).filter(|n| !answered.contains(n)).collect();
    assert_eq!((sent, received), (200, 200), "packets were lost while peers changed: icmp_seq {missing:?}");

    // A peer whose time is up is not let in, even though the config still lists it.
    let (code, body) =
        net.api(&jar, &csrf, "POST", "/api/peers", Some(json!({"name": "expired", "expires": "2020-01-01T00:00:00Z"})));
    assert_eq!(code, 201, "{body}");
    let expired_key = serde_json::from_str::<Value>(&body).unwrap()["peer"]["public_key"].as_str().unwrap().to_string();
    let live = run("ip", &["netns", "exec", &net.cell, "wg", "show", &cell_if, "peers"]);
    assert!(!live.contains(&expired_key), "an expired peer is on the interface: {live}");
    let (code, _) = net.api(&jar, &csrf, "DELETE", "/api/peers/expired", None);
    assert_eq!(code, 200);

    // The interface's identity was set once, when it was made; every later activation only
    // touched peers (setting it again rebinds wireguard-go's socket and drops packets).
    let log = std::fs::read_to_string(state.join("logs/api.log")).unwrap();
    let applied: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["fields"]["message"] == "wireguard applied")
        .collect();
    assert!(applied.len() >= 8, "{} activations logged", applied.len());
    assert_eq!(applied[0]["fields"]["identity_set"], true);
    assert!(applied[1..].iter().all(|e| e["fields"]["identity_set"] == false), "{applied:?}");

    // The live interface holds exactly the peers of the current generation.
    let peers = run("ip", &["netns", "exec", &net.cell, "wg", "show", &cell_if, "peers"]);
    assert_eq!(peers.lines().count(), 1, "{peers}");
    let (code, body) = net.api(&jar, &csrf, "GET", "/api/peers", None);
    assert_eq!(code, 200);
    let listed: Value = serde_json::from_str(&body).unwrap();
    let status = &listed[0]["status"];
    assert!(status["last_handshake"].is_string() && status["rx_bytes"].as_u64() > Some(0), "{listed}");

    // The firewall of the current generation is loaded in the cell's namespace: the phone is in
    // the set of peers with full access, and a port nothing publishes is closed.
    let set = run("ip", &["netns", "exec", &net.cell, "nft", "list", "set", "inet", "pic", "open_peers"]);
    assert!(set.contains("10.8.0.2") && !set.contains("10.8.0.3"), "{set}");
    access_lists_hold_in_the_kernel(&net, &jar, &csrf);

    let mut listener = Command::new("ip")
        .args(["netns", "exec", &net.cell, "python3", "-c"])
        .arg("import socket,time; s=socket.socket(); s.bind(('10.200.0.1', 2222)); s.listen(); time.sleep(30)")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let connect =
        || net.in_ns(&net.device, "timeout", &["2", "bash", "-c", "echo > /dev/tcp/10.200.0.1/2222"]).status.success();
    assert!(!connect(), "an unpublished port is open through the firewall");
    run("ip", &["netns", "exec", &net.cell, "nft", "delete", "table", "inet", "pic"]);
    assert!(connect(), "without the firewall the port answers, so the firewall was what closed it");
    let _ = listener.kill();
    let _ = listener.wait();
}

/// The ruleset's access rules in the kernel: the phone reaches mail (its address and port on the
/// cell network, in a third namespace) straight and through the port the ruleset publishes on
/// the cell — while its list allows mail, and neither way once its list leaves mail out.
fn access_lists_hold_in_the_kernel(net: &Net, jar: &Path, csrf: &str) {
    let service = format!("pic-svc-{}", net.id);
    let (vc, vs) = (format!("vsc{}", net.id), format!("vss{}", net.id));
    for args in [
        vec!["netns", "add", &service],
        vec!["link", "add", &vc, "type", "veth", "peer", "name", &vs],
        vec!["link", "set", &vc, "netns", &net.cell],
        vec!["link", "set", &vs, "netns", &service],
        vec!["-n", &net.cell, "address", "add", "172.20.0.1/24", "dev", &vc],
        vec!["-n", &service, "address", "add", "172.20.0.7/24", "dev", &vs],
        vec!["-n", &net.cell, "link", "set", &vc, "up"],
        vec!["-n", &service, "link", "set", &vs, "up"],
        vec!["-n", &service, "route", "add", "default", "via", "172.20.0.1"],
        vec!["-n", &net.device, "route", "add", "172.20.0.0/24", "dev", &net.device_interface()],
    ] {
        run("ip", &args);
    }
    let _cleanup = NamespaceGuard(service.clone());
    run("ip", &["netns", "exec", &net.cell, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    // What the runtime sets on the cell's bridge when the firewall publishes the ports.
    let localnet = format!("net.ipv4.conf.{vc}.route_localnet=1");
    run("ip", &["netns", "exec", &net.cell, "sysctl", "-q", "-w", &localnet]);
    let _mail = KillOnDrop(
        Command::new("ip")
        .args(["netns", "exec", &service, "python3", "-c"])
            .arg("import socket\ns=socket.socket(); s.bind(('172.20.0.7', 25)); s.listen(16)\nwhile True: s.accept()[0].close()")
            .spawn()
            .unwrap(),
    );
    let connects = |address: &str| {
        let probe = format!("echo > /dev/tcp/{address}/25");
        net.in_ns(&net.device, "timeout", &["3", "bash", "-c", &probe]).status.success()
    };
    let reach = || (connects("172.20.0.7"), connects("10.8.0.1"));
    // Python listens within a second; each try allows 3 s.
    common::wait::wait_for(
        "the phone (no list) reaches mail straight and through the published port",
        Duration::from_secs(20),
        Duration::from_millis(200),
        reach,
        |r| *r == (true, true),
    );
    // The host itself reaches the published port on its loopback address (as the appliance's
    // own resolver reaches the DNS service at 127.0.0.1).
    let from_host = net.in_ns(&net.cell, "timeout", &["3", "bash", "-c", "echo > /dev/tcp/127.0.0.1/25"]);
    assert!(from_host.status.success(), "127.0.0.1:25 in the cell's namespace: {from_host:?}");

    let limit = |access: Value| {
        let (code, body) = net.api(jar, csrf, "PATCH", "/api/peers/phone", Some(json!({ "access": access })));
        assert_eq!(code, 200, "{body}");
    };
    limit(json!(["dns"]));
    assert_eq!(
        reach(),
        (false, false),
        "mail is off the phone's list: neither straight nor through the published port"
    );
    limit(json!(["dns", "mail"]));
    assert_eq!(reach(), (true, true), "mail is on the phone's list again");
    limit(Value::Null);
}

/// Removes a network namespace when the test ends, also when it fails.
struct NamespaceGuard(String);

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
