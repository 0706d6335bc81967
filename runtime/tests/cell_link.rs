//! Two whole cells linked on this machine. Each cell is a network namespace running `pic serve`
//! (with its own state, its own wireguard-go `wg0` and its firewall), with its services in
//! namespaces of their own on its bridge, at the addresses the config gives them — real Caddy,
//! unbound, Radicale and Postfix from Debian, run on the rendered files of the current
//! generation (the mailbox behind Postfix is a stand-in LMTP server). A device of cell B connects
//! to B over WireGuard. The cells are joined by a "WAN" link; the invitation is accepted over
//! HTTPS through A's Caddy, and everything after goes through the tunnel.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::wait::{wait_for, wait_until};
use serde_json::{Value, json};

const PASSWORD: &str = "alice-password-1";

/// How long a change on one cell may take to show on the other: the issue's minute (peer-sync
/// runs every 20 s, and at once after an activation).
const SYNC_LIMIT: Duration = Duration::from_secs(60);

/// A WireGuard handshake: a first packet, a retry after 5 s if it was lost, on a busy machine.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(30);

/// A daemon's start on a busy machine (Caddy, unbound and Postfix bind in well under a second
/// when idle; Radicale, a Python program, in about one).
const DAEMON_START: Duration = Duration::from_secs(30);

/// Mail queued on B, delivered to A through the tunnel: Postfix's queue manager picks a new
/// message up at once; this allows a slow first connection and TLS handshake.
const DELIVERY_LIMIT: Duration = Duration::from_secs(60);

/// The mailbox behind A's Postfix: an LMTP server on 127.0.0.1:24 (where Postfix hands mail to
/// dovecot) that writes each message it accepts into the folder given.
const LMTP: &str = r#"
import os, socket, sys
folder = sys.argv[1]
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 24))
server.listen(8)
count = 0
while True:
    conn, _ = server.accept()
    f = conn.makefile("rwb")
    def say(line):
        f.write(line.encode() + b"\r\n"); f.flush()
    say("220 mailbox LMTP")
    recipients = []
    while True:
        line = f.readline()
        if not line:
            break
        verb = line.decode(errors="replace").strip().split(" ")[0].upper()
        if verb == "LHLO":
            say("250-mailbox"); say("250 PIPELINING")
        elif verb == "RCPT":
            recipients.append(line.decode().strip()); say("250 ok")
        elif verb == "DATA":
            say("354 go ahead")
            data = b""
            while True:
                chunk = f.readline()
                if chunk in (b".\r\n", b".\n", b""):
                    break
                data += chunk
            count += 1
            path = os.path.join(folder, f"{count}.eml")
            with open(path + ".tmp", "wb") as out:
                out.write(("\n".join(recipients) + "\n\n").encode() + data)
            os.rename(path + ".tmp", path)
            for _ in recipients:
                say("250 delivered")
            recipients = []
        elif verb == "QUIT":
            say("221 bye"); break
        else:
            say("250 ok")
    conn.close()
"#;

/// One cell: its host namespace (`pic serve`, WireGuard, the firewall), its services'
/// namespaces, its state, and the processes it runs.
struct CellNet {
    name: &'static str,
    /// The host namespace.
    ns: String,
    cell: common::Cell,
    /// The address on the link between the cells ("WAN").
    wan: &'static str,
    /// The first three octets of the cell network.
    subnet: &'static str,
    serve: Option<Child>,
    daemons: Vec<Child>,
    services: Vec<String>,
}

impl CellNet {
    fn state(&self) -> PathBuf {
        self.cell.state()
    }

    fn gateway(&self) -> String {
        format!("{}.1", self.subnet)
    }

    /// A command in the cell's host namespace.
    fn exec(&self, program: &str, args: &[&str]) -> Output {
        exec_in(&self.ns, program, args)
    }

    /// A command inside `pic serve`'s mount namespace too: where its WireGuard control socket is.
    fn exec_with_serve(&self, program: &str, args: &[&str]) -> Output {
        let pid = self.serve.as_ref().expect("pic serve runs").id().to_string();
        Command::new("nsenter").args(["--target", &pid, "--mount", "--net", program]).args(args).output().unwrap()
    }

