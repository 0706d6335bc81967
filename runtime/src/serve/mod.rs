//! `pic serve`: the HTTP API (axum) that the web UI, scripts and the CLI talk to. It never renders
//! templates: every change writes the desired config, asks the builder for a generation and
//! switches to it.

mod apps;
mod auth;
mod backups;
mod cells;
mod certs;
mod config;
mod containers;
mod device;
mod documented;
mod domain;
mod domain_certs;
mod error;
mod events;
mod exits;
mod files;
mod generations;
mod logs;
pub mod metrics;
mod peers;
mod setup;
mod updates;
mod users;
mod wireguard;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Request, State as AxumState};
use axum::http::Method;
use axum::http::{HeaderName, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use axum::{Json, Router};
use pic_builder::State;

use crate::logs::FileLevel;
use crate::wireguard::Interface;
use pic_builder::config::API_SERVICE;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

pub use error::{ApiError, ErrorBody};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// JSON bodies larger than this are refused with 413: every request but a whole config
/// (`config::CONFIG_BODY_LIMIT`) and the uploads, which stream to disk with limits of their own,
/// fits in far less, and a server refusing many large bodies at once holds at most this much
/// of each.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub state: Arc<State>,
    pub sessions: Arc<auth::Sessions>,
    /// The host's WireGuard interface, when this server manages one.
    pub wireguard: Option<Arc<Interface>>,
    /// The exits' tunnels, tables and rules (run like the WireGuard interface).
    pub exits: Option<Arc<crate::exits::Exits>>,
    /// Progress of changes, for `GET /api/events`.
    pub events: broadcast::Sender<Value>,
    /// The level of `pic serve`'s own log file, which follows `logging.levels.api`.
    pub file_level: Option<Arc<FileLevel>>,
    /// Whether this server loads the firewall ruleset into its network namespace.
    pub firewall: bool,
    /// The service containers, unless this server runs none.
    pub containers: Option<Arc<containers::Containers>>,
    /// One activation at a time (changes, the monitor, the expiry check).
    pub activation: Arc<tokio::sync::Mutex<()>>,
    /// The built web UI (`webui/dist`), served for every path outside the API.
    pub webui: Option<std::path::PathBuf>,
    /// What the device is doing (`GET /api/setup/status`, the console, the front door).
    pub device: Arc<device::Device>,
    /// The firewall was loaded without its published ports, which wait for the proxy.
    pub ports_held: Arc<std::sync::atomic::AtomicBool>,
    /// Wakes the dynamic DNS client after a change (its config or credential).
    pub ddns_wake: Arc<tokio::sync::Notify>,
    /// Wakes the certificate client after a change (its config or credential).
    pub acme_wake: Arc<tokio::sync::Notify>,
    /// Wakes the peer-sync loop (after an activation: a grant may have changed).
    pub links_wake: Arc<tokio::sync::Notify>,
    /// How long a new TXT record gets to reach the provider's name servers (DNS-01), when not
    /// the provider's usual time.
    pub dns_propagation: Option<std::time::Duration>,
    /// Where app images are built (none: apps are not installed through this server).
    pub images: Option<Arc<crate::apps::ImageInputs>>,
    /// App installs and updates under way or failed, and the index last opened.
    pub apps: Arc<apps::Jobs>,
    /// The device's A/B slots, when it was started from a PIC disk image.
    pub updates: Option<Arc<pic_builder::update::slots::Device>>,
    /// One update written at a time.
    pub update_lock: Arc<tokio::sync::Mutex<()>>,
    /// What is counted as it happens, for `GET /metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// Setup was seen complete (it is never undone): the gate stops looking at the disk.
    pub setup_seen: Arc<std::sync::atomic::AtomicBool>,
}

