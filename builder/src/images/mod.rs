//! Service images from Debian packages, without a registry: one shared base layer (mmdebstrap
//! minbase) and one layer per image with what its packages add. Layers are content-addressed and
//! cached under a key of their definition (and the layer below), so an unchanged definition is not
//! rebuilt; the result is a docker archive that `docker load` (or the runtime, through the Docker
//! API) takes. This module knows nothing of Docker's API: it only writes files.

pub mod archive;
pub mod definition;
pub mod layer;
pub mod lock;
pub mod rootfs;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::app::App;
use crate::error::{Error, IoContext};
use crate::fsutil;
use definition::{BASE, Definitions};
use layer::Layer;
use lock::{PackageLock, Packages};
use rootfs::Bootstrap;

/// Bumped when the way images are assembled changes, so every cached layer is rebuilt.
const FORMAT: &str = "pic-images-1";

/// How many images are bootstrapped at once.
const PARALLEL_BUILDS: usize = 2;

/// Label names every image carries.
pub const LABEL_IMAGE: &str = "pic.image";
pub const LABEL_KEY: &str = "pic.image.key";
/// `uid:gid` that must own the service's data directory.
pub const LABEL_DATA_OWNER: &str = "pic.data-owner";
/// The gid that may read the secrets mounted into the container.
pub const LABEL_SECRETS_GROUP: &str = "pic.secrets-group";

/// One image, built or found in the cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuiltImage {
    pub name: String,
    /// Hash of what the image is made from: its definition and the base layer under it.
    pub key: String,
    pub labels: BTreeMap<String, String>,
    /// Bottom first: the base layer, then the image's own.
    pub layers: Vec<Layer>,
    /// Every package installed in the layer (for the base) or added by it.
    pub packages: Packages,
    /// Its Docker tag when it is not `pic/<name>:latest` (an app's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// True when nothing was built this time.
    #[serde(skip)]
    pub cached: bool,
    /// Seconds the build took (0 when cached).
    #[serde(skip)]
    pub seconds: f64,
}

impl BuiltImage {
    /// Its Docker name: `pic/<name>:latest`, or an app's tag.
    pub fn tag(&self) -> String {
        self.tag.clone().unwrap_or_else(|| format!("pic/{}:latest", self.name))
    }
}

/// Where definitions, the lock and the cache are.
pub struct ImageBuild {
    pub definitions: PathBuf,
    pub lock: PathBuf,
    pub cache: PathBuf,
    /// Accept package versions that differ from the lock (and record them).
    pub update_lock: bool,
}

/// What `build` made.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub base: BuiltImage,
    pub images: Vec<BuiltImage>,
    pub lock_updated: bool,
}

impl ImageBuild {
    fn layers(&self) -> PathBuf {
        self.cache.join("layers")
    }

    fn record(&self, name: &str, key: &str) -> PathBuf {
        self.cache.join("built").join(format!("{name}-{key}.json"))
    }

    fn base_tree(&self, key: &str) -> PathBuf {
        self.cache.join("rootfs").join(format!("base-{key}"))
    }

    /// Builds the base and every image whose inputs changed; the others come from the cache.
    pub fn build(&self) -> Result<BuildReport, Error> {
        let definitions = Definitions::load(&self.definitions)?;
        let mut lock = PackageLock::read(&self.lock)?;
        let locked_before = lock.clone();
        for dir in ["layers", "built", "rootfs", "apt"] {
            fs::create_dir_all(self.cache.join(dir)).at(&self.cache.join(dir))?;
        }
        let base_def = &definitions.base;
        let base = self.base(base_def, &mut lock)?;
        let mut images = Vec::new();
        let mut todo = Vec::new();
        for (name, definition) in &definitions.images {
            let image_key = key(&[FORMAT, &base.layers[0].sha256, &definition.sha256]);
            match self.cached(name, &image_key, &lock)? {
                Some(image) => images.push(image),
                None => {
                    let mut packages = base_def.def.packages.clone();
                    packages.extend(definition.def.packages.iter().cloned());
                    packages.extend(self.pins(&lock, BASE));
                    packages.extend(self.pins(&lock, name));
                    todo.push((definition, image_key, packages));
                }
            }
        }
        if !todo.is_empty() {
            let base_tree = self.ensure_base_tree(&base)?;
            // Bootstrapping waits on downloads and dpkg as much as on the CPU: two at a time.
            let queue = std::sync::Mutex::new(todo);
            let built = std::sync::Mutex::new(Vec::new());
            std::thread::scope(|scope| {
                for _ in 0..PARALLEL_BUILDS {
                    scope.spawn(|| {
                        while let Some((definition, key, packages)) = queue.lock().expect("queue").pop() {
                            let result = self.build_image(&base, &base_tree, &base_def.def, definition, &key, packages);
                            built.lock().expect("results").push(result);
                        }
                    });
                }
            });
            for result in built.into_inner().expect("results") {
                let image = result?;
                lock::check(&mut lock, &image.name, &image.packages, self.update_lock)?;
                self.save(&image)?;
                images.push(image);
            }
            images.sort_by(|a, b| a.name.cmp(&b.name));
        }
        let lock_updated = lock != locked_before;
        if lock_updated {
            lock.write(&self.lock)?;
        }
        Ok(BuildReport { base, images, lock_updated })
    }

