//! Apps from the service store, shared by the command line and the API: opening the index the
//! config names (downloading it when it is a URL), and installing, updating and removing an app.
//! A change is checked against the config's rules first ([`plan`]), then the app's image is built
//! from its manifest and loaded into Docker (minutes, without the writer lock), then the config
//! change is built and switched to ([`commit`]): `pic serve` activates the new generation behind
//! its health gate, which rolls a failing app back by switching to the generation before it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use pic_builder::apps::{self, Index, changes};
use pic_builder::config::app::{App, Manifest, SettingKind};
use pic_builder::config::{CellConfig, ValidationErrors};
use pic_builder::error::Error;
use pic_builder::images::ImageBuild;
use pic_builder::state::SwitchOutcome;
use pic_builder::{State, fsutil};

use crate::docker::{Engine, container_name};

/// Where app images are built: the image definitions (for the shared base), the package lock
/// and the build cache, as `pic images build` takes them.
#[derive(Debug, Clone)]
pub struct ImageInputs {
    pub definitions: PathBuf,
    pub lock: PathBuf,
    pub cache: PathBuf,
    /// Take the archive's current packages where the lock pins others (and record them): a
    /// device builds from Debian's archive months after its lock was written.
    pub update_lock: bool,
}

impl ImageInputs {
    fn build(&self) -> ImageBuild {
        ImageBuild {
            definitions: self.definitions.clone(),
            lock: self.lock.clone(),
            cache: self.cache.clone(),
            update_lock: self.update_lock,
        }
    }
}

/// The largest index archive the cell downloads.
const MAX_ARCHIVE: usize = 256 << 20;

/// Where an index is: on the cell, or at an HTTP(S) URL.
pub enum Source {
    Local(PathBuf),
    Web(String),
}

/// The index to open (`given`, else the config's `store.index`) and the keys the config trusts.
pub fn source(state: &State, given: Option<&str>) -> Result<(Source, Vec<apps::PublicKey>)> {
    let config = state.desired_config()?.context("no desired config yet: set up the cell first")?;
    let source = match given {
        Some(source) => source.to_owned(),
        None => config.store.index.clone().context("no index: set store.index in the cell config or pass --index")?,
    };
    let keys = apps::parse_keys(&config.store.trusted_keys).map_err(anyhow::Error::msg)?;
    let web = source.starts_with("http://") || source.starts_with("https://");
    Ok((if web { Source::Web(source) } else { Source::Local(source.into()) }, keys))
}

/// Downloads an index archive into `run/store-index.tar.zst`.
pub async fn download(state: &State, url: &str) -> Result<PathBuf> {
    let fetched = async {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
        client.get(url).send().await?.error_for_status()?.bytes().await
    };
    let bytes = fetched.await.map_err(|e| anyhow!("the index {url}: downloading it: {}", e.without_url()))?;
    if bytes.len() > MAX_ARCHIVE {
        bail!("the index {url} is {} bytes; the cell reads at most {MAX_ARCHIVE}", bytes.len());
    }
    let archive = state.root().join("run/store-index.tar.zst");
    fsutil::ensure_dir(&state.root().join("run"), 0o755)?;
    fsutil::write_atomic(&archive, &bytes, 0o644)?;
    Ok(archive)
}

/// Opens an index folder, or a `.tar.zst` (unpacked into `run/store-index/`), with `keys`.
/// Returns the index and the folder its files are in.
pub fn open_local(state: &State, path: &Path, keys: &[apps::PublicKey]) -> Result<(Index, PathBuf)> {
    let refused = || format!("the index {} is refused", path.display());
    if path.is_dir() {
        return Ok((apps::open(path, keys).with_context(refused)?, path.to_owned()));
    }
    let scratch = state.root().join("run/store-index");
    Ok((apps::open_archive(path, &scratch, keys).with_context(refused)?, scratch))
}

/// Opens the index (`given`, else the config's) from the command line.
pub fn open_index(state: &State, given: Option<&str>) -> Result<Index> {
    let (source, keys) = source(state, given)?;
    let path = match source {
        Source::Local(path) => path,
        Source::Web(url) => {
            tokio::runtime::Runtime::new().context("starting the async runtime")?.block_on(download(state, &url))?
        }
    };
    Ok(open_local(state, &path, &keys)?.0)
}

