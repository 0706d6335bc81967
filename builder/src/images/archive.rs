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
    let manifest: Vec<serde_json::Value> = serde_json::from_slice(&read_member(path, "manifest.json")?)
        .map_err(|e| Error::Image(format!("{}: manifest.json: {e}", path.display())))?;
    Ok(manifest
        .iter()
        .flat_map(|image| {
            let id = format!("sha256:{}", image["Config"].as_str().unwrap_or("").trim_end_matches(".json"));
            let tags = image["RepoTags"].as_array().cloned().unwrap_or_default();
            tags.into_iter().filter_map(move |t| t.as_str().map(|t| (t.to_owned(), id.clone())))
        })
        .collect())
}

/// Copies the bottom layer of the first image in a docker archive (as `docker save` writes it,
/// in the classic or the OCI layout) to `out`, checked against the diff id the image's config
/// gives it.
pub fn extract_bottom_layer(path: &Path, out: &Path) -> Result<super::layer::Layer, Error> {
    let bad = |what: String| Error::Image(format!("{}: {what}", path.display()));
    let manifest: Vec<serde_json::Value> =
        serde_json::from_slice(&read_member(path, "manifest.json")?).map_err(|e| bad(format!("manifest.json: {e}")))?;
    let image = manifest.first().ok_or_else(|| bad("manifest.json lists no image".into()))?;
    let layer_path = image["Layers"][0].as_str().ok_or_else(|| bad("the image has no layer".into()))?;
    let config_path = image["Config"].as_str().ok_or_else(|| bad("the image has no config".into()))?;
    let config: serde_json::Value =
        serde_json::from_slice(&read_member(path, config_path)?).map_err(|e| bad(format!("{config_path}: {e}")))?;
    let diff_id = config["rootfs"]["diff_ids"][0].as_str().unwrap_or("").trim_start_matches("sha256:").to_owned();
    let mut archive = tar::Archive::new(File::open(path).at(path)?);
    for entry in archive.entries_with_seek().at(path)? {
        let mut entry = entry.at(path)?;
        if *entry.path_bytes() != *layer_path.as_bytes() {
            continue;
        }
        if !entry.header().entry_type().is_file() {
            return Err(bad(format!("{layer_path} is not a file")));
        }
        let file = File::create(out).at(out)?;
        let mut hashing = crate::hashing::Hashing::new(std::io::BufWriter::new(file));
        std::io::copy(&mut entry, &mut hashing).at(out)?;
        hashing.get_mut().flush().at(out)?;
        let size = hashing.byte_count();
        let sha256 = hashing.finalize_hex();
        if sha256 != diff_id {
            let _ = std::fs::remove_file(out);
            return Err(bad(format!("{layer_path} has digest {sha256}, its config says {diff_id}")));
        }
        return Ok(super::layer::Layer { sha256, size });
    }
    Err(bad(format!("{layer_path} is not in the archive")))
}

/// The bytes of the member `name` of a tar (found by skipping over the others).
fn read_member(path: &Path, name: &str) -> Result<Vec<u8>, Error> {
    let mut archive = tar::Archive::new(File::open(path).at(path)?);
    for entry in archive.entries_with_seek().at(path)? {
        let mut entry = entry.at(path)?;
        if *entry.path_bytes() == *name.as_bytes() {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).at(path)?;
            return Ok(bytes);
        }
    }
    Err(Error::Image(format!("{} has no {name}: not a docker archive", path.display())))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::images::layer::Layer;

    /// A layer file in `dir` holding `content`, as the builder stores them.
    fn layer(dir: &Path, content: &[u8]) -> Layer {
        let sha256 = sha256_hex(content);
        std::fs::write(dir.join(format!("{sha256}.tar")), content).unwrap();
        Layer { sha256, size: content.len() as u64 }
    }

    fn image(layers: Vec<Layer>) -> BuiltImage {
        BuiltImage {
            name: "ntp".into(),
            key: "k".into(),
            labels: BTreeMap::new(),
            layers,
            packages: BTreeMap::new(),
            tag: None,
            cached: false,
            seconds: 0.0,
        }
    }

    #[test]
    fn the_bottom_layer_comes_out_of_an_archive_in_the_classic_layout() {
        let dir = tempfile::tempdir().unwrap();
        let (base, own) = (layer(dir.path(), b"the base layer"), layer(dir.path(), b"the service's layer"));
        let archive = dir.path().join("archive.tar");
        write(&[image(vec![base.clone(), own])], dir.path(), File::create(&archive).unwrap()).unwrap();
        let out = dir.path().join("out.tar");
        let taken = extract_bottom_layer(&archive, &out).unwrap();
        assert_eq!((taken.sha256, taken.size), (base.sha256, base.size));
        assert_eq!(std::fs::read(&out).unwrap(), b"the base layer");
    }

    /// What Docker 25 and later write: an OCI layout whose `manifest.json` points into `blobs/`.
    fn oci_archive(path: &Path, layers: &[&[u8]], diff_ids: &[String]) {
        let mut tar = tar::Builder::new(File::create(path).unwrap());
        let mut names = Vec::new();
        for content in layers {
            let name = format!("blobs/sha256/{}", sha256_hex(content));
            append_bytes(&mut tar, &name, content).unwrap();
            names.push(name);
        }
        let config = serde_json::to_vec(&json!({"rootfs": {"type": "layers", "diff_ids": diff_ids}})).unwrap();
        let config_name = format!("blobs/sha256/{}", sha256_hex(&config));
        append_bytes(&mut tar, &config_name, &config).unwrap();
        let manifest = json!([{"Config": config_name, "RepoTags": ["pic/ntp:latest"], "Layers": names}]);
        append_bytes(&mut tar, "manifest.json", &serde_json::to_vec(&manifest).unwrap()).unwrap();
        tar.finish().unwrap();
    }

    #[test]
    fn the_bottom_layer_comes_out_of_an_archive_in_the_oci_layout_and_is_checked_against_its_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let (base, own): (&[u8], &[u8]) = (b"the base layer", b"the service's layer");
        let ids = [format!("sha256:{}", sha256_hex(base)), format!("sha256:{}", sha256_hex(own))];
        let archive = dir.path().join("oci.tar");
        oci_archive(&archive, &[base, own], &ids);
        let out = dir.path().join("out.tar");
        assert_eq!(extract_bottom_layer(&archive, &out).unwrap().sha256, sha256_hex(base));
        assert_eq!(std::fs::read(&out).unwrap(), base);

        // A config that names another digest: refused, and nothing is left behind.
        oci_archive(&archive, &[base, own], &[ids[1].clone(), ids[0].clone()]);
        let _ = std::fs::remove_file(&out);
        let err = extract_bottom_layer(&archive, &out).unwrap_err().to_string();
        assert!(err.contains("its config says"), "{err}");
        assert!(!out.exists());
    }

    #[test]
    fn a_file_that_is_not_a_docker_archive_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.tar");
        tar::Builder::new(File::create(&path).unwrap()).finish().unwrap();
        let err = extract_bottom_layer(&path, &dir.path().join("out")).unwrap_err().to_string();
        assert!(err.contains("has no manifest.json: not a docker archive"), "{err}");
    }
}
