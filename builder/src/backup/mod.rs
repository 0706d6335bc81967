//! Backups of a cell: the desired config, every generation with its store paths, the secrets
//! (only encrypted, with a passphrase) and on request the services' data, in one archive whose
//! every member is hashed; and restores that check all of it before they change anything and
//! add the archive's current generation on top of the local history instead of replacing it.

pub mod format;
pub mod key;
mod read;
mod restore;
pub mod schedule;
mod secrets;
mod write;

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use age::secrecy::SecretString;
pub use format::{Header, SecretsIncluded};
pub use read::header;
pub use restore::{RestoreOptions, RestoreReport, SecretsOutcome, restore};

use crate::error::{Error, IoContext};
use crate::fsutil::{self, TMP_PREFIX};
use crate::hashing::Hashing;
use crate::state::{State, Writer};

/// A passphrase shorter than this is refused: it is all that protects the secrets in an archive.
pub const MIN_PASSPHRASE_LEN: usize = 8;

/// Checks a passphrase for the secrets of a backup.
pub fn check_passphrase(text: String) -> Result<SecretString, Error> {
    if text.chars().count() < MIN_PASSPHRASE_LEN {
        return Err(Error::BadPassword(format!(
            "a backup passphrase needs at least {MIN_PASSPHRASE_LEN} characters; it alone protects the secrets in the archive"
        )));
    }
    Ok(SecretString::from(text))
}

/// Backups live here unless another place is asked for.
pub const BACKUPS_DIR: &str = "backups";
/// Every archive's name ends with this.
pub const EXTENSION: &str = ".tar.zst";

/// How far a backup or restore has got, reported as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// `backup`, `verify` or `restore`.
    pub operation: &'static str,
    pub done_bytes: u64,
    pub total_bytes: u64,
}

/// Counts bytes and reports about every 2% of them.
pub struct Meter<'p> {
    operation: &'static str,
    done: u64,
    total: u64,
    reported: u64,
    report: &'p mut dyn FnMut(Progress),
}

impl<'p> Meter<'p> {
    pub fn new(operation: &'static str, report: &'p mut dyn FnMut(Progress)) -> Meter<'p> {
        Meter { operation, done: 0, total: 0, reported: 0, report }
    }

    fn set_total(&mut self, total: u64) {
        self.total = total;
        self.done = 0;
        self.reported = 0;
        self.emit();
    }

    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if self.done - self.reported >= (self.total / 50).max(1) {
            self.emit();
        }
    }

    fn finish(&mut self) {
        self.done = self.done.max(self.total);
        self.emit();
    }

    fn emit(&mut self) {
        self.reported = self.done;
        // Totals are estimated up front (small files such as the header are not counted).
        let done = self.done.min(self.total);
        (self.report)(Progress { operation: self.operation, done_bytes: done, total_bytes: self.total });
    }
}

/// What to put into a backup.
#[derive(Default)]
pub struct BackupOptions {
    /// Encrypts the secrets into the archive; without one they are left out.
    pub passphrase: Option<SecretString>,
    /// Adds `data/` (mailboxes, calendars, files, leases).
    pub include_data: bool,
    /// scrypt's work factor (log2 N) for the secrets; `None` takes about a second here.
    pub work_factor: Option<u8>,
}

/// A backup archive and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupInfo {
    /// The file name (what the API calls its id).
    pub id: String,
    pub path: PathBuf,
    pub size: u64,
    /// sha256 of the whole archive file.
    pub sha256: Option<String>,
    /// What the archive's header says; `None` when it could not be read (`problem` says why).
    pub header: Option<Header>,
    pub problem: Option<String>,
}

/// Writes a backup of the state directory into `output`, or into `backups/` under a name made
/// of the cell's name and the time. The writer lock is held, so the config, the generations and
/// the secrets in the archive belong together; the data is copied as it is while services run.
pub fn create(
    writer: &Writer<'_>,
    output: Option<&Path>,
    options: &BackupOptions,
    report: &mut dyn FnMut(Progress),
) -> Result<BackupInfo, Error> {
    let sealing = match &options.passphrase {
        Some(passphrase) => Sealing::Passphrase(passphrase, options.work_factor),
        None => Sealing::Omitted,
    };
    let target = match output {
        Some(path) => Target::File(path),
        None => Target::Folder(&writer.state().root().join(BACKUPS_DIR)),
    };
    write_backup(writer, target, sealing, options.include_data, false, report)
}

