//! `/api/updates`: the device's slots and versions, a bundle uploaded and written into the
//! inactive slot (progress on `/api/events` as `{"step": "progress", "operation": "update"}`),
//! and the restart into the new version.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pic_builder::update::apply;
use pic_builder::update::slots::SlotState;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Admin;
use super::error::{ApiError, ErrorBody, blocking};

/// A bundle is a root (a few hundred MB), a kernel and an initrd; anything past this is not one.
pub const MAX_BUNDLE: u64 = 4 * 1024 * 1024 * 1024;

const NOT_AN_APPLIANCE: &str = "this machine was not started from a PIC disk image: it has no slots to update";

#[utoipa::path(get, path = "/api/updates", tag = "updates", responses((status = 200, description = "`supported` (whether this machine boots from PIC's A/B slots) and then: the running `version`, `booted_slot`, `boot` (`good` or `trying`: on trial), each slot's version and state (`good`, `trying` with `tries_left`, `bad`, `empty`), the versions `rejected` with why, and whether an update can be applied now (`ready`, else `not_ready_reason`)", body = Object), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin", body = ErrorBody)))]
pub async fn status(State(app): State<AppState>, _admin: Admin) -> Result<Json<Value>, ApiError> {
    let Some(device) = app.updates.clone() else {
        return Ok(Json(json!({"supported": false, "reason": NOT_AN_APPLIANCE})));
    };
    let status = blocking(move || {
        device.note_rejections()?;
        Ok(device.status()?)
    })
    .await?;
    let mut value = serde_json::to_value(status).map_err(ApiError::internal)?;
    value["supported"] = json!(true);
    Ok(Json(value))
}

#[utoipa::path(post, path = "/api/updates", tag = "updates", request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "an update bundle (pic-<version>.picupd)"), responses((status = 200, description = "checked and written into the inactive slot: `version`, `slot`, `bytes`, `seconds`; the device starts it at its next restart (`POST /api/updates/reboot`), on trial", body = Object), (status = 409, description = "not now: this boot is still on trial (`not_confirmed`), or the machine has no slots (`unsupported`); nothing was written", body = ErrorBody), (status = 413, description = "too large to be a bundle", body = ErrorBody), (status = 422, description = "refused, nothing written: `bad_signature`, `damaged`, `wrong_architecture`, `not_newer`, `too_old`, `rejected_before`", body = ErrorBody), (status = 507, description = "it does not fit: the slot or the boot partition (`no_space`), or the upload filled the data partition", body = ErrorBody), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin, or no CSRF token", body = ErrorBody)))]
pub async fn upload(State(app): State<AppState>, _admin: Admin, request: Request) -> Result<Response, ApiError> {
    let Some(device) = app.updates.clone() else {
        return Err(ApiError::new(StatusCode::CONFLICT, "unsupported", NOT_AN_APPLIANCE));
    };
    // Refused before the upload when the answer cannot change with what is sent.
    let ready = {
        let device = device.clone();
        blocking(move || Ok(device.status()?)).await?
    };
    if ready.boot == SlotState::Trying {
        return Err(ApiError::new(StatusCode::CONFLICT, "not_confirmed", ready.not_ready_reason.unwrap_or_default()));
    }
    let dir = device.state.clone();
    let incoming = dir.join(format!("{}incoming.picupd", pic_builder::fsutil::TMP_PREFIX));
    {
        let dir = dir.clone();
        let incoming = incoming.clone();
        blocking(move || {
            pic_builder::fsutil::ensure_dir(&dir, 0o700)?;
            match std::fs::remove_file(&incoming) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ApiError::internal(e)),
                _ => Ok(()),
            }
        })
        .await?;
    }
    // One update at a time: a second upload while one is written waits its turn.
    let _guard = app.update_lock.lock().await;
    let received = super::backups::receive(request.into_body(), &incoming, MAX_BUNDLE, "an update bundle").await;
    if let Err(error) = received {
        let _ = tokio::fs::remove_file(&incoming).await;
        return Err(error);
    }
    let events = app.clone();
    let path = incoming.clone();
    let applied = blocking(move || {
        let mut last = 0;
        Ok(apply::apply(&device, &path, &mut |done, total| {
            let percent = done * 100 / total.max(1);
            if percent > last || done == total {
                last = percent;
                events
                    .emit(json!({"step": "progress", "operation": "update", "done_bytes": done, "total_bytes": total}));
            }
        })?)
    })
    .await;
    let _ = tokio::fs::remove_file(&incoming).await;
    let applied = applied?;
    tracing::info!(version = %applied.version, slot = %applied.slot, seconds = applied.seconds, "update written");
    app.emit(json!({"step": "update_written", "version": applied.version, "slot": applied.slot}));
    Ok((StatusCode::OK, Json(applied)).into_response())
}

#[utoipa::path(post, path = "/api/updates/reboot", tag = "updates", responses((status = 202, description = "the device restarts into the version written (in a second, after this answer)", body = Object), (status = 409, description = "no new version is waiting to be started", body = ErrorBody), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin, or no CSRF token", body = ErrorBody)))]
pub async fn reboot(State(app): State<AppState>, _admin: Admin) -> Result<Response, ApiError> {
    let Some(device) = app.updates.clone() else {
        return Err(ApiError::new(StatusCode::CONFLICT, "unsupported", NOT_AN_APPLIANCE));
    };
    let status = blocking(move || Ok(device.status()?)).await?;
    let Some(waiting) = status.slots.iter().find(|s| !s.booted && s.state == SlotState::Trying) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "nothing_waiting",
            "no new version is waiting to be started: upload an update first",
        ));
    };
    let version = waiting.version.clone();
    tracing::info!(version = ?version, "restarting into the new version");
    app.emit(json!({"step": "rebooting", "version": version}));
    tokio::spawn(async {
        // The answer goes out first.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        if let Err(e) = tokio::task::spawn_blocking(|| pic_builder::command::run("systemctl", &["reboot"])).await {
            tracing::error!(error = %e, "systemctl reboot");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(json!({"rebooting": true, "version": version}))).into_response())
}
