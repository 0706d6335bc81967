//! The one place that writes files: atomic replace, fsync of files and directories, read-only marking.
//!
//! Every file the builder leaves in the state directory goes through [`write_atomic`], so a reader
//! (or a process started after a crash) sees either the old content or the new one, never a torn
//! write. Directories are fsynced after entries are added or renamed so the rename itself is durable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext};
use crate::fault;

/// Prefix of every temporary entry; anything starting with it is garbage from an interrupted writer.
pub const TMP_PREFIX: &str = ".tmp-";

/// Writes `contents` to `path` atomically: a temporary sibling is written and fsynced, renamed over
/// `path`, and the parent directory is fsynced.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let parent = parent_of(path);
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let tmp = parent.join(format!("{TMP_PREFIX}{name}-pid{}", std::process::id()));
    write_new(&tmp, contents, mode)?;
    fault::point("write_atomic: temporary written");
    fs::rename(&tmp, path).at(path)?;
    fault::point("write_atomic: renamed");
    fsync_dir(&parent)
}

/// Reads a JSON file, or the default value when there is no such file yet.
pub fn read_json_or_default<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T, Error> {
    match fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| Error::corrupt(path.display().to_string(), e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e).at(path),
    }
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T, mode: u32) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).expect("state files serialize") + "\n";
    write_atomic(path, text.as_bytes(), mode)
}

/// Creates `path` (which must not exist yet), writes and fsyncs it.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(path).at(path)?;
    file.write_all(contents).at(path)?;
    file.sync_all().at(path)
}

/// Flushes a directory's entries (new names, renames) to disk.
pub fn fsync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Creates a directory with `mode` if it does not exist yet, and fsyncs its parent when it did not.
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<(), Error> {
    match fs::create_dir(dir) {
        Ok(()) => {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode)).at(dir)?;
            fsync_dir(&parent_of(dir))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).at(dir),
    }
}

/// Renames `from` to `to` and makes the rename durable.
pub fn rename_durable(from: &Path, to: &Path) -> Result<(), Error> {
    fs::rename(from, to).at(to)?;
    fsync_dir(&parent_of(to))
}

/// Flushes everything written to the file system that holds `path` (one `syncfs` instead of an
/// fsync per file, for trees written in bulk).
pub fn sync_filesystem(path: &Path) -> Result<(), Error> {
    let dir = File::open(path).at(path)?;
    nix::unistd::syncfs(&dir).map_err(io::Error::from).at(path)
}

/// Swaps two entries atomically (`renameat2` with `RENAME_EXCHANGE`): at every moment each name
/// holds one of the two, so a folder is replaced without a moment in which it is missing.
pub fn exchange(a: &Path, b: &Path) -> Result<(), Error> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE).map_err(io::Error::from).at(b)?;
    fsync_dir(&parent_of(a))?;
    fsync_dir(&parent_of(b))
}

/// Marks a finished directory tree read-only (files 0444, directories 0555), deepest first.
pub fn make_read_only(dir: &Path) -> Result<(), Error> {
    set_tree_mode(dir, 0o444, 0o555)
}

/// Removes a tree that [`make_read_only`] protected: write bits are restored first so that
/// removal also works for a non-root owner.
pub fn remove_tree(dir: &Path) -> Result<(), Error> {
    set_tree_mode(dir, 0o644, 0o755)?;
    fs::remove_dir_all(dir).at(dir)
}

fn set_tree_mode(dir: &Path, file_mode: u32, dir_mode: u32) -> Result<(), Error> {
    // Directories first when opening up (so their entries become reachable), last when closing.
    let opening = dir_mode & 0o200 != 0;
    if opening {
        fs::set_permissions(dir, fs::Permissions::from_mode(dir_mode)).at(dir)?;
    }
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let path = entry.path();
        let kind = entry.file_type().at(&path)?;
        if kind.is_dir() {
            set_tree_mode(&path, file_mode, dir_mode)?;
        } else if kind.is_file() {
            fs::set_permissions(&path, fs::Permissions::from_mode(file_mode)).at(&path)?;
        }
    }
    if !opening {
        fs::set_permissions(dir, fs::Permissions::from_mode(dir_mode)).at(dir)?;
    }
    Ok(())
}

/// Whether the temporary `name` is one [`write_atomic`] of a running process is writing now:
/// files outside the writer lock (the certificate client's status, the DDNS record) are written
/// while a writer clears what interrupted writers left, and must not vanish under them.
fn in_flight(name: &str) -> bool {
    name.rsplit_once("-pid")
        .and_then(|(_, pid)| pid.parse::<u32>().ok())
        .is_some_and(|pid| Path::new("/proc").join(pid.to_string()).exists())
}

/// Removes every entry of `dir` whose name starts with [`TMP_PREFIX`], except those a running
/// process is writing.
pub fn remove_temporaries(dir: &Path) -> Result<(), Error> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).at(dir),
    };
    for entry in entries {
        let entry = entry.at(dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(TMP_PREFIX) || in_flight(&name) {
            continue;
        }
        let path = entry.path();
        if entry.file_type().at(&path)?.is_dir() {
            remove_tree(&path)?;
        } else {
            fs::remove_file(&path).at(&path)?;
        }
    }
    Ok(())
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The bytes an unprivileged writer may still use on the file system that holds `path`.
pub fn free_bytes(path: &Path) -> Result<u64, Error> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from).at(path)?;
    Ok(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}

/// The bytes the files under `path` hold (links and folders not counted).
pub fn tree_size(path: &Path) -> Result<u64, Error> {
    let mut total = 0;
    for entry in fs::read_dir(path).at(path)? {
        let entry = entry.at(path)?;
        let meta = entry.metadata().at(&entry.path())?;
        if meta.is_dir() {
            total += tree_size(&entry.path())?;
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        write_atomic(&path, b"one", 0o644).unwrap();
        write_atomic(&path, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.json")]);
    }

    #[test]
    fn clearing_temporaries_spares_those_a_running_process_is_writing() {
        let dir = tempfile::tempdir().unwrap();
        let ours = format!("{TMP_PREFIX}acme.json-pid{}", std::process::id());
        // A pid above the kernel's maximum (4194304): a writer that is gone.
        let dead = format!("{TMP_PREFIX}acme.json-pid{}", 4_194_305);
        for name in [&ours, &dead, &format!("{TMP_PREFIX}current"), &"kept.json".to_owned()] {
            fs::write(dir.path().join(name), "x").unwrap();
        }
        fs::create_dir(dir.path().join(format!("{TMP_PREFIX}gc-1"))).unwrap();
        remove_temporaries(dir.path()).unwrap();
        let mut left: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, vec![ours, "kept.json".to_owned()]);
    }

    #[test]
    fn read_only_tree_can_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("t");
        fs::create_dir_all(tree.join("sub")).unwrap();
        fs::write(tree.join("sub/f"), "x").unwrap();
        make_read_only(&tree).unwrap();
        let mode = fs::metadata(tree.join("sub/f")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o444);
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
    }
}
