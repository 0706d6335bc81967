//! The state directory: desired config, store, generations, `current`, secrets, data.
//!
//! Readers use [`State`] and never lock: every file they read is either immutable (store paths,
//! generations) or replaced atomically (`cell_config.json`, `current`). Changes go through a
//! [`Writer`], which holds the exclusive lock on `lock`, so there is one writer at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ca::CertificateAuthority;
use crate::config::services;
use crate::config::{self, ValidConfig};
use crate::credentials::Credentials;
use crate::diff::{self, Change, GenerationDiff, ServiceDiff};
use crate::error::{Error, IoContext};
use crate::fault;
use crate::fsutil::{self, TMP_PREFIX};
use crate::generation::{self, Generations, Manifest, ServiceEntry};
use crate::hashing::sha256_hex;
use crate::render::{Bundle, PublicKeys, Renderer};
use crate::secrets::Secrets;
use crate::store::Store;
use crate::templates;

/// The default state directory on the appliance.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/pic";
/// The desired config inside the state directory.
pub const DESIRED_CONFIG: &str = "cell_config.json";
const CURRENT: &str = "current";
const LOCK: &str = "lock";
/// Generations that failed their health check after a switch, with the reason.
const FAILED: &str = "failed.json";
/// The last generation that passed the health gate.
const PASSED: &str = "passed";

pub struct State {
    root: PathBuf,
    store: Store,
    generations: Generations,
    secrets: Secrets,
    /// The desired config as last read, with the file's identity then: a server answers many
    /// reads per change, and parsing and validating it again for each is most of their cost.
    desired: std::sync::Mutex<Option<(FileStamp, std::sync::Arc<ValidConfig>)>>,
}

/// Room a generation's folder and manifest take beyond its config, counted generously.
const GENERATION_OVERHEAD: u64 = 64 * 1024;
/// Room new certificates and credential files may take (a renamed cell reissues every leaf).
const SECRETS_OVERHEAD: u64 = 256 * 1024;
/// Room a file takes beyond its bytes (its inode, a partly used block).
const FILE_OVERHEAD: u64 = 4096;

/// Store paths a build added, removed again unless the build got to its end (a failed build
/// leaves no space taken).
struct Added<'s> {
    store: &'s Store,
    names: Vec<String>,
}

impl Drop for Added<'_> {
    fn drop(&mut self) {
        for name in &self.names {
            if let Err(error) = self.store.remove(name) {
                tracing::warn!(%error, name, "a store path of a failed build was not removed");
            }
        }
    }
}

/// What tells one version of a file from another: every write renames a new file into place
/// (a new inode), and an edit in place changes its size or modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
}

impl FileStamp {
    fn of(metadata: &fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.len(),
            modified_ns: i128::from(metadata.mtime()) * 1_000_000_000 + i128::from(metadata.mtime_nsec()),
        }
    }
}

/// What `build` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildOutcome {
    pub generation: u64,
    /// False when the config built into an existing generation, which is reported instead.
    pub created: bool,
    /// Services whose store path differs from the current generation's (added, changed or removed).
    pub changed_services: Vec<String>,
}

/// What `switch` or `rollback` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwitchOutcome {
    pub from: Option<u64>,
    pub to: u64,
}

/// One row of `generations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GenerationInfo {
    #[serde(flatten)]
    pub manifest: Manifest,
    /// What changed from its parent's config, in words ("added the device phone").
    pub summary: Vec<String>,
    pub current: bool,
    /// Set when the generation's services failed their health check and it was rolled back.
    pub failed: Option<Failure>,
}

/// Why a generation was rolled back by the health gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Failure {
    pub reason: String,
    /// RFC 3339 time of the rollback.
    pub time: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    pub removed_generations: Vec<u64>,
    pub removed_store_paths: Vec<String>,
    /// What the kept generations' store paths take.
    pub store_bytes: u64,
    /// A size limit was asked for and what must stay is still above it.
    pub over_limit: bool,
}

/// What `gc` keeps: the newest `keep`, and no more than `max_store_bytes` in the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcLimits {
    pub keep: Option<usize>,
    pub max_store_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub store_paths: usize,
    pub generations: usize,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The store path, generation or file at fault.
    pub what: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InitReport {
    pub root: PathBuf,
    pub created_wireguard_key: bool,
    pub created_ca: bool,
    pub wrote_config: bool,
}

