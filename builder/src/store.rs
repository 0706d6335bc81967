//! The content-addressed store: `store/<sha256>-<service>/`, one read-only directory per rendered
//! bundle, named by the hash of its contents.
//!
//! A store path is written under a temporary name and renamed into place only when complete, so a
//! path that exists is whole; the same content always lands at the same path, so an unchanged
//! service is never written twice.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext};
use crate::fault;
use crate::fsutil::{self, TMP_PREFIX};
use crate::render::Bundle;

pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: PathBuf) -> Store {
        Store { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store path name of a bundle: `<sha256>-<service>`.
    pub fn name_of(service: &str, sha256: &str) -> String {
        format!("{sha256}-{service}")
    }

    /// Splits a store path name into (sha256, service).
    pub fn parse_name(name: &str) -> Option<(&str, &str)> {
        let (hash, service) = name.split_once('-')?;
        (hash.len() == 64 && hash.bytes().all(|c| c.is_ascii_hexdigit())).then_some((hash, service))
    }

    /// Adds a bundle and returns its store path name; does nothing if the same content is there.
    pub fn add(&self, service: &str, bundle: &Bundle) -> Result<String, Error> {
        let name = Self::name_of(service, &bundle.sha256(service));
        let path = self.dir.join(&name);
        if path.exists() {
            return Ok(name);
        }
        let tmp = self.dir.join(format!("{TMP_PREFIX}{name}"));
        if tmp.exists() {
            fsutil::remove_tree(&tmp)?;
        }
        let written = (|| {
            fs::create_dir(&tmp).at(&tmp)?;
            for (file, contents) in &bundle.files {
                let file_path = tmp.join(file);
                if let Some(parent) = file_path.parent() {
                    fs::create_dir_all(parent).at(parent)?;
                }
                fsutil::write_new(&file_path, contents, 0o444)?;
                fault::point("store: file written");
            }
            fsutil::fsync_dir(&tmp)?;
            fsutil::make_read_only(&tmp)?;
            fault::point("store: bundle complete");
            fsutil::rename_durable(&tmp, &path)
        })();
        if let Err(error) = written {
            // A half-written path (a full disk) would keep its space until the next write.
            if tmp.exists() {
                let _ = fsutil::remove_tree(&tmp);
            }
            return Err(error);
        }
        fault::point("store: bundle in place");
        Ok(name)
    }

    /// Reads a bundle back.
    pub fn read(&self, name: &str) -> Result<Bundle, Error> {
        let root = self.dir.join(name);
        let mut bundle = Bundle::default();
        read_tree(&root, &root, &mut bundle)?;
        Ok(bundle)
    }

    /// The names of every complete store path, sorted.
    pub fn entries(&self) -> Result<Vec<String>, Error> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir).at(&self.dir)? {
            let name = entry.at(&self.dir)?.file_name().to_string_lossy().into_owned();
            if !name.starts_with(TMP_PREFIX) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Re-hashes a store path; `Ok(None)` when its content matches its name, else what is wrong.
    pub fn check(&self, name: &str) -> Result<Option<String>, Error> {
        let Some((hash, service)) = Self::parse_name(name) else {
            return Ok(Some("the name is not <sha256>-<service>".into()));
        };
        let bundle = match self.read(name) {
            Ok(bundle) => bundle,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Some("missing".into()));
            }
            Err(Error::Corrupt { what, detail }) => return Ok(Some(format!("{what}: {detail}"))),
            Err(e) => return Err(e),
        };
        let actual = bundle.sha256(service);
        Ok((actual != hash).then(|| format!("content hashes to {actual}")))
    }

    pub fn remove(&self, name: &str) -> Result<(), Error> {
        fsutil::remove_tree(&self.dir.join(name))
    }
}

fn read_tree(root: &Path, dir: &Path, bundle: &mut Bundle) -> Result<(), Error> {
    for entry in fs::read_dir(dir).at(dir)? {
        let path = entry.at(dir)?.path();
        let meta = fs::symlink_metadata(&path).at(&path)?;
        if meta.is_dir() {
            read_tree(root, &path, bundle)?;
        } else {
            // A symlink or special file is never written by the builder: its presence is corruption,
            // and reading it as a regular file (following a link) would hide that.
            if !meta.is_file() {
                return Err(Error::corrupt(path.display().to_string(), "not a regular file"));
            }
            let rel = path.strip_prefix(root).expect("walked from root").to_string_lossy().into_owned();
            bundle.files.insert(rel, fs::read(&path).at(&path)?);
        }
    }
    Ok(())
}