/// How `pic serve` runs.
pub struct Options {
    pub listen: SocketAddr,
    pub wireguard: Option<Interface>,
    pub firewall: bool,
    pub file_level: Option<FileLevel>,
    /// Run the service containers through this engine.
    pub docker: Option<crate::cli::DockerArgs>,
    pub health_timeout: std::time::Duration,
    pub monitor_interval: std::time::Duration,
    /// The built web UI, if there is one.
    pub webui: Option<std::path::PathBuf>,
    /// Also answer here (port 80 on the appliance): the progress page until the device is ready,
    /// then the web UI; the setup proxy then takes only port 443.
    pub front_door: Option<SocketAddr>,
    /// Write the console's greeting (what the device is doing) to this file.
    pub greeting: Option<std::path::PathBuf>,
    /// See `AppState::dns_propagation`.
    pub dns_propagation: Option<std::time::Duration>,
    /// Where app images are built.
    pub images: crate::apps::ImageInputs,
    /// The device's A/B slots (none: not started from a PIC disk image).
    pub updates: Option<pic_builder::update::slots::Device>,
}

impl AppState {
    pub fn new(state: State, wireguard: Option<Interface>) -> AppState {
        let (events, _) = broadcast::channel(256);
        AppState {
            state: Arc::new(state),
            sessions: Arc::default(),
            exits: wireguard.as_ref().map(|w| Arc::new(crate::exits::Exits::new(w.backend()))),
            wireguard: wireguard.map(Arc::new),
            events,
            file_level: None,
            firewall: false,
            containers: None,
            activation: Arc::default(),
            webui: None,
            device: Arc::new(device::Device::new(None)),
            ports_held: Arc::default(),
            ddns_wake: Arc::default(),
            acme_wake: Arc::default(),
            links_wake: Arc::default(),
            dns_propagation: None,
            images: None,
            apps: Arc::default(),
            updates: None,
            update_lock: Arc::default(),
            metrics: Arc::default(),
            setup_seen: Arc::default(),
        }
    }

    /// Brings what runs in line with the current generation: the firewall, WireGuard peers (live)
    /// and the service containers (behind the health gate). A failure is logged and reported,
    /// not returned: the generation is switched either way, and the next activation retries.
    pub async fn activate(&self) {
        let _guard = self.activation.lock().await;
        tracing::info!(generation = ?self.state.current().ok().flatten(), "activating");
        let timer = self.metrics.activation_seconds.start_timer();
        self.activate_host().await;
        self.activate_containers().await;
        timer.observe_duration();
    }

    /// Publishes the ports `activate_host` held back, once the containers were made and checked.
    /// Never after an activation that did not reach Docker: the ports would then lead to
    /// containers that do not run, while the front door can still say what is going on; the
    /// monitor's next activation tries again.
    async fn publish_held_ports(&self) {
        if self.ports_held.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.activate_service("firewall", crate::firewall::apply).await;
        }
    }

    /// Whether the ports are held back while the containers start: when none were activated for
    /// a generation in this run yet (a boot, or setup), so that the containers that do not run
    /// yet do not take the host's ports from the front door.
    fn hold_ports(&self) -> bool {
        self.firewall && self.containers.as_ref().is_some_and(|c| c.activated().is_none())
    }

    /// What runs on the host itself: the log level, the firewall, WireGuard. The firewall's
    /// ports may be held back (`hold_ports`, then `ports_held`) until the proxy runs.
    async fn activate_host(&self) {
        if let Some(file_level) = &self.file_level {
            let level =
                self.state.desired_config().ok().flatten().and_then(|c| c.logging.levels.get(API_SERVICE).copied());
            file_level.set(level.unwrap_or_default());
        }
        if self.hold_ports() {
            self.ports_held.store(true, std::sync::atomic::Ordering::SeqCst);
            self.activate_service("firewall", crate::firewall::apply_unpublished).await;
        } else if self.firewall {
            self.activate_service("firewall", crate::firewall::apply).await;
        }
        if let Some(wireguard) = self.wireguard.clone() {
            self.activate_service("wireguard", move |state| wireguard.apply(state)).await;
        }
        if let Some(exits) = self.exits.clone().filter(|e| e.wanted(&self.state)) {
            self.activate_service("exits", move |state| exits.apply(state)).await;
        }
        // A changed domain (or anything else) is for the dynamic DNS and certificate clients to
        // compare.
        self.ddns_wake.notify_one();
        self.acme_wake.notify_one();
        self.links_wake.notify_one();
    }

    /// Runs one service's activation off the executor and reports each step to `/api/events`.
    async fn activate_service<T: serde::Serialize + Send + 'static>(
        &self,
        service: &'static str,
        work: impl FnOnce(&State) -> anyhow::Result<T> + Send + 'static,
    ) {
        let state = self.state.clone();
        self.emit(json!({"step": "activating", "service": service}));
        match tokio::task::spawn_blocking(move || work(&state)).await {
            Ok(Ok(result)) => self.emit(json!({"step": "activated", "service": service, "result": result})),
            Ok(Err(error)) => {
                let error = format!("{error:#}");
                tracing::warn!(service, %error, "activation failed");
                self.emit(json!({"step": "activation_failed", "service": service, "error": error}));
            }
            Err(error) => tracing::warn!(service, %error, "activation task failed"),
        }
    }

    /// Tells every `GET /api/events` listener (none listening is fine).
    pub fn emit(&self, mut event: Value) {
        event["time"] = jiff::Timestamp::now().to_string().into();
        let _ = self.events.send(event);
    }

    /// Setup is complete once a desired config exists.
    pub async fn setup_complete(&self) -> Result<bool, ApiError> {
        use std::sync::atomic::Ordering;
        if self.setup_seen.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let complete = tokio::fs::try_exists(self.state.desired_config_path()).await.map_err(ApiError::internal)?;
        self.setup_seen.fetch_or(complete, Ordering::Relaxed);
        Ok(complete)
    }
}

