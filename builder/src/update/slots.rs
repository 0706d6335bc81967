//! The device's two root slots and its boot entries: which slot booted, which version each holds
//! and whether it is good, being tried or bad, and the versions this device fell back from.
//!
//! The truth is on the EFI system partition, where systemd-boot keeps it: one Type #1 entry per
//! slot, `loader/entries/pic-<version>[+<left>[-<done>]].conf`, whose `root=PARTUUID=` names the
//! slot. systemd-boot counts a try by renaming the entry, `systemd-bless-boot` drops the counter
//! once the boot is confirmed good; an entry with no tries left is sorted last, so the device
//! boots the other slot again. An update never changes the GPT (slot B is made on first boot).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Version;
use crate::error::{Error, IoContext};
use crate::fsutil;

/// Where an image says its slots are: `/usr/lib/pic/slots.json`, written by the image build.
pub const LAYOUT: &str = "/usr/lib/pic/slots.json";
/// The public key bundles must be signed with (base64 Ed25519), in the image.
pub const TRUSTED_KEY: &str = "/usr/lib/pic/update-signing.pub";
/// The folder of the ESP's boot entries, and of each version's kernel and initrd.
pub const ENTRIES: &str = "loader/entries";
pub const KERNELS: &str = "pic";
/// How many times a new version is tried before the device falls back.
pub const TRIES: u32 = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// Where the ESP is mounted.
    pub esp: PathBuf,
    pub slots: Vec<SlotDef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotDef {
    pub name: String,
    pub partuuid: String,
    /// The slot's block device (`/dev/disk/by-partuuid/<partuuid>` on a device).
    pub device: PathBuf,
}

/// A device that boots from the slots of its layout.
#[derive(Debug, Clone)]
pub struct Device {
    pub layout: Layout,
    /// The kernel command line of this boot.
    pub cmdline: String,
    /// The key bundles must be signed with (base64).
    pub trusted_key: String,
    /// `<state>/updates`: uploads, the last boot check, the versions rejected.
    pub state: PathBuf,
    /// `IMAGE_VERSION` of the running root (when no entry names the booted slot).
    pub image_version: Option<Version>,
}

/// One boot entry on the ESP.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub file: String,
    pub version: Version,
    pub partuuid: Option<String>,
    pub tries_left: Option<u32>,
    pub tries_done: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotState {
    /// Confirmed good (or shipped so).
    Good,
    /// A new version with tries left, not yet confirmed.
    Trying,
    /// Out of tries: the device fell back from it.
    Bad,
    /// No boot entry names it (never written, or being written).
    Empty,
}

#[derive(Debug, Clone, Serialize)]
pub struct SlotStatus {
    pub name: String,
    pub booted: bool,
    pub version: Option<Version>,
    pub state: SlotState,
    pub tries_left: Option<u32>,
    pub tries_done: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub version: Version,
    pub reason: String,
    /// When this device noticed it had fallen back (RFC 3339).
    pub at: String,
}

/// What the boot check found last (`pic update check`), kept on the data partition so that the
/// version the device falls back to can say why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    pub ok: bool,
    pub reason: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The running version.
    pub version: Option<Version>,
    pub booted_slot: Option<String>,
    /// Whether this boot is confirmed good (`good`), still on trial (`trying`), or was not
    /// started from a counted entry at all (`good` too: the shipped entry is never counted).
    pub boot: SlotState,
    pub slots: Vec<SlotStatus>,
    pub rejected: Vec<Rejection>,
    /// Whether an update may be applied now, and if not why.
    pub ready: bool,
    pub not_ready_reason: Option<String>,
}