impl State {
    pub fn new(root: impl Into<PathBuf>) -> State {
        let root = root.into();
        State {
            store: Store::new(root.join("store")),
            generations: Generations::new(root.join("generations")),
            secrets: Secrets::new(root.join("secrets")),
            root,
            desired: std::sync::Mutex::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// The cell's certificate authority, kept in `secrets/`.
    pub fn ca(&self) -> CertificateAuthority {
        CertificateAuthority::new(self.secrets.dir())
    }

    /// Users' password hashes and the daemon credential files, kept in `secrets/`.
    pub fn credentials(&self) -> Credentials {
        Credentials::new(self.secrets.dir().to_path_buf())
    }

    pub fn is_initialized(&self) -> bool {
        self.store.dir().is_dir() && self.generations.dir().is_dir() && self.secrets.dir().is_dir()
    }

    /// Lays out the state directory and creates the WireGuard server key; idempotent (existing
    /// keys, generations and data are kept). With a config, that config becomes the desired one.
    pub fn init(&self, config: Option<&ValidConfig>) -> Result<InitReport, Error> {
        fs::create_dir_all(&self.root).at(&self.root)?;
        let writer = self.writer_unchecked()?;
        for (dir, mode) in [
            (self.store.dir(), 0o755),
            (self.generations.dir(), 0o755),
            (self.secrets.dir(), 0o700),
            (&self.root.join("data"), 0o755),
            (&self.root.join("backups"), 0o700),
        ] {
            fsutil::ensure_dir(dir, mode)?;
        }
        let created_wireguard_key = self.secrets.ensure_wireguard_key()?;
        let created_ca = self.ca().ensure()?;
        if let Some(config) = config {
            writer.set_desired(config)?;
        }
        Ok(InitReport { root: self.root.clone(), created_wireguard_key, created_ca, wrote_config: config.is_some() })
    }

    /// Takes the writer lock (waiting for another writer to finish) and clears what an
    /// interrupted writer left behind.
    pub fn writer(&self) -> Result<Writer<'_>, Error> {
        if !self.is_initialized() {
            return Err(Error::NotInitialized(self.root.clone()));
        }
        self.writer_unchecked()
    }

    fn writer_unchecked(&self) -> Result<Writer<'_>, Error> {
        let path = self.root.join(LOCK);
        let lock = File::options().create(true).truncate(false).write(true).open(&path).at(&path)?;
        lock.lock().at(&path)?;
        for dir in [&self.root, self.store.dir(), self.generations.dir()] {
            fsutil::remove_temporaries(dir)?;
        }
        Ok(Writer { state: self, _lock: lock })
    }

    pub fn desired_config_path(&self) -> PathBuf {
        self.root.join(DESIRED_CONFIG)
    }

    /// The desired config, if there is one; read again only when the file changed.
    pub fn desired_config(&self) -> Result<Option<ValidConfig>, Error> {
        Ok(self.desired_config_shared()?.map(|config| (*config).clone()))
    }