    /// A call to the cell's API from its own namespace, as admin `alice`.
    fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let jar = self.cell.dir.path().join("cookies");
        let jar = jar.to_str().unwrap();
        let csrf = std::fs::read_to_string(self.cell.dir.path().join("csrf")).unwrap_or_default();
        let url = format!("http://127.0.0.1:3000{path}");
        let header = format!("x-csrf-token: {csrf}");
        let mut args = vec!["-s", "-w", "\n%{http_code}", "-X", method, "-b", jar, "-c", jar, "-H", &header];
        let text = body.map(|b| b.to_string());
        if let Some(text) = &text {
            args.extend(["-H", "content-type: application/json", "--data", text]);
        }
        args.push(&url);
        let out = self.exec("curl", &args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())))
    }

    fn login(&self) {
        let (code, body) =
            self.api("POST", "/api/auth/login", Some(json!({"username": "alice", "password": PASSWORD})));
        assert_eq!(code, 200, "{}: {body}", self.name);
        std::fs::write(self.cell.dir.path().join("csrf"), body["csrf_token"].as_str().unwrap()).unwrap();
    }

    /// A service's namespace on the cell's bridge, at `address`.
    fn add_service(&mut self, service: &str, address: &str) -> String {
        let ns = format!("{}-{service}", self.ns);
        let port = format!("v-{service}");
        run("ip", &["netns", "add", &ns]);
        self.services.push(ns.clone());
        run("ip", &["-n", &self.ns, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
        run("ip", &["-n", &self.ns, "link", "set", &port, "master", "pic0", "up"]);
        run("ip", &["-n", &ns, "address", "add", &format!("{address}/24"), "dev", "eth0"]);
        run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
        run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        run("ip", &["-n", &ns, "route", "add", "default", "via", &self.gateway()]);
        ns
    }

    /// The current generation's bundle of `service`.
    fn bundle(&self, service: &str) -> PathBuf {
        let manifest = self.cell.manifest(self.cell.current().unwrap());
        let path = manifest["services"][service]["store_path"].as_str().unwrap_or_else(|| panic!("no {service}"));
        self.state().join(path)
    }

    /// Starts `command` in the service's namespace on the current generation's files.
    fn start_daemon(&mut self, service: &str, command: &[&str]) {
        let ns = format!("{}-{service}", self.ns);
        let scratch = self.cell.dir.path().join(format!("run-{service}"));
        std::fs::create_dir_all(&scratch).unwrap();
        let log = std::fs::File::create(self.cell.dir.path().join(format!("{service}-{}.log", command[0]))).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                common::DAEMON_HARNESS,
            ])
            .arg("harness")
            .arg(self.bundle(service))
            .arg(self.state().join("secrets"))
            .arg(&scratch)
            .args(command)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemons.push(child);
    }

    /// Stops every daemon of the cell's services (they are started again on a new generation).
    fn stop_daemons(&mut self) {
        for ns in &self.services {
            kill_all_in(ns);
        }
        for mut child in self.daemons.drain(..) {
            let _ = child.wait();
        }
    }

    /// What the daemons wrote, for a failure's message.
    fn logs(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(self.cell.dir.path()).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".log") {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                all +=
                    &format!("--- {} {name}:\n{}\n", self.name, tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            }
        }
        let api = std::fs::read_to_string(self.state().join("logs/api.log")).unwrap_or_default();
        let tail: Vec<&str> = api.lines().rev().take(20).collect();
        all + &format!("--- {} api.log:\n{}\n", self.name, tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
    }

    /// Events of `pic serve`'s log with this message.
    fn logged(&self, message: &str) -> Vec<Value> {
        let log = std::fs::read_to_string(self.state().join("logs/api.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["fields"]["message"] == message)
            .collect()
    }

    /// `pic link list` on the cell's state.
    fn link_list(&self) -> Value {
        self.cell.json(&["link", "list"])
    }
}

impl Drop for CellNet {
    fn drop(&mut self) {
        for ns in self.services.iter().chain([&self.ns]) {
            kill_all_in(ns);
        }
        for child in self.daemons.iter_mut().chain(self.serve.as_mut()) {
            let _ = child.wait();
        }
        for ns in self.services.iter().chain([&self.ns]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.ns));
    }
}

/// Kills every process in the namespace (wireguard-go and Postfix's children included).
fn kill_all_in(ns: &str) {
    let pids = Command::new("ip").args(["netns", "pids", ns]).output().map(|o| o.stdout).unwrap_or_default();
    for pid in String::from_utf8_lossy(&pids).split_whitespace() {
        let _ = Command::new("kill").args(["-9", pid]).status();
    }
}

