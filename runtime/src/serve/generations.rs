//! Generations over HTTP: list, one, diff, switch, rollback; and the services of the current one.

use axum::Json;
use axum::extract::{Path, State};
use pic_builder::diff::GenerationDiff;
use pic_builder::generation::Manifest;
use pic_builder::state::{GenerationInfo, SwitchOutcome};
use serde_json::{Value, json};

use super::AppState;
use super::auth::Admin;
use super::error::{ApiError, ErrorBody, blocking};

#[utoipa::path(get, path = "/api/generations", tag = "generations", responses((status = 200, description = "every generation, oldest first", body = Vec<Object>), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin, or no CSRF token", body = ErrorBody)))]
pub async fn list(State(app): State<AppState>, _admin: Admin) -> Result<Json<Vec<GenerationInfo>>, ApiError> {
    let state = app.state.clone();
    Ok(Json(blocking(move || Ok(state.generations()?)).await?))
}

#[utoipa::path(get, path = "/api/generations/{n}", tag = "generations", params(("n" = u64, Path, description = "generation number")), responses((status = 200, description = "its manifest", body = Object), (status = 404, description = "no such generation", body = ErrorBody), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin, or no CSRF token", body = ErrorBody)))]
pub async fn one(State(app): State<AppState>, _admin: Admin, Path(n): Path<u64>) -> Result<Json<Manifest>, ApiError> {
    let state = app.state.clone();
    Ok(Json(blocking(move || Ok(state.manifest(n)?)).await?))
}

#[utoipa::path(get, path = "/api/generations/{a}/diff/{b}", tag = "generations", params(("a" = u64, Path, description = "from"), ("b" = u64, Path, description = "to")), responses((status = 200, description = "config and per-service, per-file unified diffs", body = Object), (status = 404, description = "no such generation", body = ErrorBody), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin, or no CSRF token", body = ErrorBody)))]
pub async fn diff(
    State(app): State<AppState>,
    _admin: Admin,
    Path((a, b)): Path<(u64, u64)>,
) -> Result<Json<GenerationDiff>, ApiError> {
    let state = app.state.clone();
    Ok(Json(blocking(move || Ok(state.diff(a, b)?)).await?))
}

#[utoipa::path(post, path = "/api/generations/{n}/switch", tag = "generations", params(("n" = u64, Path, description = "generation number")), responses((status = 200, description = "switched", body = Object), (status = 404, description = "no such generation", body = ErrorBody), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin, or no CSRF token", body = ErrorBody)))]
pub async fn switch(
    State(app): State<AppState>,
    _admin: Admin,
    Path(n): Path<u64>,
) -> Result<Json<SwitchOutcome>, ApiError> {
    let state = app.state.clone();
    Ok(Json(blocking(move || Ok(state.writer()?.switch(n)?)).await?))
}

#[utoipa::path(post, path = "/api/rollback", tag = "generations", responses((status = 200, description = "switched to the generation before the current one", body = Object), (status = 409, description = "nothing to roll back to", body = ErrorBody), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin, or no CSRF token", body = ErrorBody)))]
pub async fn rollback(State(app): State<AppState>, _admin: Admin) -> Result<Json<SwitchOutcome>, ApiError> {
    let state = app.state.clone();
    Ok(Json(blocking(move || Ok(state.writer()?.rollback()?)).await?))
}

/// Each service of the current generation with its store path. (Its running state comes with
/// activation.)
#[utoipa::path(get, path = "/api/services", tag = "generations", responses((status = 200, description = "the services of the current generation and their store paths", body = Object), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin, or no CSRF token", body = ErrorBody)))]
pub async fn services(State(app): State<AppState>, _admin: Admin) -> Result<Json<Value>, ApiError> {
    let state = app.state.clone();
    let body = blocking(move || {
        let Some(current) = state.current()? else { return Ok(json!({"generation": null, "services": {}})) };
        let manifest = state.manifest(current)?;
        Ok(json!({"generation": current, "services": manifest.services}))
    })
    .await?;
    Ok(Json(body))
}