impl Device {
    /// The running device's layout, or `None` when this machine was not booted from a PIC image
    /// (no layout file).
    pub fn load(layout: &Path, cmdline: &Path, trusted_key: &Path, state: &Path) -> Result<Option<Device>, Error> {
        let text = match std::fs::read_to_string(layout) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at(layout),
        };
        let layout: Layout =
            serde_json::from_str(&text).map_err(|e| Error::corrupt(layout.display().to_string(), e))?;
        let cmdline = std::fs::read_to_string(cmdline).at(cmdline)?.trim().to_owned();
        let trusted_key = std::fs::read_to_string(trusted_key).at(trusted_key)?.trim().to_owned();
        let image_version = std::fs::read_to_string("/usr/lib/os-release").ok().and_then(|t| {
            t.lines().find_map(|l| l.strip_prefix("IMAGE_VERSION=")).and_then(|v| v.trim_matches('"').parse().ok())
        });
        Ok(Some(Device { layout, cmdline, trusted_key, state: state.to_owned(), image_version }))
    }

    pub fn entries_dir(&self) -> PathBuf {
        self.layout.esp.join(ENTRIES)
    }

    /// The slot this boot's root is on (`root=PARTUUID=` of the command line).
    pub fn booted_slot(&self) -> Option<&SlotDef> {
        let uuid = root_partuuid(&self.cmdline)?;
        self.layout.slots.iter().find(|s| s.partuuid.eq_ignore_ascii_case(&uuid))
    }

    /// Every `pic-*.conf` boot entry on the ESP.
    pub fn entries(&self) -> Result<Vec<Entry>, Error> {
        let dir = self.entries_dir();
        let mut entries = Vec::new();
        let listing = match std::fs::read_dir(&dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(entries),
            Err(e) => return Err(e).at(&dir),
        };
        for item in listing {
            let path = item.at(&dir)?.path();
            let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let Some((version, tries_left, tries_done)) = parse_entry_name(&file) else { continue };
            let text = std::fs::read_to_string(&path).at(&path)?;
            let partuuid = text.lines().find_map(|l| l.strip_prefix("options")).and_then(root_partuuid);
            entries.push(Entry { file, version, partuuid, tries_left, tries_done });
        }
        entries.sort_by(|a, b| a.file.cmp(&b.file));
        Ok(entries)
    }

    /// The entry that names `slot`, if any (the newest, should a power cut have left two).
    pub fn entry_of(&self, entries: &[Entry], slot: &SlotDef) -> Option<Entry> {
        entries
            .iter()
            .filter(|e| e.partuuid.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(&slot.partuuid)))
            .max_by(|a, b| a.version.cmp(&b.version))
            .cloned()
    }

    pub fn rejected_path(&self) -> PathBuf {
        self.state.join("rejected.json")
    }

    pub fn check_path(&self) -> PathBuf {
        self.state.join("last-check.json")
    }

    /// The versions this device fell back from: those recorded, and any entry out of tries.
    pub fn rejections(&self, entries: &[Entry]) -> Result<Vec<Rejection>, Error> {
        let mut rejected: Vec<Rejection> = fsutil::read_json_or_default(&self.rejected_path())?;
        let check: Option<CheckRecord> = fsutil::read_json_or_default::<Option<CheckRecord>>(&self.check_path())?;
        for entry in entries.iter().filter(|e| e.tries_left == Some(0)) {
            if rejected.iter().any(|r| r.version == entry.version) {
                continue;
            }
            let reason = match &check {
                Some(c) if !c.ok && c.version.as_ref() == Some(&entry.version) => {
                    format!(
                        "it failed its health check {} times; the last time: {}",
                        entry.tries_done.unwrap_or(TRIES),
                        c.reason
                    )
                }
                _ => format!("it did not come up healthy in {} tries", entry.tries_done.unwrap_or(TRIES)),
            };
            rejected.push(Rejection { version: entry.version.clone(), reason, at: now() });
        }
        Ok(rejected)
    }

    /// Records the versions this device fell back from, so that they stay refused after their
    /// slot is written again.
    pub fn note_rejections(&self) -> Result<Vec<Rejection>, Error> {
        let known: Vec<Rejection> = fsutil::read_json_or_default(&self.rejected_path())?;
        let all = self.rejections(&self.entries()?)?;
        if all.len() != known.len() {
            fsutil::ensure_dir(&self.state, 0o700)?;
            fsutil::write_json(&self.rejected_path(), &all, 0o600)?;
        }
        Ok(all)
    }

    pub fn status(&self) -> Result<Status, Error> {
        let entries = self.entries()?;
        let booted = self.booted_slot();
        let mut slots = Vec::new();
        for slot in &self.layout.slots {
            let entry = self.entry_of(&entries, slot);
            let state = entry.as_ref().map_or(SlotState::Empty, entry_state);
            slots.push(SlotStatus {
                name: slot.name.clone(),
                booted: booted.is_some_and(|b| b.name == slot.name),
                version: entry.as_ref().map(|e| e.version.clone()),
                state,
                tries_left: entry.as_ref().and_then(|e| e.tries_left),
                tries_done: entry.as_ref().and_then(|e| e.tries_done),
            });
        }
        let booted_status = slots.iter().find(|s| s.booted);
        let boot = booted_status
            .map_or(SlotState::Good, |s| if s.state == SlotState::Empty { SlotState::Good } else { s.state });
        let version = booted_status.and_then(|s| s.version.clone()).or_else(|| self.image_version.clone());
        let not_ready_reason = if booted.is_none() {
            Some("this boot's root is not one of the slots: the device was not started from its disk".to_owned())
        } else if boot == SlotState::Trying {
            Some("this version is still on trial: it must be confirmed good before another update, so that its fallback stays".to_owned())
        } else {
            None
        };
        Ok(Status {
            version,
            booted_slot: booted.map(|b| b.name.clone()),
            boot,
            slots,
            rejected: self.rejections(&entries)?,
            ready: not_ready_reason.is_none(),
            not_ready_reason,
        })
    }
}

