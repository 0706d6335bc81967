//! Tier 5: the flashable disk image (`make image`) booted in QEMU (TCG) and driven like a NixOS
//! test. Needs `target/pic.img` (or `$PIC_IMAGE`), qemu-system-x86 and ovmf.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use pic_vm_tests::{Machine, Options};

fn image() -> PathBuf {
    std::env::var_os("PIC_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/pic.img")))
}

/// A free port on the host for a forward.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

const MINUTES: fn(u64) -> Duration = |m| Duration::from_secs(60 * m);

#[test]
fn first_boot_serves_the_wizard_and_nothing_writes_the_root() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let options = Options { forwards: vec![(3000, free_port())], ..Options::default() };
    let mut cell = Machine::boot("cell", &image(), dir.path(), options)?;
    // The console names the address to open.
    cell.wait_for_console(r"Open http://[0-9.]+:3000/", MINUTES(5))?;
    cell.wait_for_unit("pic.service", MINUTES(10))?;
    cell.wait_for_open_port(3000, MINUTES(5))?;
    let (status, body) = cell.wait_for_http(3000, "/api/setup/status", MINUTES(2))?;
    eprintln!("boot to API ready: {:.1} s (TCG)", cell.uptime());
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"complete\":false"), "{body}");

    // The root is read-only; the state and Docker live on the data partition, which grew.
    cell.succeed("findmnt -n -o OPTIONS / | grep -qw ro")?;
    cell.fail("touch /usr/bin/written")?;
    cell.fail("touch /etc/written")?;
    cell.succeed("touch /var/lib/pic/written && rm /var/lib/pic/written")?;
    let size = cell.succeed("df --output=size -BM /var | tail -n 1")?;
    let megabytes: u64 = size.trim().trim_end_matches('M').parse()?;
    assert!(megabytes > 4000, "the data partition did not grow: {megabytes} MB");
    cell.shutdown(MINUTES(3))
}
