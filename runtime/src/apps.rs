//! Apps from the service store, shared by the command line and the API: opening the index the
//! config names (downloading it when it is a URL), and installing, updating and removing an app.
//! Each change is checked against the config's rules first, then the app's image is built from
//! its manifest and loaded into Docker (minutes, without the writer lock), then the config
//! change is built and switched to: `pic serve` activates the new generation behind its health
//! gate, which rolls a failing app back by switching to the generation before it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use pic_builder::apps::{self, Index, changes};
use pic_builder::config::app::{App, Manifest, SettingKind};
use pic_builder::error::Error;
use pic_builder::images::ImageBuild;
use pic_builder::state::SwitchOutcome;
use pic_builder::{State, fsutil};

use crate::docker::{Engine, Publish, container_name};

/// Where app images are built: the image definitions (for the shared base), the package lock
/// and the build cache, as `pic images build` takes them.
#[derive(Debug, Clone)]
pub struct ImageInputs {
    pub definitions: PathBuf,
    pub lock: PathBuf,
    pub cache: PathBuf,
}

/// The largest index archive the cell downloads.
const MAX_ARCHIVE: usize = 256 << 20;

/// Opens the index `source` (or the config's `store.index`) with the keys the config trusts.
pub fn open_index(state: &State, source: Option<&str>) -> Result<Index> {
    let config = state.desired_config()?.context("no desired config yet: set up the cell first")?;
    let source = match source {
        Some(source) => source.to_owned(),
        None => config.store.index.clone().context("no index: set store.index in the cell config or pass --index")?,
    };
    let keys = apps::parse_keys(&config.store.trusted_keys).map_err(anyhow::Error::msg)?;
    open(state, &source, &keys).with_context(|| format!("the index {source} is refused"))
}

/// Opens an index from a folder, a `.tar.zst` on the cell, or the HTTP(S) URL of one (downloaded
/// into `run/`, unpacked into `run/store-index/`).
fn open(state: &State, source: &str, keys: &[apps::PublicKey]) -> Result<Index> {
    let scratch = state.root().join("run/store-index");
    if source.starts_with("http://") || source.starts_with("https://") {
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        let bytes = runtime
            .block_on(async {
                let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
                client.get(source).send().await?.error_for_status()?.bytes().await
            })
            .map_err(|e| anyhow!("downloading it: {}", e.without_url()))?;
        if bytes.len() > MAX_ARCHIVE {
            bail!("the index is {} bytes; the cell reads at most {MAX_ARCHIVE}", bytes.len());
        }
        let archive = state.root().join("run/store-index.tar.zst");
        fsutil::ensure_dir(&state.root().join("run"), 0o755)?;
        fsutil::write_atomic(&archive, &bytes, 0o644)?;
        return Ok(apps::open_archive(&archive, &scratch, keys)?);
    }
    let path = Path::new(source);
    if path.is_dir() { Ok(apps::open(path, keys)?) } else { Ok(apps::open_archive(path, &scratch, keys)?) }
}

/// `name=value` pairs typed as the manifest's settings say; a secret setting's value is kept
/// apart (it goes to `secrets/`, never into the config).
pub struct Settings {
    pub config: BTreeMap<String, serde_json::Value>,
    pub secrets: BTreeMap<String, String>,
}

pub fn parse_settings(manifest: &Manifest, pairs: &[String]) -> Result<Settings, Error> {
    let mut settings = Settings { config: BTreeMap::new(), secrets: BTreeMap::new() };
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(invalid(&format!("--set {pair}"), "is not name=value", "e.g. --set title=Our wiki"));
        };
        let typed = match manifest.settings.get(name).map(|s| s.kind) {
            Some(SettingKind::Secret) => {
                if value.len() < 8 || value.chars().any(char::is_control) {
                    return Err(invalid(
                        &format!("settings.{name}"),
                        "a secret must be at least 8 characters without control characters",
                        "or leave it out: the cell makes one",
                    ));
                }
                settings.secrets.insert(name.to_owned(), value.to_owned());
                continue;
            }
            Some(SettingKind::Integer) => value.parse::<i64>().map(Into::into).unwrap_or_else(|_| value.into()),
            Some(SettingKind::Boolean) => value.parse::<bool>().map(Into::into).unwrap_or_else(|_| value.into()),
            // Unknown names are reported by the config's rules, with the names the app has.
            Some(SettingKind::String) | None => value.into(),
        };
        settings.config.insert(name.to_owned(), typed);
    }
    Ok(settings)
}

fn invalid(path: &str, message: &str, hint: &str) -> Error {
    Error::Invalid(pic_builder::config::ValidationErrors::single(path, message, hint))
}

