//! `/api/backups`: make, list, download, upload and restore backups; the schedule's state, the
//! backup key, and the loop that makes scheduled archives under `pic serve`. Progress goes to
//! `/api/events` as `{"step": "progress", "operation", "done_bytes", "total_bytes"}`, a scheduled
//! run's end as `{"step": "scheduled_backup", "state": "done" | "failed", ...}`.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use pic_builder::backup::{self, BackupInfo, BackupOptions, Progress, RestoreOptions, RestoreReport};
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::AppState;
use super::auth::Admin;
use super::error::{ApiError, ErrorBody, blocking};

/// An upload larger than this is refused (413); a backup with data of a small box fits well.
pub const MAX_UPLOAD: u64 = 64 * 1024 * 1024 * 1024;

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBackup {
    /// Also back up the services' data.
    #[serde(default)]
    include_data: bool,
    /// Encrypts the secrets into the backup; without one they are left out.
    passphrase: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The passphrase the backup's secrets were encrypted with.
    passphrase: Option<String>,
    /// Also replace the services' data (the replaced data is set aside in backups/).
    #[serde(default)]
    include_data: bool,
    /// Check the archive and report what would change; change nothing.
    #[serde(default)]
    dry_run: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    /// The backup passphrase: it alone opens the key, and with it every scheduled archive.
    passphrase: String,
}

/// What the schedule does: its settings as the config has them, when it runs next, what it did.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    /// `backups` of the config.
    #[schema(value_type = Object)]
    settings: pic_builder::config::Backups,
    /// RFC 3339; absent without a schedule.
    next_run: Option<String>,
    /// Whether a backup key is set up (without one, scheduled archives leave the secrets out).
    key: bool,
    /// Where scheduled archives go.
    destination: String,
    #[schema(value_type = Object)]
    status: backup::schedule::ScheduleStatus,
}

#[utoipa::path(get, path = "/api/backups/schedule", tag = "backups", responses((status = 200, description = "the schedule: settings, next run, last run, whether a backup key is set up", body = ScheduleView), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin", body = ErrorBody)))]
pub async fn schedule(State(app): State<AppState>, _admin: Admin) -> Result<Json<ScheduleView>, ApiError> {
    let state = app.state.clone();
    Ok(Json(blocking(move || schedule_view(&state, jiff::Timestamp::now())).await?))
}

fn schedule_view(state: &pic_builder::State, now: jiff::Timestamp) -> Result<ScheduleView, ApiError> {
    let config = state.desired_config()?;
    let settings = config.as_ref().map(|c| c.backups.clone()).unwrap_or_default();
    let tz = config.as_ref().and_then(|c| jiff::tz::db().get(&c.cell.timezone).ok()).unwrap_or(jiff::tz::TimeZone::UTC);
    let next_run = settings.schedule.as_ref().map(|s| backup::schedule::next_due(s, &tz, now).to_string());
    let destination = match &settings.destination {
        Some(path) => path.clone(),
        None => state.root().join(backup::BACKUPS_DIR).display().to_string(),
    };
    Ok(ScheduleView {
        next_run,
        key: backup::key::load(state)?.is_some(),
        destination,
        status: backup::schedule::status(state)?,
        settings,
    })
}

#[utoipa::path(put, path = "/api/backups/key", tag = "backups", request_body = KeyRequest, responses((status = 200, description = "a new backup key, sealed with the passphrase; scheduled archives hold the secrets from now on", body = Object), (status = 422, description = "a passphrase too short", body = ErrorBody), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin, or no CSRF token", body = ErrorBody)))]
pub async fn set_key(
    State(app): State<AppState>,
    _admin: Admin,
    body: Result<Json<KeyRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(request) = body?;
    let passphrase = backup::check_passphrase(request.passphrase)?;
    let state = app.state.clone();
    let recipient = blocking(move || Ok(backup::key::set_up(&state.writer()?, &passphrase, None)?)).await?;
    Ok(Json(json!({ "recipient": recipient })))
}