/// Settings typed as the manifest says; a secret setting's value is kept apart (it goes to
/// `secrets/`, never into the config).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub config: BTreeMap<String, serde_json::Value>,
    pub secrets: BTreeMap<String, String>,
}

impl Settings {
    /// From `name=value` pairs (`--set`), each value read as its setting's type.
    pub fn from_pairs(manifest: &Manifest, pairs: &[String]) -> Result<Settings, Error> {
        let mut values = BTreeMap::new();
        for pair in pairs {
            let Some((name, value)) = pair.split_once('=') else {
                return Err(invalid(&format!("--set {pair}"), "is not name=value", "e.g. --set title=Our wiki"));
            };
            let typed = match manifest.settings.get(name).map(|s| s.kind) {
                Some(SettingKind::Integer) => value.parse::<i64>().map(Into::into).unwrap_or_else(|_| value.into()),
                Some(SettingKind::Boolean) => value.parse::<bool>().map(Into::into).unwrap_or_else(|_| value.into()),
                _ => value.into(),
            };
            values.insert(name.to_owned(), typed);
        }
        Settings::from_json(manifest, values)
    }

    /// From JSON values (the API's); unknown names and wrong types are left to the config's
    /// rules, which name the settings the app has.
    pub fn from_json(manifest: &Manifest, values: BTreeMap<String, serde_json::Value>) -> Result<Settings, Error> {
        let mut settings = Settings::default();
        for (name, value) in values {
            if manifest.settings.get(&name).map(|s| s.kind) != Some(SettingKind::Secret) {
                settings.config.insert(name, value);
                continue;
            }
            match value.as_str() {
                Some(secret) if secret.len() >= 8 && !secret.chars().any(char::is_control) => {
                    settings.secrets.insert(name, secret.to_owned());
                }
                _ => {
                    return Err(invalid(
                        &format!("settings.{name}"),
                        "a secret must be text of at least 8 characters without control characters",
                        "or leave it out: the cell makes one",
                    ));
                }
            }
        }
        Ok(settings)
    }
}

fn invalid(path: &str, message: &str, hint: &str) -> Error {
    Error::Invalid(ValidationErrors::single(path, message, hint))
}

/// An install or update, checked against the config's rules, not yet built.
#[derive(Debug, Clone)]
pub struct Plan {
    pub update: bool,
    pub manifest: Manifest,
    pub settings: Settings,
    /// The app's entry as the change makes it.
    pub app: App,
}

impl Plan {
    fn change(&self, config: &mut CellConfig) -> Result<Vec<String>, Error> {
        let from_index = apps::App {
            entry: apps::Entry {
                name: self.manifest.name.clone(),
                version: self.manifest.version.clone(),
                manifest: String::new(),
                sha256: String::new(),
            },
            manifest: self.manifest.clone(),
        };
        match self.update {
            false => changes::install(config, &from_index, self.settings.config.clone()).map(|()| Vec::new()),
            true => changes::update(config, &from_index, self.settings.config.clone()),
        }
    }
}

/// Checks installing (`update == false`) or updating `name` from `index` with `settings` against
/// the desired config; nothing is written.
pub fn plan(state: &State, index: &Index, name: &str, settings: Settings, update: bool) -> Result<Plan, Error> {
    let from_index = index.app(name).ok_or_else(|| {
        invalid("name", &format!("the index has no app {name:?}"), "`pic store list` shows the index's apps")
    })?;
    let mut plan = Plan {
        update,
        manifest: from_index.manifest.clone(),
        settings,
        app: App {
            name: name.into(),
            version: String::new(),
            address: std::net::Ipv4Addr::UNSPECIFIED,
            settings: BTreeMap::new(),
            manifest: from_index.manifest.clone(),
        },
    };
    let config = state.writer()?.desired_with(|c| plan.change(c).map(drop))?;
    plan.app = config.apps.iter().find(|a| a.name == name).cloned().expect("the change adds the app");
    Ok(plan)
}

