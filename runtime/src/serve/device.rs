//! `pic serve`'s side of the device status (`crate::device`): the watcher that observes the data
//! partition, the network, Docker's images and the services, publishes the status and keeps the
//! console's greeting current; and the front door, the listener on port 80 that shows the
//! progress page (or the problem) until the device is first ready, then the web UI.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pic_builder::config::services::CATALOG;
use serde_json::json;
use tokio::sync::watch;

use super::AppState;
use crate::device::{self, Engine, Observed, Progress, Status, storage};
use crate::docker::{self, LABEL_SERVICE, activation, setup_proxy};

/// How often the watcher looks while the device starts, and once it is ready.
const STARTING_TICK: Duration = Duration::from_secs(1);
const READY_TICK: Duration = Duration::from_secs(10);
/// How long the watcher waits for Docker's answer before it says Docker is still starting.
const ENGINE_ANSWER: Duration = Duration::from_secs(3);

/// The device's status as `pic serve` keeps it.
pub struct Device {
    status: watch::Sender<Status>,
    /// Whether the status was `ready` once since `pic serve` started: from then on the front
    /// door serves the web UI (an activation later does not put the progress page in its way).
    ready_once: AtomicBool,
    /// A storage problem found when `pic serve` started: nothing was started.
    blocked: AtomicBool,
    /// Where the console's greeting is written.
    greeting: Option<PathBuf>,
}

impl Device {
    pub fn new(greeting: Option<PathBuf>) -> Device {
        Device {
            status: watch::Sender::new(Status::initial()),
            ready_once: AtomicBool::new(false),
            blocked: AtomicBool::new(false),
            greeting,
        }
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    pub fn blocked(&self) -> bool {
        self.blocked.load(Ordering::SeqCst)
    }

    pub fn block(&self, blocked: bool) {
        self.blocked.store(blocked, Ordering::SeqCst);
    }

    /// Publishes the status; the space warning when it has just appeared.
    pub(super) fn publish(&self, status: Status) -> Option<String> {
        if status.ready() {
            self.ready_once.store(true, Ordering::SeqCst);
        }
        let mut appeared = None;
        self.status.send_if_modified(|old| {
            if old.space_warning.is_none() {
                appeared.clone_from(&status.space_warning);
            }
            let changed = *old != status;
            *old = status;
            changed
        });
        appeared
    }
}

/// The data partition as found now, and what stops the cell in it.
pub fn check_storage(app: &AppState) -> (Option<storage::Storage>, Option<device::Problem>) {
    match storage::measure(app.state.root()) {
        Ok(found) => (Some(found), storage::judge(&found, &storage::LIMITS)),
        Err(error) => {
            tracing::warn!(%error, "the data partition could not be measured");
            (None, None)
        }
    }
}

/// Observes the device until `pic serve` stops; when the storage problem that blocked the start
/// is gone, starts what was held back (`unblocked`).
pub async fn watch(app: AppState, unblocked: impl Fn(AppState) + Send + 'static) {
    let device = app.device.clone();
    if let Some(path) = device.greeting.clone() {
        tokio::spawn(show_greetings(device.status.subscribe(), path));
    }
    loop {
        let (storage, problem) = check_storage(&app);
        if device.blocked() && problem.is_none() && storage.is_some() {
            tracing::info!("the data partition has room now: starting the cell");
            device.block(false);
            unblocked(app.clone());
        }
        let engine = match (&app.containers, device.blocked()) {
            (Some(containers), false) => Some(observe_engine(&app, containers).await),
            _ => None,
        };
        let seen = Observed {
            storage,
            problem,
            blocked: device.blocked(),
            engine,
            setup_complete: app.state.desired_config_path().exists(),
            ca_fingerprint: app.state.ca().identity().ok().map(|ca| ca.fingerprint_sha256),
            addresses: device::network::lan_addresses(),
            uptime: device::network::uptime(),
        };
        if let Some(warning) = device.publish(Status::from(&seen)) {
            tracing::warn!(%warning, "the data partition is nearly full");
            app.emit(json!({"step": "disk_nearly_full", "message": warning}));
        }
        tokio::time::sleep(if device.status().ready() { READY_TICK } else { STARTING_TICK }).await;
    }
}

/// Writes the greeting whenever its text changes.
async fn show_greetings(mut status: watch::Receiver<Status>, path: PathBuf) {
    let mut shown = String::new();
    loop {
        let text = device::greeting::text(&status.borrow_and_update());
        if text != shown {
            let (path, written) = (path.clone(), text.clone());
            match tokio::task::spawn_blocking(move || device::greeting::show(&path, &written)).await {
                Ok(Ok(())) => shown = text,
                Ok(Err(error)) => {
                    tracing::warn!(error = %format!("{error:#}"), "the console's greeting was not written")
                }
                Err(error) => tracing::warn!(%error, "the greeting task failed"),
            }
        }
        if status.changed().await.is_err() {
            return;
        }
    }
}

/// Docker, its images and the services' containers, as the status reports them.
async fn observe_engine(app: &AppState, containers: &super::containers::Containers) -> Engine {
    let engine = match tokio::time::timeout(ENGINE_ANSWER, containers.engine()).await {
        Ok(Ok(engine)) => engine,
        Ok(Err(error)) => return Engine::Waiting(format!("{error:#}")),
        Err(_) => return Engine::Waiting("Docker is starting".into()),
    };
    let (Ok(images), Ok(running)) = (docker::images(&engine).await, engine.containers().await) else {
        return Engine::Waiting("Docker does not answer".into());
    };
    let wanted: Vec<String> =
        CATALOG.iter().filter(|s| s.offset.is_some()).map(|s| format!("pic/{}:latest", s.name)).collect();
    let missing: Vec<String> = wanted.iter().filter(|w| !images.iter().any(|i| i.tags.contains(w))).cloned().collect();
    let (current, desired) = activation::desired(&app.state).unwrap_or_default();
    let services: Vec<String> = match current {
        Some(_) => desired.into_keys().collect(),
        None if engine.publish != docker::Publish::None && !missing.contains(&"pic/proxy:latest".to_owned()) => {
            vec![setup_proxy::SERVICE.to_owned()]
        }
        None => Vec::new(),
    };
    let up = running
        .iter()
        .filter(|c| matches!(c.state, Some(bollard::models::ContainerSummaryStateEnum::RUNNING)))
        .filter_map(|c| c.labels.as_ref()?.get(LABEL_SERVICE))
        .filter(|s| services.contains(s))
        .count();
    Engine::Up {
        images: Progress { done: wanted.len() - missing.len(), total: wanted.len() },
        missing,
        services: Progress { done: up, total: services.len() },
        activated: containers.activated_for(current),
    }
}

/// The front door's gate: until the device was first ready (or while it is blocked), a person
/// opening any page gets the progress page; the API and `/health` answer as always.
pub async fn front_door(State(device): State<Arc<Device>>, request: Request, next: Next) -> Response {
    let page = matches!(*request.method(), Method::GET | Method::HEAD)
        && !request.uri().path().starts_with("/api/")
        && request.uri().path() != "/health";
    if !page || (device.ready_once.load(Ordering::SeqCst) && !device.blocked()) {
        return next.run(request).await;
    }
    let html = device::page::html(&device.status()).into_string();
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::response::Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(device::page::RETRY_SECS));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(policy) = HeaderValue::from_str(&device::page::content_security_policy()) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}
