//! `/api/store` and `/api/apps`: the service store's index (verified against the keys the config
//! trusts) and the apps installed from it. An install or update is checked at once (a bad setting
//! is a 422 with the field named); its image is then built in the background (minutes), the new
//! generation switched to and activated behind the health gate, and the job's progress is in
//! `GET /api/apps` and the event stream. A removal is immediate; `purge` then moves the app's data
//! under `backups/` and deletes its secrets.

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pic_builder::apps::Index;
use pic_builder::config::app::{App, Manifest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::auth::Admin;
use super::error::{ApiError, ErrorBody, blocking};
use crate::apps::{self, Plan, Settings, Source};

/// The app jobs under way or failed, by app name (what the Store page follows).
#[derive(Default)]
pub struct Jobs {
    jobs: std::sync::Mutex<BTreeMap<String, Job>>,
    /// The index last opened, and the folder of its files (icons are served from it).
    index: std::sync::Mutex<Option<(Index, PathBuf)>>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Job {
    /// `install` or `update`.
    pub action: &'static str,
    pub version: String,
    /// `building` (the image), `activating` (the new generation), `failed`.
    pub state: &'static str,
    pub error: Option<String>,
    pub started: String,
}

impl Jobs {
    fn set(&self, name: &str, job: Option<Job>) {
        let mut jobs = self.jobs.lock().expect("jobs");
        match job {
            Some(job) => jobs.insert(name.to_owned(), job),
            None => jobs.remove(name),
        };
    }

    fn update(&self, name: &str, state: &'static str, error: Option<String>) {
        if let Some(job) = self.jobs.lock().expect("jobs").get_mut(name) {
            job.state = state;
            job.error = error;
        }
    }

    fn busy(&self, name: &str) -> bool {
        self.jobs.lock().expect("jobs").get(name).is_some_and(|j| j.state != "failed")
    }
}

/// Opens the config's index (downloading it first when it is a URL) and remembers it.
async fn open_index(app: &AppState) -> Result<Index, ApiError> {
    let state = app.state.clone();
    let (source, keys) = blocking(move || apps::source(&state, None).map_err(conflict)).await?;
    let path = match source {
        Source::Local(path) => path,
        Source::Web(url) => apps::download(&app.state, &url)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "index_unreachable", format!("{e:#}")))?,
    };
    let state = app.state.clone();
    let (index, dir) = blocking(move || {
        apps::open_local(&state, &path, &keys)
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "index_refused", format!("{e:#}")))
    })
    .await?;
    *app.apps.index.lock().expect("index") = Some((index.clone(), dir));
    Ok(index)
}

fn conflict(error: anyhow::Error) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "no_index", format!("{error:#}"))
}

/// An app of the index, as the Store page shows it.
#[derive(Serialize)]
struct StoreApp<'a> {
    #[serde(flatten)]
    manifest: &'a Manifest,
    /// The version installed, if the app is.
    installed: Option<&'a str>,
}

#[utoipa::path(get, path = "/api/store", tag = "store", responses((status = 200, description = "the apps of the config's index (every signature and manifest checked), each with its manifest and the version installed", body = Object), (status = 409, description = "no index in the config (store.index)", body = ErrorBody), (status = 422, description = "the index is refused: a signature, a digest or a manifest's rule; the message says which", body = ErrorBody), (status = 502, description = "the index's URL does not answer", body = ErrorBody)))]
pub async fn store(State(app): State<AppState>, _admin: Admin) -> Result<Json<Value>, ApiError> {
    let index = open_index(&app).await?;
    let config = app.state.desired_config()?.ok_or_else(|| ApiError::internal("no desired config"))?;
    let apps: Vec<StoreApp> = index
        .apps
        .iter()
        .map(|a| StoreApp {
            manifest: &a.manifest,
            installed: config.apps.iter().find(|i| i.name == a.entry.name).map(|i| i.version.as_str()),
        })
        .collect();
    Ok(Json(json!({"index": config.store.index, "apps": apps})))
}