/// What an install or update did.
pub struct Changed {
    pub switched: SwitchOutcome,
    pub app: App,
    /// Settings the new manifest no longer has (an update).
    pub dropped: Vec<String>,
}

/// Installs (`update == false`) or updates the app `name` of `index`.
pub fn install(
    state: &State,
    index: &Index,
    name: &str,
    settings: &[String],
    update: bool,
    images: &ImageInputs,
    docker_socket: &str,
) -> Result<Changed> {
    let from_index = index.app(name).ok_or_else(|| anyhow!("the index has no app {name:?}"))?;
    let settings = parse_settings(&from_index.manifest, settings)?;
    let change = |c: &mut pic_builder::config::CellConfig| -> Result<Vec<String>, Error> {
        match update {
            false => changes::install(c, from_index, settings.config.clone()).map(|()| Vec::new()),
            true => changes::update(c, from_index, settings.config.clone()),
        }
    };
    // Checked before the image is built: a wrong setting costs nothing.
    let planned = {
        let mut dropped = Vec::new();
        let config = state.writer()?.desired_with(|c| {
            dropped = change(c)?;
            Ok(())
        })?;
        config.apps.iter().find(|a| a.name == name).cloned().expect("the change adds the app")
    };
    ensure_image(&planned, images, docker_socket)?;
    let writer = state.writer()?;
    let mut dropped = Vec::new();
    let config = writer.desired_with(|c| {
        dropped = change(c)?;
        Ok(())
    })?;
    for (setting, value) in &settings.secrets {
        let path = state.credentials().dir().join(planned.secret_file(setting));
        fsutil::write_atomic(&path, value.as_bytes(), 0o644)?;
    }
    let verb = if update { "update" } else { "install" };
    let switched = writer.build_and_switch(&config, &format!("store: {verb} {name} {}", planned.version))?;
    let app = config.apps.iter().find(|a| a.name == name).cloned().expect("the change adds the app");
    Ok(Changed { switched, app, dropped })
}

/// Builds the app's image (or finds it in the cache) and loads it into Docker unless it is there.
fn ensure_image(app: &App, images: &ImageInputs, docker_socket: &str) -> Result<()> {
    let build = ImageBuild {
        definitions: images.definitions.clone(),
        lock: images.lock.clone(),
        cache: images.cache.clone(),
        update_lock: false,
    };
    let image = build.build_app(app).with_context(|| format!("building the image of {}", app.name))?;
    tokio::runtime::Runtime::new().context("starting the async runtime")?.block_on(async {
        let engine = Engine::connect(docker_socket, Publish::None).await?;
        crate::docker::load_missing(&engine, &build, std::slice::from_ref(&image)).await
    })?;
    Ok(())
}

/// What a removal did.
pub struct Removed {
    pub switched: SwitchOutcome,
    /// Where the purged data was moved (`backups/`), when `--purge`.
    pub data_saved: Option<PathBuf>,
}

/// Removes the app `name` from the config (a new generation); its data stays unless `purge`,
/// which first stops its container, then moves its data folder under `backups/` and deletes its
/// secrets.
pub fn remove(state: &State, name: &str, purge: bool, docker_socket: &str) -> Result<Removed> {
    let writer = state.writer()?;
    let mut removed = None;
    let config = writer.desired_with(|c| {
        removed = Some(changes::remove(c, name)?);
        Ok(())
    })?;
    let app = removed.expect("the change removed the app");
    let switched = writer.build_and_switch(&config, &format!("store: remove {name}"))?;
    if !purge {
        return Ok(Removed { switched, data_saved: None });
    }
    let service = app.service();
    // The container writes to the data folder until it is gone; an engine that does not answer
    // runs no container.
    let stopped = tokio::runtime::Runtime::new().context("starting the async runtime")?.block_on(async {
        let engine = Engine::connect(docker_socket, Publish::None).await?;
        let running = crate::docker::container_infos(&engine).await?;
        if running.iter().any(|c| c.name == container_name(&service)) {
            engine.remove(&container_name(&service)).await?;
        }
        anyhow::Ok(())
    });
    if let Err(error) = stopped {
        tracing::debug!(error = %format!("{error:#}"), "no container to stop before the purge");
    }
    let data = state.root().join("data").join(&service);
    let mut data_saved = None;
    if data.exists() {
        let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
        let backups = state.root().join(pic_builder::backup::BACKUPS_DIR);
        fsutil::ensure_dir(&backups, 0o700)?;
        let saved = backups.join(format!("{service}-purged-{stamp}"));
        fsutil::rename_durable(&data, &saved)?;
        data_saved = Some(saved);
    }
    for setting in app.manifest.settings.keys() {
        let path = state.credentials().dir().join(app.secret_file(setting));
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(Removed { switched, data_saved })
}
