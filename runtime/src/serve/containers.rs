//! The service containers under `pic serve`: activation behind the health gate (a generation
//! whose changed services do not become healthy is rolled back by itself), the health monitor
//! (restarts a failed container), and the container manager's API.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Admin, Session};
use super::error::{ApiError, ErrorBody, blocking};
use crate::cli::DockerArgs;
use crate::docker::{
    self, ContainerInfo, Engine, ImageInfo, Publish, activation, container_name, health, setup_proxy, stopped,
};

/// What `pic serve` keeps about the containers.
pub struct Containers {
    pub args: DockerArgs,
    engine: tokio::sync::Mutex<Option<Engine>>,
    pub health_timeout: Duration,
    pub monitor_interval: Duration,
    /// The newest generation whose services all passed the gate: where a failed one goes back to.
    last_good: Mutex<Option<u64>>,
    /// The generation the containers were last activated for.
    activated: Mutex<Option<u64>>,
    /// Whether an activation got through to the engine once (before setup: the setup proxy).
    first_pass: std::sync::atomic::AtomicBool,
    /// Whether `pic serve` answers port 80 itself (its front door): the setup proxy then takes
    /// only 443.
    pub front_door: bool,
    /// The monitor's latest word on each service, and how often it restarted it.
    health: Mutex<BTreeMap<String, ServiceHealth>>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ServiceHealth {
    pub healthy: bool,
    pub detail: String,
    pub restarts: u32,
    pub checked: String,
}

impl Containers {
    pub fn new(args: DockerArgs, health_timeout: Duration, monitor_interval: Duration) -> Containers {
        Containers {
            args,
            engine: tokio::sync::Mutex::new(None),
            health_timeout,
            monitor_interval,
            last_good: Mutex::new(None),
            activated: Mutex::new(None),
            first_pass: std::sync::atomic::AtomicBool::new(false),
            front_door: false,
            health: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether the containers were activated for `generation` (`None`: before setup).
    pub fn activated_for(&self, generation: Option<u64>) -> bool {
        self.first_pass.load(std::sync::atomic::Ordering::SeqCst) && self.activated() == generation
    }

    /// The generation the containers were last activated for (health gate included).
    pub fn activated(&self) -> Option<u64> {
        *self.activated.lock().expect("lock")
    }

    /// The engine, connecting on first use (and again after Docker was away).
    pub async fn engine(&self) -> anyhow::Result<Engine> {
        let mut engine = self.engine.lock().await;
        if let Some(engine) = engine.as_ref() {
            engine.ping().await?;
            return Ok(engine.clone());
        }
        let mut connected = Engine::connect(&self.args.docker_socket, self.args.publish).await?;
        connected.front_door = self.front_door;
        *engine = Some(connected.clone());
        Ok(connected)
    }

    pub fn health(&self) -> BTreeMap<String, ServiceHealth> {
        self.health.lock().expect("health lock").clone()
    }
}

impl AppState {
    /// Removes the containers of `services`, so that the next activation makes them anew: their
    /// data folders were replaced, and a running container keeps the old one mounted.
    pub(super) async fn recreate(&self, services: &[String]) {
        let Some(containers) = &self.containers else { return };
        let _guard = self.activation.lock().await;
        let engine = match containers.engine().await {
            Ok(engine) => engine,
            Err(error) => return tracing::warn!(error = %format!("{error:#}"), "cannot recreate containers"),
        };
        for service in services {
            if let Err(error) = engine.remove(&container_name(service)).await {
                tracing::debug!(service, error = %format!("{error:#}"), "no container to remove");
            }
        }
    }

    /// Activates the current generation's containers, waits for the changed ones to pass their
    /// health checks and, when one does not, marks the generation failed, switches back to the
    /// last good one and activates that.
    pub(super) async fn activate_containers(&self) {
        let Some(containers) = self.containers.clone() else { return };
        let engine = match containers.engine().await {
            Ok(engine) => engine,
            Err(error) => {
                let error = format!("{error:#}");
                tracing::warn!(%error, "containers not activated");
                self.emit(json!({"step": "activation_failed", "service": "containers", "error": error}));
                return;
            }
        };
        let (report, failures) = match self.activate_and_check(&engine, &containers).await {
            Ok(outcome) => outcome,
            Err(error) => {
                let error = format!("{error:#}");
                tracing::warn!(%error, "container activation failed");
                self.emit(json!({"step": "activation_failed", "service": "containers", "error": error}));
                return;
            }
        };
        let generation = report.generation;
        *containers.activated.lock().expect("lock") = generation;
        containers.first_pass.store(true, std::sync::atomic::Ordering::SeqCst);
        if failures.is_empty() {
            *containers.last_good.lock().expect("lock") = generation;
            if let Some(n) = generation {
                let state = self.state.clone();
                let _ = blocking(move || Ok(state.writer()?.mark_passed(n)?)).await;
            }
            return;
        }
        let reason = failures.iter().map(|(s, e)| format!("{s}: {e}")).collect::<Vec<_>>().join("; ");
        let last_good = *containers.last_good.lock().expect("lock");
        let (Some(failed), Some(good)) = (generation, last_good) else {
            self.emit(json!({"step": "unhealthy", "generation": generation, "reason": reason}));
            return;
        };
        if failed == good {
            self.emit(json!({"step": "unhealthy", "generation": generation, "reason": reason}));
            return;
        }
        tracing::warn!(failed, good, %reason, "rolling back a generation that failed its health check");
        let state = self.state.clone();
        let why = reason.clone();
        let switched = blocking(move || {
            let writer = state.writer()?;
            writer.mark_failed(failed, &why)?;
            Ok(writer.switch(good)?)
        })
        .await;
        if let Err(error) = switched {
            self.emit(json!({"step": "rollback_failed", "generation": failed, "error": error.message}));
            return;
        }
        self.metrics.rollbacks.inc();
        self.emit(json!({"step": "rolled_back", "from": failed, "to": good, "reason": reason}));
        self.activate_host().await;
        match self.activate_and_check(&engine, &containers).await {
            Ok((_, still)) if still.is_empty() => {
                *containers.activated.lock().expect("lock") = Some(good);
            }
            Ok((_, still)) => {
                self.emit(json!({"step": "unhealthy", "generation": good, "reason": format!("{still:?}")}))
            }
            Err(error) => {
                self.emit(json!({"step": "activation_failed", "service": "containers", "error": format!("{error:#}")}))
            }
        }
    }

    async fn activate_and_check(
        &self,
        engine: &Engine,
        containers: &Containers,
    ) -> anyhow::Result<(activation::Report, BTreeMap<String, String>)> {
        self.emit(json!({"step": "activating", "service": "containers"}));
        let started = std::time::Instant::now();
        let gate = activation::Gate { limit: containers.health_timeout, on_healthy: &|_| {} };
        let (report, failures) = activation::activate(engine, &self.state, &gate).await?;
        // Where an activation's time goes (each container made, each service's first answer) is
        // in the log: after a boot or setup on a slow board it is most of the wait.
        tracing::info!(
            generation = ?report.generation,
            changed = report.changed().count(),
            failed = failures.len(),
            seconds = started.elapsed().as_secs_f64(),
            "containers activated and checked"
        );
        self.emit(json!({"step": "activated", "service": "containers", "result": report}));
        // The held ports go to the containers once every service was made and checked: until
        // then port 80 is the front door's, with the device's progress. (Handed over as soon as
        // the proxy answered, a reboot's browser in CI met port 80 closed for a moment.)
        self.publish_held_ports().await;
        if failures.is_empty() {
            self.emit(json!({"step": "healthy", "generation": report.generation}));
        }
        Ok((report, failures))
    }
}

/// Every interval: refreshes the services' credential files, activates a generation switched to
/// from outside (the CLI), then checks every service an admin did not stop and restarts the
/// container of one that fails; a container that is gone (removed from outside) is made again by
/// an activation.
pub async fn monitor(app: AppState) {
    let Some(containers) = app.containers.clone() else { return };
    let mut tick = tokio::time::interval(containers.monitor_interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        // A password set from the command line reaches the daemons here.
        let state = app.state.clone();
        if let Ok(Err(error)) = tokio::task::spawn_blocking(move || activation::refresh_credentials(&state)).await {
            tracing::warn!(error = %format!("{error:#}"), "credential files not refreshed");
        }
        let current = app.state.current().ok().flatten();
        if current != *containers.activated.lock().expect("lock") {
            app.activate().await;
            continue;
        }
        // A public certificate that arrived or was renewed (by pic serve or by Caddy), or the
        // web UI's for LAN addresses that changed, reaches the services that read it as files.
        let state = app.state.clone();
        let outdated = tokio::task::spawn_blocking(move || {
            if let Err(error) = crate::device::network::ensure_lan_certificate(&state) {
                tracing::warn!(error = %error, "the web UI's certificate for the LAN addresses not renewed");
            }
            activation::tls_outdated(&state)
        });
        match outdated.await {
            Ok(Ok(services)) if !services.is_empty() => {
                app.emit(json!({"step": "certificates_changed", "services": services}));
                app.activate().await;
                continue;
            }
            Ok(Err(error)) => tracing::warn!(error = %format!("{error:#}"), "certificates not compared"),
            _ => {}
        }
        let Ok(engine) = containers.engine().await else { continue };
        if !check_services(&app, &containers, &engine).await {
            app.activate().await;
        }
    }
}

/// Probes every service of the current generation once and restarts the failed ones (but not one
/// started less than the health timeout ago); false when a container could not be restarted.
async fn check_services(app: &AppState, containers: &Containers, engine: &Engine) -> bool {
    let _guard = app.activation.lock().await;
    let Ok((generation, desired)) = activation::desired(&app.state) else { return true };
    if generation.is_none() && engine.publish != Publish::None {
        // Before setup: the setup proxy, which may have found no image at start (still loading).
        if let Err(error) = setup_proxy::ensure(engine, &app.state).await {
            tracing::warn!(error = format!("{error:#}"), "setup proxy not started");
        }
        return true;
    }
    let stopped = stopped::load(&app.state).unwrap_or_default();
    let mut all_there = true;
    for (service, (spec, _)) in desired.into_iter().filter(|(s, _)| !stopped.contains_key(s)) {
        let result = health::probe(engine, &spec).await;
        let mut restarted = false;
        if result.is_err() && health::starting(engine, &service, containers.health_timeout).await {
            // Started moments ago (by an admin, the command line or an activation): it has the
            // health gate's time to answer before a failed probe counts.
            continue;
        }
        if let Err(error) = &result {
            let error = format!("{error:#}");
            tracing::warn!(service, %error, "unhealthy; restarting its container");
            match engine.restart(&container_name(&service)).await {
                Ok(()) => {
                    restarted = true;
                    app.emit(json!({"step": "restarted", "service": service, "reason": error}));
                }
                Err(_) => all_there = false,
            }
        }
        let mut health = containers.health.lock().expect("lock");
        let entry = health.entry(service).or_default();
        entry.healthy = result.is_ok();
        entry.detail = result.err().map(|e| format!("{e:#}")).unwrap_or_else(|| "healthy".into());
        entry.checked = jiff::Timestamp::now().to_string();
        entry.restarts += u32::from(restarted);
    }
    all_there
}

fn engine_error(error: anyhow::Error) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "docker_unavailable", format!("{error:#}"))
}

async fn engine(app: &AppState) -> Result<(Engine, std::sync::Arc<Containers>), ApiError> {
    let containers = app.containers.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "containers_off",
            "this server runs no containers (--no-containers)",
        )
    })?;
    Ok((containers.engine().await.map_err(engine_error)?, containers))
}