/// The API's routes with their OpenAPI descriptions.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(setup::status))
        .routes(routes!(setup::setup))
        .routes(routes!(setup::timezones))
        .routes(routes!(setup::strength))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(config::get, config::put))
        .routes(routes!(generations::list))
        .routes(routes!(generations::one))
        .routes(routes!(generations::diff))
        .routes(routes!(generations::switch))
        .routes(routes!(generations::rollback))
        .routes(routes!(generations::services))
        .routes(routes!(events::stream))
        .routes(routes!(peers::list, peers::create))
        .routes(routes!(peers::one, peers::update, peers::delete))
        .routes(routes!(peers::config))
        .routes(routes!(peers::qr))
        .routes(routes!(wireguard::server))
        .routes(routes!(wireguard::rotate_key))
        .routes(routes!(metrics::scrape))
        .routes(routes!(logs::search))
        .routes(routes!(containers::list))
        .routes(routes!(containers::act))
        .routes(routes!(containers::logs))
        .routes(routes!(containers::images))
        .routes(routes!(containers::pull))
        .routes(routes!(containers::volumes))
        .routes(routes!(users::list))
        .routes(routes!(users::set_password))
        .routes(routes!(certs::ca))
        .routes(routes!(certs::identity))
        .routes(routes!(certs::list))
        .routes(routes!(certs::revoke))
        .routes(routes!(backups::list, backups::create))
        .routes(routes!(backups::schedule))
        .routes(routes!(backups::set_key))
        .routes(routes!(backups::download))
        .routes(routes!(backups::upload))
        .routes(routes!(backups::restore))
        .routes(routes!(domain::get))
        .routes(routes!(domain::set_credential))
        .routes(routes!(domain::update))
        .routes(routes!(domain::renew))
        .routes(routes!(apps::store))
        .routes(routes!(apps::icon))
        .routes(routes!(apps::list, apps::install))
        .routes(routes!(apps::update, apps::remove))
        .routes(routes!(files::list, files::delete))
        .routes(routes!(files::download, files::upload))
        .routes(routes!(files::folder))
        .routes(routes!(files::rename))
        .routes(routes!(cells::list))
        .routes(routes!(cells::invite))
        .routes(routes!(cells::accept))
        .routes(routes!(cells::join))
        .routes(routes!(cells::grants))
        .routes(routes!(cells::remove))
        .routes(routes!(exits::list, exits::add))
        .routes(routes!(exits::remove))
        .routes(routes!(exits::test))
        .routes(routes!(updates::status, updates::upload))
        .routes(routes!(updates::reboot))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "PIC API",
        description = "The API of a Personal Internet Cell: setup, sessions, config, generations, peers, containers."
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// The OpenAPI document of the API (committed as `runtime/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented::with_every_status(named_uniquely(api_routes().into_openapi()))
}