    /// The pins of `image`'s lock entry; none with `update_lock` (the newest packages are taken:
    /// the pins are what is being replaced).
    fn pins(&self, lock: &PackageLock, image: &str) -> Vec<String> {
        if self.update_lock { Vec::new() } else { lock.pins(image) }
    }

    /// The base layer, built or from the cache.
    fn base(
        &self,
        base_def: &definition::Definition<definition::BaseDef>,
        lock: &mut PackageLock,
    ) -> Result<BuiltImage, Error> {
        let base_key = key(&[FORMAT, &base_def.sha256]);
        let base = match self.cached(BASE, &base_key, lock)? {
            Some(base) => base,
            None => {
                let started = Instant::now();
                let tree = self.base_tree(&base_key);
                let tmp = self.cache.join("rootfs").join(format!("{}base", fsutil::TMP_PREFIX));
                rootfs::remove_tree(&tmp)?;
                let mut packages = base_def.def.packages.clone();
                packages.extend(self.pins(lock, BASE));
                self.bootstrap(&base_def.def, packages, &[], None, &tmp)?;
                rootfs::remove_tree(&tree)?;
                fs::rename(&tmp, &tree).at(&tree)?;
                let installed = rootfs::installed_packages(&tree)?;
                lock::check(lock, BASE, &installed, self.update_lock)?;
                let layer = self.write_layer(&tree, None, BASE)?;
                let labels = BTreeMap::from([(LABEL_IMAGE.into(), BASE.into()), (LABEL_KEY.into(), base_key.clone())]);
                let base = BuiltImage {
                    name: BASE.into(),
                    key: base_key.clone(),
                    labels,
                    layers: vec![layer],
                    packages: installed,
                    tag: None,
                    cached: false,
                    seconds: started.elapsed().as_secs_f64(),
                };
                self.save(&base)?;
                base
            }
        };
        Ok(base)
    }

    /// Whether the shared base layer of the definitions is in the cache.
    pub fn has_base(&self) -> Result<bool, Error> {
        let definitions = Definitions::load(&self.definitions)?;
        let lock = PackageLock::read(&self.lock)?;
        Ok(self.cached(BASE, &key(&[FORMAT, &definitions.base.sha256]), &lock)?.is_some())
    }

    /// Whether the app's image is in the cache over the cached base: building it downloads nothing.
    pub fn app_built(&self, app: &App) -> Result<bool, Error> {
        let definitions = Definitions::load(&self.definitions)?;
        let lock = PackageLock::read(&self.lock)?;
        let Some(base) = self.cached(BASE, &key(&[FORMAT, &definitions.base.sha256]), &lock)? else {
            return Ok(false);
        };
        let image_key = key(&[FORMAT, &base.layers[0].sha256, &app_definition_hash(app)]);
        let image = self.cached(&app.service(), &image_key, &lock)?;
        Ok(image.is_some_and(|image| image.tag == Some(app.image_tag())))
    }

    /// The Debian archive the images are built from: its suite and mirror.
    pub fn archive(&self) -> Result<(String, String), Error> {
        let base = Definitions::load(&self.definitions)?.base.def;
        Ok((base.suite, base.mirror))
    }