#[utoipa::path(get, path = "/api/store/{name}/icon", tag = "store", params(("name" = String, Path)), responses((status = 200, description = "the app's icon (SVG or PNG) from the index last opened, served sandboxed", content_type = "image/svg+xml"), (status = 404, description = "no such app, or it has no icon", body = ErrorBody)))]
pub async fn icon(State(app): State<AppState>, _admin: Admin, Path(name): Path<String>) -> Result<Response, ApiError> {
    let found = {
        let index = app.apps.index.lock().expect("index");
        index.as_ref().and_then(|(index, dir)| {
            let entry = index.app(&name)?;
            // The manifest's rules keep `icon` a plain relative path.
            let icon = entry.manifest.icon.as_ref()?;
            let folder = std::path::Path::new(&entry.entry.manifest).parent()?;
            Some(dir.join(folder).join(icon))
        })
    };
    let path = found.ok_or_else(|| ApiError::not_found(format!("no icon for {name:?}: open the store first")))?;
    let content_type = match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => return Err(ApiError::not_found("icons are SVG or PNG")),
    };
    let bytes = tokio::fs::read(&path).await.map_err(|_| ApiError::not_found(format!("{name} has no icon file")))?;
    if bytes.len() > 256 << 10 {
        return Err(ApiError::not_found("the icon is larger than 256 KiB"));
    }
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // An icon is an image, never a document: an SVG runs no script and loads nothing.
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'; sandbox"),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        bytes,
    )
        .into_response())
}

/// An installed app, as the Store page shows it.
#[derive(Serialize)]
struct Installed<'a> {
    name: &'a str,
    version: &'a str,
    description: &'a str,
    url: String,
    address: String,
    /// Non-secret settings with their values (the default where the config has none).
    settings: BTreeMap<&'a str, Option<&'a Value>>,
    /// The names of its secret settings (kept in secrets/, never shown).
    secrets: Vec<&'a str>,
    /// Whether its container passed its last health check (when this server runs containers and
    /// has checked it), and what the check said.
    healthy: Option<bool>,
    health_detail: Option<String>,
}

#[utoipa::path(get, path = "/api/apps", tag = "store", responses((status = 200, description = "the installed apps (version, address, settings, URL, health) and the jobs under way or failed", body = Object)))]
pub async fn list(State(app): State<AppState>, _admin: Admin) -> Result<Json<Value>, ApiError> {
    let config = app.state.desired_config()?.ok_or_else(|| ApiError::internal("no desired config"))?;
    let health = app.containers.as_ref().map(|c| c.health()).unwrap_or_default();
    let domain = config.domain();
    let installed: Vec<Installed> = config
        .apps
        .iter()
        .map(|a| {
            let kinds = &a.manifest.settings;
            let secret =
                |n: &str| kinds.get(n).is_some_and(|s| s.kind == pic_builder::config::app::SettingKind::Secret);
            Installed {
                name: &a.name,
                version: &a.version,
                description: &a.manifest.description,
                url: format!("https://{}.{domain}/", a.manifest.site.host),
                address: a.address.to_string(),
                settings: kinds.keys().filter(|n| !secret(n)).map(|n| (n.as_str(), a.setting(n))).collect(),
                secrets: kinds.keys().filter(|n| secret(n)).map(String::as_str).collect(),
                healthy: health.get(&a.service()).map(|h| h.healthy),
                health_detail: health.get(&a.service()).map(|h| h.detail.clone()),
            }
        })
        .collect();
    let jobs = app.apps.jobs.lock().expect("jobs").clone();
    Ok(Json(json!({"apps": installed, "jobs": jobs})))
}

/// An install: the app's name in the index and its settings.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    pub name: String,
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, serde_json::Value>)]
    pub settings: BTreeMap<String, Value>,
}

/// An update: settings to change (the others are kept).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppUpdate {
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, serde_json::Value>)]
    pub settings: BTreeMap<String, Value>,
}

#[utoipa::path(post, path = "/api/apps", tag = "store", request_body = NewApp, responses((status = 202, description = "checked; the image is being built, then the new generation is switched to and activated (follow GET /api/apps or the event stream)", body = Object), (status = 409, description = "a job for the app is under way, no index is set, or this server runs no containers", body = ErrorBody), (status = 422, description = "invalid settings (each field named), already installed, or the index refused", body = ErrorBody)))]
pub async fn install(
    State(app): State<AppState>,
    _admin: Admin,
    body: Result<Json<NewApp>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(new) = body?;
    start(app, new.name, new.settings, false).await
}

#[utoipa::path(put, path = "/api/apps/{name}", tag = "store", params(("name" = String, Path)), request_body = AppUpdate, responses((status = 202, description = "checked; the index's version is being built, then switched to and activated (roll back to undo)", body = Object), (status = 404, description = "not installed", body = ErrorBody), (status = 409, description = "a job for the app is under way", body = ErrorBody), (status = 422, description = "invalid settings, or the index refused", body = ErrorBody)))]
pub async fn update(
    State(app): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
    body: Result<Json<AppUpdate>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(update) = body?;
    start(app, name, update.settings, true).await
}

