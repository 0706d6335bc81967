//! Applying a bundle on the device: every check first (signature, architecture, versions, this
//! boot confirmed, room), so that a refusal writes nothing; then the inactive slot's entry goes,
//! the root is streamed into its partition and checked, the kernel and initrd are written to the
//! ESP, and last the new entry with three tries. A power cut at any point before that last
//! rename leaves the running version as the only one the firmware can boot.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::Version;
use super::bundle::{self, Bundle, Refusal, refused};
use super::slots::{Device, Entry, KERNELS, SlotDef, SlotState, TRIES, entry_state};
use crate::error::{Error, IoContext};
use crate::fault;
use crate::fsutil;
use crate::hashing::Hashing;

/// Room left free on the ESP beyond the payloads (vfat's clusters, the entry).
const ESP_MARGIN: u64 = 1 << 20;
const CHUNK: usize = 4 << 20;

#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub version: Version,
    pub slot: String,
    pub bytes: u64,
    pub seconds: f64,
    /// The device boots the new version at its next start, on trial.
    pub reboot_required: bool,
}

/// Checks the bundle at `path` against the device; the slot it would be written to.
pub fn check<'d>(device: &'d Device, path: &Path) -> Result<(Bundle, &'d SlotDef), Error> {
    let Some(booted) = device.booted_slot() else {
        return Err(refused(
            Refusal::Unsupported,
            "this device was not started from one of its slots, so it has no slot to write",
        ));
    };
    let bundle = Bundle::open(path, &device.trusted_key)?;
    let manifest = &bundle.manifest;
    if manifest.architecture != bundle::ARCHITECTURE {
        return Err(refused(
            Refusal::WrongArchitecture,
            format!("it is for {}, this device is {}", manifest.architecture, bundle::ARCHITECTURE),
        ));
    }
    let status = device.status()?;
    if let Some(running) = &status.version {
        if manifest.version <= *running {
            return Err(refused(
                Refusal::NotNewer,
                format!("it is version {}, not newer than the running {running}", manifest.version),
            ));
        }
        if manifest.min_from_version > *running {
            return Err(refused(
                Refusal::TooOld,
                format!(
                    "it updates {} or newer; this device runs {running}: apply an older update first",
                    manifest.min_from_version
                ),
            ));
        }
    }
    if let Some(rejection) = status.rejected.iter().find(|r| r.version == manifest.version) {
        return Err(refused(
            Refusal::RejectedBefore,
            format!(
                "this device tried version {} and fell back from it ({}): it needs a newer version",
                manifest.version, rejection.reason
            ),
        ));
    }
    if status.boot == SlotState::Trying {
        return Err(refused(Refusal::NotConfirmed, status.not_ready_reason.unwrap_or_default()));
    }
    let target = device
        .layout
        .slots
        .iter()
        .find(|s| s.name != booted.name)
        .ok_or_else(|| refused(Refusal::Unsupported, "this device has one slot only"))?;
    let root = bundle.payloads.iter().find(|p| p.0 == bundle::ROOT).map_or(0, |p| p.2);
    let room = partition_size(&target.device)?;
    if root > room {
        return Err(refused(
            Refusal::NoSpace,
            format!("its root is {root} bytes, slot {} holds {room}: this version needs a new disk image", target.name),
        ));
    }
    let boot_files: u64 = bundle.payloads.iter().filter(|p| p.0 != bundle::ROOT).map(|p| p.2).sum();
    let entries = device.entries()?;
    let freed = files_freed(device, &entries, target)?;
    let free = fsutil::free_bytes(&device.layout.esp)?;
    if boot_files + ESP_MARGIN > free + freed {
        return Err(refused(
            Refusal::NoSpace,
            format!("its kernel and initrd take {boot_files} bytes; the boot partition has {} free", free + freed),
        ));
    }
    Ok((bundle, target))
}