/// Every operation's id is `<tag>_<handler>` (`peers_list`, `backups_list`): handlers of
/// different routes share names, and clients generated from the document key operations by id.
fn named_uniquely(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    for item in doc.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            let tag = operation.tags.as_ref().and_then(|t| t.first()).cloned().unwrap_or_default();
            if let Some(id) = &operation.operation_id
                && !id.starts_with(&format!("{tag}_"))
            {
                operation.operation_id = Some(format!("{tag}_{id}"));
            }
        }
    }
    doc
}

/// Every route, behind the gate (setup, session, CSRF).
pub fn router(app: AppState) -> Router {
    let (api, doc) = api_routes().split_for_parts();
    let doc = Arc::new(documented::with_every_status(named_uniquely(doc)));
    let routes = Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/api/openapi.json", get(move || async move { Json(doc.as_ref().clone()) }))
        .merge(api)
        .route("/api/{*rest}", axum::routing::any(|| async { ApiError::not_found("no such route") }));
    // The web UI is a single-page app: a path that is not a file gets index.html.
    let routes = match app.webui.as_ref().filter(|dir| dir.join("index.html").is_file()) {
        Some(dir) => routes.fallback_service(
            tower_http::services::ServeDir::new(dir)
                .fallback(tower_http::services::ServeFile::new(dir.join("index.html"))),
        ),
        None => {
            routes.fallback(|| async { ApiError::not_found("no such route (the web UI is not built: make webui)") })
        }
    };
    routes
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(app.clone(), activate_after_change))
        .layer(axum::middleware::from_fn_with_state(app.clone(), hold_changes_on_trial))
        .layer(axum::middleware::from_fn_with_state(app.clone(), auth::gate))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Every answer says what a browser may do with it; a page that needs otherwise (the
        // front door's progress page) sets its own policy.
        .layer(header_unless_set(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .layer(header_unless_set(HeaderName::from_static("permissions-policy"), PERMISSIONS_POLICY))
        .layer(header_unless_set(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header_unless_set(header::REFERRER_POLICY, "no-referrer"))
        .layer(header_unless_set(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header_unless_set(HeaderName::from_static("cross-origin-opener-policy"), "same-origin"))
        // Every request gets an id, logged with its method, path, status and latency (never its
        // headers or body: they carry cookies and passwords), and echoed as x-request-id.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &axum::http::Request<_>| {
                    let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("request", id = %id, method = %request.method(), path = %request.uri().path())
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(app)
}

/// The web UI loads nothing but its own files and talks to nothing but its own API: no inline
/// script, no other origin, no frames; the browser's sensors and devices stay off.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";
const PERMISSIONS_POLICY: &str = "camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), bluetooth=(), \
     interest-cohort=()";

fn header_unless_set(
    name: axum::http::HeaderName,
    value: &'static str,
) -> tower_http::set_header::SetResponseHeaderLayer<axum::http::HeaderValue> {
    tower_http::set_header::SetResponseHeaderLayer::if_not_present(name, axum::http::HeaderValue::from_static(value))
}

/// The front door's routes: every route, behind the progress page until the device is ready.
pub fn front_door_router(app: AppState) -> Router {
    let gate = axum::middleware::from_fn_with_state(app.device.clone(), device::front_door);
    router(app).layer(gate)
}

/// What a successful request that switched no generation still needs of the running cell; a
/// handler puts it in its response's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterChange {
    /// Bring what runs in line with the current generation (e.g. a new certificate to load).
    Activate,
}

/// What a request that switched to generation `number` did, in words, for the events: a rollback
/// or a switch says so; anything else says what the new generation changed (empty when
/// unreadable).
fn summary_of(app: &AppState, request: &str, number: Option<u64>) -> Vec<String> {
    let Some(number) = number else { return Vec::new() };
    if request == "POST /api/rollback" {
        return vec![format!("rolled back to {number}")];
    }
    if request.starts_with("POST /api/generations/") && request.ends_with("/switch") {
        return vec![format!("switched back to {number}")];
    }
    app.state.summary(number).unwrap_or_default()
}

/// While this version of PIC is on trial (booted from a new slot, its boot check not yet
/// passed), nothing changes the state directory: the data partition is shared with the previous
/// version, which must still read it if the device falls back. The check takes minutes.
/// Whether a request may change the cell: any but a read, a login or logout, or a question
/// asked by POST so that its content stays out of URLs (a password's strength).
fn may_change_the_cell(request: &Request) -> bool {
    let path = request.uri().path();
    !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && !path.starts_with("/api/auth/")
        && path != "/api/setup/password-strength"
}

/// Whether a change to `path` waits while a version is on trial: all but the updates' (their
/// handlers say why an update waits; a restart only uses up a try) and logging in or out.
fn held_on_trial(path: &str) -> bool {
    !path.starts_with("/api/updates") && !path.starts_with("/api/auth/") && path != "/api/setup/password-strength"
}

async fn hold_changes_on_trial(AxumState(app): AxumState<AppState>, request: Request, next: Next) -> Response {
    let changes = may_change_the_cell(&request) && held_on_trial(request.uri().path());
    if let (true, Some(device)) = (changes, app.updates.clone()) {
        let status = tokio::task::spawn_blocking(move || device.status()).await;
        if let Ok(Ok(status)) = status
            && status.boot == pic_builder::update::slots::SlotState::Trying
        {
            return ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "on_trial",
                "this version of PIC is on trial until its boot check passes (a few minutes after the start); \
                 changes wait until then, so that the previous version can take over the cell as it was",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// After a request that switched the current generation, activate before answering: when a
/// client hears "created", the peer is live. A request that switched nothing activates nothing
/// (unless its handler asks for it): a backup, a password or a container action leaves the
/// containers alone.
async fn activate_after_change(AxumState(app): AxumState<AppState>, request: Request, next: Next) -> Response {
    if !may_change_the_cell(&request) {
        return next.run(request).await;
    }
    let what = format!("{} {}", request.method(), request.uri().path());
    app.emit(json!({"step": "requested", "request": what}));
    let before = app.state.current().ok().flatten();
    let setup = request.uri().path() == "/api/setup";
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    if !response.status().is_success() {
        app.emit(json!({"step": "refused", "request": what, "status": response.status().as_u16()}));
        return response;
    }
    let current = app.state.current().ok().flatten();
    let switched = current != before;
    if switched {
        app.metrics.switch_seconds.observe(started.elapsed().as_secs_f64());
    }
    if switched && setup {
        // The wizard's request came through the setup proxy, which this first activation
        // replaces with the cell's own Caddy: answer first (the wizard then waits for the cell).
        let app = app.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            app.emit(json!({"step": "switched", "request": what, "generation": current, "summary": summary_of(&app, &what, current)}));
            app.activate().await;
            app.emit(json!({"step": "done", "request": what, "generation": current}));
        });
    } else if switched || response.extensions().get::<AfterChange>() == Some(&AfterChange::Activate) {
        if switched {
            app.emit(json!({"step": "switched", "request": what, "generation": current, "summary": summary_of(&app, &what, current)}));
        }
        app.activate().await;
        app.emit(json!({"step": "done", "request": what, "generation": current}));
    } else {
        app.emit(json!({"step": "done", "request": what, "generation": current, "activated": false}));
    }
    response
}

/// Serves the API until interrupted (Ctrl-C or SIGTERM).
pub async fn serve(state: State, options: Options) -> anyhow::Result<()> {
    let listen = options.listen;
    let mut app = AppState::new(state, options.wireguard);
    app.device = Arc::new(device::Device::new(options.greeting));
    // The data partition is checked before anything is written to it: on a disk too small, or
    // a full one, nothing starts; the front door and the console say why.
    let (_, problem) = device::check_storage(&app);
    if let Some(problem) = &problem {
        tracing::error!(code = problem.code, "{}", problem.message);
        eprintln!("pic serve: the cell does not start: {}", problem.message);
        app.device.block(true);
    }
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let front_door = match options.front_door {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("listening on {address} (the front door)"))?,
        ),
        None => None,
    };
    tracing::info!(%listen, state = %app.state.root().display(), "pic serve is listening");
    eprintln!("pic serve: http://{listen}/ (state {})", app.state.root().display());
    app.file_level = options.file_level.map(Arc::new);
    app.firewall = options.firewall;
    app.webui = options.webui;
    app.dns_propagation = options.dns_propagation;
    app.images = Some(Arc::new(options.images));
    app.updates = options.updates.map(Arc::new);
    if let Some(device) = &app.updates {
        // A version this device fell back from is remembered before its slot is written again.
        match device.note_rejections() {
            Ok(rejected) if !rejected.is_empty() => {
                tracing::warn!(versions = ?rejected.iter().map(|r| r.version.to_string()).collect::<Vec<_>>(), "updates the device fell back from")
            }
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "reading the boot entries"),
        }
    }
    app.containers = options.docker.map(|docker| {
        let mut containers = containers::Containers::new(docker, options.health_timeout, options.monitor_interval);
        containers.front_door = front_door.is_some();
        Arc::new(containers)
    });
    if !app.device.blocked() {
        start(app.clone()).await?;
    }
    tokio::spawn(device::watch(app.clone(), |app| {
        tokio::spawn(async move {
            if let Err(error) = start(app).await {
                tracing::error!(error = %format!("{error:#}"), "the cell did not start");
            }
        });
    }));
    let front = front_door.map(|listener| {
        axum::serve(listener, front_door_router(app.clone()).into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown())
    });
    let main = axum::serve(listener, router(app).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown());
    match front {
        Some(front) => tokio::try_join!(main, front).map(drop),
        None => main.await,
    }
    .context("serving HTTP")
}

/// Starts the cell: lays out the state directory on a first start, brings the host (firewall,
/// WireGuard) in line with the current generation before the caller answers requests, then the
/// containers and their monitor, and the peers' expiry.
async fn start(app: AppState) -> anyhow::Result<()> {
    if !app.state.is_initialized() {
        let state = app.state.clone();
        tokio::task::spawn_blocking(move || state.init(None))
            .await
            .context("the initialization task")?
            .context("initializing the state directory")?;
    }
    {
        let _guard = app.activation.lock().await;
        app.activate_host().await;
    }
    // The API answers while the containers come up (and while Docker is away).
    let starting = app.clone();
    tokio::spawn(async move {
        {
            let _guard = starting.activation.lock().await;
            starting.activate_containers().await;
        }
        containers::monitor(starting).await;
    });
    tokio::spawn(expire_peers(app.clone()));
    tokio::spawn(domain::run(app.clone()));
    tokio::spawn(domain::renew_certificates(app.clone()));
    tokio::spawn(backups::run_schedule(app.clone()));
    if let Some(containers) = app.containers.clone() {
        let dir = crate::logs::dir(app.state.root());
        tokio::spawn(async move { crate::docker::collect_logs::run(dir, || containers.engine()).await });
    }
    if app.exits.is_some() {
        tokio::spawn(crate::exits::names::serve(app.state.clone()));
        tokio::spawn(watch_exits(app.clone()));
    }
    if app.wireguard.is_some() {
        tokio::spawn(cells::serve_peer_sync(app.clone()));
        tokio::spawn(cells::sync_links(app));
    }
    Ok(())
}

/// How often the exits are looked at: a missing tunnel is made again at most this late, and a
/// change of an exit's state is an event this soon after the handshake shows it.
const EXIT_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// Makes a missing exit's tunnel again (its devices' traffic is dropped meanwhile), and tells
/// `/api/events` and the log when an exit goes down or comes up.
async fn watch_exits(app: AppState) {
    let Some(exits) = app.exits.clone() else { return };
    let mut known: std::collections::BTreeMap<String, bool> = std::collections::BTreeMap::new();
    loop {
        tokio::time::sleep(EXIT_CHECK).await;
        let (checking, state) = (exits.clone(), app.state.clone());
        let missing = tokio::task::spawn_blocking(move || checking.missing(&state)).await.unwrap_or_default();
        for name in &missing {
            let problem = "its tunnel interface is missing; making it again";
            tracing::warn!(exit = %name, up = false, problem, "exit state");
            app.emit(json!({"step": "exit_down", "exit": name, "problem": problem}));
            known.insert(name.clone(), false);
        }
        if !missing.is_empty() {
            let _guard = app.activation.lock().await;
            app.activate_service("exits", {
                let exits = exits.clone();
                move |state| exits.apply(state)
            })
            .await;
        }
        // An exit run by a container is up when its provider's DNS answers through it.
        let state = app.state.clone();
        let containers = tokio::task::spawn_blocking(move || crate::exits::desired(&state).unwrap_or_default())
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.via.is_some());
        for exit in containers {
            let out = crate::exits::names::Out::of(&exit);
            let answered = crate::exits::names::probe(&out, exit.dns)
                .await
                .map(drop)
                .map_err(|e| format!("its provider's DNS does not answer through it ({e})"));
            let traffic = container_traffic(&app, &exit).await;
            exits.record(&exit.name, crate::exits::ContainerExit { answered: Some(answered), traffic });
        }
        let (checking, state) = (exits.clone(), app.state.clone());
        let Ok(Ok(statuses)) = tokio::task::spawn_blocking(move || checking.status(&state)).await else { continue };
        for status in statuses {
            if known.insert(status.name.clone(), status.up) != Some(status.up) {
                let step = if status.up { "exit_up" } else { "exit_down" };
                tracing::info!(exit = %status.name, up = status.up, problem = ?status.problem, "exit state");
                app.emit(json!({"step": step, "exit": status.name, "problem": status.problem}));
            }
        }
    }
}