/// How often the schedule is looked at: a scheduled archive starts at most this late.
const SCHEDULE_TICK: std::time::Duration = std::time::Duration::from_secs(30);

/// Makes the scheduled archives under `pic serve`: at start (a run missed while the device was
/// off is made now) and then every tick, when one is due.
pub async fn run_schedule(app: AppState) {
    let mut tick = tokio::time::interval(SCHEDULE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let state = app.state.clone();
        let due = blocking(move || {
            let Some(config) = state.desired_config()? else { return Ok(false) };
            let now = jiff::Timestamp::now();
            let status = backup::schedule::notice(&state, &config.backups, now)?;
            let tz = jiff::tz::db().get(&config.cell.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
            Ok(backup::schedule::is_due(&config.backups, &tz, &status, now))
        })
        .await;
        match due {
            Ok(true) => {}
            Ok(false) => continue,
            Err(error) => {
                tracing::warn!(error = %error.message, "reading the backup schedule");
                continue;
            }
        }
        app.emit(json!({"step": "scheduled_backup", "state": "started"}));
        let mut report = reporter(&app);
        let state = app.state.clone();
        let run =
            blocking(move || Ok(backup::schedule::run(&state.writer()?, jiff::Timestamp::now(), &mut report)?)).await;
        match run {
            Ok(run) => {
                tracing::info!(archive = %run.archive.id, removed = run.removed.len(), "scheduled backup made");
                app.emit(json!({"step": "scheduled_backup", "state": "done", "archive": run.archive.id,
                    "size": run.archive.size, "secrets_included": run.secrets_included, "removed": run.removed}));
            }
            Err(error) => {
                tracing::error!(error = %error.message, "scheduled backup failed");
                app.emit(json!({"step": "scheduled_backup", "state": "failed", "error": error.message}));
            }
        }
    }
}

/// Reports progress to `/api/events` from the blocking work.
fn reporter(app: &AppState) -> impl FnMut(Progress) + Send + 'static {
    let app = app.clone();
    move |p: Progress| {
        app.emit(json!({"step": "progress", "operation": p.operation, "done_bytes": p.done_bytes, "total_bytes": p.total_bytes}))
    }
}

fn passphrase(text: Option<String>) -> Result<Option<backup::SecretString>, ApiError> {
    Ok(text.map(backup::check_passphrase).transpose()?)
}

#[utoipa::path(get, path = "/api/backups", tag = "backups", responses((status = 200, description = "the backups in backups/, newest first", body = Vec<Object>), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin", body = ErrorBody)))]
pub async fn list(State(app): State<AppState>, _admin: Admin) -> Result<Json<Vec<BackupInfo>>, ApiError> {
    let state = app.state.clone();
    Ok(Json(blocking(move || Ok(backup::list(&state)?)).await?))
}