#[utoipa::path(get, path = "/api/containers", tag = "containers", responses((status = 200, description = "each service container: state, image, health, restarts", body = Vec<ContainerInfo>), (status = 503, description = "Docker cannot be reached (the message names the socket)", body = ErrorBody), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin", body = ErrorBody)))]
pub async fn list(State(app): State<AppState>, _admin: Admin) -> Result<Json<Vec<ContainerInfo>>, ApiError> {
    let (engine, containers) = engine(&app).await?;
    let mut infos = docker::container_infos(&engine).await.map_err(engine_error)?;
    let health = containers.health();
    let state = app.state.clone();
    let stopped = blocking(move || stopped::load(&state).map_err(ApiError::internal)).await?;
    for info in &mut infos {
        info.stopped = stopped.get(&info.service).cloned();
        if let Some(h) = health.get(&info.service).filter(|_| info.stopped.is_none()) {
            info.health = Some(h.detail.clone());
            info.restarts = h.restarts;
        }
    }
    Ok(Json(infos))
}

#[utoipa::path(post, path = "/api/containers/{name}/{action}", tag = "containers", params(("name" = String, Path, description = "container (pic-<service>) or service name"), ("action" = String, Path, description = "start, stop or restart")), responses((status = 200, description = "done: a stopped service stays stopped (activations and the monitor leave it alone) until it is started or restarted; starting activates it and waits for its health check", body = Object), (status = 400, description = "no such action", body = ErrorBody), (status = 404, description = "no such container", body = ErrorBody), (status = 503, description = "Docker cannot be reached", body = ErrorBody)))]
pub async fn act(
    State(app): State<AppState>,
    session: Session,
    _admin: Admin,
    Path((name, action)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    if !matches!(action.as_str(), "start" | "stop" | "restart") {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_action", "the action is start, stop or restart"));
    }
    let (engine, _) = engine(&app).await?;
    let info = managed(&engine, &name).await?;
    let (name, service) = (info.name, info.service);
    let state = app.state.clone();
    if action == "stop" {
        // Recorded first, under the activation lock: the monitor must not start it meanwhile.
        let _guard = app.activation.lock().await;
        let (by, which) = (session.user.clone(), service.clone());
        blocking(move || stopped::record(&state, &which, &by).map_err(ApiError::internal)).await?;
        engine.stop(&name).await.map_err(ApiError::internal)?;
        app.emit(json!({"step": "stopped", "service": service, "by": session.user}));
        return Ok(Json(json!({"container": name, "action": action})));
    }
    let which = service.clone();
    let was_stopped = blocking(move || stopped::clear(&state, &which).map_err(ApiError::internal)).await?;
    if action == "restart" && !was_stopped {
        engine.restart(&name).await.map_err(ApiError::internal)?;
    } else {
        // Starting is an activation of the current generation for the service: files that
        // changed while it was stopped are taken, and it must pass its health check.
        app.activate().await;
        let running = managed(&engine, &name).await?;
        if running.state != "running" {
            return Err(ApiError::internal(format!("{name} did not start (it is {}); see its log", running.state)));
        }
    }
    Ok(Json(json!({"container": name, "action": action})))
}

/// The container if PIC manages it (by container or service name); 404 otherwise.
async fn managed(engine: &Engine, name: &str) -> Result<ContainerInfo, ApiError> {
    let infos = docker::container_infos(engine).await.map_err(engine_error)?;
    infos.into_iter().find(|i| i.name == name || i.service == name).ok_or_else(|| {
        ApiError::not_found(format!("no service container is named {name:?}; GET /api/containers lists them"))
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// Lines from the end (default 100).
    tail: Option<u32>,
    /// Keep the response open and stream new lines.
    follow: Option<bool>,
}

#[utoipa::path(get, path = "/api/containers/{name}/logs", tag = "containers", params(("name" = String, Path, description = "container or service name"), LogParams), responses((status = 200, description = "the log as text", content_type = "text/plain"), (status = 404, description = "no such container", body = ErrorBody), (status = 503, description = "Docker cannot be reached", body = ErrorBody)))]
pub async fn logs(
    State(app): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
    Query(params): Query<LogParams>,
) -> Result<Response, ApiError> {
    let (engine, _) = engine(&app).await?;
    let name = managed(&engine, &name).await?.name;
    let stream = docker::logs(&engine, &name, params.tail.unwrap_or(100).min(10_000), params.follow.unwrap_or(false))
        .map(|chunk| chunk.map(axum::body::Bytes::from).map_err(std::io::Error::other));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from_stream(stream))
        .map_err(ApiError::internal)
}

#[utoipa::path(get, path = "/api/images", tag = "containers", responses((status = 200, description = "the images Docker has", body = Vec<ImageInfo>), (status = 503, description = "Docker cannot be reached", body = ErrorBody)))]
pub async fn images(State(app): State<AppState>, _admin: Admin) -> Result<Json<Vec<ImageInfo>>, ApiError> {
    let (engine, _) = engine(&app).await?;
    Ok(Json(docker::images(&engine).await.map_err(engine_error)?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    /// An image reference: `name[:tag]`.
    image: String,
}

#[utoipa::path(post, path = "/api/images/pull", tag = "containers", request_body = PullRequest, responses((status = 200, description = "pulled", body = Object), (status = 422, description = "not an image reference", body = ErrorBody), (status = 502, description = "the registry could not be reached or refused", body = ErrorBody), (status = 503, description = "Docker cannot be reached", body = ErrorBody)))]
pub async fn pull(
    State(app): State<AppState>,
    _admin: Admin,
    Json(request): Json<PullRequest>,
) -> Result<Json<Value>, ApiError> {
    let valid = !request.image.is_empty()
        && request.image.len() <= 255
        && request.image.chars().all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c));
    if !valid {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_image",
            "image: give a reference like debian:trixie",
        ));
    }
    let (engine, _) = engine(&app).await?;
    let options = bollard::query_parameters::CreateImageOptionsBuilder::default().from_image(&request.image).build();
    let mut progress = engine.api().create_image(Some(options), None, None);
    while let Some(step) = progress.next().await {
        step.map_err(|e| {
            ApiError::new(StatusCode::BAD_GATEWAY, "pull_failed", format!("pulling {} failed: {e}", request.image))
        })?;
    }
    Ok(Json(json!({"pulled": request.image})))
}

#[utoipa::path(get, path = "/api/volumes", tag = "containers", responses((status = 200, description = "Docker's volumes and the services' data directories", body = Object), (status = 503, description = "Docker cannot be reached", body = ErrorBody)))]
pub async fn volumes(State(app): State<AppState>, _admin: Admin) -> Result<Json<Value>, ApiError> {
    let (engine, _) = engine(&app).await?;
    let list = engine
        .api()
        .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>)
        .await
        .map_err(|e| engine_error(docker::unreachable(engine.socket(), e)))?;
    let volumes: Vec<Value> = list
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| json!({"name": v.name, "mountpoint": v.mountpoint}))
        .collect();
    let data = app.state.root().join("data");
    let services: Vec<Value> = std::fs::read_dir(&data)
        .map(|entries| {
            entries.flatten().map(|e| json!({"service": e.file_name().to_string_lossy(), "path": e.path()})).collect()
        })
        .unwrap_or_default();
    Ok(Json(json!({"volumes": volumes, "data": services})))
}
