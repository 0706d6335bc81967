//! `make bench`: build+switch for cells of 10, 1,000 and 10,000 peers, a no-op rebuild, and
//! rendering against Python's Jinja2 on the same templates and context, printed as a table.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use pic_builder::State;
use pic_builder::config::{self, ValidConfig};
use pic_builder::render::{Context, Renderer};
use serde_json::{Value, json};

fn key(i: u32) -> String {
    let mut bytes = [7u8; 32];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The example cell with `peers` peers in a /16 VPN subnet.
fn cell(peers: u32) -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/cell.json")).unwrap();
    let mut config: Value = serde_json::from_str(&text).unwrap();
    config["wireguard"]["subnet"] = json!("10.8.0.0/16");
    config["wireguard"]["peers"] = (0..peers)
        .map(|i| json!({"name": format!("peer{i}"), "public_key": key(i), "address": format!("10.8.{}.{}", 1 + i / 250, 1 + i % 250)}))
        .collect();
    config
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

struct Row {
    peers: u32,
    build_switch: Duration,
    noop: Duration,
    render: Duration,
    templates_only: Duration,
    jinja2: Option<Duration>,
}

fn measure(peers: u32, python: &str) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let state = State::new(dir.path().join("state"));
    let base = cell(peers);
    state.init(Some(&config::parse(&base.to_string()).unwrap())).unwrap();
    {
        let writer = state.writer().unwrap();
        let n = writer.build(None, "bench").unwrap().generation;
        writer.switch(n).unwrap();
    }
    let iterations = if peers >= 10_000 { 9 } else { 21 };

    // A change of one peer: parse and validate the config, build, switch — what `pic switch --config` does.
    let mut samples = Vec::new();
    for i in 0..iterations {
        let mut changed = base.clone();
        changed["wireguard"]["peers"][0]["public_key"] = json!(key(1_000_000 + i));
        let text = changed.to_string();
        let start = Instant::now();
        let config = config::parse(&text).unwrap();
        let writer = state.writer().unwrap();
        let outcome = writer.build(Some(&config), "bench").unwrap();
        assert!(outcome.created);
        writer.switch(outcome.generation).unwrap();
        drop(writer);
        samples.push(start.elapsed());
    }
    let build_switch = median(samples);

    // The same config again: nothing to write.
    let text = std::fs::read_to_string(state.desired_config_path()).unwrap();
    let mut samples = Vec::new();
    for _ in 0..iterations {
        let start = Instant::now();
        let config = config::parse(&text).unwrap();
        let outcome = state.writer().unwrap().build(Some(&config), "bench").unwrap();
        assert!(!outcome.created);
        samples.push(start.elapsed());
    }
    let noop = median(samples);

    let config: ValidConfig = config::parse(&text).unwrap();
    let keys = state.public_keys().unwrap();
    let renderer = Renderer::new();
    let services: Vec<String> = renderer.render(&config, &keys).unwrap().into_keys().collect();
    let mut samples = Vec::new();
    for _ in 0..iterations {
        let start = Instant::now();
        std::hint::black_box(renderer.render(&config, &keys).unwrap());
        samples.push(start.elapsed());
    }
    let render = median(samples);
    let context = Renderer::context(&config, &keys);
    let mut samples = Vec::new();
    for _ in 0..iterations {
        let start = Instant::now();
        std::hint::black_box(renderer.render_context(&config, &context).unwrap());
        samples.push(start.elapsed());
    }
    let templates_only = median(samples);

    let context_file = dir.path().join("context.json");
    std::fs::write(&context_file, serde_json::to_string(&Context::new(&config, &keys)).unwrap()).unwrap();
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/jinja2_render.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(&templates)
        .arg(&context_file)
        .arg(iterations.to_string())
        .args(&services)
        .output();
    let jinja2 = match out {
        Ok(out) if out.status.success() => {
            let secs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
            Some(Duration::from_secs_f64(secs))
        }
        Ok(out) => {
            eprintln!("Jinja2 comparison failed: {}", String::from_utf8_lossy(&out.stderr));
            None
        }
        Err(e) => {
            eprintln!("Jinja2 comparison needs {python}: {e}");
            None
        }
    };
    Row { peers, build_switch, noop, render, templates_only, jinja2 }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter here.
    let python = std::env::var("PIC_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let rows: Vec<Row> = [10, 1_000, 10_000].into_iter().map(|n| measure(n, &python)).collect();
    println!(
        "| peers | build+switch (one peer changed) | no-op rebuild | render, context included | render (minijinja) | render (Jinja2) | Jinja2 / minijinja |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let (jinja2, ratio) = match r.jinja2 {
            Some(j) => (ms(j), format!("{:.1}x", j.as_secs_f64() / r.templates_only.as_secs_f64())),
            None => ("n/a".into(), "n/a".into()),
        };
        println!(
            "| {} | {} | {} | {} | {} | {jinja2} | {ratio} |",
            r.peers,
            ms(r.build_switch),
            ms(r.noop),
            ms(r.render),
            ms(r.templates_only)
        );
    }
    println!("\nMedians. build+switch parses and validates the config, renders, writes the changed store paths");
    println!("and the generation with fsync, and flips `current`; a no-op rebuild stops at the inputs hash.");
    println!("The last three columns render the same templates from the same prepared context (Jinja2 in");
    println!("Python, context loaded before timing); \"context included\" adds building it from the config.");
    if rows.iter().any(|r| r.jinja2.is_none()) {
        std::process::exit(1);
    }
}
