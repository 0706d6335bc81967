//! Update bundles (`pic-<version>.picupd`): an uncompressed tar whose first member is
//! `manifest.json` (version, architecture, the oldest version it updates, the kernel command
//! line, each payload's size and sha256), whose second is `manifest.sig` (the manifest's Ed25519
//! signature by the builder's key, base64), followed by the payloads in the manifest's order: the
//! root file system (erofs), the kernel and its initrd.
//!
//! Opening a bundle checks the signature before anything of the manifest is believed, then every
//! payload against it; each payload's place in the file is remembered so that writing it reads
//! exactly the bytes that were checked (and checks them again as they stream).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer;
pub use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use super::Version;
use crate::error::{Error, IoContext};
use crate::fsutil;
use crate::hashing::Hashing;

/// The bundle format this builder writes and reads.
pub const FORMAT: u32 = 1;
/// The architecture this build of PIC runs on, which a bundle must be made for.
pub const ARCHITECTURE: &str = std::env::consts::ARCH;
pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";
/// The payloads, in the order a bundle carries them.
pub const ROOT: &str = "root.erofs";
pub const KERNEL: &str = "vmlinuz";
pub const INITRD: &str = "initrd.img";
pub const PAYLOADS: [&str; 3] = [ROOT, KERNEL, INITRD];
/// A manifest is a few hundred bytes; anything much larger is not one.
const MAX_MANIFEST: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub version: Version,
    pub architecture: String,
    /// The oldest running version this bundle may update.
    pub min_from_version: Version,
    /// The kernel command line of its boot entry, without the root (the slot it lands in says).
    pub cmdline: String,
    pub payloads: Vec<Payload>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// The files a bundle is made of, as the disk image build leaves them.
pub struct Parts<'a> {
    pub root: &'a Path,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
}

/// A signed bundle that passed every check: where each payload's bytes are in the file.
#[derive(Debug)]
pub struct Bundle {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// (name, offset of its data in the file, size, sha256), in the manifest's order.
    pub payloads: Vec<(String, u64, u64, String)>,
}

/// Why a bundle is not taken. Nothing was written when one of these is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// Not a bundle, or damaged (a payload's size or hash differs from the manifest).
    Damaged,
    /// The signature is not the trusted key's.
    BadSignature,
    WrongArchitecture,
    /// Not newer than the running version.
    NotNewer,
    /// This device tried the version and fell back from it.
    RejectedBefore,
    /// The running version is older than the bundle's `min_from_version`.
    TooOld,
    /// The running boot has not been confirmed good yet: its fallback would be overwritten.
    NotConfirmed,
    /// The payloads do not fit (the slot, or the boot partition).
    NoSpace,
    /// This machine does not boot from PIC's A/B slots.
    Unsupported,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Damaged => "damaged",
            Refusal::BadSignature => "bad_signature",
            Refusal::WrongArchitecture => "wrong_architecture",
            Refusal::NotNewer => "not_newer",
            Refusal::RejectedBefore => "rejected_before",
            Refusal::TooOld => "too_old",
            Refusal::NotConfirmed => "not_confirmed",
            Refusal::NoSpace => "no_space",
            Refusal::Unsupported => "unsupported",
        }
    }
}

pub(crate) fn refused(kind: Refusal, reason: impl Into<String>) -> Error {
    Error::UpdateRefused { kind, reason: reason.into() }
}

/// The builder's signing key at `path` (base64 of the 32-byte seed), made (0600) when there is
/// none yet and `create` is set.
pub fn signing_key(path: &Path, create: bool) -> Result<SigningKey, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|s| <[u8; 32]>::try_from(s.as_slice()).ok())
            .map(|s| SigningKey::from_bytes(&s))
            .ok_or_else(|| {
                Error::corrupt(path.display().to_string(), "not an Ed25519 signing key (base64 of 32 bytes)")
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| Error::corrupt("the system's random source", e))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fsutil::ensure_dir(dir, 0o700)?;
            }
            fsutil::write_atomic(path, format!("{}\n", STANDARD.encode(seed)).as_bytes(), 0o600)?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) => Err(e).at(path),
    }
}

/// The public half, as the image carries it (base64).
pub fn public_key(key: &SigningKey) -> String {
    STANDARD.encode(key.verifying_key().to_bytes())
}

/// The manifest's bytes as signed (canonical: the serialization of the struct).
pub fn manifest_bytes(manifest: &Manifest) -> Vec<u8> {
    serde_json::to_vec_pretty(manifest).expect("a manifest serializes")
}

pub fn sign(manifest: &Manifest, key: &SigningKey) -> String {
    STANDARD.encode(key.sign(&manifest_bytes(manifest)).to_bytes())
}

/// Writes a bundle of `parts` to `output` (through a temporary name).
pub fn write(
    parts: &Parts<'_>,
    manifest_without_payloads: Manifest,
    key: &SigningKey,
    output: &Path,
) -> Result<Manifest, Error> {
    let mut manifest = manifest_without_payloads;
    manifest.payloads = Vec::new();
    for (name, path) in [(ROOT, parts.root), (KERNEL, parts.kernel), (INITRD, parts.initrd)] {
        let size = std::fs::metadata(path).at(path)?.len();
        let sha256 = crate::hashing::sha256_file(path)?;
        manifest.payloads.push(Payload { name: name.into(), size, sha256 });
    }
    let files: Vec<(String, PathBuf)> = [(ROOT, parts.root), (KERNEL, parts.kernel), (INITRD, parts.initrd)]
        .map(|(n, p)| (n.to_owned(), p.to_owned()))
        .into();
    write_members(&manifest, &sign(&manifest, key), &files, output)?;
    Ok(manifest)
}

