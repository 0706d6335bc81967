//! The docker-archive format (what `docker save` writes and `docker load` reads): one tar with a
//! `manifest.json`, each image's config and each layer once, shared layers stored once.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::error::{Error, IoContext};
use crate::hashing::sha256_hex;

use super::BuiltImage;
use super::rootfs::SOURCE_DATE_EPOCH;

/// The image config Docker reads: environment, labels and the layers' diff ids.
pub fn image_config(image: &BuiltImage) -> serde_json::Value {
    json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Labels": image.labels,
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": image.layers.iter().map(|l| format!("sha256:{}", l.sha256)).collect::<Vec<_>>(),
        },
    })
}

/// Writes `images` as one docker archive to `out`, reading layers from `layer_dir`.
pub fn write(images: &[BuiltImage], layer_dir: &Path, out: impl Write) -> Result<(), Error> {
    let mut tar = tar::Builder::new(out);
    let mut manifest = Vec::new();
    let mut written = BTreeSet::new();
    for image in images {
        let config = serde_json::to_vec(&image_config(image)).expect("image configs serialize");
        let config_name = format!("{}.json", sha256_hex(&config));
        append_bytes(&mut tar, &config_name, &config)?;
        let mut layers = Vec::new();
        for layer in &image.layers {
            let name = format!("{}/layer.tar", layer.sha256);
            if written.insert(layer.sha256.clone()) {
                let path = layer_dir.join(format!("{}.tar", layer.sha256));
                let mut file = File::open(&path).at(&path)?;
                let mut header = tar::Header::new_gnu();
                header.set_size(layer.size);
                header.set_mode(0o644);
                header.set_mtime(SOURCE_DATE_EPOCH);
                tar.append_data(&mut header, &name, &mut file).at(&path)?;
            }
            layers.push(name);
        }
        manifest.push(json!({"Config": config_name, "RepoTags": [image.tag()], "Layers": layers}));
    }
    append_bytes(&mut tar, "manifest.json", &serde_json::to_vec(&manifest).expect("manifests serialize"))?;
    tar.into_inner()
        .map_err(|e| Error::Image(format!("writing the image archive: {e}")))?
        .flush()
        .map_err(|e| Error::Image(format!("writing the image archive: {e}")))
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<(), Error> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(SOURCE_DATE_EPOCH);
    tar.append_data(&mut header, name, bytes).map_err(|e| Error::Image(format!("writing the image archive: {e}")))
}

/// The images a docker archive holds: (tag, image id `sha256:…`), read from its `manifest.json`
/// (found by skipping over the layers, not reading them).
pub fn archived_images(path: &std::path::Path) -> Result<Vec<(String, String)>, Error> {
    let file = File::open(path).at(path)?;
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries_with_seek().at(path)? {
        let mut entry = entry.at(path)?;
        if *entry.path_bytes() != *b"manifest.json" {
            continue;
        }
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut text).at(path)?;
        let manifest: Vec<serde_json::Value> = serde_json::from_slice(&text)
            .map_err(|e| Error::Image(format!("{}: manifest.json: {e}", path.display())))?;
        return Ok(manifest
            .iter()
            .flat_map(|image| {
                let id = format!("sha256:{}", image["Config"].as_str().unwrap_or("").trim_end_matches(".json"));
                let tags = image["RepoTags"].as_array().cloned().unwrap_or_default();
                tags.into_iter().filter_map(move |t| t.as_str().map(|t| (t.to_owned(), id.clone())))
            })
            .collect());
    }
    Err(Error::Image(format!("{} has no manifest.json: not a docker archive", path.display())))
}