/// How the secrets go into an archive.
enum Sealing<'a> {
    Passphrase(&'a SecretString, Option<u8>),
    /// To the backup key, its identity beside them (a scheduled archive).
    Key(&'a key::BackupKey),
    Omitted,
}

/// Where an archive is written: that file, or a new name in that folder.
enum Target<'a> {
    File(&'a Path),
    Folder(&'a Path),
}

fn write_backup(
    writer: &Writer<'_>,
    target: Target<'_>,
    sealing: Sealing<'_>,
    include_data: bool,
    scheduled: bool,
    report: &mut dyn FnMut(Progress),
) -> Result<BackupInfo, Error> {
    let state = writer.state();
    let desired = state.desired_config()?.ok_or_else(|| Error::NoDesiredConfig(state.root().to_owned()))?;
    let generations: Vec<u64> = state.generations()?.iter().map(|g| g.manifest.number).collect();
    let now = jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now());
    let header = Header {
        format_version: format::FORMAT_VERSION,
        cell: desired.cell.name.clone(),
        created: now.to_string(),
        pic_version: env!("CARGO_PKG_VERSION").to_owned(),
        current_generation: state.current()?,
        generations: generations.clone(),
        secrets: match sealing {
            Sealing::Passphrase(..) => SecretsIncluded::Encrypted,
            Sealing::Key(_) => SecretsIncluded::EncryptedToKey,
            Sealing::Omitted => SecretsIncluded::Omitted,
        },
        data: include_data,
        scheduled,
    };
    let path = match target {
        Target::File(path) => path.to_owned(),
        Target::Folder(dir) => {
            fsutil::ensure_dir(dir, 0o700)?;
            let stem = format!("pic-{}-{}", header.cell, now.strftime("%Y%m%dT%H%M%SZ"));
            let mut path = dir.join(format!("{stem}{EXTENSION}"));
            let mut n = 1;
            while path.exists() {
                n += 1;
                path = dir.join(format!("{stem}-{n}{EXTENSION}"));
            }
            path
        }
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!("{TMP_PREFIX}{name}"));
    let result = write_archive(state, &header, &generations, &sealing, &tmp, report);
    let (size, sha256) = match result {
        Ok(written) => written,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    fsutil::rename_durable(&tmp, &path)?;
    Ok(BackupInfo { id: name, path, size, sha256: Some(sha256), header: Some(header), problem: None })
}

fn write_archive(
    state: &State,
    header: &Header,
    generations: &[u64],
    sealing: &Sealing<'_>,
    tmp: &Path,
    report: &mut dyn FnMut(Progress),
) -> Result<(u64, String), Error> {
    let root = state.root();
    let mut store_paths = std::collections::BTreeSet::new();
    for &n in generations {
        store_paths.extend(state.manifest(n)?.services.into_values().map(|e| e.store_path));
    }
    let data = root.join(format::DATA);
    let mut meter = Meter::new("backup", report);
    let mut total = tree_size(&root.join(format::STORE))? + tree_size(&root.join(format::GENERATIONS))?;
    total += tree_size(&data)? * u64::from(header.data);
    meter.set_total(total);
    // The archive is at most what it holds (compression only makes it smaller): a backup that
    // might not fit is refused before a byte is written, naming how much it may need.
    let folder = tmp.parent().unwrap_or(Path::new("/"));
    let free = fsutil::free_bytes(folder)?;
    let needed = total + (1 << 20);
    if free < needed {
        return Err(Error::NoSpace {
            path: folder.to_owned(),
            doing: "the backup",
            needed_mb: needed.div_ceil(1 << 20),
            free_mb: free >> 20,
        });
    }

    // Archives hold the cell's config and (encrypted) secrets: only root reads them.
    let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(tmp).at(tmp)?;
    let output = Hashing::new(io::BufWriter::new(file));
    let mut archive = write::ArchiveWriter::new(output, tmp, header, meter)?;
    archive.file(format::DESIRED_CONFIG, &state.desired_config_path())?;
    let failed = root.join(format::FAILED);
    if failed.exists() {
        archive.file(format::FAILED, &failed)?;
    }
    for &n in generations {
        for file in [crate::generation::CONFIG, crate::generation::MANIFEST] {
            let rel = format!("{}/{n}/{file}", format::GENERATIONS);
            archive.file(&rel, &root.join(&rel))?;
        }
    }
    for store_path in &store_paths {
        let dir = root.join(store_path);
        for entry in walkdir::WalkDir::new(&dir).min_depth(1).sort_by_file_name() {
            let entry = entry.map_err(|e| Error::corrupt(dir.display().to_string(), e))?;
            if entry.file_type().is_file() {
                let rel = entry.path().strip_prefix(root).expect("under the state directory");
                archive.file(&rel.to_string_lossy(), entry.path())?;
            }
        }
    }
    match sealing {
        Sealing::Passphrase(passphrase, work_factor) => {
            let sealed = secrets::encrypt(state.secrets().dir(), passphrase, *work_factor)?;
            archive.bytes(format::SECRETS, &sealed, 0o600)?;
        }
        Sealing::Key(key) => {
            let sealed = secrets::encrypt_to(state.secrets().dir(), &key.recipient)?;
            archive.bytes(format::SECRETS, &sealed, 0o600)?;
            archive.bytes(format::SECRETS_KEY, &key.sealed_identity, 0o600)?;
        }
        Sealing::Omitted => {}
    }
    if header.data && data.is_dir() {
        // Apps whose manifest says their data stays out of backups (caches, downloads).
        let skip: Vec<String> = state
            .desired_config()?
            .map(|c| c.apps.iter().filter(|a| !a.manifest.backup).map(|a| a.service()).collect())
            .unwrap_or_default();
        archive.data_tree(format::DATA, &data, &skip)?;
    }
    let (mut output, _, mut meter) = archive.finish()?;
    meter.finish();
    output.get_mut().flush().at(tmp)?;
    output.get_ref().get_ref().sync_all().at(tmp)?;
    let written = output.byte_count();
    Ok((written, output.finalize_hex()))
}

/// The backups in `backups/` and in the schedule's destination (when it is another folder and
/// mounted), newest first, each with what its header says.
pub fn list(state: &State) -> Result<Vec<BackupInfo>, Error> {
    let mut backups = Vec::new();
    for dir in folders(state) {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).at(&dir),
        };
        for entry in entries {
            let entry = entry.at(&dir)?;
            let id = entry.file_name().to_string_lossy().into_owned();
            if id.starts_with(TMP_PREFIX) || !id.ends_with(EXTENSION) || !entry.file_type().at(&dir)?.is_file() {
                continue;
            }
            let path = entry.path();
            let size = entry.metadata().at(&path)?.len();
            let (header, problem) = match read::header(&path) {
                Ok(header) => (Some(header), None),
                Err(e) => (None, Some(e.to_string())),
            };
            backups.push(BackupInfo { id, path, size, sha256: None, header, problem });
        }
    }
    backups.sort_by(|a, b| b.header.as_ref().map(|h| &h.created).cmp(&a.header.as_ref().map(|h| &h.created)));
    Ok(backups)
}

