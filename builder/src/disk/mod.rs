//! The flashable disk image: a raw GPT disk for x86_64 UEFI with an EFI system partition
//! (systemd-boot), two root slots of equal size — A holding the whole appliance as read-only
//! erofs (kernel modules, systemd, Docker, WireGuard tools, `pic`, the templates, the web UI), B
//! empty for the first update — and a data partition for `/var` that holds Docker's store with
//! the service images already in it and grows to fill the disk on first boot. The same root,
//! kernel and initrd, signed, make an update bundle (`bundle`).
//!
//! Every file system is built as a plain file from a tree (no loop device, no mount) and the
//! partitions are laid out with `systemd-repart --empty=create` copying those files in. Times are
//! fixed (`SOURCE_DATE_EPOCH`) and UUIDs derived from fixed seeds, so that equal inputs give
//! images that differ as little as the tools allow.

mod companions;
mod partitions;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::command;
use crate::error::{Error, IoContext};
use crate::fsutil;
use crate::images::definition::{BASE, BaseDef};
use crate::images::lock::{self, PackageLock};
use crate::images::rootfs::{self, Bootstrap, SOURCE_DATE_EPOCH};
use crate::update::Version;
use crate::update::bundle::SigningKey;

/// `images/appliance/appliance.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplianceDef {
    pub packages: Vec<String>,
    #[serde(default)]
    pub setup: Vec<String>,
    /// The kernel command line of the boot entries, without `root=` (each entry names its slot).
    pub cmdline: String,
    /// Each root slot's size: what any later version's root must fit in.
    pub root_slot_mib: u64,
}

/// What goes into an image besides the packages.
pub struct Inputs<'a> {
    /// `images/` (the base suite and mirror, and `appliance/`).
    pub definitions: &'a Path,
    /// The `pic` binary.
    pub pic: &'a Path,
    /// The built web UI (`webui/dist`).
    pub webui: &'a Path,
    /// Docker's image store holding the service images (`image/` and `overlay2/`, prepared by
    /// the runtime from their archive): it becomes `/var/lib/docker` on the data partition, so
    /// the appliance never imports them. A bundle has no data partition, hence none.
    pub image_store: Option<&'a Path>,
    /// The templates (`templates/`), for reference on the appliance (`pic` embeds them).
    pub templates: &'a Path,
    /// The bootstrapped root file system is cached here, with the downloaded packages.
    pub cache: &'a Path,
    /// The package lock (`images/packages.lock.json`); the appliance's packages are its entry
    /// `appliance`.
    pub lock: &'a Path,
    /// Accept package versions other than the locked ones and record them.
    pub update_lock: bool,
    /// The version the image (or bundle) is, `IMAGE_VERSION` in its os-release.
    pub version: &'a Version,
    /// The key update bundles are signed with; the image trusts its public half.
    pub update_key: &'a SigningKey,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub version: Version,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    /// `<image>.zst`, the download, and its size.
    pub compressed: PathBuf,
    pub compressed_size: u64,
    /// `<image>.bmap`, for `bmaptool copy`.
    pub bmap: PathBuf,
    pub seconds: f64,
    /// Whether the bootstrapped root came from the cache.
    pub cached_rootfs: bool,
    /// Whether the lock got a new or changed entry for the appliance.
    pub lock_updated: bool,
}

/// The folder of the appliance's definition inside `images/`.
pub const APPLIANCE: &str = "appliance";

/// Builds the disk image into `output`, and beside it its sha256, a zstd-compressed copy (with
/// its sha256) and a block map.
pub fn build(inputs: &Inputs<'_>, output: &Path) -> Result<Report, Error> {
    let started = Instant::now();
    let prepared = prepare(inputs)?;
    partitions::assemble(&prepared.tree, &prepared.def, inputs.version, &prepared.work, output)?;
    rootfs::remove_tree(&prepared.work)?;

    let companions = companions::write(output)?;
    Ok(Report {
        version: inputs.version.clone(),
        path: output.to_owned(),
        size: fs::metadata(output).at(output)?.len(),
        sha256: companions.sha256,
        compressed: companions.compressed,
        compressed_size: companions.compressed_size,
        bmap: companions.bmap,
        seconds: started.elapsed().as_secs_f64(),
        cached_rootfs: prepared.cached_rootfs,
        lock_updated: prepared.lock_updated,
    })
}

/// What makes an update bundle besides the image's parts.
pub struct BundleOptions<'a> {
    /// The oldest version the bundle may update.
    pub min_from_version: &'a Version,
    /// Added to the boot entry's kernel command line.
    pub cmdline_extra: &'a str,
}

#[derive(Debug, Clone, Serialize)]
pub struct BundleReport {
    pub version: Version,
    pub path: PathBuf,
    pub size: u64,
    pub seconds: f64,
    pub manifest: crate::update::bundle::Manifest,
}

