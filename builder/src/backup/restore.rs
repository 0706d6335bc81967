//! Restoring a backup: check the whole archive (without touching anything), plan against the
//! local history, stage everything in a temporary folder of the state directory, and only then
//! move it into place with renames. The archive's current generation becomes a new generation
//! on top of the local history, so a restore is rolled back like any other switch.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;
use serde::Serialize;

use super::format::{self, SecretsIncluded};
use super::read::{self, Contents, Staging};
use super::secrets::{self, SecretEntry};
use super::{BackupOptions, Header, Meter, Progress};
use crate::error::{Error, IoContext};
use crate::fsutil::{self, TMP_PREFIX};
use crate::generation::{self, Manifest};
use crate::render::Bundle;
use crate::state::{Failure, State};
use crate::store::Store;
use crate::{config, diff};

pub struct RestoreOptions {
    /// The passphrase the backup's secrets were encrypted with.
    pub passphrase: Option<SecretString>,
    /// Replaces the services' data with the archive's (the replaced data is set aside).
    pub include_data: bool,
    /// Checks the archive and reports what a restore would change; writes nothing.
    pub dry_run: bool,
}

/// What a restore did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    pub archive: Header,
    pub dry_run: bool,
    /// Archive generations added under their own numbers.
    pub restored_generations: Vec<u64>,
    /// Archive generations already here, byte for byte.
    pub present_generations: Vec<u64>,
    /// Numbers the local history uses for other generations: the local ones are kept.
    pub kept_local_generations: Vec<u64>,
    /// The archive's current generation, added as a new one and switched to.
    pub new_generation: Option<u64>,
    /// The generation that was current before (what a rollback goes back to).
    pub previous_generation: Option<u64>,
    /// Services whose store path differs from the previous generation's.
    pub changed_services: Vec<String>,
    /// The desired config, before → after.
    pub config_diff: String,
    pub secrets: SecretsOutcome,
    /// Services whose data is restored.
    pub data: Vec<String>,
    /// Where the data that was replaced was moved.
    pub data_set_aside: Option<PathBuf>,
    /// A backup of the cell as it was before the restore (without data).
    pub safety_backup: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretsOutcome {
    /// The archive's keys, CA and passwords replace this machine's.
    Restored,
    /// The archive has none: this machine keeps (or makes) its own.
    NotInArchive,
}

/// An archive that passed every check, decoded.
struct Checked {
    contents: Contents,
    desired: String,
    generations: BTreeMap<u64, ArchivedGeneration>,
    bundles: BTreeMap<String, Bundle>,
    failures: BTreeMap<u64, Failure>,
    secrets: Option<Vec<SecretEntry>>,
}

struct ArchivedGeneration {
    manifest: Manifest,
    manifest_text: Vec<u8>,
    config_text: Vec<u8>,
}