pub fn entry_state(entry: &Entry) -> SlotState {
    match entry.tries_left {
        None => SlotState::Good,
        Some(0) => SlotState::Bad,
        Some(_) => SlotState::Trying,
    }
}

/// `pic-<version>[+<left>[-<done>]].conf` → (version, left, done).
pub fn parse_entry_name(file: &str) -> Option<(Version, Option<u32>, Option<u32>)> {
    let stem = file.strip_prefix("pic-")?.strip_suffix(".conf")?;
    let (version, counter) = match stem.split_once('+') {
        Some((version, counter)) => (version, Some(counter)),
        None => (stem, None),
    };
    let version: Version = version.parse().ok()?;
    let Some(counter) = counter else { return Some((version, None, None)) };
    let (left, done) = match counter.split_once('-') {
        Some((left, done)) => (left.parse().ok()?, Some(done.parse().ok()?)),
        None => (counter.parse().ok()?, None),
    };
    Some((version, Some(left), done.or(Some(0))))
}

/// The `root=PARTUUID=` of a kernel command line.
pub fn root_partuuid(cmdline: &str) -> Option<String> {
    cmdline.split_whitespace().find_map(|w| w.strip_prefix("root=PARTUUID=")).map(|u| u.to_ascii_lowercase())
}

fn now() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_carry_the_version_and_the_counters() {
        let v = |s: &str| s.parse::<Version>().unwrap();
        assert_eq!(parse_entry_name("pic-2026.1130.1.conf"), Some((v("2026.1130.1"), None, None)));
        assert_eq!(parse_entry_name("pic-7+3.conf"), Some((v("7"), Some(3), Some(0))));
        assert_eq!(parse_entry_name("pic-7+2-1.conf"), Some((v("7"), Some(2), Some(1))));
        assert_eq!(parse_entry_name("pic-7+0-3.conf"), Some((v("7"), Some(0), Some(3))));
        for other in ["pic.conf", "debian-7.conf", "pic-7+x.conf", "pic-7.conf.tmp", "pic-v7.conf"] {
            assert_eq!(parse_entry_name(other), None, "{other}");
        }
    }
}