/// The path of backup `id` in `backups/` or the schedule's destination; refuses anything but
/// the plain name of one there.
pub fn find(state: &State, id: &str) -> Result<PathBuf, Error> {
    let plain = !id.is_empty() && !id.starts_with('.') && !id.contains('/') && id.ends_with(EXTENSION);
    if plain {
        for dir in folders(state) {
            let path = dir.join(id);
            if path.is_file() {
                return Ok(path);
            }
        }
    }
    Err(Error::NoSuchBackup(id.to_owned()))
}

/// Where archives are: `backups/`, and the schedule's destination when it is mounted.
fn folders(state: &State) -> Vec<PathBuf> {
    let mut folders = vec![state.root().join(BACKUPS_DIR)];
    let destination =
        state.desired_config_shared().ok().flatten().and_then(|c| schedule::destination(state, &c.backups).ok());
    if let Some(destination) = destination
        && !folders.contains(&destination)
    {
        folders.push(destination);
    }
    folders
}

/// Where an archive being received (an upload) is written before it is checked.
pub fn incoming_path(state: &State) -> Result<PathBuf, Error> {
    let dir = state.root().join(BACKUPS_DIR);
    fsutil::ensure_dir(&dir, 0o700)?;
    Ok(dir.join(format!("{TMP_PREFIX}upload-{}", uuid_like())))
}

/// Checks a received archive at `incoming` (hashes, sizes, format; not the secrets, which need
/// the passphrase) and files it in `backups/` under a name of its cell and time.
pub fn accept_upload(state: &State, incoming: &Path, report: &mut dyn FnMut(Progress)) -> Result<BackupInfo, Error> {
    let checked = {
        let mut meter = Meter::new("verify", report);
        read::read(incoming, None, &mut meter)
    };
    let contents = match checked {
        Ok(contents) => contents,
        Err(e) => {
            let _ = std::fs::remove_file(incoming);
            return Err(e);
        }
    };
    let header = contents.header;
    let stamp = header.created.replace([':', '-'], "");
    let mut id = format!("pic-{}-{stamp}{EXTENSION}", header.cell);
    let dir = state.root().join(BACKUPS_DIR);
    let mut n = 1;
    while dir.join(&id).exists() {
        n += 1;
        id = format!("pic-{}-{stamp}-{n}{EXTENSION}", header.cell);
    }
    let path = dir.join(&id);
    fsutil::rename_durable(incoming, &path)?;
    let size = std::fs::metadata(&path).at(&path)?.len();
    Ok(BackupInfo { id, path, size, sha256: None, header: Some(header), problem: None })
}

fn uuid_like() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    hex::encode(bytes)
}

/// Bytes in the regular files under `dir` (0 when it does not exist).
fn tree_size(dir: &Path) -> Result<u64, Error> {
    if !dir.exists() {
        return Ok(0);
    }
    let mut total = 0;
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.map_err(|e| Error::corrupt(dir.display().to_string(), e))?;
        if entry.file_type().is_file() {
            total += entry.metadata().map_err(|e| Error::corrupt(entry.path().display().to_string(), e))?.len();
        }
    }
    Ok(total)
}