    /// The desired config without a copy: read once per change of its file.
    pub fn desired_config_shared(&self) -> Result<Option<std::sync::Arc<ValidConfig>>, Error> {
        let path = self.desired_config_path();
        let metadata = match fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at(&path),
        };
        let stamp = FileStamp::of(&metadata);
        let mut cached = self.desired.lock().expect("desired config lock");
        if let Some((seen, config)) = cached.as_ref()
            && *seen == stamp
        {
            return Ok(Some(config.clone()));
        }
        let config = std::sync::Arc::new(config::load(&path)?);
        // What was read is only kept if the file did not change while it was read.
        if fs::metadata(&path).is_ok_and(|m| FileStamp::of(&m) == stamp) {
            *cached = Some((stamp, config.clone()));
        }
        Ok(Some(config))
    }

    /// The desired config when the one read last is still the file's (one `stat`, no read):
    /// what a request that only looks at it can use without leaving the async executor.
    pub fn desired_config_if_unchanged(&self) -> Option<std::sync::Arc<ValidConfig>> {
        let metadata = fs::metadata(self.desired_config_path()).ok()?;
        let cached = self.desired.lock().expect("desired config lock");
        let (seen, config) = cached.as_ref()?;
        (*seen == FileStamp::of(&metadata)).then(|| config.clone())
    }

    /// The current generation's number, if one has been switched to.
    pub fn current(&self) -> Result<Option<u64>, Error> {
        let link = self.root.join(CURRENT);
        let target = match fs::read_link(&link) {
            Ok(target) => target,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at(&link),
        };
        let number = target
            .strip_prefix("generations")
            .ok()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error::corrupt(link.display().to_string(), format!("points at {}", target.display())))?;
        Ok(Some(number))
    }

    pub fn manifest(&self, number: u64) -> Result<Manifest, Error> {
        self.generations.manifest(number)
    }

    /// The config a generation was built from (canonical JSON).
    pub fn generation_config(&self, number: u64) -> Result<String, Error> {
        self.generations.config_text(number)
    }

    /// A generation's config in the current format (one built by an earlier PIC migrated), so
    /// that generations of different format versions are shown and compared alike.
    pub fn generation_config_current(&self, number: u64) -> Result<String, Error> {
        config::to_current_text(&self.generation_config(number)?)
            .map_err(|e| Error::corrupt(format!("generation {number}'s config"), e))
    }

    fn generation_config_json(&self, number: u64) -> Result<serde_json::Value, Error> {
        config::to_current_json(&self.generation_config(number)?)
            .map_err(|e| Error::corrupt(format!("generation {number}'s config"), e))
    }

    /// Every generation, oldest first.
    pub fn generations(&self) -> Result<Vec<GenerationInfo>, Error> {
        let current = self.current()?;
        let mut failed = self.failures()?;
        let mut configs = BTreeMap::new();
        self.generations
            .numbers()?
            .into_iter()
            .map(|n| {
                let manifest = self.generations.manifest(n)?;
                let summary = self.summary_with(&manifest, &mut configs)?;
                Ok(GenerationInfo { manifest, summary, current: current == Some(n), failed: failed.remove(&n) })
            })
            .collect()
    }

    /// What generation `number` changed from its parent's config, in words.
    pub fn summary(&self, number: u64) -> Result<Vec<String>, Error> {
        self.summary_with(&self.generations.manifest(number)?, &mut BTreeMap::new())
    }

    fn summary_with(
        &self,
        manifest: &Manifest,
        configs: &mut BTreeMap<u64, serde_json::Value>,
    ) -> Result<Vec<String>, Error> {
        let mut config = |n: u64| -> Result<serde_json::Value, Error> {
            if let Some(value) = configs.get(&n) {
                return Ok(value.clone());
            }
            let value = self.generation_config_json(n)?;
            configs.insert(n, value.clone());
            Ok(value)
        };
        let new = config(manifest.number)?;
        let old = match manifest.parent {
            Some(parent) if self.generations.path(parent).is_dir() => Some(config(parent)?),
            Some(parent) => return Ok(vec![format!("changed the config of generation {parent}, since removed")]),
            None => None,
        };
        if let (Some(old), Some(parent)) = (&old, manifest.parent)
            && *old == new
            && self.generations.manifest(parent)?.inputs_sha256 != manifest.inputs_sha256
        {
            // The same config, other inputs: the only other input is the VPN server's key.
            return Ok(vec!["the VPN server's key changed".to_owned()]);
        }
        Ok(crate::summary::summarize(old.as_ref(), &new))
    }

    /// The last generation that passed the health gate, if one did.
    pub fn last_passed(&self) -> Result<Option<u64>, Error> {
        let path = self.root.join(PASSED);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text.trim().parse().ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at(&path),
        }
    }

    /// The generations the health gate rolled back, with why.
    pub fn failures(&self) -> Result<BTreeMap<u64, Failure>, Error> {
        fsutil::read_json_or_default(&self.root.join(FAILED))
    }

    pub fn public_keys(&self) -> Result<PublicKeys, Error> {
        Ok(PublicKeys { wireguard: self.secrets.wireguard_public_key()? })
    }

    /// Renders a config with this cell's public keys, without touching the store.
    pub fn render(&self, config: &ValidConfig) -> Result<BTreeMap<String, Bundle>, Error> {
        Renderer::new().render(config, &self.public_keys()?)
    }

    /// Reads a generation's bundle of one service from the store.
    pub fn bundle(&self, entry: &ServiceEntry) -> Result<Bundle, Error> {
        let name = entry.store_path.strip_prefix("store/").unwrap_or(&entry.store_path);
        self.store.read(name)
    }

    /// The config and per-service, per-file differences from generation `a` to `b`.
    pub fn diff(&self, a: u64, b: u64) -> Result<GenerationDiff, Error> {
        let (ma, mb) = (self.manifest(a)?, self.manifest(b)?);
        let config =
            diff::unified(&self.generation_config_current(a)?, &self.generation_config_current(b)?, "config.json");
        let names: BTreeSet<&String> = ma.services.keys().chain(mb.services.keys()).collect();
        let mut services = Vec::new();
        for name in names {
            let (ea, eb) = (ma.services.get(name), mb.services.get(name));
            if ea == eb {
                continue;
            }
            let change = match (ea, eb) {
                (None, _) => Change::Added,
                (_, None) => Change::Removed,
                _ => Change::Changed,
            };
            let ba = ea.map(|e| self.bundle(e)).transpose()?;
            let bb = eb.map(|e| self.bundle(e)).transpose()?;
            services.push(ServiceDiff {
                service: name.clone(),
                change,
                from_store_path: ea.map(|e| e.store_path.clone()),
                to_store_path: eb.map(|e| e.store_path.clone()),
                files: diff::bundles(name, ba.as_ref(), bb.as_ref()),
            });
        }
        let summary =
            crate::summary::summarize(Some(&self.generation_config_json(a)?), &self.generation_config_json(b)?);
        Ok(GenerationDiff { from: a, to: b, summary, config, services })
    }

    /// Re-hashes every store path, checks every generation's config and references, and `current`.
    pub fn verify(&self) -> Result<VerifyReport, Error> {
        let mut report = VerifyReport::default();
        let mut problem = |what: String, detail: String| report.problems.push(Problem { what, detail });
        let entries = self.store.entries()?;
        for name in &entries {
            if let Some(detail) = self.store.check(name)? {
                problem(format!("store/{name}"), detail);
            }
        }
        let numbers = self.generations.numbers()?;
        for &n in &numbers {
            let what = format!("generations/{n}");
            let manifest = match self.generations.manifest(n) {
                Ok(m) => m,
                Err(e) => {
                    problem(what, e.to_string());
                    continue;
                }
            };
            match self.generations.config_text(n) {
                Ok(text) if sha256_hex(text.as_bytes()) == manifest.config_sha256 => {}
                Ok(_) => problem(what.clone(), "config.json does not match config_sha256".into()),
                Err(e) => problem(what.clone(), e.to_string()),
            }
            for (service, entry) in &manifest.services {
                let name = entry.store_path.strip_prefix("store/").unwrap_or(&entry.store_path);
                if Store::name_of(service, &entry.sha256) != name {
                    problem(what.clone(), format!("service {service}: store path and sha256 disagree"));
                } else if !entries.iter().any(|e| e == name) {
                    problem(what.clone(), format!("service {service}: {} is missing", entry.store_path));
                }
            }
        }
        match self.current() {
            Ok(Some(n)) if !numbers.contains(&n) => {
                problem(CURRENT.into(), format!("points at generation {n}, which does not exist"))
            }
            Ok(_) => {}
            Err(e) => problem(CURRENT.into(), e.to_string()),
        }
        report.store_paths = entries.len();
        report.generations = numbers.len();
        Ok(report)
    }
}