/// Writes a bundle from a manifest, its signature and the payload files (`(member name, path)`),
/// as given: also how tests make bundles that must be refused.
pub fn write_members(
    manifest: &Manifest,
    signature: &str,
    files: &[(String, PathBuf)],
    output: &Path,
) -> Result<(), Error> {
    let tmp = output.with_file_name(format!(
        "{}{}",
        fsutil::TMP_PREFIX,
        output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    {
        let file = File::create(&tmp).at(&tmp)?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        let mut add = |name: &str, bytes: &[u8]| {
            let mut header = small_header(bytes.len() as u64);
            tar.append_data(&mut header, name, bytes).at(&tmp)
        };
        add(MANIFEST, &manifest_bytes(manifest))?;
        add(SIGNATURE, format!("{signature}\n").as_bytes())?;
        for (name, path) in files {
            let mut file = File::open(path).at(path)?;
            let mut header = small_header(file.metadata().at(path)?.len());
            tar.append_data(&mut header, name, &mut file).at(&tmp)?;
        }
        let writer = tar.into_inner().at(&tmp)?;
        writer.into_inner().map_err(|e| e.into_error()).at(&tmp)?.sync_all().at(&tmp)?;
    }
    fsutil::rename_durable(&tmp, output)
}

fn small_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(crate::images::rootfs::SOURCE_DATE_EPOCH);
    header
}

impl Bundle {
    /// Opens `path`: the manifest's signature by `trusted_key` (base64), its format, then each
    /// payload's size and sha256 (one pass over the file).
    pub fn open(path: &Path, trusted_key: &str) -> Result<Bundle, Error> {
        let damaged = |reason: String| refused(Refusal::Damaged, format!("not a PIC update bundle: {reason}"));
        let (manifest_bytes, signature) = {
            let file = File::open(path).at(path)?;
            let mut archive = tar::Archive::new(file);
            let mut entries = archive.entries_with_seek().at(path)?;
            let mut member = |want: &str| -> Result<Vec<u8>, Error> {
                let mut entry = entries
                    .next()
                    .ok_or_else(|| damaged(format!("it ends before {want}")))?
                    .map_err(|e| damaged(e.to_string()))?;
                let name = entry.path().map_err(|e| damaged(e.to_string()))?.to_string_lossy().into_owned();
                if name != want || entry.size() > MAX_MANIFEST {
                    return Err(damaged(format!("{want} must come here, found {name:?}")));
                }
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(|e| damaged(e.to_string()))?;
                Ok(bytes)
            };
            (member(MANIFEST)?, member(SIGNATURE)?)
        };
        let signature = String::from_utf8_lossy(&signature);
        if !crate::links::verify_base64(&manifest_bytes, &signature, trusted_key) {
            return Err(refused(
                Refusal::BadSignature,
                "its signature is not the key this device trusts: it was not built by this device's maker, or was changed",
            ));
        }
        // Believed only now that it is signed.
        let manifest: Manifest =
            serde_json::from_slice(&manifest_bytes).map_err(|e| damaged(format!("manifest.json: {e}")))?;
        if manifest.format != FORMAT {
            return Err(damaged(format!("format {} (this PIC reads format {FORMAT})", manifest.format)));
        }
        let names: Vec<&str> = manifest.payloads.iter().map(|p| p.name.as_str()).collect();
        if names != PAYLOADS {
            return Err(damaged(format!("its payloads are {names:?}, not {PAYLOADS:?}")));
        }

        let mut payloads = Vec::new();
        let file = File::open(path).at(path)?;
        let mut archive = tar::Archive::new(file);
        for (entry, want) in archive
            .entries_with_seek()
            .at(path)?
            .skip(2)
            .zip(manifest.payloads.iter().map(Some).chain(std::iter::repeat(None)))
        {
            let mut entry = entry.map_err(|e| damaged(e.to_string()))?;
            let name = entry.path().map_err(|e| damaged(e.to_string()))?.to_string_lossy().into_owned();
            let Some(want) = want else { return Err(damaged(format!("{name:?} is not in the manifest"))) };
            if name != want.name || entry.size() != want.size {
                return Err(damaged(format!(
                    "{name:?} ({} bytes) where the manifest has {} ({} bytes)",
                    entry.size(),
                    want.name,
                    want.size
                )));
            }
            let offset = entry.raw_file_position();
            let mut hashing = Hashing::new(&mut entry);
            std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|e| damaged(e.to_string()))?;
            let sha256 = hashing.finalize_hex();
            if sha256 != want.sha256 {
                return Err(damaged(format!("{name} does not have the sha256 its manifest names")));
            }
            payloads.push((name, offset, want.size, sha256));
        }
        if payloads.len() != manifest.payloads.len() {
            return Err(damaged(format!("it ends after {} of {} payloads", payloads.len(), manifest.payloads.len())));
        }
        Ok(Bundle { path: path.to_owned(), manifest, payloads })
    }

    /// A reader of exactly one payload's bytes, and what its sha256 must be.
    pub fn payload(&self, name: &str) -> Result<(impl Read + use<>, u64, String), Error> {
        let (_, offset, size, sha256) =
            self.payloads.iter().find(|p| p.0 == name).unwrap_or_else(|| panic!("{name} is a payload"));
        let mut file = File::open(&self.path).at(&self.path)?;
        file.seek(SeekFrom::Start(*offset)).at(&self.path)?;
        Ok((file.take(*size), *size, sha256.clone()))
    }
}
