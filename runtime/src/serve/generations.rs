//! Generations over HTTP: list, one, diff, switch, rollback; and the services of the current one.

use axum::Json;
use axum::extract::{Path, State};
use pic_builder::diff::GenerationDiff;
use pic_builder::generation::Manifest;
use pic_builder::state::{GenerationInfo, SwitchOutcome};
use serde_json::{Value, json};

use super::AppState;
use super::auth::Admin;
use super::error::{ApiError, blocking};

pub async fn list(State(app): State<AppState>, _admin: Admin) -> Result<Json<Vec<GenerationInfo>>, ApiError> {
    let state = app.state.clone();
    Ok(Json(blocking(move || Ok(state.generations()?)).await?))
}

pub async fn one(State(app): State<AppState>, _admin: Admin, Path(n): Path<u64>) -> Result<Json<Manifest>, ApiError> {
    let state = app.state.clone();
    Ok(Json(blocking(move || Ok(state.manifest(n)?)).await?))
}

pub async fn diff(
    State(app): State<AppState>,
    _admin: Admin,
    Path((a, b)): Path<(u64, u64)>,
) -> Result<Json<GenerationDiff>, ApiError> {
    let state = app.state.clone();
    Ok(Json(blocking(move || Ok(state.diff(a, b)?)).await?))
}

pub async fn switch(
    State(app): State<AppState>,
    _admin: Admin,
    Path(n): Path<u64>,
) -> Result<Json<SwitchOutcome>, ApiError> {
    let state = app.state.clone();
    Ok(Json(blocking(move || Ok(state.writer()?.switch(n)?)).await?))
}

pub async fn rollback(State(app): State<AppState>, _admin: Admin) -> Result<Json<SwitchOutcome>, ApiError> {
    let state = app.state.clone();
    Ok(Json(blocking(move || Ok(state.writer()?.rollback()?)).await?))
}

/// Each service of the current generation with its store path. (Its running state comes with
/// activation.)
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