/// Checks the archive completely (hashes, sizes, format, config, generations, store paths, and
/// with the passphrase the secrets), then restores it; with `dry_run`, only reports what a
/// restore would do here.
pub fn restore(
    state: &State,
    archive: &Path,
    options: &RestoreOptions,
    report: &mut dyn FnMut(Progress),
) -> Result<RestoreReport, Error> {
    let checked = check(archive, options, report)?;
    if options.dry_run {
        return plan(state, &checked, options);
    }
    if !state.is_initialized() {
        state.init(None)?;
    }
    let writer = state.writer()?;
    // Planned again under the lock: another writer may have added generations meanwhile.
    let mut planned = plan(state, &checked, options)?;
    let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
    let staging = Staging(state.root().join(format!("{TMP_PREFIX}restore")));
    if staging.0.exists() {
        fsutil::remove_tree(&staging.0)?;
    }
    let no_space = |e: Error| match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => Error::NoSpace {
            path: state.root().to_owned(),
            doing: "the restore",
            needed_mb: checked.contents.total_size.div_ceil(1 << 20),
            free_mb: fsutil::free_bytes(state.root()).unwrap_or(0) >> 20,
        },
        e => e,
    };
    stage(state, archive, &checked, &planned, &staging.0, options, report).map_err(no_space)?;
    if state.desired_config()?.is_some() {
        let path = state.root().join(super::BACKUPS_DIR).join(format!(
            "pic-{}-before-restore-{stamp}{}",
            checked.contents.header.cell,
            super::EXTENSION
        ));
        let safety = BackupOptions { passphrase: options.passphrase.clone(), include_data: false, work_factor: None };
        super::create(&writer, Some(&path), &safety, &mut |_| {}).map_err(no_space)?;
        planned.safety_backup = Some(path);
    }

    // From here on only renames: a crash leaves every generation whole and `current` on one.
    let root = state.root();
    for entry in fs::read_dir(staging.0.join(format::STORE)).at(&staging.0)? {
        let name = entry.at(&staging.0)?.file_name();
        fsutil::rename_durable(&staging.0.join(format::STORE).join(&name), &root.join(format::STORE).join(&name))?;
    }
    let new: Vec<u64> = planned.restored_generations.iter().copied().chain(planned.new_generation).collect();
    for n in new {
        let staged = staging.0.join(format::GENERATIONS).join(n.to_string());
        fsutil::rename_durable(&staged, &root.join(format::GENERATIONS).join(n.to_string()))?;
    }
    let restored: BTreeSet<u64> = planned.restored_generations.iter().copied().collect();
    let archived_failures: Vec<_> = checked.failures.iter().filter(|(n, _)| restored.contains(n)).collect();
    if !archived_failures.is_empty() {
        let mut failures = state.failures()?;
        failures.extend(archived_failures.into_iter().map(|(n, f)| (*n, f.clone())));
        fsutil::write_json(&root.join(format::FAILED), &failures, 0o644)?;
    }
    if checked.secrets.is_some() {
        fsutil::exchange(&staging.0.join("secrets"), state.secrets().dir())?;
    }
    if options.include_data {
        let aside = root.join(super::BACKUPS_DIR).join(format!("data-before-restore-{stamp}"));
        for service in &planned.data {
            let target = root.join(format::DATA).join(service);
            if target.exists() {
                fsutil::ensure_dir(&aside, 0o700)?;
                fsutil::rename_durable(&target, &aside.join(service))?;
                planned.data_set_aside = Some(aside.clone());
            }
            fsutil::rename_durable(&staging.0.join(format::DATA).join(service), &target)?;
        }
    }
    match planned.new_generation {
        Some(n) => {
            writer.switch(n)?;
        }
        None => writer.set_desired(&config::parse(&checked.desired)?)?,
    }
    Ok(planned)
}

