//! `pic images`: build the service images from Debian packages and load them into Docker.

use std::fs::File;
use std::io::BufWriter;

use anyhow::{Context, Result};
use pic_builder::images::ImageBuild;
use serde::Serialize;

use crate::cli::{ImageCommand, ImagesCommand};
use crate::docker::{Engine, Publish};
use crate::output::Output;

#[derive(Serialize)]
struct BuiltRow {
    name: String,
    key: String,
    cached: bool,
    seconds: f64,
    /// Size of the image's own layer (the base's for the base).
    layer_bytes: u64,
    loaded: bool,
}

pub fn run(command: &ImagesCommand, out: &Output) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match command {
        ImagesCommand::Build { definitions, lock, cache, update_lock, output, no_load, docker } => {
            let build = ImageBuild {
                definitions: definitions.clone(),
                lock: lock.clone(),
                cache: cache.clone(),
                update_lock: *update_lock,
            };
            let report = build.build()?;
            if let Some(path) = output {
                let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
                build.write_archive(&report.images, BufWriter::new(file))?;
            }
            let loaded = if *no_load {
                Vec::new()
            } else {
                runtime.block_on(async {
                    let engine = Engine::connect(&docker.docker_socket, Publish::None).await?;
                    crate::docker::load_missing(&engine, &build, &report.images).await
                })?
            };
            let rows: Vec<BuiltRow> = std::iter::once(&report.base)
                .chain(&report.images)
                .map(|i| BuiltRow {
                    name: i.name.clone(),
                    key: i.key.clone(),
                    cached: i.cached,
                    seconds: i.seconds,
                    layer_bytes: i.layers.last().map(|l| l.size).unwrap_or_default(),
                    loaded: loaded.contains(&i.name),
                })
                .collect();
            out.emit(&rows, |rows| {
                let mut s = String::from("IMAGE      KEY               BUILT       LAYER");
                for r in rows {
                    let built = if r.cached { "cached".to_owned() } else { format!("{:.1} s", r.seconds) };
                    s.push_str(&format!(
                        "\n{:<10} {:<17} {:<11} {:.1} MB",
                        r.name,
                        r.key,
                        built,
                        r.layer_bytes as f64 / 1e6
                    ));
                }
                if report.lock_updated {
                    s.push_str(&format!("\nrecorded the package versions in {}", lock.display()));
                }
                s
            });
        }
        ImagesCommand::Load { archive, docker } => {
            let loaded = runtime.block_on(load_archive(archive, &docker.docker_socket))?;
            out.emit(&loaded, |loaded| {
                if loaded.is_empty() {
                    "Docker has every image of the archive already".to_owned()
                } else {
                    format!("loaded {}", loaded.join(", "))
                }
            });
        }
        ImagesCommand::List { docker } => {
            let images = runtime.block_on(async {
                let engine = Engine::connect(&docker.docker_socket, docker.publish).await?;
                crate::docker::images(&engine).await
            })?;
            out.emit(&images, |images| {
                let mut s = String::from("IMAGE                    ID            SIZE");
                for i in images {
                    s.push_str(&format!(
                        "\n{:<24} {:<13} {:.1} MB",
                        i.tags.join(","),
                        &i.id[..i.id.len().min(19)].trim_start_matches("sha256:"),
                        i.size as f64 / 1e6
                    ));
                }
                s
            });
        }
    }
    Ok(())
}

/// Loads `archive` unless Docker has each of its images (same tag, same id); returns the tags
/// that were missing.
async fn load_archive(archive: &std::path::Path, socket: &str) -> Result<Vec<String>> {
    let engine = Engine::connect(socket, Publish::None).await?;
    let mut missing = Vec::new();
    for (tag, id) in pic_builder::images::archive::archived_images(archive)? {
        if engine.image_labels(&tag).await?.is_none_or(|(have, _)| have != id) {
            missing.push(tag);
        }
    }
    if !missing.is_empty() {
        engine.load_archive(archive).await?;
    }
    Ok(missing)
}

/// `pic image build`: the flashable disk image.
pub fn image(command: &ImageCommand, out: &Output) -> Result<()> {
    let ImageCommand::Build { output, service_images, appliance } = command;
    let pic = std::env::current_exe().context("finding the pic binary")?;
    let (version, key) = super::update::version_and_key(appliance)?;
    let image_store = tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(crate::docker::image_store::prepare(service_images, &appliance.cache))
        .context("preparing Docker's image store for the disk image")?;
    let inputs = super::update::appliance_inputs(appliance, &pic, Some(&image_store), &version, &key);
    let report = pic_builder::disk::build(&inputs, output)?;
    out.emit(&report, |r| {
        format!(
            "wrote {} (version {}, {:.1} MB) in {:.1} s{}{}\nsha256 {}\ncompressed: {} ({:.1} MB); block map: {}",
            r.path.display(),
            r.version,
            r.size as f64 / 1e6,
            r.seconds,
            if r.cached_rootfs { " (root file system from the cache)" } else { "" },
            if r.lock_updated { "; the appliance's packages recorded in the lock" } else { "" },
            r.sha256,
            r.compressed.display(),
            r.compressed_size as f64 / 1e6,
            r.bmap.display()
        )
    });
    Ok(())
}