/// Builds the app's image (or finds it in the cache) and loads it into Docker unless it is
/// there: minutes of work the first time, off the async threads.
pub async fn provide_image(engine: &Engine, app: &App, images: &ImageInputs) -> Result<()> {
    adopt_base(engine, images).await?;
    let build = images.build();
    if !build.app_built(app)? {
        archive_reachable(&build).await?;
    }
    let planned = app.clone();
    let (build, image) = tokio::task::spawn_blocking(move || {
        let image = build.build_app(&planned).with_context(|| format!("building the image of {}", planned.name))?;
        anyhow::Ok((build, image))
    })
    .await??;
    crate::docker::load_missing(engine, &build, std::slice::from_ref(&image)).await.map(drop)
}

/// Fails at once, saying why, when the Debian archive an image is built from does not answer:
/// apt would retry for minutes before the build failed with its own words.
async fn archive_reachable(build: &ImageBuild) -> Result<()> {
    let (suite, mirror) = build.archive()?;
    if !mirror.starts_with("http://") && !mirror.starts_with("https://") {
        return Ok(());
    }
    let url = format!("{}/dists/{suite}/InRelease", mirror.trim_end_matches('/'));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let answer = client.head(&url).send().await.and_then(|r| r.error_for_status());
    answer.map(drop).map_err(|e| {
        anyhow!(
            "Debian's archive cannot be reached ({url}: {}): an app's image is built from its packages; \
             connect the cell to the internet and try again",
            e.without_url()
        )
    })
}

/// Takes the shared base layer from Docker when the build cache lacks it and a service image
/// has it (on a device, whose service images came with the disk image): the app's image then
/// shares the services' base instead of bringing a second one. Without a service image the
/// build bootstraps the base itself.
async fn adopt_base(engine: &Engine, images: &ImageInputs) -> Result<()> {
    let build = images.build();
    if tokio::task::spawn_blocking(move || build.has_base()).await?? {
        return Ok(());
    }
    // Only an image the services run under their tag: untagged ones an earlier load replaced
    // may sit on an older base.
    let service = crate::docker::images(engine).await?.into_iter().filter(|i| {
        i.pic_image.as_deref().is_some_and(|name| {
            !name.starts_with(pic_builder::config::app::SERVICE_PREFIX)
                && name != pic_builder::images::definition::BASE
                && i.tags.contains(&format!("pic/{name}:latest"))
        })
    });
    // The smallest: the export carries its own layer too.
    let Some(service) = service.min_by_key(|i| i.size) else { return Ok(()) };
    let started = std::time::Instant::now();
    std::fs::create_dir_all(&images.cache).with_context(|| format!("creating {}", images.cache.display()))?;
    let archive = images.cache.join("base-export.tar");
    let exported = engine.export_image(&service.id, &archive).await;
    let adopted = match exported {
        Ok(()) => {
            let (build, path) = (images.build(), archive.clone());
            tokio::task::spawn_blocking(move || build.adopt_base(&path)).await?.map_err(anyhow::Error::from)
        }
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&archive);
    let base = adopted.with_context(|| format!("taking the base layer from Docker's image {}", service.id))?;
    tracing::info!(
        image = service.pic_image.as_deref().unwrap_or_default(),
        layer = base.layers[0].sha256,
        seconds = started.elapsed().as_secs_f64(),
        "the base layer of app images taken from Docker"
    );
    Ok(())
}

/// What an install or update did.
pub struct Changed {
    pub switched: SwitchOutcome,
    pub app: App,
    /// Settings the new manifest no longer has (an update).
    pub dropped: Vec<String>,
}

