//! The image definitions in `images/`: one folder per image with an `image.toml`, the shared base
//! in `images/base/`, and an optional `rootfs/` tree copied into the image.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext};

/// The name of the shared base's folder.
pub const BASE: &str = "base";

/// `images/base/image.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseDef {
    /// The Debian suite every image is built from.
    pub suite: String,
    pub mirror: String,
    /// Installed over minbase in the base layer.
    #[serde(default)]
    pub packages: Vec<String>,
}

/// `images/<name>/image.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDef {
    pub packages: Vec<String>,
    /// Shell commands run inside the image after its packages are installed.
    #[serde(default)]
    pub setup: Vec<String>,
    /// The user that owns the service's data directory; its uid and gid (which differ between
    /// images) are read from the built image and recorded in its labels.
    pub data_user: Option<String>,
    /// The group that may read the secrets mounted into the container (certificate keys,
    /// password files); they are owned by root, mode 0440. Defaults to `data_user`'s group.
    pub secrets_group: Option<String>,
}

/// One image's definition with what identifies its content.
#[derive(Debug, Clone)]
pub struct Definition<T> {
    pub name: String,
    pub def: T,
    /// Its folder's `rootfs/`, when there is one.
    pub rootfs: Option<PathBuf>,
    /// sha256 over `image.toml` and every file under `rootfs/` (path, mode, content).
    pub sha256: String,
}

/// Every definition under `dir`: the base and the images, by name.
pub struct Definitions {
    pub base: Definition<BaseDef>,
    pub images: BTreeMap<String, Definition<ImageDef>>,
}

impl Definitions {
    pub fn load(dir: &Path) -> Result<Definitions, Error> {
        let base =
            load_one(dir, BASE)?.ok_or_else(|| Error::Image(format!("{} has no {BASE}/image.toml", dir.display())))?;
        let mut images = BTreeMap::new();
        for entry in fs::read_dir(dir).at(dir)? {
            let entry = entry.at(dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == BASE || !entry.path().is_dir() {
                continue;
            }
            if let Some(definition) = load_one(dir, &name)? {
                images.insert(name, definition);
            }
        }
        Ok(Definitions { base, images })
    }
}

fn load_one<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<Definition<T>>, Error> {
    let folder = dir.join(name);
    let toml_path = folder.join("image.toml");
    let text = match fs::read_to_string(&toml_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(&toml_path),
    };
    let def = toml::from_str(&text).map_err(|e| Error::Image(format!("{}: {e}", toml_path.display())))?;
    let mut hash = Sha256::new();
    hash.update(text.as_bytes());
    let rootfs = folder.join("rootfs");
    let rootfs = rootfs.is_dir().then_some(rootfs);
    if let Some(rootfs) = &rootfs {
        for entry in walkdir::WalkDir::new(rootfs).sort_by_file_name() {
            let entry = entry.map_err(|e| Error::Image(format!("{}: {e}", rootfs.display())))?;
            let path = entry.path();
            let relative = path.strip_prefix(rootfs).unwrap_or(path);
            let meta = fs::symlink_metadata(path).at(path)?;
            hash.update(format!(
                "\0{}\0{:o}\0",
                relative.display(),
                std::os::unix::fs::PermissionsExt::mode(&meta.permissions())
            ));
            if meta.is_file() {
                hash.update(fs::read(path).at(path)?);
            }
        }
    }
    Ok(Some(Definition { name: name.to_owned(), def, rootfs, sha256: hex::encode(hash.finalize()) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository's definitions parse, and every containerized service has an image.
    #[test]
    fn every_service_with_a_container_has_an_image_definition() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images");
        let definitions = Definitions::load(&dir).unwrap();
        assert_eq!(definitions.base.def.suite, "trixie");
        for service in crate::config::services::CATALOG.iter().filter(|s| s.offset.is_some()) {
            assert!(definitions.images.contains_key(service.name), "images/{}/image.toml is missing", service.name);
        }
        let mail = &definitions.images["mail"];
        assert!(mail.rootfs.is_some(), "mail ships its entrypoint");
        assert_eq!(mail.def.data_user.as_deref(), Some("root"));
    }

    #[test]
    fn an_unknown_field_is_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("base")).unwrap();
        fs::write(dir.path().join("base/image.toml"), "suite = \"trixie\"\nmirror = \"m\"\n").unwrap();
        fs::create_dir_all(dir.path().join("dns")).unwrap();
        fs::write(dir.path().join("dns/image.toml"), "packages = []\npackage = [\"typo\"]\n").unwrap();
        let error = Definitions::load(dir.path()).err().unwrap().to_string();
        assert!(error.contains("dns/image.toml") && error.contains("package"), "{error}");
    }
}