fn exec_in(ns: &str, program: &str, args: &[&str]) -> Output {
    Command::new("ip").args(["netns", "exec", ns, program]).args(args).output().unwrap()
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Makes cell `name` with its config, its namespace and bridge, and its services' namespaces.
fn cell(id: u32, name: &'static str, wan: &'static str, subnet: &'static str, vpn: &str) -> CellNet {
    let cell = common::Cell::new();
    let config = json!({
        "version": 2,
        "cell": {"name": name},
        "network": {"subnet": format!("{subnet}.0/24")},
        "wireguard": {"subnet": format!("{vpn}.0/24"), "endpoint": format!("{wan}:51820")},
        "services": {
            "proxy": {"enabled": true},
            "dns": {"enabled": true, "upstreams": []},
            "mail": {"enabled": true, "domains": [format!("{name}.cell")],
                     "mailboxes": [{"address": format!("alice@{name}.cell"), "user": "alice"}]},
            "calendar": {"enabled": true, "users": ["alice"]}
        },
        "users": [{"name": "alice", "role": "admin"}]
    });
    let file = cell.write_config("cell.json", &config);
    cell.ok(&["init", "--config", &file]);
    cell.set_password("alice", PASSWORD);
    cell.ok(&["switch"]);
    let ns = format!("pl{name}{id}");
    run("ip", &["netns", "add", &ns]);
    let net =
        CellNet { name, ns: ns.clone(), cell, wan, subnet, serve: None, daemons: Vec::new(), services: Vec::new() };
    for args in [
        vec!["-n", &ns, "link", "set", "lo", "up"],
        vec!["-n", &ns, "link", "add", "pic0", "type", "bridge"],
        vec!["-n", &ns, "address", "add", &format!("{subnet}.1/24"), "dev", "pic0"],
        vec!["-n", &ns, "link", "set", "pic0", "up"],
    ] {
        run("ip", &args);
    }
    run("ip", &["netns", "exec", &ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    net
}

/// Starts `pic serve` in the cell's namespace, with a mount namespace of its own where
/// wireguard-go's control socket for `wg0` is this cell's (both cells name their interface
/// `wg0`, as the appliance does).
fn serve(net: &mut CellNet) {
    let log = std::fs::File::create(net.cell.dir.path().join("serve.out")).unwrap();
    let script = "mkdir -p /run/wireguard && mount -t tmpfs tmpfs /run/wireguard && exec \"$@\"";
    let child = Command::new("ip")
        .args(["netns", "exec", &net.ns, "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(env!("CARGO_BIN_EXE_pic"))
        .arg("--state")
        .arg(net.state())
        .args(["serve", "--listen", "0.0.0.0:3000", "--wireguard", "userspace", "--wireguard-interface", "wg0"])
        .args(["--firewall", "--no-containers"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    net.serve = Some(child);
    wait_for(
        &format!("pic serve of cell {} answers", net.name),
        common::wait::SERVE_START,
        Duration::from_millis(100),
        || text(&net.exec("curl", &["-s", "http://127.0.0.1:3000/health"])),
        |body| body.contains("ok") || body.contains('{'),
    );
    net.login();
}

/// Whether a TCP connection from `ns` to `address:port` is accepted within 3 s.
fn connects(ns: &str, address: &str, port: u16) -> bool {
    let probe = format!("echo > /dev/tcp/{address}/{port}");
    exec_in(ns, "timeout", &["3", "bash", "-c", &probe]).status.success()
}

/// The packets counted by the rule with this comment in the cell's firewall.
fn counted(net: &CellNet, comment: &str) -> u64 {
    let ruleset = text(&net.exec("nft", &["list", "chain", "inet", "pic", "forward"]));
    let line =
        ruleset.lines().find(|l| l.contains(comment)).unwrap_or_else(|| panic!("no rule {comment:?}:\n{ruleset}"));
    let after = line.split("packets ").nth(1).unwrap_or_else(|| panic!("no counter: {line}"));
    after.split_whitespace().next().unwrap().parse().unwrap()
}

/// The linked cell `name` as `GET /api/cells` shows it.
fn api_link(net: &CellNet, name: &str) -> Value {
    let (code, body) = net.api("GET", "/api/cells", None);
    assert_eq!(code, 200, "{body}");
    body.as_array().unwrap().iter().find(|l| l["name"] == name).cloned().unwrap_or(Value::Null)
}

#[test]
fn two_cells_link_share_what_they_grant_and_unlink() {
    let id = std::process::id() % 100_000;
    let mut a = cell(id, "a", "10.201.0.1", "172.20.0", "10.8.0");
    let mut b = cell(id, "b", "10.201.0.2", "172.21.0", "10.9.0");
    // The "WAN" between them, and B's name for A's public name (where the invitation is accepted).
    run("ip", &["-n", &a.ns, "link", "add", "wan", "type", "veth", "peer", "name", "wan", "netns", &b.ns]);
    for net in [&a, &b] {
        run("ip", &["-n", &net.ns, "address", "add", &format!("{}/24", net.wan), "dev", "wan"]);
        run("ip", &["-n", &net.ns, "link", "set", "wan", "up"]);
    }
    std::fs::create_dir_all(format!("/etc/netns/{}", b.ns)).unwrap();
    std::fs::write(format!("/etc/netns/{}/hosts", b.ns), "127.0.0.1 localhost\n10.201.0.1 a.cell\n").unwrap();

    // A's services at the addresses its config gives them; B's DNS and mail.
    let addresses = |net: &CellNet| -> BTreeMap<String, String> {
        let records = std::fs::read_to_string(net.bundle("dns").join("unbound.conf")).unwrap();
        let mut found = BTreeMap::new();
        for service in ["proxy", "dns", "mail"] {
            let fqdn = format!("'{service}.{}.cell.", net.name);
            let line = records.lines().find(|l| l.contains(&fqdn)).unwrap_or_else(|| panic!("{fqdn}:\n{records}"));
            found.insert(service.to_owned(), line.trim_end_matches('\'').rsplit(' ').next().unwrap().to_owned());
        }
        let caddy = std::fs::read_to_string(net.bundle("proxy").join("Caddyfile")).unwrap();
        let upstream = caddy.lines().find(|l| l.contains(":5232")).expect("the calendar's upstream");
        let calendar = upstream.trim().trim_start_matches("reverse_proxy ").split(':').next().unwrap().to_owned();
        found.insert("calendar".to_owned(), calendar);
        found
    };
    let a_at = addresses(&a);
    let b_at = addresses(&b);
    for service in ["proxy", "dns", "calendar", "mail"] {
        a.add_service(service, &a_at[service]);
    }
    for service in ["dns", "mail"] {
        b.add_service(service, &b_at[service]);
    }
    serve(&mut a);
    serve(&mut b);
    // A's front: Caddy, where the invitation is accepted.
    a.start_daemon("proxy", &["caddy", "run", "--config", "/etc/pic/bundle/Caddyfile", "--adapter", "caddyfile"]);
    wait_until("A's Caddy answers on its address", DAEMON_START, || connects(&b.ns, "10.201.0.1", 443));

    // --- Invitation and acceptance.
    let (code, invitation) =
        a.api("POST", "/api/cells/invitations", Some(json!({"grants": ["calendar"], "expires_in_hours": 1})));
    assert_eq!(code, 201, "{invitation}");
    let token = invitation["token"].as_str().unwrap().to_owned();
    let (code, accepted) = b.api("POST", "/api/cells/accept", Some(json!({"token": token, "grants": ["calendar"]})));
    assert_eq!(code, 201, "{accepted}\n{}", a.logs());
    // The token was used once: a second acceptance is refused by A (B refuses it first here, as
    // it is linked already; a third cell's acceptance is refused by A's ledger in unit tests).
    let (code, again) = b.api("POST", "/api/cells/accept", Some(json!({"token": token})));
    assert_eq!(code, 422, "{again}");

    // Both sides have the link in a new generation, and the tunnel comes up.
    assert_eq!(a.link_list()[0]["name"], "b");
    assert_eq!(b.link_list()[0]["name"], "a");
    for (net, other) in [(&a, "b"), (&b, "a")] {
        wait_for(
            &format!("cell {} sees a handshake with {other}", net.name),
            HANDSHAKE_LIMIT,
            Duration::from_millis(500),
            || api_link(net, other)["up"].clone(),
            |up| *up == json!(true),
        );
    }
    let seen = api_link(&b, "a");
    assert!(seen["wireguard"]["rx_bytes"].as_u64() > Some(0), "{seen}");
    assert_eq!(seen["grants"], json!(["calendar"]), "what B lets A reach");
    // `pic link list` beside `pic serve` shows the tunnel too.
    let state = b.state();
    let listed =
        b.exec_with_serve(env!("CARGO_BIN_EXE_pic"), &["--state", state.to_str().unwrap(), "--json", "link", "list"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap_or_else(|_| panic!("{}", text(&listed)));
    assert!(listed[0]["last_handshake"].is_string() && listed[0]["rx_bytes"].as_u64() > Some(0), "{listed}");

    // The daemons on the generation with the link.
    for net in [&mut a, &mut b] {
        net.stop_daemons();
        net.start_daemon("dns", &["unbound", "-d", "-c", "/etc/pic/bundle/unbound.conf"]);
        net.start_daemon("mail", &["postfix", "start-fg"]);
    }
    a.start_daemon("proxy", &["caddy", "run", "--config", "/etc/pic/bundle/Caddyfile", "--adapter", "caddyfile"]);
    a.start_daemon("calendar", &["radicale", "--config", "/etc/pic/bundle/radicale.conf"]);
    let mailbox = a.cell.dir.path().join("mailbox");
    std::fs::create_dir_all(&mailbox).unwrap();
    let lmtp = Command::new("ip")
        .args(["netns", "exec", &format!("{}-mail", a.ns), "python3", "-c", LMTP])
        .arg(&mailbox)
        .stdout(std::fs::File::create(a.cell.dir.path().join("mail-lmtp.log")).unwrap())
        .stderr(std::fs::File::create(a.cell.dir.path().join("mail-lmtp.err.log")).unwrap())
        .spawn()
        .unwrap();
    a.daemons.push(lmtp);

    // --- A device of B: a phone, with the config B's API hands out.
    let phone = device_of(&mut b, id);
    let dns = phone.dns.clone();

    // Names: calendar.a.cell resolves for B's phone (B's unbound asks A's through the tunnel).
    let answer = wait_for(
        "calendar.a.cell resolves on B's phone",
        DAEMON_START,
        Duration::from_millis(500),
        || text(&exec_in(&phone.ns, "dig", &["+short", "+time=2", "+tries=1", &format!("@{dns}"), "calendar.a.cell"])),
        |out| out.trim() == a_at["proxy"],
    );
    assert_eq!(answer.trim(), a_at["proxy"], "{}{}", a.logs(), b.logs());

    // The granted calendar answers a CalDAV request from B's phone, through A's Caddy.
    let ca = a.state().join("secrets/ca/ca.crt");
    let resolve = format!("calendar.a.cell:443:{}", a_at["proxy"]);
    let credentials = format!("alice:{PASSWORD}");
    let propfind = || {
        let out = exec_in(
            &phone.ns,
            "curl",
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
                "--cacert",
                ca.to_str().unwrap(),
                "--resolve",
                &resolve,
                "-u",
                &credentials,
                "-X",
                "PROPFIND",
                "-H",
                "Depth: 0",
                "https://calendar.a.cell/alice/",
            ],
        );
        text(&out)
    };
    let code =
        wait_for("A's calendar answers B's phone", DAEMON_START, Duration::from_millis(500), propfind, |c| c == "207");
    assert_eq!(code, "207");

    // A port that was not granted: A's mail, from B's phone, is dropped and counted on A.
    let before = counted(&a, "cell b: not granted");
    assert!(!connects(&phone.ns, &a_at["mail"], 25), "A's mail answers B's phone, which was not granted it");
    assert!(!connects(&phone.ns, &a_at["dns"], 53), "A's DNS answers B's phone straight");
    let after = counted(&a, "cell b: not granted");
    assert!(after > before, "A's drop counter for cell b did not move ({before} → {after})");

    // Mail from B to A's domain, handed to B's Postfix, arrives in A's mailbox through the tunnel.
    let send = "import smtplib\nsmtplib.SMTP('127.0.0.1', 25, timeout=10).sendmail('alice@b.cell', ['alice@a.cell'], \
                'Subject: over the link\\r\\n\\r\\nhello from b\\r\\n')";
    wait_until("B's Postfix takes the message", DAEMON_START, || {
        exec_in(&format!("{}-mail", b.ns), "python3", &["-c", send]).status.success()
    });
    let delivered = wait_for(
        "the message arrives in A's mailbox",
        DELIVERY_LIMIT,
        Duration::from_millis(500),
        || std::fs::read_to_string(mailbox.join("1.eml")).unwrap_or_default(),
        |m| m.contains("hello from b"),
    );
    assert!(delivered.contains("alice@a.cell"), "{delivered}");
    // A's Postfix names the client it took the message from: B's mail server, unmasqueraded.
    assert!(delivered.contains(&format!("[{}]", b_at["mail"])), "not from B's mail server:\n{delivered}");

    peer_sync_refusals(&a, &b, &phone);

    // --- A grant changed on A shows in B's `pic link list` within a minute.
    let (code, body) = a.api("PUT", "/api/cells/b/grants", Some(json!({"grants": ["calendar", "mail"]})));
    assert_eq!(code, 200, "{body}");
    wait_for(
        "B's `pic link list` shows what A grants now",
        SYNC_LIMIT,
        Duration::from_secs(1),
        || b.link_list()[0]["offered"].clone(),
        |offered| *offered == json!(["calendar", "mail"]),
    );
    wait_until("A's mail answers B's phone now that it is granted", DAEMON_START, || {
        connects(&phone.ns, &a_at["mail"], 25)
    });

    // --- Removing the link on A removes it on B within a minute; nothing of A is reachable.
    let (code, body) = a.api("DELETE", "/api/cells/b", None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(a.link_list(), json!([]));
    wait_for("B no longer lists A", SYNC_LIMIT, Duration::from_secs(1), || b.link_list(), |l| *l == json!([]));
    let peers = |net: &CellNet| text(&net.exec_with_serve("wg", &["show", "wg0", "peers"]));
    let a_key = seen["public_key"].as_str().unwrap().to_owned();
    wait_until("A's WireGuard key leaves B's interface", SYNC_LIMIT, || !peers(&b).contains(&a_key));
    for (address, port) in [(&a_at["proxy"], 443), (&a_at["mail"], 25), (&a_at["dns"], 53)] {
        assert!(!connects(&phone.ns, address, port), "{address}:{port} of A answers B's phone after the removal");
    }
    let ping = exec_in(&b.ns, "ping", &["-c", "1", "-W", "2", "10.8.0.1"]);
    assert!(!ping.status.success(), "A's tunnel address answers B after the removal");
}

/// B's phone: a namespace on B's LAN with wireguard-go and the config B's API hands out.
struct Phone {
    ns: String,
    dns: String,
    interface: String,
}

impl Drop for Phone {
    fn drop(&mut self) {
        kill_all_in(&self.ns);
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", self.interface));
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

fn device_of(b: &mut CellNet, id: u32) -> Phone {
    let ns = format!("{}-phone", b.ns);
    run("ip", &["netns", "add", &ns]);
    let mut phone = Phone { ns: ns.clone(), dns: String::new(), interface: format!("wgp{id}") };
    run("ip", &["-n", &b.ns, "link", "add", "lan", "type", "veth", "peer", "name", "lan", "netns", &ns]);
    run("ip", &["-n", &b.ns, "address", "add", "10.202.0.1/24", "dev", "lan"]);
    run("ip", &["-n", &b.ns, "link", "set", "lan", "up"]);
    run("ip", &["-n", &ns, "address", "add", "10.202.0.2/24", "dev", "lan"]);
    run("ip", &["-n", &ns, "link", "set", "lan", "up"]);
    run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
    run("ip", &["-n", &ns, "route", "add", "default", "via", "10.202.0.1"]);

    let (code, body) = b.api("POST", "/api/peers", Some(json!({"name": "phone"})));
    assert_eq!(code, 201, "{body}");
    let address = body["peer"]["address"].as_str().unwrap().to_owned();
    let jar = b.cell.dir.path().join("cookies");
    let out = b.exec("curl", &["-s", "-b", jar.to_str().unwrap(), "http://127.0.0.1:3000/api/peers/phone/config"]);
    let config = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| -> String {
        let line = config.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name}:\n{config}"));
        line.split_once('=').unwrap().1.trim().to_owned()
    };
    let dns = field("DNS").split(',').next().unwrap().trim().to_owned();
    let allowed = field("AllowedIPs");
    assert!(allowed.contains("172.20.0.0/24"), "the phone's routes leave A's network out: {allowed}");

    let dir = b.cell.dir.path();
    std::fs::write(dir.join("phone.conf"), &config).unwrap();
    let stripped = run("wg-quick", &["strip", dir.join("phone.conf").to_str().unwrap()]);
    std::fs::write(dir.join("phone-stripped.conf"), stripped).unwrap();
    let interface = phone.interface.clone();
    let out = exec_in(&ns, "wireguard-go", &[&interface]);
    assert!(out.status.success(), "wireguard-go: {}", text(&out));
    let stripped = dir.join("phone-stripped.conf");
    for args in [
        vec!["wg", "setconf", &interface, stripped.to_str().unwrap()],
        vec!["ip", "address", "add", &format!("{address}/32"), "dev", &interface],
        vec!["ip", "link", "set", &interface, "up"],
    ] {
        let out = exec_in(&ns, args[0], &args[1..]);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    for net in allowed.split(',').map(str::trim) {
        let out = exec_in(&ns, "ip", &["route", "add", net, "dev", &interface]);
        assert!(out.status.success(), "route {net}: {}", text(&out));
    }
    phone.dns = dns;
    phone
}

/// Peer-sync on A's tunnel address refuses a request from another source (B's phone), one from
/// B's tunnel address that names another WireGuard key, and one that replays an old number —
/// each answered 403 and logged.
fn peer_sync_refusals(a: &CellNet, b: &CellNet, phone: &Phone) {
    let link = api_link(a, "b");
    let card: serde_json::Map<String, Value> = ["name", "domain", "public_key", "signing_key", "endpoint"]
        .into_iter()
        .chain(["tunnel_address", "vpn_subnet", "cell_subnet", "dns", "mail"])
        .map(|k| (k.to_owned(), link[k].clone()))
        .collect();
    let received = link["received"].as_u64().expect("A recorded B's messages");
    let key = pic_builder::links::signing_key(&b.state().join("secrets")).unwrap();
    let message = |number: u64, card: &serde_json::Map<String, Value>| {
        let body = json!({"from": "b", "to": "a", "number": number, "card": card, "grants": ["calendar"]}).to_string();
        let signature = pic_builder::links::sign(&key, body.as_bytes());
        (body, signature)
    };
    let post = |ns: &str, from: Option<&str>, (body, signature): (String, String)| -> (String, String) {
        let header = format!("x-pic-signature: {signature}");
        let mut args = vec!["-s", "--max-time", "5", "-w", "\n%{http_code}", "-H", &header];
        args.extend(["-H", "content-type: application/json", "--data", &body]);
        if let Some(from) = from {
            args.extend(["--interface", from]);
        }
        args.push("http://10.8.0.1:7443/peer-sync/v1");
        let out = text(&exec_in(ns, "curl", &args));
        let (answer, code) = out.rsplit_once('\n').unwrap_or(("", ""));
        (code.to_owned(), answer.to_owned())
    };
    let mut other_key = card.clone();
    other_key.insert("public_key".into(), json!("b3RoZXJrZXlvdGhlcmtleW90aGVya2V5b3RoZXJrZXk="));
    let cases = [
        ("another source", post(&phone.ns, None, message(received + 100, &card)), "is not the tunnel address"),
        ("another key", post(&b.ns, Some("10.9.0.1"), message(received + 100, &other_key)), "another WireGuard key"),
        ("a replay", post(&b.ns, Some("10.9.0.1"), message(received, &card)), "replayed"),
    ];
    // The log is written by a background thread: each refusal shows within moments.
    let refusals = wait_for(
        "A logs the three refusals",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || a.logged("peer-sync refused"),
        |logged| {
            cases.iter().all(|(_, _, reason)| {
                logged.iter().any(|e| e["fields"]["reason"].as_str().is_some_and(|r| r.contains(reason)))
            })
        },
    );
    for (case, (code, answer), reason) in &cases {
        assert_eq!(code, "403", "{case}: {answer}");
        assert!(answer.contains(reason), "{case}: {answer}");
    }
    let from_phone = refusals.iter().find(|e| e["fields"]["reason"].as_str().unwrap_or("").contains("tunnel address"));
    assert!(from_phone.is_some_and(|e| e["fields"]["source"] == phone_address(phone)), "{refusals:?}");
}

fn phone_address(phone: &Phone) -> String {
    let out = text(&exec_in(&phone.ns, "ip", &["-4", "-brief", "address", "show", &phone.interface]));
    out.split_whitespace().nth(2).unwrap_or("").split('/').next().unwrap_or("").to_owned()
}