/// Plans the change at once, then builds, switches and activates in the background.
async fn start(
    app: AppState,
    name: String,
    settings: BTreeMap<String, Value>,
    update: bool,
) -> Result<Response, ApiError> {
    let Some(containers) = app.containers.clone() else {
        return Err(ApiError::new(StatusCode::CONFLICT, "no_containers", "this pic serve runs no containers"));
    };
    let images = app.images.clone().ok_or_else(|| ApiError::internal("no image inputs"))?;
    if app.apps.busy(&name) {
        return Err(ApiError::new(StatusCode::CONFLICT, "busy", format!("{name} is being installed or updated")));
    }
    let index = open_index(&app).await?;
    let state = app.state.clone();
    let planned_name = name.clone();
    let plan = blocking(move || {
        let manifest = index.app(&planned_name).map(|a| a.manifest.clone());
        let settings = match &manifest {
            Some(manifest) => Settings::from_json(manifest, settings)?,
            None => Settings::default(),
        };
        Ok(apps::plan(&state, &index, &planned_name, settings, update)?)
    })
    .await?;
    let action = if update { "update" } else { "install" };
    let job = Job {
        action,
        version: plan.manifest.version.clone(),
        state: "building",
        error: None,
        started: jiff::Timestamp::now().to_string(),
    };
    app.apps.set(&name, Some(job));
    app.emit(json!({"step": "app", "app": name, "action": action, "state": "building"}));
    let version = plan.manifest.version.clone();
    tokio::spawn(run(app, containers, images, plan));
    Ok((StatusCode::ACCEPTED, Json(json!({"app": name, "action": action, "version": version, "state": "building"})))
        .into_response())
}

/// The background part of an install or update.
async fn run(
    app: AppState,
    containers: std::sync::Arc<super::containers::Containers>,
    images: std::sync::Arc<apps::ImageInputs>,
    plan: Plan,
) {
    let name = plan.app.name.clone();
    let action = if plan.update { "update" } else { "install" };
    let result: anyhow::Result<u64> = async {
        let engine = containers.engine().await?;
        apps::provide_image(&engine, &plan.app, &images).await?;
        app.apps.update(&name, "activating", None);
        app.emit(json!({"step": "app", "app": name, "action": action, "state": "activating"}));
        let state = app.state.clone();
        let committed = plan.clone();
        let changed = tokio::task::spawn_blocking(move || apps::commit(&state, &committed)).await??;
        app.activate().await;
        let current = app.state.current()?;
        if current != Some(changed.switched.to) {
            anyhow::bail!(
                "generation {} did not pass the health gate and was rolled back to {}",
                changed.switched.to,
                current.map_or("none".to_owned(), |n| n.to_string())
            );
        }
        Ok(changed.switched.to)
    }
    .await;
    match result {
        Ok(generation) => {
            app.apps.set(&name, None);
            app.emit(json!({"step": "app", "app": name, "action": action, "state": "done", "generation": generation}));
        }
        Err(error) => {
            let error = format!("{error:#}");
            tracing::warn!(app = name, %error, "app {action} failed");
            app.apps.update(&name, "failed", Some(error.clone()));
            app.emit(json!({"step": "app", "app": name, "action": action, "state": "failed", "error": error}));
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// Also delete the app's data and secrets (the data is first moved under backups/).
    #[serde(default)]
    purge: bool,
}

#[utoipa::path(delete, path = "/api/apps/{name}", tag = "store", params(("name" = String, Path), RemoveQuery), responses((status = 200, description = "removed (a new generation, activated); with purge, where its data was moved", body = Object), (status = 404, description = "not installed", body = ErrorBody), (status = 409, description = "a job for the app is under way", body = ErrorBody)))]
pub async fn remove(
    State(app): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
    Query(query): Query<RemoveQuery>,
) -> Result<Json<Value>, ApiError> {
    if app.apps.busy(&name) {
        return Err(ApiError::new(StatusCode::CONFLICT, "busy", format!("{name} is being installed or updated")));
    }
    let state = app.state.clone();
    let removed_name = name.clone();
    let (switched, removed): (_, App) = blocking(move || Ok(apps::remove(&state, &removed_name)?)).await?;
    app.apps.set(&name, None);
    let mut data_saved = None;
    if query.purge {
        if let Some(containers) = &app.containers {
            let _guard = app.activation.lock().await;
            let stopped = async { apps::stop_removed(&containers.engine().await?, &removed).await }.await;
            if let Err(error) = stopped {
                tracing::debug!(error = %format!("{error:#}"), "no container to stop before the purge");
            }
        }
        let state = app.state.clone();
        data_saved = blocking(move || apps::purge(&state, &removed).map_err(ApiError::internal)).await?;
    }
    Ok(Json(json!({"generation": switched.to, "data_saved": data_saved})))
}
