//! `make bench`: `pic serve` under load — GET /api/peers of a 100-peer cell at 64 connections
//! (wrk: requests/s, p50, p99) — its resident memory when idle, under that load and after
//! refusing 5 MB bodies; and, with `PIC_BENCH_PYTHON` (a venv with Flask and gunicorn), the same
//! load on the original's way of serving the peers (`original_peers.py`: Flask, a session check,
//! the config read per request), on Flask's server and on gunicorn with two workers.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const PASSWORD: &str = "bench-password-1";

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The `pic` measured: this build's, or another (`PIC_BENCH_BIN`, e.g. an older commit's, to
/// compare the two on the same machine at the same time).
fn binary() -> std::path::PathBuf {
    std::env::var_os("PIC_BENCH_BIN").map_or_else(|| env!("CARGO_BIN_EXE_pic").into(), Into::into)
}

fn pic(state: &std::path::Path, args: &[&str], stdin: &str) {
    let mut child = Command::new(binary())
        .arg("--state")
        .arg(state)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "pic {args:?}");
}

/// The wrk figure after `label` (e.g. "Requests/sec:" or "50%"), as printed.
fn wrk_figure(output: &str, label: &str) -> String {
    output
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(label))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("n/a")
        .to_string()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/cell.json")).unwrap();
    let mut config: Value = serde_json::from_str(&text).unwrap();
    let peers: Vec<Value> = (0..100u32)
        .map(|i| {
            let (_, public) = pic_builder::peers::PeerKeys::generate();
            json!({"name": format!("device{i}"), "public_key": public, "address": format!("10.8.0.{}", 10 + i)})
        })
        .collect();
    config["wireguard"]["peers"] = Value::Array(peers);
    let file = dir.path().join("cell.json");
    std::fs::write(&file, config.to_string()).unwrap();
    pic(&state, &["init", "--config", file.to_str().unwrap()], "");
    pic(&state, &["user", "passwd", "alice"], &format!("{PASSWORD}\n"));
    pic(&state, &["switch"], "");

    let listen = "127.0.0.1:39713";
    let mut server = Command::new(binary())
        .arg("--state")
        .arg(&state)
        .args(["serve", "--listen", listen, "--wireguard", "off", "--no-containers"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let login = loop {
        let out = Command::new("curl")
            .args(["-s", "-i", "-X", "POST", "-H", "content-type: application/json", "--data"])
            .arg(json!({"username": "alice", "password": PASSWORD}).to_string())
            .arg(format!("http://{listen}/api/auth/login"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.starts_with("HTTP/1.1 200") {
            break text;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "pic serve did not come up");
        std::thread::sleep(Duration::from_millis(100));
    };
    let session = login
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: pic_session="))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();

    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_kib(server.id());
    let cookie = format!("Cookie: pic_session={session}");
    let (output, loaded) = load(&format!("http://{listen}/api/peers"), &cookie, server.id());

    // Bodies far above any limit, 64 at a time: refused, and the memory they took given back.
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; 5 << 20]).unwrap();
    let senders: Vec<_> = (0..64)
        .map(|_| {
            Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-X", "POST", "-H", "content-type: application/json", "-H", &cookie])
                .arg("--data-binary")
                .arg(format!("@{}", big.display()))
                .arg(format!("http://{listen}/api/peers"))
                .spawn()
                .unwrap()
        })
        .collect();
    for mut sender in senders {
        let _ = sender.wait();
    }
    std::thread::sleep(Duration::from_secs(1));
    let after_big = rss_kib(server.id());
    let _ = server.kill();
    let _ = server.wait();

    println!(
        "| GET /api/peers (100 peers), 64 connections, 10 s | requests/s | p50 | p99 | RSS idle | RSS under load | RSS after 64 × 5 MB refused |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "| pic serve | {} | {} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
        wrk_figure(&output, "Requests/sec:"),
        wrk_figure(&output, "50%"),
        wrk_figure(&output, "99%"),
        idle as f64 / 1024.0,
        loaded as f64 / 1024.0,
        after_big as f64 / 1024.0
    );
    if !output.contains("Requests/sec:") {
        eprintln!("{output}");
        std::process::exit(1);
    }
    let ours: f64 = wrk_figure(&output, "Requests/sec:").parse().unwrap_or(0.0);
    if let Some(python) = std::env::var_os("PIC_BENCH_PYTHON") {
        let config = state.join("cell_config.json");
        let bench_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/benches");
        let gunicorn = std::path::Path::new(&python).with_file_name("gunicorn");
        let servers: [(&str, Command); 2] = [
            ("Flask (its own threaded server)", {
                let mut c = Command::new(&python);
                c.arg(format!("{bench_dir}/original_peers.py")).arg("39714");
                c
            }),
            ("Flask on gunicorn, 2 workers", {
                let mut c = Command::new(&gunicorn);
                c.args(["-w", "2", "-b", "127.0.0.1:39715", "--chdir", bench_dir, "original_peers:app"]);
                c
            }),
        ];
        for ((label, mut command), port) in servers.into_iter().zip([39714, 39715]) {
            let mut original =
                command.env("PIC_BENCH_CONFIG", &config).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
            let started = Instant::now();
            let login = loop {
                let out = Command::new("curl")
                    .args(["-s", "-i", "-X", "POST"])
                    .arg(format!("http://127.0.0.1:{port}/login"))
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                if text.starts_with("HTTP/1.1 200") {
                    break text;
                }
                assert!(started.elapsed() < Duration::from_secs(20), "{label} did not come up");
                std::thread::sleep(Duration::from_millis(200));
            };
            let cookie = login
                .lines()
                .find_map(|l| l.to_ascii_lowercase().starts_with("set-cookie: session=").then(|| l[12..].to_owned()))
                .and_then(|c| c.split(';').next().map(str::to_owned))
                .expect("a session cookie");
            let (theirs, loaded) =
                load(&format!("http://127.0.0.1:{port}/api/peers"), &format!("Cookie: {cookie}"), original.id());
            let _ = original.kill();
            let _ = original.wait();
            let rate: f64 = wrk_figure(&theirs, "Requests/sec:").parse().unwrap_or(0.0);
            println!(
                "| {label} | {} | {} | {} | | {:.1} MiB | (pic serve: {:.1}× its requests/s) |",
                wrk_figure(&theirs, "Requests/sec:"),
                wrk_figure(&theirs, "50%"),
                wrk_figure(&theirs, "99%"),
                loaded as f64 / 1024.0,
                if rate > 0.0 { ours / rate } else { 0.0 }
            );
        }
    }
}

/// wrk's report of 64 connections for 10 s on `url`, and the most `pid` held meanwhile.
fn load(url: &str, cookie: &str, pid: u32) -> (String, u64) {
    let wrk = Command::new("wrk")
        .args(["-t2", "-c64", "-d10s", "--latency", "-H", cookie, url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("wrk is installed (make bench installs it)");
    let mut loaded = 0;
    let deadline = Instant::now() + Duration::from_secs(9);
    while Instant::now() < deadline {
        loaded = loaded.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(200));
    }
    (String::from_utf8_lossy(&wrk.wait_with_output().unwrap().stdout).into_owned(), loaded)
}