/// Builds the update bundle of `inputs.version` into `output`: the root, kernel and initrd the
/// image of that version would hold, signed with `inputs.update_key`.
pub fn bundle(inputs: &Inputs<'_>, options: &BundleOptions<'_>, output: &Path) -> Result<BundleReport, Error> {
    use crate::update::bundle;
    let started = Instant::now();
    let prepared = prepare(inputs)?;
    let (kernel, initrd) = partitions::take_boot_files(&prepared.tree, &prepared.work)?;
    fs::remove_dir_all(prepared.tree.join("var")).at(&prepared.tree)?;
    fs::create_dir(prepared.tree.join("var")).at(&prepared.tree)?;
    let root = prepared.work.join("root.erofs");
    partitions::root_image(&prepared.tree, &root)?;
    let cmdline = [prepared.def.cmdline.as_str(), options.cmdline_extra].join(" ").trim().to_owned();
    let manifest = bundle::Manifest {
        format: bundle::FORMAT,
        version: inputs.version.clone(),
        architecture: bundle::ARCHITECTURE.into(),
        min_from_version: options.min_from_version.clone(),
        cmdline,
        payloads: Vec::new(),
    };
    let parts = bundle::Parts { root: &root, kernel: &kernel, initrd: &initrd };
    let manifest = bundle::write(&parts, manifest, inputs.update_key, output)?;
    rootfs::remove_tree(&prepared.work)?;
    Ok(BundleReport {
        version: inputs.version.clone(),
        path: output.to_owned(),
        size: fs::metadata(output).at(output)?.len(),
        seconds: started.elapsed().as_secs_f64(),
        manifest,
    })
}

/// A copy of the bootstrapped root with this build's files in it, in a work folder.
struct Prepared {
    def: ApplianceDef,
    work: PathBuf,
    tree: PathBuf,
    cached_rootfs: bool,
    lock_updated: bool,
}

fn prepare(inputs: &Inputs<'_>) -> Result<Prepared, Error> {
    let dir = inputs.definitions.join(APPLIANCE);
    let def: ApplianceDef = read_toml(&dir.join("appliance.toml"))?;
    if def.cmdline.split_whitespace().any(|w| w.starts_with("root=")) {
        return Err(Error::Image(
            "appliance.toml: `cmdline` must not name the root: each boot entry names its slot".into(),
        ));
    }
    let base: BaseDef = read_toml(&inputs.definitions.join(BASE).join("image.toml"))?;
    let mut lock = PackageLock::read(inputs.lock)?;
    let locked_before = lock.clone();
    let (rootfs, cached_rootfs) = bootstrap(&dir, &def, &base, inputs, &mut lock)?;
    let lock_updated = lock != locked_before;
    if lock_updated {
        lock.write(inputs.lock)?;
    }

    // Absolute: systemd-repart reads `CopyBlocks=` paths from the root, not from here.
    let cache = inputs.cache.canonicalize().at(inputs.cache)?;
    let work = cache.join(format!("{}work", fsutil::TMP_PREFIX));
    rootfs::remove_tree(&work)?;
    fs::create_dir_all(&work).at(&work)?;
    let tree = work.join("tree");
    // A copy of the cached tree, with this build's own files added.
    command::run("cp", &["-a", "--reflink=auto", &path_str(&rootfs), &path_str(&tree)])?;
    install(inputs, &def, &tree)?;
    Ok(Prepared { def, work, tree, cached_rootfs, lock_updated })
}

/// The cached roots' names: this prefix and their definition's key.
const ROOTFS_PREFIX: &str = "rootfs-";

/// The appliance's packages bootstrapped (and its `rootfs/` copied in, its setup run), cached
/// under a key of the definition: a rebuild with the same definition and lock skips mmdebstrap.
/// The packages are the locked versions unless `update_lock`; what was installed is checked
/// against the lock, or recorded in it.
fn bootstrap(
    dir: &Path,
    def: &ApplianceDef,
    base: &BaseDef,
    inputs: &Inputs<'_>,
    lock: &mut PackageLock,
) -> Result<(PathBuf, bool), Error> {
    let key = definition_key(dir, base)?;
    let cache = inputs.cache;
    let rootfs = cache.join(format!("{ROOTFS_PREFIX}{}", &key[..16]));
    if rootfs.is_dir() {
        let installed = rootfs::installed_packages(&rootfs)?;
        if lock::allows(lock, APPLIANCE, &installed, inputs.update_lock) {
            lock::check(lock, APPLIANCE, &installed, inputs.update_lock)?;
            rootfs::remove_superseded(&rootfs, ROOTFS_PREFIX)?;
            return Ok((rootfs, true));
        }
    }
    fs::create_dir_all(cache).at(cache)?;
    let tmp = cache.join(format!("{}rootfs", fsutil::TMP_PREFIX));
    rootfs::remove_tree(&tmp)?;
    let mut packages = def.packages.clone();
    if !inputs.update_lock {
        packages.extend(lock.pins(APPLIANCE));
    }
    let overlay = dir.join("rootfs");
    let bootstrap = Bootstrap {
        suite: &base.suite,
        mirror: &base.mirror,
        packages,
        setup: &def.setup,
        overlay: overlay.is_dir().then_some(overlay.as_path()),
        apt_cache: &cache.join("apt"),
    };
    bootstrap.run(&tmp).map_err(|e| if inputs.update_lock { e } else { lock::explain_pinned_failure(e) })?;
    lock::check(lock, APPLIANCE, &rootfs::installed_packages(&tmp)?, inputs.update_lock)?;
    if rootfs.exists() {
        // Built before the lock moved; replaced only now that its successor is complete.
        rootfs::remove_tree(&rootfs)?;
    }
    fs::rename(&tmp, &rootfs).at(&rootfs)?;
    rootfs::remove_superseded(&rootfs, ROOTFS_PREFIX)?;
    Ok((rootfs, false))
}

