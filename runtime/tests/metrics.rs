//! `GET /metrics` scraped from a real `pic serve` with the scraper's token, and read by
//! Prometheus's own checker (`promtool check metrics`, from Debian's `prometheus`).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Cell, example_path};

#[test]
fn a_live_scrape_passes_promtool() {
    let cell = Cell::new();
    cell.ok(&["init", "--config", example_path().to_str().unwrap()]);
    cell.ok(&["switch"]);
    // The example backs up on a schedule: one scheduled archive, as the schedule makes it.
    cell.ok(&["backup", "--scheduled"]);
    let state = cell.state();
    let token = cell.ok(&["metrics", "token"]).trim().to_owned();
    assert_eq!(token.len(), 64, "{token}");

    let listen = format!("127.0.0.1:{}", 41000 + std::process::id() % 1000);
    let mut server = Command::new(env!("CARGO_BIN_EXE_pic"))
        .args([
            "--state",
            state.to_str().unwrap(),
            "serve",
            "--listen",
            &listen,
            "--wireguard",
            "off",
            "--no-containers",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let curl = |args: &[&str]| {
        let out = Command::new("curl").args(["-s", "-w", "\n%{http_code}"]).args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.to_owned(), body.to_owned())
    };
    let url = format!("http://{listen}/metrics");
    common::wait::wait_for(
        "pic serve answers",
        common::wait::SERVE_START,
        Duration::from_millis(100),
        || curl(&[&format!("http://{listen}/health")]).0,
        |code| code == "200",
    );
    let (refused, _) = curl(&[&url]);
    let (code, scrape) = curl(&["-H", &format!("Authorization: Bearer {token}"), &url]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(refused, "401", "a scrape without the token");
    assert_eq!(code, "200", "{scrape}");
    for name in [
        "pic_generation_current 1",
        "pic_peers 3",
        "pic_certificate_remaining_seconds{name=\"lan\"}",
        "pic_backup_age_seconds ",
        "pic_backup_size_bytes ",
        "pic_backup_schedule_failing 0",
    ] {
        assert!(scrape.contains(name), "{name} missing from:\n{scrape}");
    }

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt install prometheus; `make deps` does)");
    promtool.stdin.take().unwrap().write_all(scrape.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {}{}\n{scrape}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
