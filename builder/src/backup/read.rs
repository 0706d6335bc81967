//! Reading an archive and checking all of it: the format version first, then every member's
//! path, kind, size and sha256 against the manifest, the manifest against its own hash, and the
//! zstd frame's checksum. Nothing is trusted before the end of the archive has been reached.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::Meter;
use super::format::{self, Area, Header, Kind, Manifest, Member};
use crate::error::{Error, IoContext};
use crate::hashing::sha256_hex;

/// Members held in memory are the small ones (config, generations, store, secrets); a member of
/// that kind larger than this is not something PIC wrote.
const MAX_IN_MEMORY: u64 = 64 * 1024 * 1024;

/// What a checked archive holds.
pub struct Contents {
    pub header: Header,
    /// Every member but the data, by path.
    pub files: BTreeMap<String, Vec<u8>>,
    /// The services that have data in the archive, with its size in bytes.
    pub data: BTreeMap<String, u64>,
    /// The sum of every member's size: about what a restore writes.
    pub total_size: u64,
}

/// Reads and checks the archive at `path`. With `stage_data`, the data members are written
/// under that folder as they are read (with their owners, modes and times); otherwise they are
/// only hashed.
pub fn read(path: &Path, stage_data: Option<&Path>, meter: &mut Meter<'_>) -> Result<Contents, Error> {
    let file = File::open(path).at(path)?;
    let total = file.metadata().at(path)?.len();
    meter.set_total(total);
    let counted = CountingReader { inner: file, meter };
    let decoder =
        zstd::Decoder::new(counted).map_err(|e| Error::archive_refused(format!("is not zstd-compressed: {e}")))?;
    let mut tar = tar::Archive::new(decoder);
    let mut reader = Reader {
        stage_data,
        seen: Vec::new(),
        files: BTreeMap::new(),
        data: BTreeMap::new(),
        buffer: vec![0; 256 << 10],
    };
    let mut header = None;
    let mut manifest_text = None;
    let mut manifest_sum = None;
    let entries = tar.entries().map_err(|e| Error::archive_refused(format!("is not a tar archive: {e}")))?;
    for entry in entries {
        let after = reader.seen.last().map(|m| m.path.clone());
        let damaged = |e: io::Error| damaged(after.as_deref(), e);
        let mut entry = entry.map_err(damaged)?;
        let member = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| Error::archive_refused("holds a member whose name is not UTF-8"))?;
        if header.is_none() && member != format::HEADER {
            return Err(Error::archive_refused(format!(
                "is not a PIC backup: it starts with {member:?}, not {}",
                format::HEADER
            )));
        }
        if manifest_sum.is_some() {
            return Err(Error::backup_refused(&member, "comes after the manifest's hash, where nothing may be"));
        }
        let area = format::classify(&member)?;
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Link => {
                return Err(Error::backup_refused(&member, "is a hard link; a PIC backup holds none"));
            }
            other => return Err(Error::backup_refused(&member, format!("is a {other:?}, not a file, folder or link"))),
        };
        if kind != Kind::File && area != Area::Data {
            return Err(Error::backup_refused(&member, "must be a plain file"));
        }
        match member.as_str() {
            format::HEADER => {
                let text = reader.small(&member, &mut entry)?;
                header = Some(parse_header(&text)?);
                reader.record(&member, Kind::File, &text);
            }
            format::MANIFEST => manifest_text = Some(reader.small(&member, &mut entry)?),
            format::MANIFEST_SHA256 => manifest_sum = Some(reader.small(&member, &mut entry)?),
            _ if area == Area::Data => reader.data(&member, kind, &mut entry)?,
            _ => {
                let contents = reader.small(&member, &mut entry)?;
                reader.record(&member, Kind::File, &contents);
                reader.files.insert(member, contents);
            }
        }
    }
    // The tar ends before the zstd frame does: read the rest, so that its checksum is checked
    // and nothing trails the archive.
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| damaged(reader.seen.last().map(|m| m.path.as_str()), e))?;

    let header = header.ok_or_else(|| Error::archive_refused("is empty: it is not a PIC backup"))?;
    let (Some(text), Some(sum)) = (manifest_text, manifest_sum) else {
        return Err(Error::archive_refused("ends before its manifest: it is truncated"));
    };
    if String::from_utf8_lossy(&sum).trim() != sha256_hex(&text) {
        return Err(Error::backup_refused(format::MANIFEST, "does not match its sha256: the manifest is damaged"));
    }
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| Error::backup_refused(format::MANIFEST, format!("is not a valid manifest: {e}")))?;
    check_members(&manifest.members, &reader.seen)?;
    let total_size = manifest.members.iter().map(|m| m.size).sum();
    Ok(Contents { header, files: reader.files, data: reader.data, total_size })
}

