//! Container activation: brings the running containers in line with the current generation and
//! touches only what changed. A service whose container was made from the same spec, image and
//! mounts keeps its container (and its process); new config files are copied in and the daemon
//! reloads when it can; anything else gets a new container; services no longer in the
//! generation are stopped and removed. Comparing with what runs (not with the previous
//! generation) makes a second activation a no-op and repairs containers changed from outside —
//! except a service an admin stopped, which stays as it is until started again (`stopped`).

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result, anyhow};
use pic_builder::State;
use pic_builder::images::{LABEL_DATA_OWNER, LABEL_SECRETS_GROUP};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::spec::{ContainerSpec, Reload};
use super::{Engine, LABEL_SERVICE, LABEL_SPEC, Publish, container_name, health, mounts, setup_proxy, stopped};

/// What activation did to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Unchanged,
    /// An admin stopped the service: its container is left as it is until it is started again.
    KeptStopped,
    /// The stopped container was started again.
    Started,
    Created,
    Recreated,
    Reloaded,
    /// Restarted for new certificates (see `ContainerSpec::restart_for_certificates`).
    Restarted,
    Removed,
}

impl Action {
    /// Whether the service must pass its health check afterwards.
    pub fn needs_check(self) -> bool {
        !matches!(self, Action::Unchanged | Action::KeptStopped | Action::Removed)
    }
}

/// One service's outcome.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ServiceActivation {
    pub service: String,
    pub action: Action,
}

/// The outcome of one activation.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub generation: Option<u64>,
    pub services: Vec<ServiceActivation>,
    /// Services that could not be activated, with why.
    pub errors: BTreeMap<String, String>,
}

impl Report {
    pub fn changed(&self) -> impl Iterator<Item = &ServiceActivation> {
        self.services.iter().filter(|s| s.action.needs_check())
    }
}

/// Each containerized service of a generation: its spec and its bundle.
pub type Desired = BTreeMap<String, (ContainerSpec, pic_builder::render::Bundle)>;

/// The current generation and its containerized services.
pub fn desired(state: &State) -> Result<(Option<u64>, Desired)> {
    let Some(current) = state.current()? else { return Ok((None, BTreeMap::new())) };
    let manifest = state.manifest(current)?;
    let mut specs = BTreeMap::new();
    for (service, entry) in &manifest.services {
        let bundle = state.bundle(entry)?;
        if let Some(text) = bundle.files.get("container.json") {
            let spec = ContainerSpec::parse(text).with_context(|| format!("{}/container.json", entry.store_path))?;
            specs.insert(service.clone(), (spec, bundle));
        }
    }
    Ok((Some(current), specs))
}

/// The service whose container is made or started before the others': the proxy, through which
/// the web UI is reached.
pub const FIRST: &str = "proxy";

/// The health gate an activation runs as it goes: each changed service is probed from the moment
/// its container is made (not once the slowest is), for at most `limit`; `on_healthy` hears of
/// each that answers (`pic serve` publishes the ports once the proxy does).
pub struct Gate<'a> {
    pub limit: std::time::Duration,
    pub on_healthy: &'a (dyn Fn(&ContainerSpec) + Sync),
}

/// The services of an activation that did not pass the health gate, with why.
pub type Failures = BTreeMap<String, String>;