/// Makes the planned change (checked again under the writer lock: the config may have changed
/// while the image was built), keeps its secret settings, and switches to the new generation.
pub fn commit(state: &State, plan: &Plan) -> Result<Changed, Error> {
    let writer = state.writer()?;
    let mut dropped = Vec::new();
    let config = writer.desired_with(|c| {
        dropped = plan.change(c)?;
        Ok(())
    })?;
    for (setting, value) in &plan.settings.secrets {
        let path = state.credentials().dir().join(plan.app.secret_file(setting));
        fsutil::write_atomic(&path, value.as_bytes(), 0o644)?;
    }
    let verb = if plan.update { "update" } else { "install" };
    let reason = format!("store: {verb} {} {}", plan.app.name, plan.manifest.version);
    let switched = writer.build_and_switch(&config, &reason)?;
    let app = config.apps.iter().find(|a| a.name == plan.app.name).cloned().expect("the change adds the app");
    Ok(Changed { switched, app, dropped })
}

/// Removes the app `name` from the config (a new generation); its data and secrets stay.
pub fn remove(state: &State, name: &str) -> Result<(SwitchOutcome, App), Error> {
    let writer = state.writer()?;
    let mut removed = None;
    let config = writer.desired_with(|c| {
        removed = Some(changes::remove(c, name)?);
        Ok(())
    })?;
    let switched = writer.build_and_switch(&config, &format!("store: remove {name}"))?;
    Ok((switched, removed.expect("the change removed the app")))
}

/// Stops the container of a removed app if it still runs (it writes to its data folder).
pub async fn stop_removed(engine: &Engine, app: &App) -> Result<()> {
    let name = container_name(&app.service());
    if crate::docker::container_infos(engine).await?.iter().any(|c| c.name == name) {
        engine.remove(&name).await?;
    }
    Ok(())
}

/// Deletes a removed app's data and secrets: the data folder is first moved under `backups/`
/// (returned); its container must be gone.
pub fn purge(state: &State, app: &App) -> Result<Option<PathBuf>> {
    if state.desired_config()?.is_some_and(|c| c.apps.iter().any(|a| a.name == app.name)) {
        bail!("{} is installed: remove it before purging its data", app.name);
    }
    let service = app.service();
    let data = state.root().join("data").join(&service);
    let mut saved = None;
    if data.exists() {
        let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
        let backups = state.root().join(pic_builder::backup::BACKUPS_DIR);
        fsutil::ensure_dir(&backups, 0o700)?;
        let target = backups.join(format!("{service}-purged-{stamp}"));
        fsutil::rename_durable(&data, &target)?;
        saved = Some(target);
    }
    for setting in app.manifest.settings.keys() {
        let path = state.credentials().dir().join(app.secret_file(setting));
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_http::Fake;

    /// Image inputs whose base definition points at `mirror`.
    fn inputs(dir: &Path, mirror: &str) -> ImageBuild {
        std::fs::create_dir_all(dir.join("images/base")).unwrap();
        let definition = format!("suite = \"trixie\"\nmirror = \"{mirror}\"\npackages = []\n");
        std::fs::write(dir.join("images/base/image.toml"), definition).unwrap();
        ImageBuild {
            definitions: dir.join("images"),
            lock: dir.join("lock.json"),
            cache: dir.join("cache"),
            update_lock: true,
        }
    }

    #[tokio::test]
    async fn an_archive_that_does_not_answer_is_told_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Fake::start(Box::new(|seen| match seen.path.as_str() {
            "/debian/dists/trixie/InRelease" => (200, Vec::new(), String::new()),
            _ => (404, Vec::new(), "no such file".into()),
        }))
        .await;
        let build = inputs(dir.path(), &format!("{}/debian", archive.url()));
        archive_reachable(&build).await.unwrap();
        assert_eq!(archive.take().iter().map(|s| s.method.as_str()).collect::<Vec<_>>(), ["HEAD"]);

        let build = inputs(dir.path(), &format!("{}/elsewhere", archive.url()));
        let err = archive_reachable(&build).await.unwrap_err().to_string();
        assert!(err.starts_with("Debian's archive cannot be reached"), "{err}");
        assert!(err.contains("404") && err.contains("connect the cell to the internet"), "{err}");

        // Nothing listens on port 9 of loopback (discard): refused at once.
        let build = inputs(dir.path(), "http://127.0.0.1:9/debian");
        let err = archive_reachable(&build).await.unwrap_err().to_string();
        assert!(err.contains("http://127.0.0.1:9/debian/dists/trixie/InRelease"), "{err}");
    }
}