/// Reads only the header: what `pic backups` lists.
pub fn header(path: &Path) -> Result<Header, Error> {
    let file = File::open(path).at(path)?;
    let decoder = zstd::Decoder::new(io::BufReader::new(file))
        .map_err(|e| Error::archive_refused(format!("is not zstd-compressed: {e}")))?;
    let mut tar = tar::Archive::new(decoder);
    let mut entries = tar.entries().map_err(|e| Error::archive_refused(format!("is not a tar archive: {e}")))?;
    let entry = match entries.next() {
        Some(entry) => entry.map_err(|e| damaged(None, e))?,
        None => return Err(Error::archive_refused("is empty: it is not a PIC backup")),
    };
    if *entry.path_bytes() != *format::HEADER.as_bytes() {
        return Err(Error::archive_refused("is not a PIC backup: its first member is not the header"));
    }
    let mut text = Vec::new();
    entry.take(MAX_IN_MEMORY).read_to_end(&mut text).map_err(|e| damaged(None, e))?;
    parse_header(&text)
}

/// The header, refusing a format newer than this PIC reads before anything else of it.
fn parse_header(text: &[u8]) -> Result<Header, Error> {
    #[derive(Deserialize)]
    struct Version {
        format_version: u32,
    }
    let refused = |e: serde_json::Error| Error::backup_refused(format::HEADER, format!("is not a backup header: {e}"));
    let version: Version = serde_json::from_slice(text).map_err(refused)?;
    if version.format_version > format::FORMAT_VERSION {
        return Err(Error::archive_refused(format!(
            "was made by a newer PIC (backup format {}; this PIC reads format {} and older): upgrade PIC, then restore it",
            version.format_version,
            format::FORMAT_VERSION
        )));
    }
    serde_json::from_slice(text).map_err(refused)
}

/// The members seen must be exactly those the manifest lists, in its order, each with its kind,
/// size and hash.
fn check_members(listed: &[Member], seen: &[Member]) -> Result<(), Error> {
    for (i, member) in seen.iter().enumerate() {
        let Some(expected) = listed.get(i) else {
            return Err(Error::backup_refused(&member.path, "is not in the manifest"));
        };
        if expected.path != member.path {
            return Err(Error::backup_refused(
                &member.path,
                format!("is not the member the manifest lists at this place ({:?})", expected.path),
            ));
        }
        if expected.kind != member.kind {
            return Err(Error::backup_refused(
                &member.path,
                format!("is a {:?}; the manifest says {:?}", member.kind, expected.kind),
            ));
        }
        if expected.size != member.size {
            return Err(Error::backup_refused(
                &member.path,
                format!("has {} bytes; the manifest says {}: it is damaged", member.size, expected.size),
            ));
        }
        if expected.sha256 != member.sha256 {
            return Err(Error::backup_refused(
                &member.path,
                format!("does not match its sha256 in the manifest: it is damaged (sha256 {})", member.sha256),
            ));
        }
    }
    if let Some(missing) = listed.get(seen.len()) {
        return Err(Error::backup_refused(&missing.path, "is in the manifest but not in the archive"));
    }
    Ok(())
}

/// An error of the compressed stream, while reading a member or the header after `member`.
/// Each member is its own zstd frame: a checksum that fails is the frame just read, that is
/// `member`'s; anything else that fails between members is the start of the next one.
fn damaged(member: Option<&str>, error: io::Error) -> Error {
    let text = error.to_string();
    match member {
        Some(member) if text.contains("checksum") => {
            Error::backup_refused(member, format!("is damaged: its compressed data fails its checksum ({text})"))
        }
        _ if error.kind() == io::ErrorKind::UnexpectedEof || text.contains("incomplete") => {
            let place = member.map(|m| format!(" after member {m:?}")).unwrap_or_default();
            Error::archive_refused(format!("is truncated: it ends{place} ({text})"))
        }
        Some(member) => Error::archive_refused(format!(
            "is damaged in the member after member {member:?}: its compressed data does not decode ({text})"
        )),
        None => Error::archive_refused(format!("is damaged at its start: {text}")),
    }
}

/// An error while reading `member`'s own content.
fn inside(member: &str, error: io::Error) -> Error {
    if error.kind() == io::ErrorKind::UnexpectedEof || error.to_string().contains("incomplete") {
        return Error::archive_refused(format!("is truncated: it ends inside member {member:?} ({error})"));
    }
    Error::backup_refused(member, format!("is damaged: its compressed data does not decode ({error})"))
}