/// Reads and checks the archive, then everything inside it that must agree.
fn check(archive: &Path, options: &RestoreOptions, report: &mut dyn FnMut(Progress)) -> Result<Checked, Error> {
    let contents = {
        let mut meter = Meter::new("verify", report);
        let contents = read::read(archive, None, &mut meter)?;
        meter.finish();
        contents
    };
    let header = &contents.header;
    let files = &contents.files;
    let member = |path: &str| -> Result<&Vec<u8>, Error> {
        files.get(path).ok_or_else(|| Error::backup_refused(path, "is missing from the archive"))
    };
    let text = |path: &str| -> Result<String, Error> {
        String::from_utf8(member(path)?.clone()).map_err(|_| Error::backup_refused(path, "is not UTF-8 text"))
    };
    let desired = text(format::DESIRED_CONFIG)?;
    config::parse(&desired)
        .map_err(|e| Error::backup_refused(format::DESIRED_CONFIG, format!("is not a valid cell config: {e}")))?;

    let mut bundles: BTreeMap<String, Bundle> = BTreeMap::new();
    for (path, bytes) in files.range(format!("{}/", format::STORE)..format!("{}0", format::STORE)) {
        let mut parts = path.splitn(3, '/').skip(1);
        let (name, file) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        bundles.entry(name.to_owned()).or_default().files.insert(file.to_owned(), bytes.clone());
    }
    for (name, bundle) in &bundles {
        let (hash, service) = Store::parse_name(name).expect("classified as a store path");
        if bundle.sha256(service) != hash {
            return Err(Error::backup_refused(&format!("store/{name}"), "does not hash to its name"));
        }
    }

    let mut generations = BTreeMap::new();
    for &n in &header.generations {
        let manifest_path = format!("{}/{n}/{}", format::GENERATIONS, generation::MANIFEST);
        let config_path = format!("{}/{n}/{}", format::GENERATIONS, generation::CONFIG);
        let manifest_text = member(&manifest_path)?.clone();
        let config_text = member(&config_path)?.clone();
        let manifest: Manifest = serde_json::from_slice(&manifest_text)
            .map_err(|e| Error::backup_refused(&manifest_path, format!("is not a generation manifest: {e}")))?;
        if manifest.number != n {
            return Err(Error::backup_refused(&manifest_path, format!("is generation {}, not {n}", manifest.number)));
        }
        if crate::hashing::sha256_hex(&config_text) != manifest.config_sha256 {
            return Err(Error::backup_refused(&config_path, "does not match its generation's config_sha256"));
        }
        for (service, entry) in &manifest.services {
            let name = entry.store_path.strip_prefix("store/").unwrap_or(&entry.store_path);
            if Store::name_of(service, &entry.sha256) != name || !bundles.contains_key(name) {
                return Err(Error::backup_refused(
                    &manifest_path,
                    format!("refers to {}, which the archive does not hold", entry.store_path),
                ));
            }
        }
        generations.insert(n, ArchivedGeneration { manifest, manifest_text, config_text });
    }
    let listed = files.keys().filter_map(|p| match format::classify(p) {
        Ok(format::Area::Generation(n)) => Some(n),
        _ => None,
    });
    if let Some(extra) = listed.into_iter().find(|n| !generations.contains_key(n)) {
        return Err(Error::backup_refused(&format!("generations/{extra}"), "is not listed in the header"));
    }
    if let Some(current) = header.current_generation
        && !generations.contains_key(&current)
    {
        return Err(Error::backup_refused(
            format::HEADER,
            format!("names generation {current} current, which is not in the archive"),
        ));
    }
    let failures = match files.get(format::FAILED) {
        Some(bytes) => serde_json::from_slice(bytes)
            .map_err(|e| Error::backup_refused(format::FAILED, format!("is not a list of failures: {e}")))?,
        None => BTreeMap::new(),
    };

    let passphrase = || {
        options.passphrase.as_ref().ok_or_else(|| {
            Error::archive_refused(
                "holds encrypted secrets: give the passphrase it was made with (--passphrase-file FILE)",
            )
        })
    };
    let (sealed, key) = (files.get(format::SECRETS), files.get(format::SECRETS_KEY));
    let secrets = match (header.secrets, sealed, key) {
        (SecretsIncluded::Encrypted, Some(sealed), None) => Some(secrets::decrypt(sealed, passphrase()?)?),
        (SecretsIncluded::EncryptedToKey, Some(sealed), Some(key)) => {
            Some(secrets::decrypt_with_key(sealed, key, passphrase()?)?)
        }
        (SecretsIncluded::Omitted, None, None) => None,
        (SecretsIncluded::Encrypted | SecretsIncluded::EncryptedToKey, None, _) => {
            return Err(Error::backup_refused(format::SECRETS, "is missing from the archive"));
        }
        (SecretsIncluded::EncryptedToKey, Some(_), None) => {
            return Err(Error::backup_refused(format::SECRETS_KEY, "is missing from the archive"));
        }
        (SecretsIncluded::Omitted, Some(_), _) => {
            return Err(Error::backup_refused(format::SECRETS, "is in the archive, though the header says it is not"));
        }
        (_, _, Some(_)) => {
            return Err(Error::backup_refused(
                format::SECRETS_KEY,
                "is in the archive, though the header says it is not",
            ));
        }
    };
    if options.include_data && !header.data {
        return Err(Error::archive_refused("holds no data: it was made without --include-data"));
    }
    Ok(Checked { desired, generations, bundles, failures, secrets, contents })
}