    /// Takes the shared base layer from a docker archive of a service image (its bottom layer)
    /// instead of bootstrapping it. A device gets its service images in Docker's store with the
    /// disk image and builds only apps' images: built over the very layer the services share,
    /// an app's image adds only its own layer to the store.
    pub fn adopt_base(&self, archive: &Path) -> Result<BuiltImage, Error> {
        let definitions = Definitions::load(&self.definitions)?;
        let base_key = key(&[FORMAT, &definitions.base.sha256]);
        let mut lock = PackageLock::read(&self.lock)?;
        if let Some(base) = self.cached(BASE, &base_key, &lock)? {
            return Ok(base);
        }
        for dir in ["layers", "built", "rootfs"] {
            fs::create_dir_all(self.cache.join(dir)).at(&self.cache.join(dir))?;
        }
        let started = Instant::now();
        let tmp = self.layers().join(format!("{}{BASE}-{}", fsutil::TMP_PREFIX, std::process::id()));
        let layer = archive::extract_bottom_layer(archive, &tmp)?;
        let path = self.layers().join(format!("{}.tar", layer.sha256));
        fs::rename(&tmp, &path).at(&path)?;
        let labels = BTreeMap::from([(LABEL_IMAGE.into(), BASE.into()), (LABEL_KEY.into(), base_key.clone())]);
        let mut base = BuiltImage {
            name: BASE.into(),
            key: base_key,
            labels,
            layers: vec![layer],
            packages: Packages::new(),
            tag: None,
            cached: false,
            seconds: 0.0,
        };
        let tree = self.ensure_base_tree(&base)?;
        base.packages = rootfs::installed_packages(&tree)?;
        let locked_before = lock.clone();
        lock::check(&mut lock, BASE, &base.packages, self.update_lock)?;
        base.seconds = started.elapsed().as_secs_f64();
        self.save(&base)?;
        if lock != locked_before {
            lock.write(&self.lock)?;
        }
        Ok(base)
    }

    /// Builds (or finds in the cache) the image of an app from the service store: its manifest's
    /// packages over the shared base layer and its files over them, tagged with
    /// [`App::image_tag`]. Its packages are recorded in the lock under the tag, so that
    /// a rebuild of the same version gets the same packages.
    pub fn build_app(&self, app: &App) -> Result<BuiltImage, Error> {
        let definitions = Definitions::load(&self.definitions)?;
        let mut lock = PackageLock::read(&self.lock)?;
        let locked_before = lock.clone();
        for dir in ["layers", "built", "rootfs", "apt", "app-files"] {
            fs::create_dir_all(self.cache.join(dir)).at(&self.cache.join(dir))?;
        }
        let base = self.base(&definitions.base, &mut lock)?;
        let tag = app.image_tag();
        let lock_name = tag.trim_start_matches("pic/").replace(':', "@");
        let m = &app.manifest;
        let definition = definition::Definition {
            name: app.service(),
            def: definition::ImageDef {
                packages: m.image.packages.clone(),
                setup: Vec::new(),
                data_user: Some(m.container.user.clone()),
                secrets_group: None,
            },
            rootfs: Some(self.app_files(app)?),
            sha256: app_definition_hash(app),
        };
        let image_key = key(&[FORMAT, &base.layers[0].sha256, &definition.sha256]);
        let mut image = match self.cached(&definition.name, &image_key, &lock)? {
            Some(image) if image.tag.as_deref() == Some(tag.as_str()) => image,
            _ => {
                let base_tree = self.ensure_base_tree(&base)?;
                let mut packages = definitions.base.def.packages.clone();
                packages.extend(definition.def.packages.iter().cloned());
                packages.extend(self.pins(&lock, BASE));
                packages.extend(self.pins(&lock, &lock_name));
                let mut image =
                    self.build_image(&base, &base_tree, &definitions.base.def, &definition, &image_key, packages)?;
                lock::check(&mut lock, &lock_name, &image.packages, self.update_lock)?;
                image.tag = Some(tag);
                self.save(&image)?;
                image
            }
        };
        image.name = definition.name;
        if lock != locked_before {
            lock.write(&self.lock)?;
        }
        Ok(image)
    }

