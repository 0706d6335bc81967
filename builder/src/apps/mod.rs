//! The service store's index: a folder (or a `.tar.zst` of one) with `index.json` (the apps,
//! each with its manifest's path and sha256) and every app's `manifest.toml`, each file signed
//! with minisign beside it (`<file>.minisig`). Opening an index checks every signature against the keys the cell trusts,
//! every manifest against the index's digest, and every manifest's content, before anything is
//! read from it: a tampered or untrusted index is refused as a whole, with the reason.

pub mod changes;

use std::path::{Path, PathBuf};

pub use minisign_verify::PublicKey;
use minisign_verify::Signature;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::config::app::Manifest;

use crate::error::FieldError;

/// The index format this cell reads.
pub const INDEX_VERSION: u32 = 1;

/// Why an index or a manifest is refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: cannot be read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: not signed (no {}.minisig beside it); an index and its manifests must be signed", path.display(), path.display())]
    Unsigned { path: PathBuf },
    #[error("{}: signed by a key this cell does not trust; add the publisher's key to store.trusted_keys if you trust it", path.display())]
    Untrusted { path: PathBuf },
    #[error("{}: its signature does not match its content ({reason}): the file was changed after it was signed", path.display())]
    BadSignature { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("{}: its sha256 is {actual}, the index says {expected}", path.display())]
    Digest { path: PathBuf, expected: String, actual: String },
    #[error("the manifest of {app} is refused:{}", problems.iter().map(|p| format!("\n  {}: {} ({})", p.path, p.message, p.hint)).collect::<String>())]
    Refused { app: String, problems: Vec<FieldError> },
    #[error("no trusted key: store.trusted_keys in the cell config is empty")]
    NoTrustedKey,
}

/// One app of the index as the index lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: String,
    pub version: String,
    /// The manifest's path inside the index folder.
    pub manifest: String,
    pub sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexFile {
    version: u32,
    apps: Vec<Entry>,
}

/// An app whose manifest was verified.
#[derive(Debug, Clone)]
pub struct App {
    pub entry: Entry,
    pub manifest: Manifest,
}

/// An index whose every file was verified.
#[derive(Debug, Clone)]
pub struct Index {
    pub apps: Vec<App>,
}

impl Index {
    pub fn app(&self, name: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.entry.name == name)
    }
}

/// Parses minisign public keys (the base64 line of a `minisign.pub`).
pub fn parse_keys(keys: &[String]) -> Result<Vec<PublicKey>, String> {
    keys.iter()
        .map(|k| PublicKey::from_base64(k.trim()).map_err(|e| format!("{k:?} is not a minisign public key: {e}")))
        .collect()
}

/// Opens the index in a `.tar.zst` archive, unpacked into `scratch` (emptied first; entries that
/// would land outside it are not unpacked), trusting only `keys`.
pub fn open_archive(archive: &Path, scratch: &Path, keys: &[PublicKey]) -> Result<Index, StoreError> {
    let malformed = |reason: String| StoreError::Malformed { path: archive.to_owned(), reason };
    if scratch.exists() {
        crate::fsutil::remove_tree(scratch).map_err(|e| malformed(e.to_string()))?;
    }
    std::fs::create_dir_all(scratch).map_err(|source| StoreError::Read { path: scratch.to_owned(), source })?;
    let file = std::fs::File::open(archive).map_err(|source| StoreError::Read { path: archive.to_owned(), source })?;
    let decoder = zstd::Decoder::new(file).map_err(|e| malformed(format!("not zstd: {e}")))?;
    tar::Archive::new(decoder).unpack(scratch).map_err(|e| malformed(format!("not a tar of an index: {e}")))?;
    open(scratch, keys)
}