/// What restoring `checked` here would do; reads the state directory, changes nothing.
fn plan(state: &State, checked: &Checked, options: &RestoreOptions) -> Result<RestoreReport, Error> {
    let header = &checked.contents.header;
    let initialized = state.is_initialized();
    let local: Vec<u64> =
        if initialized { state.generations()?.iter().map(|g| g.manifest.number).collect() } else { Vec::new() };
    let previous = if initialized { state.current()? } else { None };
    let (mut restored, mut present, mut kept) = (Vec::new(), Vec::new(), Vec::new());
    for (&n, archived) in &checked.generations {
        if !local.contains(&n) {
            restored.push(n);
            continue;
        }
        let dir = state.root().join(format::GENERATIONS).join(n.to_string());
        let same = fs::read(dir.join(generation::MANIFEST)).is_ok_and(|m| m == archived.manifest_text)
            && fs::read(dir.join(generation::CONFIG)).is_ok_and(|c| c == archived.config_text);
        if same { present.push(n) } else { kept.push(n) }
    }
    let newest = local.iter().chain(&restored).max().copied().unwrap_or(0);
    let new_generation = header.current_generation.map(|_| newest + 1);
    let (after_config, after_services) = match header.current_generation {
        Some(n) => {
            let g = &checked.generations[&n];
            (String::from_utf8_lossy(&g.config_text).into_owned(), g.manifest.services.clone())
        }
        None => (checked.desired.clone(), BTreeMap::new()),
    };
    let before_config =
        if initialized { fs::read_to_string(state.desired_config_path()).unwrap_or_default() } else { String::new() };
    let before_services = match previous {
        Some(n) => state.manifest(n)?.services,
        None => BTreeMap::new(),
    };
    let names: BTreeSet<&String> = before_services.keys().chain(after_services.keys()).collect();
    let changed_services =
        names.into_iter().filter(|s| before_services.get(*s) != after_services.get(*s)).cloned().collect();
    Ok(RestoreReport {
        archive: header.clone(),
        dry_run: options.dry_run,
        restored_generations: restored,
        present_generations: present,
        kept_local_generations: kept,
        new_generation,
        previous_generation: previous,
        changed_services,
        config_diff: diff::unified(&before_config, &after_config, format::DESIRED_CONFIG),
        secrets: if checked.secrets.is_some() { SecretsOutcome::Restored } else { SecretsOutcome::NotInArchive },
        data: if options.include_data { checked.contents.data.keys().cloned().collect() } else { Vec::new() },
        data_set_aside: None,
        safety_backup: None,
    })
}

/// Writes everything the restore adds under `staging` (same file system, so applying it is
/// renames): missing store paths, the generations, the secrets, and the data (read again from
/// the archive and checked again on the way).
fn stage(
    state: &State,
    archive: &Path,
    checked: &Checked,
    planned: &RestoreReport,
    staging: &Path,
    options: &RestoreOptions,
    report: &mut dyn FnMut(Progress),
) -> Result<(), Error> {
    fsutil::ensure_dir(staging, 0o700)?;
    let store = Store::new(staging.join(format::STORE));
    fsutil::ensure_dir(store.dir(), 0o755)?;
    let generations = staging.join(format::GENERATIONS);
    fsutil::ensure_dir(&generations, 0o755)?;

    let current = checked.contents.header.current_generation.map(|n| &checked.generations[&n]);
    let wanted = planned.restored_generations.iter().map(|n| &checked.generations[n]).chain(current);
    let local_store: BTreeSet<String> = state.store().entries()?.into_iter().collect();
    for archived in wanted {
        for (service, entry) in &archived.manifest.services {
            let name = entry.store_path.trim_start_matches("store/");
            if !local_store.contains(name) && !store.dir().join(name).exists() {
                store.add(service, &checked.bundles[name])?;
            }
        }
    }
    for n in &planned.restored_generations {
        let archived = &checked.generations[n];
        write_generation(&generations.join(n.to_string()), &archived.config_text, &archived.manifest_text)?;
    }
    if let (Some(number), Some(current)) = (planned.new_generation, current) {
        let header = &checked.contents.header;
        let manifest = Manifest {
            number,
            parent: planned.previous_generation,
            created: jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap_or_else(|_| jiff::Timestamp::now())
                .to_string(),
            reason: format!(
                "restore of generation {} of cell {} (backed up {})",
                current.manifest.number, header.cell, header.created
            ),
            ..current.manifest.clone()
        };
        let text = serde_json::to_string_pretty(&manifest).expect("a manifest serializes") + "\n";
        write_generation(&generations.join(number.to_string()), &current.config_text, text.as_bytes())?;
    }
    if let Some(entries) = &checked.secrets {
        secrets::write(entries, &staging.join("secrets"))?;
    }
    if options.include_data {
        let data = staging.join(format::DATA);
        fsutil::ensure_dir(&data, 0o755)?;
        let mut meter = Meter::new("restore", report);
        read::read(archive, Some(&data), &mut meter)?;
        meter.finish();
    }
    fsutil::sync_filesystem(staging)
}

fn write_generation(dir: &Path, config_text: &[u8], manifest_text: &[u8]) -> Result<(), Error> {
    fs::create_dir(dir).at(dir)?;
    fsutil::write_new(&dir.join(generation::CONFIG), config_text, 0o444)?;
    fsutil::write_new(&dir.join(generation::MANIFEST), manifest_text, 0o444)?;
    fsutil::fsync_dir(dir)
}