/// Activates the current generation's containers and waits for every changed service to pass its
/// health check: the report, and the services that failed either (`report.errors` among them).
pub async fn activate(engine: &Engine, state: &State, gate: &Gate<'_>) -> Result<(Report, Failures)> {
    let (generation, desired) = desired(state)?;
    let mut report = Report { generation, ..Report::default() };
    let Some(generation) = generation else {
        if engine.publish != Publish::None {
            setup_proxy::ensure(engine, state).await?;
        }
        return Ok((report, Failures::new()));
    };
    let config = pic_builder::config::parse(&state.generation_config(generation)?)
        .map_err(|e| anyhow!("generation {generation}'s config: {e}"))?;
    // The proxy is handed the certificate for the addresses the device has now.
    crate::device::network::ensure_lan_certificate(state).context("the web UI's certificate for the LAN addresses")?;
    if !desired.is_empty() {
        let network = desired.values().next().map(|(s, _)| s.network.name.clone()).unwrap_or_default();
        engine.ensure_network(&network, &config.network.subnet.to_string(), &config.gateway().to_string()).await?;
    }
    let mut running: HashMap<String, bollard::models::ContainerSummary> = engine
        .containers()
        .await?
        .into_iter()
        .filter_map(|c| Some((c.labels.as_ref()?.get(LABEL_SERVICE)?.clone(), c)))
        .collect();
    // The cell's own proxy takes ports 80 and 443 from the setup proxy.
    if running.remove(setup_proxy::SERVICE).is_some() {
        engine.remove(&container_name(setup_proxy::SERVICE)).await?;
    }
    let services: Vec<&str> = desired.keys().map(String::as_str).collect();
    stopped::retain(state, &services)?;
    let stopped = stopped::load(state)?;
    // The proxy first, on its own: the web UI is reached through it, so after a boot or setup
    // the admin's page answers as soon as its container runs. Then every other service at once:
    // under a slow CPU a container start is seconds of Docker's and runc's work, and one service
    // does not wait for another.
    // The proxy's health check runs while the others start.
    let (first, rest): (Vec<_>, Vec<_>) = desired.iter().partition(|(service, _)| *service == FIRST);
    let made_first = activate_all(engine, state, &first, &stopped, &running).await;
    let check_first = futures_util::future::join_all(
        made_first
            .iter()
            .map(|(service, spec, result)| async move { (service.clone(), check(engine, spec, result, gate).await) }),
    );
    let (checked_first, made_rest) =
        tokio::join!(check_first, activate_and_check_all(engine, state, &rest, &stopped, &running, gate));
    let mut failures: Failures = checked_first.into_iter().filter_map(|(s, e)| Some((s, e?))).collect();
    let mut results = made_first;
    for (made, failure) in made_rest {
        failures.extend(failure.map(|e| (made.0.clone(), e)));
        results.push(made);
    }
    for (service, _, result) in results {
        match result {
            Ok(action) => report.services.push(ServiceActivation { service, action }),
            Err(error) => {
                tracing::warn!(service, error = %format!("{error:#}"), "container activation failed");
                report.errors.insert(service, format!("{error:#}"));
            }
        }
    }
    for (service, container) in &running {
        if !desired.contains_key(service) {
            let name = container.names.as_ref().and_then(|n| n.first()).map(|n| n.trim_start_matches('/').to_owned());
            engine.remove(&name.unwrap_or_else(|| container_name(service))).await?;
            report.services.push(ServiceActivation { service: service.clone(), action: Action::Removed });
        }
    }
    failures.extend(report.errors.clone());
    Ok((report, failures))
}

/// What one service's activation gave.
type Made = (String, ContainerSpec, Result<Action>);

/// Waits for a service activated with `result` to pass its health check, if it must; why not.
async fn check(engine: &Engine, spec: &ContainerSpec, result: &Result<Action>, gate: &Gate<'_>) -> Option<String> {
    if !result.as_ref().is_ok_and(|action| action.needs_check()) {
        return None;
    }
    match health::wait_healthy(engine, spec, gate.limit).await {
        Ok(took) => {
            tracing::info!(service = spec.service, seconds = took.as_secs_f64(), "healthy");
            (gate.on_healthy)(spec);
            None
        }
        Err(error) => Some(format!("{error:#}")),
    }
}

/// Activates `services` at once, each checked as soon as it is made; the results in their order.
async fn activate_and_check_all(
    engine: &Engine,
    state: &State,
    services: &[(&String, &(ContainerSpec, pic_builder::render::Bundle))],
    stopped: &stopped::Stopped,
    running: &HashMap<String, bollard::models::ContainerSummary>,
    gate: &Gate<'_>,
) -> Vec<(Made, Option<String>)> {
    let work = services.iter().map(|&(service, (spec, bundle))| async move {
        let result = match stopped.contains_key(service) {
            true => Ok(Action::KeptStopped),
            false => activate_one(engine, state, spec, bundle, running.get(service)).await,
        };
        let failure = check(engine, spec, &result, gate).await;
        ((service.clone(), spec.clone(), result), failure)
    });
    futures_util::future::join_all(work).await
}

/// Activates `services` at once; the results in their order.
async fn activate_all(
    engine: &Engine,
    state: &State,
    services: &[(&String, &(ContainerSpec, pic_builder::render::Bundle))],
    stopped: &stopped::Stopped,
    running: &HashMap<String, bollard::models::ContainerSummary>,
) -> Vec<Made> {
    let work = services.iter().map(|&(service, (spec, bundle))| async move {
        let result = match stopped.contains_key(service) {
            true => Ok(Action::KeptStopped),
            false => activate_one(engine, state, spec, bundle, running.get(service)).await,
        };
        (service.clone(), spec.clone(), result)
    });
    futures_util::future::join_all(work).await
}