/// Checks, then writes the bundle at `path` into the inactive slot. `progress(done, total)`
/// follows the bytes written.
pub fn apply(device: &Device, path: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<Applied, Error> {
    let started = Instant::now();
    let (bundle, target) = check(device, path)?;
    let version = bundle.manifest.version.clone();
    let total: u64 = bundle.payloads.iter().map(|p| p.2).sum();

    // From here on the inactive slot is being replaced: first nothing may boot it.
    remove_slot_entries(device, target)?;
    fault::point("update: old entry removed");

    let (mut reader, size, sha256) = bundle.payload(bundle::ROOT)?;
    let mut partition = OpenOptions::new().write(true).open(&target.device).at(&target.device)?;
    let mut hashing = Hashing::new(&mut partition);
    let mut buffer = vec![0u8; CHUNK];
    let mut done = 0u64;
    let mut paused = false;
    loop {
        let n = reader.read(&mut buffer).at(&bundle.path)?;
        if n == 0 {
            break;
        }
        hashing.write_all(&buffer[..n]).at(&target.device)?;
        done += n as u64;
        progress(done, total);
        if !paused && done * 2 >= size {
            paused = true;
            fault::point("update: root half written");
        }
    }
    if hashing.finalize_hex() != sha256 || done != size {
        return Err(refused(Refusal::Damaged, "the bundle changed while it was written: upload it again"));
    }
    partition.sync_all().at(&target.device)?;

    let kernels = device.layout.esp.join(KERNELS).join(version.as_str());
    create_dir(&device.layout.esp.join(KERNELS))?;
    create_dir(&kernels)?;
    for name in [bundle::KERNEL, bundle::INITRD] {
        let (mut reader, size, sha256) = bundle.payload(name)?;
        let mut bytes = Vec::with_capacity(size as usize);
        reader.read_to_end(&mut bytes).at(&bundle.path)?;
        if crate::hashing::sha256_hex(&bytes) != sha256 {
            return Err(refused(Refusal::Damaged, "the bundle changed while it was written: upload it again"));
        }
        fsutil::write_atomic(&kernels.join(name), &bytes, 0o644)?;
        done += size;
        progress(done, total);
        fault::point("update: boot file written");
    }

    // Last: the entry, with its tries. Its rename makes the new version bootable.
    let entry = format!(
        "title PIC {version}\nsort-key pic\nversion {version}\nlinux /{KERNELS}/{version}/{kernel}\ninitrd /{KERNELS}/{version}/{initrd}\noptions root=PARTUUID={uuid} {cmdline}\n",
        kernel = bundle::KERNEL,
        initrd = bundle::INITRD,
        uuid = target.partuuid,
        cmdline = bundle.manifest.cmdline,
    );
    fsutil::write_atomic(&device.entries_dir().join(format!("pic-{version}+{TRIES}.conf")), entry.as_bytes(), 0o644)?;
    Ok(Applied {
        version,
        slot: target.name.clone(),
        bytes: total,
        seconds: started.elapsed().as_secs_f64(),
        reboot_required: true,
    })
}

/// Removes the entries that boot `slot`, then the kernels no entry uses any more.
fn remove_slot_entries(device: &Device, slot: &SlotDef) -> Result<(), Error> {
    let dir = device.entries_dir();
    for entry in device.entries()?.iter().filter(|e| names(e, slot)) {
        let path = dir.join(&entry.file);
        fs::remove_file(&path).at(&path)?;
    }
    fsutil::fsync_dir(&dir)?;
    let kept: Vec<String> = device.entries()?.iter().map(|e| e.version.to_string()).collect();
    let kernels = device.layout.esp.join(KERNELS);
    if let Ok(listing) = fs::read_dir(&kernels) {
        for item in listing {
            let path = item.at(&kernels)?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if !kept.contains(&name) && path.is_dir() {
                fs::remove_dir_all(&path).at(&path)?;
            }
        }
        fsutil::fsync_dir(&kernels)?;
    }
    Ok(())
}

/// The bytes the ESP gets back when `slot`'s entries and their kernels go.
fn files_freed(device: &Device, entries: &[Entry], slot: &SlotDef) -> Result<u64, Error> {
    let kept: Vec<&Entry> = entries.iter().filter(|e| !names(e, slot)).collect();
    let mut freed = 0;
    for entry in entries.iter().filter(|e| names(e, slot)) {
        if kept.iter().any(|k| k.version == entry.version) {
            continue;
        }
        let dir = device.layout.esp.join(KERNELS).join(entry.version.as_str());
        for name in [bundle::KERNEL, bundle::INITRD] {
            freed += fs::metadata(dir.join(name)).map_or(0, |m| m.len());
        }
    }
    Ok(freed)
}

fn names(entry: &Entry, slot: &SlotDef) -> bool {
    entry.partuuid.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(&slot.partuuid))
        && entry_state(entry) != SlotState::Empty
}

fn partition_size(device: &Path) -> Result<u64, Error> {
    let mut file = File::open(device).at(device)?;
    file.seek(SeekFrom::End(0)).at(device)
}

/// A folder on the ESP (vfat has no modes to set).
fn create_dir(dir: &Path) -> Result<(), Error> {
    match fs::create_dir(dir) {
        Ok(()) => fsutil::fsync_dir(dir.parent().unwrap_or(dir)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).at(dir),
    }
}
