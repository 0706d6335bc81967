//! `make bench`: backup and restore of a 1,000-peer cell with 100 MB of service data, side by
//! side with `tar | zstd` (and `zstd -d | tar -x`) of the same state directory in the same run;
//! then with the secrets encrypted, whose scrypt is tuned to about a second on any machine.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use pic_builder::State;
use pic_builder::backup::{self, BackupOptions, RestoreOptions, SecretString};
use pic_builder::config;
use serde_json::json;

const PEERS: u32 = 1000;
const GENERATIONS: u32 = 5;
const DATA_MB: usize = 100;
const RUNS: usize = 3;

fn key(i: u32) -> String {
    let mut bytes = [7u8; 32];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The example cell with 1,000 peers and a few generations behind the current one.
fn cell(root: &Path) -> State {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/cell.json")).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["wireguard"]["subnet"] = json!("10.8.0.0/16");
    value["wireguard"]["peers"] = (0..PEERS)
        .map(|i| json!({"name": format!("peer{i}"), "public_key": key(i), "address": format!("10.8.{}.{}", 1 + i / 250, 1 + i % 250)}))
        .collect();
    let state = State::new(root);
    state.init(Some(&config::parse(&value.to_string()).unwrap())).unwrap();
    let writer = state.writer().unwrap();
    for g in 0..GENERATIONS {
        let changed = writer
            .desired_with(|c| {
                c.services.dns.upstreams = vec![format!("10.0.0.{}", g + 1).parse().unwrap()];
                Ok(())
            })
            .unwrap();
        writer.build_and_switch(&changed, "bench").unwrap();
    }
    drop(writer);
    write_data(&root.join("data"));
    state
}

/// 100 MB over a thousand files: half mail-like text, half incompressible (photos, archives).
fn write_data(data: &Path) {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let per_file = DATA_MB * 1_000_000 / 1000;
    for i in 0..1000 {
        let (service, sub) = if i % 2 == 0 { ("mail", "alice/Maildir/cur") } else { ("files", "alice") };
        let dir = data.join(service).join(sub);
        std::fs::create_dir_all(&dir).unwrap();
        let mut bytes = Vec::with_capacity(per_file);
        if i % 2 == 0 {
            while bytes.len() < per_file {
                let line = format!("Received: from host{} by mail.home.cell; id {:x}\r\n", next() % 977, next());
                bytes.extend_from_slice(line.as_bytes());
            }
            bytes.truncate(per_file);
        } else {
            while bytes.len() < per_file {
                bytes.extend_from_slice(&next().to_le_bytes());
            }
            bytes.truncate(per_file);
        }
        std::fs::write(dir.join(format!("{i:04}")), bytes).unwrap();
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn timed(mut work: impl FnMut()) -> Duration {
    median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                work();
                start.elapsed()
            })
            .collect(),
    )
}

fn sh(script: &str) {
    let status = Command::new("sh").args(["-c", script]).status().unwrap();
    assert!(status.success(), "{script}");
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let state = cell(&dir.path().join("state"));
    let archive = dir.path().join("pic.tar.zst");
    let passphrase = SecretString::from("a passphrase for the bench".to_owned());

    let run = |passphrase: Option<SecretString>| {
        let backup = timed(|| {
            let _ = std::fs::remove_file(&archive);
            let options = BackupOptions { passphrase: passphrase.clone(), include_data: true, work_factor: None };
            backup::create(&state.writer().unwrap(), Some(&archive), &options, &mut |_| {}).unwrap();
        });
        let size = std::fs::metadata(&archive).unwrap().len();
        let restore = timed(|| {
            let target = dir.path().join("restored");
            let _ = std::fs::remove_dir_all(&target);
            let options = RestoreOptions { passphrase: passphrase.clone(), include_data: true, dry_run: false };
            backup::restore(&State::new(&target), &archive, &options, &mut |_| {}).unwrap();
        });
        (backup, restore, size)
    };
    let (backup, restore, size) = run(None);
    let (secret_backup, secret_restore, _) = run(Some(passphrase.clone()));

    let root = state.root().display().to_string();
    let plain = dir.path().join("plain.tar.zst");
    let tar_zstd = timed(|| {
        sh(&format!(
            "tar -cf - -C {root} store generations secrets data cell_config.json | zstd -q -3 -T1 -f -o {}",
            plain.display()
        ))
    });
    let tar_size = std::fs::metadata(&plain).unwrap().len();
    let untar = timed(|| {
        let target = dir.path().join("untarred");
        let _ = std::fs::remove_dir_all(&target);
        std::fs::create_dir_all(&target).unwrap();
        sh(&format!("zstd -q -d -c {} | tar -xf - -C {}", plain.display(), target.display()));
    });

    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
    let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
    println!("backup of a {PEERS}-peer cell, {GENERATIONS} generations, {DATA_MB} MB of data (medians of {RUNS}):");
    println!("{:<40} {:>10} {:>10} {:>10}", "", "backup", "restore", "size");
    println!("{:<40} {:>10} {:>10} {:>10}", "pic, secrets left out", ms(backup), ms(restore), mb(size));
    println!("{:<40} {:>10} {:>10} {:>10}", "tar | zstd -3 / zstd -d | tar -x", ms(tar_zstd), ms(untar), mb(tar_size));
    println!(
        "{:<40} {:>9.2}x {:>9.2}x {:>9.2}x",
        "ratio (pic / tar+zstd)",
        backup.as_secs_f64() / tar_zstd.as_secs_f64(),
        restore.as_secs_f64() / untar.as_secs_f64(),
        size as f64 / tar_size as f64
    );
    println!("{:<40} {:>10} {:>10}", "pic, secrets encrypted (scrypt)", ms(secret_backup), ms(secret_restore));
}