/// The bytes received and sent by an exit's container's tunnel, read inside the container
/// (the host cannot see its interfaces); none without Docker or a running container.
async fn container_traffic(app: &AppState, exit: &crate::exits::DesiredExit) -> Option<(u64, u64)> {
    let engine = app.containers.as_ref()?.engine().await.ok()?;
    let interface = crate::exits::counted_interface(exit);
    let statistics = format!("/sys/class/net/{interface}/statistics");
    let command = ["cat".to_owned(), format!("{statistics}/rx_bytes"), format!("{statistics}/tx_bytes")];
    let name = crate::docker::container_name(&pic_builder::render::exit_service(&exit.name));
    let text = engine.exec(&name, &command).await.ok()?;
    let mut numbers = text.split_whitespace().filter_map(|n| n.parse::<u64>().ok());
    Some((numbers.next()?, numbers.next()?))
}

/// How often WireGuard is brought up to date without a change: peers expire on their own.
const EXPIRY_CHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes expired peers from the interface when their time comes (activation skips them).
async fn expire_peers(app: AppState) {
    let Some(wireguard) = app.wireguard.clone() else { return };
    let mut tick = tokio::time::interval(EXPIRY_CHECK);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (wireguard, state) = (wireguard.clone(), app.state.clone());
        match tokio::task::spawn_blocking(move || wireguard.apply(&state)).await {
            Ok(Ok(Some(report))) if !report.added.is_empty() || report.removed > 0 => {
                app.emit(json!({"step": "activated", "service": "wireguard", "result": report, "reason": "expiry"}));
            }
            Ok(Err(error)) => tracing::warn!(error = %format!("{error:#}"), "the WireGuard expiry check failed"),
            _ => {}
        }
    }
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}

#[cfg(test)]
mod tests;
