//! The data partition, checked before anything is written to it: the disk it is on, its size and
//! its free space, against what the cell needs. A disk written with the image but too small for
//! it, a data partition that did not grow into its disk, or a full one stops the cell before it
//! half-starts, with a message that says which and what to do.

use std::path::Path;

use serde::Serialize;

use super::Problem;

const GB: u64 = 1_000_000_000;

/// What the cell needs of its storage.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The smallest disk the image may be written to.
    pub disk: u64,
    /// The smallest data partition on such a disk (the image's own partitions take the rest).
    pub data: u64,
    /// The free space below which the cell does not start.
    pub free: u64,
}

/// Four gigabytes of disk: the image's own partitions (the ESP and two root slots, 1.4 GB), its
/// ~0.6 GB of data and room for containers, logs, mail and files (the README recommends 8 GB).
pub const LIMITS: Limits = Limits { disk: 4 * GB, data: 2 * GB, free: 300_000_000 };

/// What was measured of the state directory's file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Storage {
    /// The size of the file system (the data partition), in bytes.
    pub data_bytes: u64,
    /// What is free in it, in bytes.
    pub free_bytes: u64,
    /// The size of the disk it is on, when it is a partition of a block device.
    pub disk_bytes: Option<u64>,
}

/// Measures the file system that holds `path` (or the nearest folder above it that exists).
pub fn measure(path: &Path) -> std::io::Result<Storage> {
    let existing = path.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    let vfs = nix::sys::statvfs::statvfs(existing)?;
    let block = vfs.fragment_size();
    let stat = nix::sys::stat::stat(existing)?;
    Ok(Storage {
        data_bytes: vfs.blocks() * block,
        free_bytes: vfs.blocks_available() * block,
        disk_bytes: disk_size(nix::sys::stat::major(stat.st_dev), nix::sys::stat::minor(stat.st_dev)),
    })
}

/// The size of the disk holding block device `major:minor`: its parent's in sysfs for a
/// partition, its own for a whole disk; none for a file system without a block device (tmpfs,
/// overlay).
fn disk_size(major: u64, minor: u64) -> Option<u64> {
    let device = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    let disk = if device.join("partition").exists() { device.parent()?.to_owned() } else { device };
    let sectors: u64 = std::fs::read_to_string(disk.join("size")).ok()?.trim().parse().ok()?;
    Some(sectors * 512)
}

/// What stops the cell, if anything: the first of a disk too small, a data partition that did
/// not grow, too little free space.
pub fn judge(storage: &Storage, limits: &Limits) -> Option<Problem> {
    if let Some(disk) = storage.disk_bytes {
        if disk < limits.disk {
            return Some(Problem {
                code: "disk_too_small",
                message: format!(
                    "The disk is {}; PIC needs a disk of at least {}. Write the image to a bigger disk \
                     (8 GB or more leaves room for mail and files).",
                    gb(disk),
                    gb(limits.disk)
                ),
            });
        }
        if storage.data_bytes < limits.data {
            return Some(Problem {
                code: "data_partition_not_grown",
                message: format!(
                    "The data partition is {} on a disk of {}: it did not grow to fill the disk. \
                     Restart the device; if this stays, write the image again.",
                    gb(storage.data_bytes),
                    gb(disk)
                ),
            });
        }
    }
    if storage.free_bytes < limits.free {
        return Some(Problem {
            code: "data_partition_full",
            message: format!(
                "The data partition is full: {} free of {}; PIC needs at least {} free. \
                 Remove backups or files you no longer need, or move the cell to a bigger disk.",
                gb(storage.free_bytes),
                gb(storage.data_bytes),
                gb(limits.free)
            ),
        });
    }
    None
}

/// A size as a person reads it: gigabytes with one decimal, megabytes below one gigabyte.
/// A warning once the data partition is more than 90 % full (long before it stops the cell).
pub fn nearly_full(storage: &Storage) -> Option<String> {
    let used = storage.data_bytes.saturating_sub(storage.free_bytes);
    let percent = used.saturating_mul(100).checked_div(storage.data_bytes)?;
    (percent > 90).then(|| {
        format!(
            "The data partition is {percent} % full: {} free of {}. Remove backups you no longer need, \
             or old generations (`pic gc --max-store`); a change that does not fit is refused.",
            gb(storage.free_bytes),
            gb(storage.data_bytes)
        )
    })
}

pub fn gb(bytes: u64) -> String {
    match bytes {
        0..GB => format!("{} MB", bytes / 1_000_000),
        _ => format!("{:.1} GB", bytes as f64 / GB as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(disk: Option<f64>, data: f64, free: f64) -> Storage {
        let bytes = |gb: f64| (gb * GB as f64) as u64;
        Storage { disk_bytes: disk.map(bytes), data_bytes: bytes(data), free_bytes: bytes(free) }
    }

    #[test]
    fn each_shortage_is_named_with_the_sizes_found_and_needed() {
        let cases = [
            ("an 8 GB disk, grown", storage(Some(8.0), 7.3, 6.5)),
            ("the image's own size", storage(Some(0.9), 0.7, 0.01)),
            ("not grown", storage(Some(8.0), 0.7, 0.01)),
            ("full", storage(Some(8.0), 7.3, 0.1)),
            ("no block device, room", storage(None, 12.0, 11.0)),
            ("no block device, full", storage(None, 12.0, 0.0)),
        ];
        let judged: Vec<String> = cases
            .iter()
            .map(|(what, s)| match judge(s, &LIMITS) {
                Some(problem) => format!("{what}: {}: {}", problem.code, problem.message),
                None => format!("{what}: fine"),
            })
            .collect();
        insta::assert_snapshot!(judged.join("\n"));
    }

    #[test]
    fn the_state_directory_is_measured_even_before_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let storage = measure(&dir.path().join("not/yet")).unwrap();
        assert!(storage.data_bytes > 0 && storage.free_bytes <= storage.data_bytes, "{storage:?}");
    }
}
