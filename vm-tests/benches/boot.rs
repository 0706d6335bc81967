//! Benchmark: what the appliance costs to boot, set up and keep running, each boot beside a
//! baseline booted in the same run (the same image without Docker and PIC, to multi-user), so
//! that the machine's load weighs on both alike. Boots `target/pic.img` (or `$PIC_IMAGE`) under
//! QEMU TCG: first boot to the progress page and to the wizard on port 80 (`pic serve`'s front door), setup to every service healthy, the
//! memory the running cell uses, and a reboot to the API (the progress page on port 80), to the web
//! UI through Caddy and to every service healthy.
//! Writes `target/bench-boot.json`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, ensure};
use pic_vm_tests::cell::{
    ALL_HEALTHY, Admin, FIRST_BOOT_WIZARD, PASSWORD, POWER_CYCLE, REBOOT_UI, SERVICES, SETUP_READY, baseline_boot,
    expect, free_tcp_port, image, memory, port_80_until_the_web_ui, wait_until_ready,
};
use pic_vm_tests::{Machine, Options};
use serde_json::json;

fn main() -> Result<()> {
    let image = image();
    ensure!(image.exists(), "no disk image at {}: `make image` builds it", image.display());
    let dir = tempfile::tempdir()?;
    let (baseline, _) = baseline_boot(dir.path())?;
    let options = Options { forwards: vec![(80, free_tcp_port()), (443, free_tcp_port())], ..Options::default() };
    let mut cell = Machine::boot("cell", &image, dir.path(), options)?;

    let (progress_page, first_boot) = port_80_until_the_web_ui(&mut cell, FIRST_BOOT_WIZARD)?;
    let setup = json!({"cell_name": "benchcell", "admin_password": PASSWORD, "services": SERVICES}).to_string();
    let started = Instant::now();
    expect(cell.http("POST", 80, "/api/setup", Some(&setup), &[])?, 200, "setup")?;
    wait_until_ready(&mut cell, SETUP_READY)?;
    Admin::log_in(&mut cell)?.wait_all_healthy(&mut cell, ALL_HEALTHY)?;
    let setup_s = started.elapsed().as_secs_f64();
    let memory = memory(&mut cell)?;

    cell.reboot(POWER_CYCLE)?;
    let (reboot, reboot_ui) = port_80_until_the_web_ui(&mut cell, REBOOT_UI)?;
    Admin::log_in(&mut cell)?.wait_all_healthy(&mut cell, ALL_HEALTHY)?;
    let reboot_healthy = cell.uptime();
    cell.shutdown(POWER_CYCLE)?;

    let size = |suffix: &str| {
        let mut path = image.clone().into_os_string();
        path.push(suffix);
        std::fs::metadata(path).map(|m| m.len() as f64 / 1e6).unwrap_or(f64::NAN)
    };
    println!("\nappliance boot (QEMU TCG, 2 vCPUs; baseline: the same image without Docker and PIC)");
    println!("{:<44}{:>10}{:>14}", "", "seconds", "× baseline");
    let row = |what: &str, s: f64| println!("{what:<44}{s:>10.1}{:>14.2}", s / baseline);
    row("baseline: power-on to multi-user", baseline);
    row("first boot: power-on to the progress page", progress_page);
    row("first boot: power-on to the wizard", first_boot);
    println!("{:<44}{setup_s:>10.1}", "setup: POST /api/setup to all healthy");
    row("reboot: power-on to the API (progress page)", reboot);
    row("reboot: power-on to the web UI (Caddy)", reboot_ui);
    row("reboot: power-on to all services healthy", reboot_healthy);
    println!("image: {:.1} MB raw, {:.1} MB zstd", size(""), size(".zst"));
    println!("memory after setup (MB): {}", serde_json::to_string_pretty(&memory)?);
    let figures = json!({
        "baseline_boot_s": baseline, "first_boot_progress_page_s": progress_page, "first_boot_to_wizard_s": first_boot, "setup_to_healthy_s": setup_s,
        "reboot_to_api_s": reboot, "reboot_to_ui_s": reboot_ui, "reboot_to_healthy_s": reboot_healthy,
        "first_boot_per_baseline": first_boot / baseline, "reboot_per_baseline": reboot / baseline,
        "image_raw_mb": size(""), "image_zstd_mb": size(".zst"), "memory_mb": memory,
    });
    let out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-boot.json"));
    std::fs::write(out, serde_json::to_string_pretty(&figures)? + "\n")?;
    Ok(())
}