struct Reader<'a> {
    stage_data: Option<&'a Path>,
    seen: Vec<Member>,
    files: BTreeMap<String, Vec<u8>>,
    data: BTreeMap<String, u64>,
    /// Reused for every data member.
    buffer: Vec<u8>,
}

impl Reader<'_> {
    fn small(&self, member: &str, entry: &mut tar::Entry<'_, impl Read>) -> Result<Vec<u8>, Error> {
        let size = entry.header().size().map_err(|e| Error::backup_refused(member, e.to_string()))?;
        if size > MAX_IN_MEMORY {
            return Err(Error::backup_refused(member, format!("has {size} bytes, more than PIC ever writes there")));
        }
        let mut contents = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut contents).map_err(|e| inside(member, e))?;
        Ok(contents)
    }

    fn record(&mut self, member: &str, kind: Kind, contents: &[u8]) {
        let sha256 = sha256_hex(contents);
        self.seen.push(Member { path: member.to_owned(), kind, size: contents.len() as u64, sha256 });
    }

    /// A member of `data/`: hashed, and written out when staging.
    fn data(&mut self, member: &str, kind: Kind, entry: &mut tar::Entry<'_, impl Read>) -> Result<(), Error> {
        let service = member.split('/').nth(1).expect("classified as data/<service>/...").to_owned();
        let header = entry.header();
        let bad = |e: io::Error| Error::backup_refused(member, e.to_string());
        let mode = header.mode().map_err(bad)? & 0o7777;
        let (uid, gid, mtime) = (header.uid().map_err(bad)?, header.gid().map_err(bad)?, header.mtime().map_err(bad)?);
        let target = self.stage_data.map(|dir| dir.join(member.strip_prefix("data/").expect("data member")));
        let (size, sha256) = match kind {
            Kind::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| Error::backup_refused(member, "is a link without a target"))?
                    .into_owned();
                let link = String::from_utf8(link)
                    .map_err(|_| Error::backup_refused(member, "links to a name that is not UTF-8"))?;
                format::check_link(member, &link)?;
                if let Some(target) = &target {
                    let parent = target.parent().expect("staged under a folder");
                    fs::create_dir_all(parent).at(parent)?;
                    std::os::unix::fs::symlink(&link, target).at(target)?;
                    std::os::unix::fs::lchown(target, Some(uid as u32), Some(gid as u32)).at(target)?;
                }
                (link.len() as u64, sha256_hex(link.as_bytes()))
            }
            Kind::Dir => {
                if let Some(target) = &target {
                    fs::create_dir_all(target).at(target)?;
                    fs::set_permissions(target, fs::Permissions::from_mode(mode)).at(target)?;
                    std::os::unix::fs::chown(target, Some(uid as u32), Some(gid as u32)).at(target)?;
                }
                (0, sha256_hex(b""))
            }
            Kind::File => {
                let mut hasher = Sha256::new();
                let mut out = match &target {
                    Some(target) => {
                        let parent = target.parent().expect("staged under a folder");
                        fs::create_dir_all(parent).at(parent)?;
                        Some(fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(target).at(target)?)
                    }
                    None => None,
                };
                let buf = &mut self.buffer;
                let mut size = 0u64;
                loop {
                    let n = entry.read(buf).map_err(|e| inside(member, e))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    size += n as u64;
                    if let (Some(out), Some(target)) = (out.as_mut(), &target) {
                        io::Write::write_all(out, &buf[..n]).at(target)?;
                    }
                }
                if let (Some(out), Some(target)) = (out, &target) {
                    // Owner before mode (a chown clears setuid bits); no fsync per file: the
                    // restore syncs the staged tree's file system once before it moves it in.
                    std::os::unix::fs::fchown(&out, Some(uid as u32), Some(gid as u32)).at(target)?;
                    out.set_permissions(fs::Permissions::from_mode(mode)).at(target)?;
                    out.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime)).at(target)?;
                }
                (size, hex::encode(hasher.finalize()))
            }
        };
        *self.data.entry(service).or_default() += size;
        self.seen.push(Member { path: member.to_owned(), kind, size, sha256 });
        Ok(())
    }
}

/// Reports how much of the compressed archive has been read.
struct CountingReader<'m, 'p, R> {
    inner: R,
    meter: &'m mut Meter<'p>,
}

impl<R: Read> Read for CountingReader<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.advance(n as u64);
        Ok(n)
    }
}

/// A staged tree that is removed unless it is kept.
pub struct Staging(pub PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = crate::fsutil::remove_tree(&self.0);
        }
    }
}
