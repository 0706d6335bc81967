//! Crash safety: `pic switch`, `pic rollback` and `pic gc` are SIGKILLed at every fault point of
//! their write path, over and over (and at random instants from outside), and after every kill
//! `current` must be a complete generation and `pic verify` must pass.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Cell, example, example_path, key, with_peer};

const KILLS_WANTED: usize = 200;

/// Runs `pic ARGS` with the fault point armed at `at`; true when the process was killed there.
fn run_killed_at(cell: &Cell, args: &[&str], at: usize) -> bool {
    let status = Command::new(env!("CARGO_BIN_EXE_pic"))
        .arg("--state")
        .arg(cell.state())
        .args(args)
        .env("PIC_FAULT_KILL_AT", at.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    match status.signal() {
        Some(9) => true,
        Some(other) => panic!("pic {args:?} died of signal {other}"),
        None => {
            assert!(status.success(), "pic {args:?} failed with fault point {at}: {status}");
            false
        }
    }
}

/// The example cell with one more peer, numbered `variant`, in a VPN subnet with room for all.
fn variant_config(prefix: &str, variant: u32) -> serde_json::Value {
    let mut config = example();
    config["wireguard"]["subnet"] = "10.8.0.0/16".into();
    let address = format!("10.8.{}.{}", 1 + variant / 250, 1 + variant % 250);
    with_peer(config, &format!("{prefix}{variant}"), &key(variant), &address)
}

/// The invariants that must hold whenever a writer has been killed.
fn assert_consistent(cell: &Cell, context: &str) {
    let current = cell.current().unwrap_or_else(|| panic!("{context}: no current generation"));
    let dir = cell.state().join(format!("generations/{current}"));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap())
            .unwrap_or_else(|e| panic!("{context}: manifest of {current}: {e}"));
    assert_eq!(manifest["number"], current, "{context}");
    for entry in manifest["services"].as_object().unwrap().values() {
        assert!(cell.state().join(entry["store_path"].as_str().unwrap()).is_dir(), "{context}: {entry} missing");
    }
    let verify = cell.pic(&["verify"]);
    assert!(verify.status.success(), "{context}: verify failed: {}", String::from_utf8_lossy(&verify.stdout));
    // The desired config is replaced atomically, so it always parses.
    let validate = cell.pic(&["validate", cell.state().join("cell_config.json").to_str().unwrap()]);
    assert!(validate.status.success(), "{context}: desired config is broken");
}

#[test]
fn killed_writers_leave_a_complete_current_generation() {
    let cell = Cell::new();
    cell.ok(&["init", "--config", example_path().to_str().unwrap()]);
    cell.ok(&["switch"]);

    let mut kills = 0;
    let mut variant = 0u32;
    let mut points_per_switch = Vec::new();
    while kills < KILLS_WANTED {
        // Each attempt builds a config never built before, so the whole write path runs.
        for at in 1.. {
            variant += 1;
            let config = variant_config("crash", variant);
            let file = cell.write_config("crash.json", &config);
            if !run_killed_at(&cell, &["switch", "--config", &file], at) {
                points_per_switch.push(at - 1);
                break;
            }
            kills += 1;
            assert_consistent(&cell, &format!("switch killed at fault point {at}"));
        }
        for args in [&["rollback"][..], &["gc", "--keep", "3"][..]] {
            for at in 1.. {
                if !run_killed_at(&cell, args, at) {
                    break;
                }
                kills += 1;
                assert_consistent(&cell, &format!("{args:?} killed at fault point {at}"));
            }
        }
    }
    assert!(
        points_per_switch.iter().all(|&p| p >= 8),
        "too few fault points on the switch path: {points_per_switch:?}"
    );

    // Kills from outside at arbitrary instants.
    for i in 0..40u64 {
        variant += 1;
        let config = variant_config("ext", variant);
        let file = cell.write_config("ext.json", &config);
        let mut child = Command::new(env!("CARGO_BIN_EXE_pic"))
            .arg("--state")
            .arg(cell.state())
            .args(["switch", "--config", &file])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros((i * 7919) % 4000));
        let _ = child.kill();
        let _ = child.wait();
        assert_consistent(&cell, &format!("external kill {i}"));
    }

    // After all that, the next writer recovers and works.
    cell.ok(&["switch"]);
    assert_consistent(&cell, "final switch");
    let leftovers: Vec<_> = std::fs::read_dir(cell.state().join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "the writer should clear temporaries: {leftovers:?}");
    eprintln!("{kills} kills at fault points; switch path has {points_per_switch:?} points");
}
