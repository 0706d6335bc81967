//! The backup archive's format: a zstd-compressed tar whose first member is a header, whose
//! last members are a manifest of every member (size, sha256) and the manifest's own hash, and
//! whose other members mirror the state directory.
//!
//! ```text
//! pic-backup/header.json          format version, cell, time, PIC version, what is inside
//! cell_config.json                the desired config
//! failed.json                     generations the health gate rolled back (when any)
//! generations/<N>/{config,manifest}.json
//! store/<sha256>-<service>/...    every store path a generation references
//! secrets.tar.age                 secrets/ as a tar, age-encrypted with a passphrase or the
//!                                 backup key (optional)
//! secrets.key.age                 the backup key's identity, age-encrypted with the passphrase
//!                                 (scheduled archives)
//! data/<service>/...              the services' data (optional)
//! pic-backup/manifest.json        every member above with its kind, size and sha256
//! pic-backup/manifest.sha256      the manifest's sha256
//! ```
//!
//! The header comes first so that an archive of a newer format is refused before anything else
//! is read; the manifest comes last so that a backup is written in one pass over the files.

use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The format this PIC writes, and the newest it reads.
/// Format 2 added `secrets.key.age` (scheduled archives) and the header's `scheduled`.
pub const FORMAT_VERSION: u32 = 2;

pub const HEADER: &str = "pic-backup/header.json";
pub const MANIFEST: &str = "pic-backup/manifest.json";
pub const MANIFEST_SHA256: &str = "pic-backup/manifest.sha256";
pub const DESIRED_CONFIG: &str = "cell_config.json";
pub const FAILED: &str = "failed.json";
pub const SECRETS: &str = "secrets.tar.age";
pub const SECRETS_KEY: &str = "secrets.key.age";
pub const GENERATIONS: &str = "generations";
pub const STORE: &str = "store";
pub const DATA: &str = "data";

/// What an archive is: read from its first member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format_version: u32,
    pub cell: String,
    /// RFC 3339 time the backup was taken.
    pub created: String,
    pub pic_version: String,
    /// The generation that was current, if any.
    pub current_generation: Option<u64>,
    /// The generations in the archive, ascending.
    pub generations: Vec<u64>,
    pub secrets: SecretsIncluded,
    /// Whether the services' data is in the archive.
    pub data: bool,
    /// Made by the schedule (`backups.schedule`): the retention may remove it later.
    #[serde(default)]
    pub scheduled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretsIncluded {
    /// `secrets.tar.age`, encrypted with a passphrase (age, scrypt).
    Encrypted,
    /// `secrets.tar.age`, encrypted to the cell's backup key, whose identity is in
    /// `secrets.key.age` encrypted with the passphrase: a scheduled archive.
    EncryptedToKey,
    /// Left out: no passphrase was given. A restore keeps (or makes) the machine's own keys.
    Omitted,
}

/// Every member of the archive (but the manifest and its hash), in archive order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub path: String,
    pub kind: Kind,
    /// Bytes of content (0 for directories; the target's length for symlinks).
    pub size: u64,
    /// sha256 of the content (of the target for symlinks).
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// The part of the state directory a member restores into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// The header, the manifest and its hash.
    Meta,
    DesiredConfig,
    Failed,
    Generation(u64),
    Store,
    Secrets,
    Data,
}

/// Where a member belongs; refuses a path that is absolute, climbs out (`..`), or lies outside
/// the parts of the state directory a backup holds.
pub fn classify(path: &str) -> Result<Area, Error> {
    let refuse = |why: &str| Err(Error::backup_refused(path, why));
    if path.is_empty() || path.contains('\0') {
        return refuse("has an empty or malformed name");
    }
    let parts: Vec<&str> = match Path::new(path)
        .components()
        .map(|c| match c {
            Component::Normal(name) => name.to_str().ok_or(()),
            _ => Err(()),
        })
        .collect::<Result<_, _>>()
    {
        Ok(parts) => parts,
        Err(()) => return refuse("leaves the state directory (an absolute path or `..`)"),
    };
    if [HEADER, MANIFEST, MANIFEST_SHA256].contains(&path) {
        return Ok(Area::Meta);
    }
    let area = match parts.as_slice() {
        [DESIRED_CONFIG] => Area::DesiredConfig,
        [FAILED] => Area::Failed,
        [SECRETS] | [SECRETS_KEY] => Area::Secrets,
        [GENERATIONS, number, file] if ["config.json", "manifest.json"].contains(file) => match number.parse::<u64>() {
            Ok(n) if number == &n.to_string() => Area::Generation(n),
            _ => return refuse("is not a generation's config.json or manifest.json"),
        },
        [STORE, name, ..] if crate::store::Store::parse_name(name).is_some() => Area::Store,
        [DATA, _, ..] => Area::Data,
        _ => return refuse("is not part of a PIC state directory"),
    };
    Ok(area)
}

/// Refuses a symlink whose target, seen from the link's folder, is absolute or leaves the
/// service's data folder (`data/<service>/`).
pub fn check_link(path: &str, target: &str) -> Result<(), Error> {
    let outside = || Error::backup_refused(path, format!("is a link to {target:?}, outside its service's data folder"));
    let mut depth: Vec<&str> = path.split('/').collect();
    depth.pop();
    if !path.starts_with("data/") || depth.len() < 2 {
        return Err(Error::backup_refused(path, "is a link; only the services' data may hold links"));
    }
    for component in Path::new(target).components() {
        match component {
            Component::Normal(name) => depth.push(name.to_str().ok_or_else(outside)?),
            Component::CurDir => {}
            Component::ParentDir => {
                depth.pop();
                if depth.len() < 2 {
                    return Err(outside());
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err(outside()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_inside_the_state_directory_are_classified() {
        for (path, area) in [
            (HEADER, Area::Meta),
            ("cell_config.json", Area::DesiredConfig),
            ("generations/12/manifest.json", Area::Generation(12)),
            ("store/087e5b64ae1cbd340d0b6a1fee75a33476f8ec1d439ed24b0c19ccd421e90db9-dhcp/dnsmasq.conf", Area::Store),
            ("data/mail/queue/x", Area::Data),
            ("secrets.tar.age", Area::Secrets),
        ] {
            assert_eq!(classify(path).unwrap(), area, "{path}");
        }
    }

    #[test]
    fn paths_that_leave_or_wander_are_refused() {
        for path in [
            "../etc/passwd",
            "/etc/passwd",
            "data/../../x",
            "generations/01/config.json",
            "generations/1/other",
            "store/nothash-dns/x",
            "secrets/ca/ca.key",
            "lock",
            "",
        ] {
            assert!(classify(path).is_err(), "{path} was accepted");
        }
    }

    #[test]
    fn links_stay_inside_their_service() {
        check_link("data/mail/a/link", "../b").unwrap();
        check_link("data/mail/link", "sub/file").unwrap();
        for (path, target) in [
            ("data/mail/link", "../files/x"),
            ("data/mail/link", "/etc/shadow"),
            ("data/mail/a/link", "../../../../etc"),
            ("store/x/link", "y"),
        ] {
            assert!(check_link(path, target).is_err(), "{path} -> {target} was accepted");
        }
    }
}