#[utoipa::path(post, path = "/api/backups", tag = "backups", request_body = NewBackup, responses((status = 201, description = "written into backups/", body = Object), (status = 422, description = "a passphrase too short", body = ErrorBody), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin, or no CSRF token", body = ErrorBody)))]
pub async fn create(
    State(app): State<AppState>,
    _admin: Admin,
    body: Result<Json<NewBackup>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let options = BackupOptions {
        passphrase: passphrase(request.passphrase)?,
        include_data: request.include_data,
        work_factor: None,
    };
    let mut report = reporter(&app);
    let state = app.state.clone();
    let info = blocking(move || Ok(backup::create(&state.writer()?, None, &options, &mut report)?)).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

#[utoipa::path(get, path = "/api/backups/{id}", tag = "backups", params(("id" = String, Path, description = "the backup's file name")), responses((status = 200, description = "the archive", content_type = "application/zstd"), (status = 404, description = "no such backup", body = ErrorBody), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin", body = ErrorBody)))]
pub async fn download(
    State(app): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let state = app.state.clone();
    let path = {
        let id = id.clone();
        blocking(move || Ok(backup::find(&state, &id)?)).await?
    };
    let file = tokio::fs::File::open(&path).await.map_err(ApiError::internal)?;
    let size = file.metadata().await.map_err(ApiError::internal)?.len();
    Response::builder()
        .header(header::CONTENT_TYPE, "application/zstd")
        .header(header::CONTENT_LENGTH, size)
        .header(header::CONTENT_DISPOSITION, format!("attachment; filename=\"{id}\""))
        .body(Body::from_stream(tokio_util::io::ReaderStream::new(file)))
        .map_err(ApiError::internal)
}

#[utoipa::path(post, path = "/api/backups/upload", tag = "backups", request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "a backup archive (.tar.zst)"), responses((status = 201, description = "checked (hashes, sizes, format) and filed in backups/", body = Object), (status = 413, description = "too large", body = ErrorBody), (status = 422, description = "not a PIC backup, or damaged; the member is named", body = ErrorBody), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin, or no CSRF token", body = ErrorBody)))]
pub async fn upload(State(app): State<AppState>, _admin: Admin, request: Request) -> Result<Response, ApiError> {
    let state = app.state.clone();
    let incoming = blocking(move || Ok(backup::incoming_path(&state)?)).await?;
    // Streamed to disk as it arrives: an archive with data does not fit in memory.
    let received = receive(request.into_body(), &incoming, MAX_UPLOAD, "a backup upload").await;
    if let Err(error) = received {
        let _ = tokio::fs::remove_file(&incoming).await;
        return Err(error);
    }
    let mut report = reporter(&app);
    let state = app.state.clone();
    let info = blocking(move || Ok(backup::accept_upload(&state, &incoming, &mut report)?)).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

/// Streams an upload to `path` (a new file, 0600) as it arrives, refusing it past `limit` bytes.
pub(super) async fn receive(body: Body, path: &std::path::Path, limit: u64, what: &str) -> Result<(), ApiError> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(ApiError::internal)?;
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("{what} may have at most {limit} bytes"),
            ));
        }
        file.write_all(&chunk).await.map_err(storage_error)?;
    }
    file.sync_all().await.map_err(storage_error)?;
    Ok(())
}

fn storage_error(error: std::io::Error) -> ApiError {
    if error.kind() == std::io::ErrorKind::StorageFull {
        return ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "no_space", "no space left for the upload");
    }
    ApiError::internal(error)
}

#[utoipa::path(post, path = "/api/backups/{id}/restore", tag = "backups", params(("id" = String, Path, description = "the backup's file name")), request_body = RestoreRequest, responses((status = 200, description = "restored (or, dry, what would change); the archive's current generation is a new generation", body = Object), (status = 404, description = "no such backup", body = ErrorBody), (status = 422, description = "refused: damaged, hostile, newer format, wrong passphrase; nothing was changed", body = ErrorBody), (status = 507, description = "the disk filled up; nothing was changed", body = ErrorBody), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin, or no CSRF token", body = ErrorBody)))]
pub async fn restore(
    State(app): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    body: Result<Json<RestoreRequest>, JsonRejection>,
) -> Result<Json<RestoreReport>, ApiError> {
    let Json(request) = body?;
    let options = RestoreOptions {
        passphrase: passphrase(request.passphrase)?,
        include_data: request.include_data,
        dry_run: request.dry_run,
    };
    let mut report = reporter(&app);
    let state = app.state.clone();
    let restored = blocking(move || {
        let path = backup::find(&state, &id)?;
        Ok(backup::restore(&state, &path, &options, &mut report)?)
    })
    .await?;
    if !restored.dry_run && !restored.data.is_empty() {
        app.recreate(&restored.data).await;
    }
    Ok(Json(restored))
}
