//! `make bench`: the cell in Docker. Image builds (cold: empty layer cache; cached: nothing to
//! do) and the images' total size; then, with `pic serve` running the containers, the time from
//! a change to every changed service healthy (the API answers after activation and the health
//! gate) and how many containers each kind of change restarted.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::docker::*;
use serde_json::{Value, json};

const RUNS: usize = 5;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `pic images build` into `cache` without loading; returns (seconds, rows).
fn build_images(cache: &Path) -> (f64, Vec<Value>) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let lock = cache.join("bench-packages.lock.json");
    std::fs::create_dir_all(cache).unwrap();
    let _ = std::fs::copy(workspace.join("images/packages.lock.json"), &lock);
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_pic"))
        .current_dir(&workspace)
        .args(["--json", "images", "build", "--no-load", "--update-lock"])
        .args(["--cache", cache.to_str().unwrap(), "--lock", lock.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "pic images build: {}", String::from_utf8_lossy(&out.stderr));
    (started.elapsed().as_secs_f64(), serde_json::from_slice(&out.stdout).unwrap())
}

/// Containers whose id or start time changed.
fn restarted(before: &std::collections::BTreeMap<String, String>) -> usize {
    let after = container_starts();
    before.iter().filter(|(name, start)| after.get(*name) != Some(start)).count()
}

fn main() {
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-images");
    let _ = std::fs::remove_dir_all(&cache);
    let (cold, rows) = build_images(&cache);
    let (cached, _) = build_images(&cache);
    let total: u64 = rows.iter().map(|r| r["layer_bytes"].as_u64().unwrap()).sum();
    println!(
        "images: cold build {cold:.1} s, cached {:.0} ms; {} images over one base, {:.0} MB of layers",
        cached * 1000.0,
        rows.len() - 1,
        total as f64 / 1e6
    );
    for row in &rows {
        println!(
            "  {:<9} {:>6.1} MB",
            row["name"].as_str().unwrap(),
            row["layer_bytes"].as_u64().unwrap() as f64 / 1e6
        );
    }

    common::build_images();
    let started = Instant::now();
    let cell = start_cell();
    cell.wait_all_healthy("every service is healthy");
    println!(
        "first activation of every service: {:.2} s from `pic serve` start to all healthy",
        started.elapsed().as_secs_f64()
    );

    let mut peer = Vec::new();
    let mut peer_restarts = 0;
    for i in 0..RUNS {
        let before = container_starts();
        let t = Instant::now();
        cell.api_json("POST", "/api/peers", Some(&json!({"name": format!("bench-{i}")})));
        peer.push(t.elapsed().as_secs_f64() * 1000.0);
        peer_restarts += restarted(&before);
    }
    let mut dns = Vec::new();
    let mut dns_restarts = 0;
    for i in 0..RUNS {
        let before = container_starts();
        let t = Instant::now();
        cell.change_config(|c| c["services"]["dns"]["upstreams"] = json!([GATEWAY, format!("192.0.2.{}", 10 + i)]));
        dns.push(t.elapsed().as_secs_f64() * 1000.0);
        dns_restarts += restarted(&before);
    }
    println!(
        "change → every changed service healthy (median of {RUNS}; containers restarted or recreated in all runs):"
    );
    println!("  peer added:          {:>7.1} ms   {peer_restarts} restarted", median(peer));
    println!("  DNS upstream change: {:>7.1} ms   {dns_restarts} restarted", median(dns));
    drop(cell);
    let _ = std::fs::remove_dir_all(&cache);
}