async fn activate_one(
    engine: &Engine,
    state: &State,
    spec: &ContainerSpec,
    bundle: &pic_builder::render::Bundle,
    existing: Option<&bollard::models::ContainerSummary>,
) -> Result<Action> {
    let image = spec.image_ref();
    let (image_id, labels) = engine.image_labels(&image).await?.ok_or_else(|| {
        match spec.service.strip_prefix(pic_builder::config::app::SERVICE_PREFIX) {
            Some(app) => anyhow!("image {image} is not in Docker; `pic store update {app}` builds it"),
            None => anyhow!("image {image} is not loaded into Docker; build it with `pic images build`"),
        }
    })?;
    let owner = labels
        .get(LABEL_DATA_OWNER)
        .and_then(|o| o.split_once(':'))
        .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
        .unwrap_or((0, 0));
    let secrets_gid = labels.get(LABEL_SECRETS_GROUP).and_then(|g| g.parse().ok()).unwrap_or(owner.1);
    let prepared = mounts::prepare(state, spec, bundle, owner, secrets_gid)?;
    mounts::prune_bundle(state, &spec.service, bundle)?;
    let spec_hash =
        spec_hash(spec, &image_id, (owner, secrets_gid), &prepared.paths, engine.publish == Publish::Docker);
    let mount_paths: HashMap<String, std::path::PathBuf> = prepared.paths.into_iter().collect();
    let name = container_name(&spec.service);
    let Some(existing) = existing else {
        engine.create(spec, &image, &mount_paths, &spec_hash).await?;
        return Ok(Action::Created);
    };
    let same_spec = existing.labels.as_ref().and_then(|l| l.get(LABEL_SPEC)) == Some(&spec_hash);
    let running = matches!(existing.state, Some(bollard::models::ContainerSummaryStateEnum::RUNNING));
    if !same_spec {
        engine.remove(&name).await?;
        engine.create(spec, &image, &mount_paths, &spec_hash).await?;
        return Ok(Action::Recreated);
    }
    if !running {
        engine.start(&name).await?;
        return Ok(Action::Started);
    }
    if !prepared.changed {
        return Ok(Action::Unchanged);
    }
    if prepared.only_certificates && spec.restart_for_certificates {
        engine.restart(&name).await?;
        return Ok(Action::Restarted);
    }
    match &spec.reload {
        Some(Reload::Signal { signal }) => engine.signal(&name, signal).await?,
        Some(Reload::Exec { command }) => drop(engine.exec(&name, command).await?),
        Some(Reload::Files) => {}
        None => {
            engine.remove(&name).await?;
            engine.create(spec, &image, &mount_paths, &spec_hash).await?;
            return Ok(Action::Recreated);
        }
    }
    Ok(Action::Reloaded)
}

/// Bumped when `Engine::create` makes containers differently (2: Docker's init as PID 1), so
/// that the containers made before are made anew.
const HOST_CONFIG_VERSION: u32 = 2;

/// Everything a container is made from except the content of the files it mounts.
fn spec_hash(
    spec: &ContainerSpec,
    image_id: &str,
    owner: ((u32, u32), u32),
    mounts: &BTreeMap<String, std::path::PathBuf>,
    publish: bool,
) -> String {
    // Certificates, data folders and credential files are files in mounts: a new site is a
    // reload, not a new container.
    let spec = ContainerSpec { tls_sites: Vec::new(), data_dirs: Vec::new(), credentials: Vec::new(), ..spec.clone() };
    let mut hash = Sha256::new();
    hash.update(format!("{spec:?}\0{image_id}\0{owner:?}\0{mounts:?}\0{publish}\0{HOST_CONFIG_VERSION}"));
    hex::encode(hash.finalize())[..16].to_owned()
}

/// The running services of the current generation whose certificates are not the ones they
/// would be handed now: an activation gives them the new ones. A service an admin stopped gets
/// them when it is started (activations leave it alone, so it would be found outdated again).
pub fn tls_outdated(state: &State) -> Result<Vec<String>> {
    let (_, desired) = desired(state)?;
    let stopped = stopped::load(state)?;
    let mut outdated = Vec::new();
    for (service, (spec, _)) in desired.iter().filter(|(s, _)| !stopped.contains_key(*s)) {
        if mounts::tls_outdated(state, spec)? {
            outdated.push(service.clone());
        }
    }
    Ok(outdated)
}

/// Brings the credential copies of every service of the current generation up to date, touching
/// no container; the services whose files changed.
pub fn refresh_credentials(state: &State) -> Result<Vec<String>> {
    let (_, desired) = desired(state)?;
    let mut changed = Vec::new();
    for (service, (spec, _)) in &desired {
        if mounts::refresh_credentials(state, spec)? {
            changed.push(service.clone());
        }
    }
    Ok(changed)
}