/// Adds `pic`, the templates, the web UI, the base image's definition and Docker's image store
/// to the tree.
fn install(inputs: &Inputs<'_>, def: &ApplianceDef, tree: &Path) -> Result<(), Error> {
    let share = tree.join("usr/share/pic");
    fs::create_dir_all(&share).at(&share)?;
    // Without its debug information (most of a release build's size); symbols stay for backtraces.
    command::run("objcopy", &["--strip-debug", &path_str(inputs.pic), &path_str(&tree.join("usr/bin/pic"))])?;
    for (from, to) in [(inputs.templates, "templates"), (inputs.webui, "webui")] {
        command::run("cp", &["-a", &path_str(from), &path_str(&share.join(to))])?;
    }
    // The shared base layer's definition: apps' images are built on the device over it (the
    // layer itself is taken from Docker's store, where the service images brought it).
    fs::create_dir_all(share.join("images")).at(&share.join("images"))?;
    command::run("cp", &["-a", &path_str(&inputs.definitions.join(BASE)), &path_str(&share.join("images"))])?;
    if let Some(image_store) = inputs.image_store {
        let docker = tree.join("var/lib/docker");
        fs::create_dir_all(&docker).at(&docker)?;
        for entry in fs::read_dir(image_store).at(image_store)? {
            let from = entry.at(image_store)?.path();
            command::run("cp", &["-a", "--reflink=auto", &path_str(&from), &path_str(&docker)])?;
        }
    }
    identify(inputs, def, tree)?;
    // Every file gets the same time, so that the file systems do not record when they were built.
    command::run(
        "find",
        &[
            &path_str(tree),
            "-newermt",
            &format!("@{SOURCE_DATE_EPOCH}"),
            "-exec",
            "touch",
            "--no-dereference",
            "--date",
            &format!("@{SOURCE_DATE_EPOCH}"),
            "{}",
            "+",
        ],
    )?;
    Ok(())
}

/// What the root says about itself: its version in os-release (`IMAGE_VERSION`, what
/// systemd-sysupdate and `pic update` read), the key it trusts for updates, its slots (and the
/// definitions with which systemd-repart makes slot B on first boot), and the mount point of the
/// ESP (where boot entries are confirmed and updates written).
fn identify(inputs: &Inputs<'_>, def: &ApplianceDef, tree: &Path) -> Result<(), Error> {
    let os_release = tree.join("usr/lib/os-release");
    let mut text = fs::read_to_string(&os_release).at(&os_release)?;
    text.retain(|c| c != '\r');
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("IMAGE_ID=") && !l.starts_with("IMAGE_VERSION="))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&os_release, format!("{text}IMAGE_ID=pic\nIMAGE_VERSION={}\n", inputs.version)).at(&os_release)?;
    let lib = tree.join("usr/lib/pic");
    fs::create_dir_all(&lib).at(&lib)?;
    let key = tree.join(crate::update::slots::TRUSTED_KEY.trim_start_matches('/'));
    fs::write(&key, format!("{}\n", crate::update::bundle::public_key(inputs.update_key))).at(&key)?;
    let layout = tree.join(crate::update::slots::LAYOUT.trim_start_matches('/'));
    let text = serde_json::to_string_pretty(&partitions::layout()).expect("a layout serializes");
    fs::write(&layout, text + "\n").at(&layout)?;
    let repart = tree.join("usr/lib/repart.d");
    fs::create_dir_all(&repart).at(&repart)?;
    for (file, text) in partitions::device_slot_definitions(def.root_slot_mib) {
        fs::write(repart.join(file), text).at(&repart)?;
    }
    fs::create_dir_all(tree.join("efi")).at(tree)?;
    Ok(())
}

fn definition_key(dir: &Path, base: &BaseDef) -> Result<String, Error> {
    let mut hasher = Sha256::new();
    hasher.update(format!("{}\n{}\n", base.suite, base.mirror));
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| Error::Image(e.to_string()))?;
        if entry.file_type().is_file() {
            hasher.update(entry.path().strip_prefix(dir).expect("under dir").to_string_lossy().as_bytes());
            hasher.update(fs::read(entry.path()).at(entry.path())?);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = fs::read_to_string(path).at(path)?;
    toml::from_str(&text).map_err(|e| Error::Image(format!("{}: {e}", path.display())))
}

fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