    /// The manifest's image files as a tree under the cache (made afresh), to be copied over
    /// the app's packages.
    fn app_files(&self, app: &App) -> Result<PathBuf, Error> {
        let root = self.cache.join("app-files").join(app.service());
        rootfs::remove_tree(&root)?;
        fs::create_dir_all(&root).at(&root)?;
        for file in &app.manifest.image.files {
            let path = root.join(file.path.trim_start_matches('/'));
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).at(parent)?;
            }
            fs::write(&path, &file.content).at(&path)?;
            fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(file.mode)).at(&path)?;
        }
        Ok(root)
    }

    /// Bootstraps one image and writes its layer over the base.
    fn build_image(
        &self,
        base: &BuiltImage,
        base_tree: &Path,
        base_def: &definition::BaseDef,
        definition: &definition::Definition<definition::ImageDef>,
        image_key: &str,
        packages: Vec<String>,
    ) -> Result<BuiltImage, Error> {
        let started = Instant::now();
        let name = &definition.name;
        let tree = self.cache.join("rootfs").join(format!("{}{name}", fsutil::TMP_PREFIX));
        rootfs::remove_tree(&tree)?;
        let result = (|| {
            self.bootstrap(base_def, packages, &definition.def.setup, definition.rootfs.as_deref(), &tree)?;
            let added = lock::added(&rootfs::installed_packages(&tree)?, &base.packages);
            let mut labels =
                BTreeMap::from([(LABEL_IMAGE.into(), name.clone()), (LABEL_KEY.into(), image_key.to_owned())]);
            let mut secrets_gid = 0;
            if let Some(user) = &definition.def.data_user {
                let (uid, gid) = rootfs::user_ids(&tree, user)?;
                labels.insert(LABEL_DATA_OWNER.into(), format!("{uid}:{gid}"));
                secrets_gid = gid;
            }
            if let Some(group) = &definition.def.secrets_group {
                secrets_gid = rootfs::group_id(&tree, group)?;
            }
            labels.insert(LABEL_SECRETS_GROUP.into(), secrets_gid.to_string());
            let layer = self.write_layer(&tree, Some(base_tree), name)?;
            Ok(BuiltImage {
                name: name.clone(),
                key: image_key.to_owned(),
                labels,
                layers: vec![base.layers[0].clone(), layer],
                packages: added,
                tag: None,
                cached: false,
                seconds: started.elapsed().as_secs_f64(),
            })
        })();
        rootfs::remove_tree(&tree)?;
        result
    }

    fn bootstrap(
        &self,
        base: &definition::BaseDef,
        packages: Vec<String>,
        setup: &[String],
        overlay: Option<&Path>,
        target: &Path,
    ) -> Result<(), Error> {
        let apt_cache = self.cache.join("apt");
        let run =
            Bootstrap { suite: &base.suite, mirror: &base.mirror, packages, setup, overlay, apt_cache: &apt_cache };
        run.run(target).map_err(|e| if self.update_lock { e } else { lock::explain_pinned_failure(e) })
    }

    fn write_layer(&self, tree: &Path, lower: Option<&Path>, name: &str) -> Result<Layer, Error> {
        let tmp = self.layers().join(format!("{}{name}-{}", fsutil::TMP_PREFIX, std::process::id()));
        let layer = layer::write(tree, lower, &tmp)?;
        let path = self.layers().join(format!("{}.tar", layer.sha256));
        fs::rename(&tmp, &path).at(&path)?;
        Ok(layer)
    }

    /// The cached build of `name` at `key`, unless a layer is missing or its packages are not
    /// the locked ones.
    fn cached(&self, name: &str, key: &str, lock: &PackageLock) -> Result<Option<BuiltImage>, Error> {
        let path = self.record(name, key);
        if !path.exists() {
            return Ok(None);
        }
        let mut image: BuiltImage = fsutil::read_json_or_default::<Option<BuiltImage>>(&path)?
            .ok_or_else(|| Error::corrupt(path.display().to_string(), "empty record"))?;
        let complete = image.layers.iter().all(|l| self.layers().join(format!("{}.tar", l.sha256)).exists());
        let locked = lock::allows(lock, name, &image.packages, self.update_lock);
        image.cached = true;
        Ok((complete && locked).then_some(image))
    }

    fn save(&self, image: &BuiltImage) -> Result<(), Error> {
        fsutil::write_json(&self.record(&image.name, &image.key), image, 0o644)
    }

    /// The base tree service layers are compared against, unpacked from its layer if it is gone.
    fn ensure_base_tree(&self, base: &BuiltImage) -> Result<PathBuf, Error> {
        let tree = self.base_tree(&base.key);
        if !tree.exists() {
            let tar_path = self.layers().join(format!("{}.tar", base.layers[0].sha256));
            let tmp = self.cache.join("rootfs").join(format!("{}unpack", fsutil::TMP_PREFIX));
            rootfs::remove_tree(&tmp)?;
            let mut archive = tar::Archive::new(fs::File::open(&tar_path).at(&tar_path)?);
            archive.set_preserve_permissions(true);
            archive.set_preserve_ownerships(true);
            archive.set_unpack_xattrs(false);
            archive.unpack(&tmp).at(&tmp)?;
            fs::rename(&tmp, &tree).at(&tree)?;
        }
        Ok(tree)
    }

    /// Writes the docker archive of `images` (with the layers they share stored once) to `out`.
    pub fn write_archive(&self, images: &[BuiltImage], out: impl std::io::Write) -> Result<(), Error> {
        archive::write(images, &self.layers(), out)
    }
}

/// What an app's image is made from besides the base: its tag, itself a hash of the manifest.
fn app_definition_hash(app: &App) -> String {
    hex::encode(Sha256::digest(app.image_tag().as_bytes()))
}

fn key(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())[..16].to_owned()
}