/// Holds the state directory's writer lock; every change goes through here.
pub struct Writer<'a> {
    state: &'a State,
    _lock: File,
}

impl Writer<'_> {
    /// The state directory this writer holds the lock of.
    pub fn state(&self) -> &State {
        self.state
    }

    /// Makes `config` the desired config (canonical JSON, written atomically).
    pub fn set_desired(&self, config: &ValidConfig) -> Result<(), Error> {
        self.write_desired(&config::to_canonical_json(config))
    }

    fn write_desired(&self, text: &str) -> Result<(), Error> {
        let path = self.state.desired_config_path();
        if fs::read_to_string(&path).is_ok_and(|old| old == text) {
            return Ok(());
        }
        fsutil::write_atomic(&path, text.as_bytes(), 0o644)?;
        fault::point("desired config written");
        Ok(())
    }

    /// The desired config with `change` applied and validated; nothing is written (building the
    /// result makes it the desired config).
    pub fn desired_with(
        &self,
        change: impl FnOnce(&mut config::CellConfig) -> Result<(), Error>,
    ) -> Result<ValidConfig, Error> {
        let state = self.state;
        let desired = state.desired_config()?.ok_or_else(|| Error::NoDesiredConfig(state.root.clone()))?;
        let mut config = desired.into_inner();
        change(&mut config)?;
        Ok(config::validate(config)?)
    }

    /// Builds a generation from `config` (which then becomes the desired config) or from the
    /// desired config. An unchanged config creates nothing and reports the generation it equals.
    /// A build that fails (a disk too full for it, above all) changes nothing: the desired
    /// config is written only once its generation exists, and what it wrote is removed.
    pub fn build(&self, config: Option<&ValidConfig>, reason: &str) -> Result<BuildOutcome, Error> {
        let owned;
        let config = match config {
            Some(c) => c,
            None => {
                owned = self.state.desired_config()?.ok_or_else(|| Error::NoDesiredConfig(self.state.root.clone()))?;
                &owned
            }
        };
        let built = self.build_generation(config, reason)?;
        self.set_desired(config)?;
        Ok(built)
    }

    /// Certificates and the daemons' credential files are secrets, not part of a generation:
    /// they are kept current on every build, including one that finds nothing else to do.
    fn keep_secrets_current(&self, config: &ValidConfig) -> Result<(), Error> {
        let ca = self.state.ca();
        for site in services::tls_sites(config) {
            if site.name == services::LAN_SITE {
                // `pic serve` names the addresses; here it only has to exist for the proxy.
                ca.ensure_address_leaf(services::LAN_SITE, &[])?;
            } else {
                ca.ensure_leaf(&site.name, &site.also)?;
            }
        }
        self.state.credentials().write_daemon_files(config)
    }

    fn build_generation(&self, config: &ValidConfig, reason: &str) -> Result<BuildOutcome, Error> {
        let state = self.state;
        let config_text = config::to_canonical_json(config);
        let keys = state.public_keys()?;
        let inputs_sha256 = inputs_hash(&config_text, &keys);
        let current = state.current()?;
        let numbers = state.generations.numbers()?;
        // The current generation, then the newest one (a `build` not yet switched to).
        let candidates: Vec<u64> = current.into_iter().chain(numbers.last().copied()).collect();
        let current_manifest = current.map(|n| state.manifest(n)).transpose()?;
        for &n in &candidates {
            let existing = state.manifest(n)?;
            if existing.inputs_sha256 == inputs_sha256 {
                self.keep_secrets_current(config)?;
                let changed_services = changed(current_manifest.as_ref(), &existing);
                return Ok(BuildOutcome { generation: n, created: false, changed_services });
            }
        }

        let bundles = Renderer::new().render(config, &keys)?;
        // What the new store paths, the generation and the certificates take, checked before
        // anything is written: a build that cannot fit is refused whole, naming how much it needs.
        let mut needed: u64 = config_text.len() as u64 + GENERATION_OVERHEAD + SECRETS_OVERHEAD;
        let mut names = BTreeMap::new();
        for (service, bundle) in &bundles {
            let name = Store::name_of(service, &bundle.sha256(service));
            if !state.store.dir().join(&name).exists() {
                needed += bundle.files.values().map(|f| f.len() as u64 + FILE_OVERHEAD).sum::<u64>();
            }
            names.insert(service.clone(), name);
        }
        let free = fsutil::free_bytes(&state.root)?;
        if free < needed {
            return Err(Error::NoSpace {
                path: state.root.clone(),
                doing: "the new generation",
                needed_mb: needed.div_ceil(1 << 20),
                free_mb: free >> 20,
            });
        }
        self.keep_secrets_current(config)?;
        let mut added = Added { store: &state.store, names: Vec::new() };
        let mut services = BTreeMap::new();
        for (service, bundle) in &bundles {
            let fresh = !state.store.dir().join(&names[service]).exists();
            let name = state.store.add(service, bundle)?;
            if fresh {
                added.names.push(name.clone());
            }
            let sha256 = Store::parse_name(&name).expect("the store names what it adds").0.to_string();
            services.insert(service.clone(), ServiceEntry { store_path: format!("store/{name}"), sha256 });
        }
        let manifest = Manifest {
            number: numbers.last().map_or(1, |n| n + 1),
            parent: current,
            created: jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap_or_else(|_| jiff::Timestamp::now())
                .to_string(),
            reason: reason.to_string(),
            config_sha256: sha256_hex(config_text.as_bytes()),
            templates_sha256: templates::sha256().to_string(),
            builder_version: BUILDER_VERSION.to_string(),
            inputs_sha256,
            services,
        };
        let changed_services = changed(current_manifest.as_ref(), &manifest);

        // Other inputs can still render the same bundles (an edit that templates ignore).
        for n in candidates {
            if state.manifest(n)?.same_content(&manifest) {
                return Ok(BuildOutcome { generation: n, created: false, changed_services });
            }
        }

        let tmp = state.generations.dir().join(format!("{TMP_PREFIX}{}", manifest.number));
        let written = (|| {
            fs::create_dir(&tmp).at(&tmp)?;
            fsutil::write_new(&tmp.join(generation::CONFIG), config_text.as_bytes(), 0o444)?;
            let manifest_text = serde_json::to_string_pretty(&manifest).expect("a manifest serializes") + "\n";
            fsutil::write_new(&tmp.join(generation::MANIFEST), manifest_text.as_bytes(), 0o444)?;
            fsutil::fsync_dir(&tmp)?;
            fault::point("generation complete");
            fsutil::rename_durable(&tmp, &state.generations.path(manifest.number))
        })();
        if let Err(error) = written {
            if tmp.exists() {
                let _ = fsutil::remove_tree(&tmp);
            }
            return Err(error);
        }
        added.names.clear();
        fault::point("generation in place");
        Ok(BuildOutcome { generation: manifest.number, created: true, changed_services })
    }

    /// Builds `config` (making it the desired config) and switches to the result: what every
    /// change from the CLI or the API does.
    pub fn build_and_switch(&self, config: &ValidConfig, reason: &str) -> Result<SwitchOutcome, Error> {
        let built = self.build(Some(config), reason)?;
        self.switch(built.generation)
    }

    /// Makes generation `number` current and its config the desired config.
    pub fn switch(&self, number: u64) -> Result<SwitchOutcome, Error> {
        let state = self.state;
        state.manifest(number)?;
        let from = state.current()?;
        // The desired config first: after a crash between the two steps, the next build
        // reproduces this generation rather than undoing the switch.
        self.write_desired(&state.generation_config(number)?)?;
        let tmp = state.root.join(format!("{TMP_PREFIX}{CURRENT}"));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(Path::new("generations").join(number.to_string()), &tmp).at(&tmp)?;
        fault::point("current link made");
        fsutil::rename_durable(&tmp, &state.root.join(CURRENT))?;
        fault::point("current switched");
        Ok(SwitchOutcome { from, to: number })
    }

    /// Sets `user`'s password (hashed into `secrets/`) and rewrites every daemon's credential file;
    /// the user must be in the desired config.
    pub fn set_password(&self, user: &str, password: &str) -> Result<(), Error> {
        let state = self.state;
        let config = state.desired_config()?.ok_or_else(|| Error::NoDesiredConfig(state.root.clone()))?;
        if !config.users.iter().any(|u| u.name == user) {
            return Err(Error::NoSuchUser(user.to_owned()));
        }
        state.credentials().set_password(user, password)?;
        state.credentials().write_daemon_files(&config)
    }

    /// Records that generation `number` failed its health check (a later success clears it).
    pub fn mark_failed(&self, number: u64, reason: &str) -> Result<(), Error> {
        self.state.manifest(number)?;
        let mut failed = self.state.failures()?;
        failed.insert(number, Failure { reason: reason.to_owned(), time: jiff::Timestamp::now().to_string() });
        fsutil::write_json(&self.state.root.join(FAILED), &failed, 0o644)
    }

    /// Forgets a failure of generation `number` (it was switched to again and passed).
    pub fn clear_failed(&self, number: u64) -> Result<(), Error> {
        let mut failed = self.state.failures()?;
        if failed.remove(&number).is_some() {
            fsutil::write_json(&self.state.root.join(FAILED), &failed, 0o644)?;
        }
        Ok(())
    }

    /// Switches to the newest generation older than the current one that the health gate did not
    /// mark failed.
    pub fn rollback(&self) -> Result<SwitchOutcome, Error> {
        let current = self.state.current()?.ok_or(Error::NoCurrentGeneration)?;
        // A generation the health gate rolled back once (an app that never became healthy) is
        // not where a rollback should land.
        let failed = self.state.failures()?;
        let previous =
            self.state.generations.numbers()?.into_iter().filter(|&n| n < current && !failed.contains_key(&n)).max();
        self.switch(previous.ok_or(Error::NothingToRollBackTo(current))?)
    }

    /// Removes old generations and every store path no kept generation references. It never
    /// removes the current generation, the one before it, or the last one that passed the
    /// health gate (a rollback always has somewhere to go); beyond those, `keep` keeps the
    /// newest ones and `max_store_bytes` removes the oldest until what the kept generations
    /// reference fits (or nothing more may go: `over_limit` says so).
    pub fn gc(&self, limits: GcLimits) -> Result<GcReport, Error> {
        if limits.keep == Some(0) {
            return Err(Error::KeepZero);
        }
        let state = self.state;
        let numbers = state.generations.numbers()?;
        let mut protected: BTreeSet<u64> = BTreeSet::new();
        if let Some(current) = state.current()? {
            protected.insert(current);
            if let Some(previous) = numbers.iter().filter(|&&n| n < current).max() {
                protected.insert(*previous);
            }
        }
        protected.extend(state.last_passed()?.filter(|n| numbers.contains(n)));
        let mut kept: BTreeSet<u64> = protected.clone();
        match limits.keep {
            Some(keep) => kept.extend(numbers.iter().rev().take(keep)),
            // Only a size limit: every generation is a candidate, oldest first.
            None if limits.max_store_bytes.is_some() => kept.extend(numbers.iter()),
            None => {}
        }
        let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
        let mut paths_of = BTreeMap::new();
        for n in &numbers {
            let paths: BTreeSet<String> = state
                .manifest(*n)?
                .services
                .values()
                .map(|e| e.store_path.trim_start_matches("store/").to_string())
                .collect();
            for name in &paths {
                if !sizes.contains_key(name) {
                    sizes.insert(name.clone(), fsutil::tree_size(&state.store.dir().join(name))?);
                }
            }
            paths_of.insert(*n, paths);
        }
        let referenced_size = |kept: &BTreeSet<u64>| -> u64 {
            let names: BTreeSet<&String> = kept.iter().flat_map(|n| &paths_of[n]).collect();
            names.into_iter().map(|name| sizes[name]).sum()
        };
        let mut over_limit = false;
        if let Some(max) = limits.max_store_bytes {
            let oldest_first: Vec<u64> = kept.iter().copied().filter(|n| !protected.contains(n)).collect();
            for n in oldest_first {
                if referenced_size(&kept) <= max {
                    break;
                }
                kept.remove(&n);
            }
            over_limit = referenced_size(&kept) > max;
        }

        let mut report = GcReport::default();
        for n in numbers.into_iter().filter(|n| !kept.contains(n)) {
            // Renamed away first, so that a crash mid-removal leaves no half generation behind a number.
            let doomed = state.generations.dir().join(format!("{TMP_PREFIX}gc-{n}"));
            fsutil::rename_durable(&state.generations.path(n), &doomed)?;
            fault::point("gc: generation unlinked");
            fsutil::remove_tree(&doomed)?;
            report.removed_generations.push(n);
        }
        let referenced: BTreeSet<&String> = kept.iter().flat_map(|n| &paths_of[n]).collect();
        for name in state.store.entries()? {
            if !referenced.contains(&name) {
                state.store.remove(&name)?;
                report.removed_store_paths.push(name);
            }
        }
        report.store_bytes = referenced_size(&kept);
        report.over_limit = over_limit;
        Ok(report)
    }

    /// Records that generation `number` passed the health gate (and forgets a failure of it).
    pub fn mark_passed(&self, number: u64) -> Result<(), Error> {
        self.clear_failed(number)?;
        let path = self.state.root.join(PASSED);
        if self.state.last_passed()? != Some(number) {
            fsutil::write_atomic(&path, format!("{number}\n").as_bytes(), 0o644)?;
        }
        Ok(())
    }
}

const BUILDER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The hash of every input of rendering (see [`Manifest::inputs_sha256`]).
fn inputs_hash(config_text: &str, keys: &PublicKeys) -> String {
    let mut h = Sha256::new();
    for part in [BUILDER_VERSION, templates::sha256(), &keys.wireguard, config_text] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Services whose store path differs between two manifests.
fn changed(old: Option<&Manifest>, new: &Manifest) -> Vec<String> {
    let empty = BTreeMap::new();
    let old = old.map_or(&empty, |m| &m.services);
    let names: BTreeSet<&String> = old.keys().chain(new.services.keys()).collect();
    names.into_iter().filter(|n| old.get(*n) != new.services.get(*n)).cloned().collect()
}