/// Opens the index in `dir`, trusting only `keys`.
pub fn open(dir: &Path, keys: &[PublicKey]) -> Result<Index, StoreError> {
    if keys.is_empty() {
        return Err(StoreError::NoTrustedKey);
    }
    let index_path = dir.join("index.json");
    let text = verified(&index_path, keys)?;
    let index: IndexFile = serde_json::from_slice(&text)
        .map_err(|e| StoreError::Malformed { path: index_path.clone(), reason: e.to_string() })?;
    if index.version != INDEX_VERSION {
        let reason = format!("index version {} is not read by this PIC (it reads {INDEX_VERSION})", index.version);
        return Err(StoreError::Malformed { path: index_path, reason });
    }
    let mut apps = Vec::new();
    for entry in index.apps {
        let inside = !entry.manifest.starts_with('/') && entry.manifest.split('/').all(|p| !p.is_empty() && p != "..");
        if !inside {
            let reason = format!("{:?}: a manifest's path must stay inside the index folder", entry.manifest);
            return Err(StoreError::Malformed { path: index_path, reason });
        }
        let path = dir.join(&entry.manifest);
        let text = verified(&path, keys)?;
        let actual = hex::encode(Sha256::digest(&text));
        if actual != entry.sha256 {
            return Err(StoreError::Digest { path, expected: entry.sha256, actual });
        }
        let text =
            String::from_utf8(text).map_err(|e| StoreError::Malformed { path: path.clone(), reason: e.to_string() })?;
        let manifest: Manifest =
            toml::from_str(&text).map_err(|e| StoreError::Malformed { path: path.clone(), reason: e.to_string() })?;
        let mut problems = manifest.problems();
        if manifest.name != entry.name || manifest.version != entry.version {
            problems.push(FieldError {
                path: "name".into(),
                message: format!(
                    "the manifest is {} {}, the index lists {} {}",
                    manifest.name, manifest.version, entry.name, entry.version
                ),
                hint: "the index and the manifest must agree".into(),
            });
        }
        if !problems.is_empty() {
            return Err(StoreError::Refused { app: entry.name, problems });
        }
        apps.push(App { entry, manifest });
    }
    Ok(Index { apps })
}

/// The file's content, once its signature (`<file>.minisig`) verified with one of `keys`.
fn verified(path: &Path, keys: &[PublicKey]) -> Result<Vec<u8>, StoreError> {
    let read = |p: &Path| std::fs::read(p).map_err(|source| StoreError::Read { path: p.to_owned(), source });
    let content = read(path)?;
    let signature_path = PathBuf::from(format!("{}.minisig", path.display()));
    if !signature_path.exists() {
        return Err(StoreError::Unsigned { path: path.to_owned() });
    }
    let signature =
        String::from_utf8(read(&signature_path)?).ok().and_then(|text| Signature::decode(&text).ok()).ok_or_else(
            || StoreError::Malformed { path: signature_path.clone(), reason: "not a minisign signature".into() },
        )?;
    let mut reason = None;
    for key in keys {
        match key.verify(&content, &signature, false) {
            Ok(()) => return Ok(content),
            Err(minisign_verify::Error::UnexpectedKeyId) => {}
            Err(e) => reason = Some(e.to_string()),
        }
    }
    Err(match reason {
        Some(reason) => StoreError::BadSignature { path: path.to_owned(), reason },
        None => StoreError::Untrusted { path: path.to_owned() },
    })
}

/// Writes `index.json` for the apps in `dir` (each folder with a `manifest.toml`), every manifest
/// checked against the rules first; what a publisher runs before signing the index and the
/// manifests with minisign. Returns the entries written.
pub fn write_index(dir: &Path) -> Result<Vec<Entry>, StoreError> {
    let read_dir = std::fs::read_dir(dir).map_err(|source| StoreError::Read { path: dir.to_owned(), source })?;
    let mut entries = Vec::new();
    for item in read_dir.flatten() {
        let path = item.path().join("manifest.toml");
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|source| StoreError::Read { path: path.clone(), source })?;
        let text = String::from_utf8(bytes)
            .map_err(|e| StoreError::Malformed { path: path.clone(), reason: e.to_string() })?;
        let manifest: Manifest =
            toml::from_str(&text).map_err(|e| StoreError::Malformed { path: path.clone(), reason: e.to_string() })?;
        let problems = manifest.problems();
        if !problems.is_empty() {
            return Err(StoreError::Refused { app: manifest.name, problems });
        }
        let folder = item.file_name().to_string_lossy().into_owned();
        entries.push(Entry {
            name: manifest.name,
            version: manifest.version,
            manifest: format!("{folder}/manifest.toml"),
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let index = serde_json::json!({"version": INDEX_VERSION, "apps": entries});
    let text = serde_json::to_string_pretty(&index).expect("an index serializes") + "\n";
    let path = dir.join("index.json");
    crate::fsutil::write_atomic(&path, text.as_bytes(), 0o644)
        .map_err(|e| StoreError::Malformed { path: path.clone(), reason: e.to_string() })?;
    Ok(entries)
}
