//! Generations: `generations/<N>/` holds `manifest.json` (what the generation is made of) and
//! `config.json` (the config it was built from). Both are written before the directory gets its
//! number, so a numbered generation is always complete, and never changes afterwards.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext};

pub const MANIFEST: &str = "manifest.json";
pub const CONFIG: &str = "config.json";

/// What one generation is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub number: u64,
    /// The generation that was current when this one was built.
    pub parent: Option<u64>,
    /// RFC 3339 time of the build.
    pub created: String,
    /// Why it was built: the command or request that asked for it.
    pub reason: String,
    /// sha256 of `config.json`.
    pub config_sha256: String,
    /// sha256 over the templates the builder rendered with.
    pub templates_sha256: String,
    pub builder_version: String,
    /// sha256 over everything rendering reads: the config, the templates, the public keys and
    /// the builder version. Equal inputs render equal bundles, so a build with the inputs of an
    /// existing generation can stop before rendering.
    pub inputs_sha256: String,
    /// Each rendered service and its store path.
    pub services: BTreeMap<String, ServiceEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// Relative to the state directory: `store/<sha256>-<service>`.
    pub store_path: String,
    pub sha256: String,
}

impl Manifest {
    /// True when two generations have the same content (only their number, parent, time and
    /// reason differ).
    pub fn same_content(&self, other: &Manifest) -> bool {
        self.config_sha256 == other.config_sha256 && self.services == other.services
    }
}

/// The `generations/` directory.
pub struct Generations {
    dir: PathBuf,
}

impl Generations {
    pub fn new(dir: PathBuf) -> Generations {
        Generations { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, number: u64) -> PathBuf {
        self.dir.join(number.to_string())
    }

    /// Every generation number, ascending.
    pub fn numbers(&self) -> Result<Vec<u64>, Error> {
        let mut numbers = Vec::new();
        for entry in fs::read_dir(&self.dir).at(&self.dir)? {
            let entry = entry.at(&self.dir)?;
            if let Some(n) = entry.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    pub fn manifest(&self, number: u64) -> Result<Manifest, Error> {
        let path = self.path(number).join(MANIFEST);
        let text = match fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.path(number).exists() => {
                return Err(Error::NoSuchGeneration(number));
            }
            other => other.at(&path)?,
        };
        serde_json::from_str(&text).map_err(|e| Error::corrupt(path.display().to_string(), e))
    }

    /// The canonical config JSON a generation was built from.
    pub fn config_text(&self, number: u64) -> Result<String, Error> {
        if !self.path(number).exists() {
            return Err(Error::NoSuchGeneration(number));
        }
        let path = self.path(number).join(CONFIG);
        fs::read_to_string(&path).at(&path)
    }
}
