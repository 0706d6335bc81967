//! `pic serve` for real: JSON logs with a request id per request, never a password or a cookie,
//! searchable through `GET /api/logs`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Cell, example_path};
use serde_json::{Value, json};

const PASSWORD: &str = "log-test-password";

#[test]
fn requests_are_logged_without_secrets() {
    let cell = Cell::new();
    cell.ok(&["init", "--config", example_path().to_str().unwrap()]);
    let state = cell.state();
    cell.set_password("alice", PASSWORD);
    cell.ok(&["switch"]);

    let listen = format!("127.0.0.1:{}", 39000 + std::process::id() % 1000);
    let mut server = Command::new(env!("CARGO_BIN_EXE_pic"))
        .args(["--state", state.to_str().unwrap(), "serve", "--listen", &listen, "--wireguard", "off"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let curl = |args: &[&str]| {
        let out = Command::new("curl").args(["-s", "-i"]).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    common::wait::wait_for(
        "pic serve answers",
        common::wait::SERVE_START,
        Duration::from_millis(100),
        || curl(&[&format!("http://{listen}/health")]).lines().next().unwrap_or_default().to_owned(),
        |status| status.contains("200 OK"),
    );
    let login = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data",
        &json!({"username": "alice", "password": PASSWORD}).to_string(),
        &format!("http://{listen}/api/auth/login"),
    ]);
    assert!(login.contains("x-request-id: "), "{login}");
    let session = login
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: pic_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let cookie = format!("Cookie: pic_session={session}");
    let logs = curl(&["-H", &cookie, &format!("http://{listen}/api/logs?q=/api/auth/login")]);
    let _ = server.kill();
    let _ = server.wait();

    let body = logs.split("\r\n\r\n").nth(1).unwrap_or_default();
    let entries: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {logs}"));
    let entry = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["span"]["path"] == "/api/auth/login")
        .expect("the login is logged");
    assert!(entry["span"]["id"].as_str().is_some_and(|id| id.len() >= 32), "{entry}");
    assert_eq!(entry["fields"]["status"], 200);

    let file = std::fs::read_to_string(state.join("logs/api.log")).unwrap();
    assert!(!file.contains(PASSWORD), "the password is in the log");
    assert!(!file.contains(&session), "the session cookie is in the log");
}
