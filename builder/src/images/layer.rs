//! Image layers as tar files: a whole tree (the base) or what a tree changes over another (a
//! service over the base), with whiteouts for what it removes. Entries are sorted and timestamps
//! clamped, so equal trees give byte-identical layers.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, IoContext};
use crate::hashing::Hashing;

use super::rootfs::SOURCE_DATE_EPOCH;

/// A layer written to disk.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Layer {
    /// sha256 of the uncompressed tar: Docker's diff id.
    pub sha256: String,
    pub size: u64,
}

/// Paths whose content the container runtime provides; never part of a layer.
const RUNTIME_DIRS: &[&str] = &["dev", "proc", "sys"];

/// Writes the layer of `tree` over `lower` (everything, when `lower` is `None`) to `out`.
pub fn write(tree: &Path, lower: Option<&Path>, out: &Path) -> Result<Layer, Error> {
    let file = File::create(out).at(out)?;
    let mut hashing = Hashing::new(BufWriter::new(file));
    {
        let mut tar = tar::Builder::new(&mut hashing);
        tar.follow_symlinks(false);
        add_dir(&mut tar, tree, lower, Path::new(""))?;
        tar.finish().at(out)?;
    }
    hashing.get_mut().flush().at(out)?;
    hashing.get_ref().get_ref().sync_all().at(out)?;
    let size = hashing.byte_count();
    Ok(Layer { sha256: hashing.finalize_hex(), size })
}

fn add_dir<W: Write>(tar: &mut tar::Builder<W>, tree: &Path, lower: Option<&Path>, rel: &Path) -> Result<(), Error> {
    let dir = tree.join(rel);
    let mut names: Vec<_> =
        fs::read_dir(&dir).at(&dir)?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>().at(&dir)?;
    // Whiteouts for what the lower tree has and this one does not.
    if let Some(lower) = lower {
        let lower_dir = lower.join(rel);
        if let Ok(entries) = fs::read_dir(&lower_dir) {
            for entry in entries {
                let name = entry.at(&lower_dir)?.file_name();
                if fs::symlink_metadata(dir.join(&name)).is_err() {
                    names.push(format!(".wh.{}", name.to_string_lossy()).into());
                }
            }
        }
    }
    names.sort();
    for name in names {
        let rel_path = rel.join(&name);
        if rel.as_os_str().is_empty() && RUNTIME_DIRS.iter().any(|d| name == *d) {
            append(tar, &tree.join(&rel_path), &rel_path)?;
            continue;
        }
        if name.to_string_lossy().starts_with(".wh.") && fs::symlink_metadata(dir.join(&name)).is_err() {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(0);
            header.set_mode(0o644);
            header.set_mtime(SOURCE_DATE_EPOCH);
            tar.append_data(&mut header, &rel_path, std::io::empty()).at(&rel_path)?;
            continue;
        }
        let path = tree.join(&rel_path);
        let meta = fs::symlink_metadata(&path).at(&path)?;
        let lower_meta = lower.and_then(|l| fs::symlink_metadata(l.join(&rel_path)).ok());
        let unchanged = match &lower_meta {
            Some(lm) => same_entry(&path, &meta, &lower.unwrap().join(&rel_path), lm)?,
            None => false,
        };
        if meta.is_dir() {
            if !unchanged {
                append(tar, &path, &rel_path)?;
            }
            // A directory the lower tree has as something else is replaced whole.
            let lower_is_dir = lower_meta.as_ref().is_some_and(|m| m.is_dir());
            add_dir(tar, tree, if lower_is_dir { lower } else { None }, &rel_path)?;
        } else if !unchanged && (meta.is_file() || meta.file_type().is_symlink()) {
            append(tar, &path, &rel_path)?;
        }
    }
    Ok(())
}

/// True when an entry of the tree equals the lower tree's: type, mode, owner and content.
fn same_entry(path: &Path, meta: &fs::Metadata, lower_path: &Path, lower: &fs::Metadata) -> Result<bool, Error> {
    if meta.file_type() != lower.file_type()
        || meta.permissions().mode() != lower.permissions().mode()
        || meta.uid() != lower.uid()
        || meta.gid() != lower.gid()
    {
        return Ok(false);
    }
    if meta.file_type().is_symlink() {
        return Ok(fs::read_link(path).at(path)? == fs::read_link(lower_path).at(lower_path)?);
    }
    if meta.is_file() {
        return Ok(meta.len() == lower.len() && fs::read(path).at(path)? == fs::read(lower_path).at(lower_path)?);
    }
    Ok(true)
}

/// Appends one entry (directory, file or symlink) with its mode and owner and a clamped time.
fn append<W: Write>(tar: &mut tar::Builder<W>, path: &Path, rel: &Path) -> Result<(), Error> {
    let meta = fs::symlink_metadata(path).at(path)?;
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
    header.set_mtime(meta.mtime().clamp(0, SOURCE_DATE_EPOCH as i64) as u64);
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path).at(path)?;
        header.set_size(0);
        tar.append_link(&mut header, rel, target).at(path)
    } else if meta.is_file() {
        tar.append_data(&mut header, rel, File::open(path).at(path)?).at(path)
    } else {
        header.set_size(0);
        tar.append_data(&mut header, rel, std::io::empty()).at(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tar_path: &Path) -> Vec<String> {
        let mut archive = tar::Archive::new(File::open(tar_path).unwrap());
        archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect()
    }

    /// A layer over a lower tree holds what changed or is new, and whiteouts for what is gone.
    #[test]
    fn a_layer_holds_only_the_differences() {
        let dir = tempfile::tempdir().unwrap();
        let (lower, upper) = (dir.path().join("lower"), dir.path().join("upper"));
        for tree in [&lower, &upper] {
            fs::create_dir_all(tree.join("etc")).unwrap();
            fs::write(tree.join("etc/same"), "same").unwrap();
        }
        fs::write(lower.join("etc/changed"), "old").unwrap();
        fs::write(upper.join("etc/changed"), "new").unwrap();
        fs::write(lower.join("etc/gone"), "x").unwrap();
        fs::create_dir_all(upper.join("usr/bin")).unwrap();
        fs::write(upper.join("usr/bin/daemon"), "#!/bin/sh").unwrap();
        std::os::unix::fs::symlink("daemon", upper.join("usr/bin/alias")).unwrap();

        let out = dir.path().join("layer.tar");
        let layer = write(&upper, Some(&lower), &out).unwrap();
        assert_eq!(
            entries(&out),
            ["etc/.wh.gone", "etc/changed", "usr", "usr/bin", "usr/bin/alias", "usr/bin/daemon"],
            "unchanged files and directories are left out"
        );
        assert_eq!(layer.size, fs::metadata(&out).unwrap().len());

        // Equal trees give byte-identical layers.
        let again = write(&upper, Some(&lower), &dir.path().join("again.tar")).unwrap();
        assert_eq!(again.sha256, layer.sha256);
        // Without a lower tree, everything is in it.
        let full = dir.path().join("full.tar");
        write(&upper, None, &full).unwrap();
        assert!(entries(&full).contains(&"etc/same".to_owned()));
    }
}
