//! `GET /api/logs`: searching a service's log files (level, text, time).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use pic_builder::config::API_SERVICE;
use pic_builder::config::services;
use serde_json::Value;

use super::AppState;
use super::auth::Admin;
use super::error::{ApiError, ErrorBody, blocking};
use crate::logs;

#[utoipa::path(get, path = "/api/logs", tag = "logs", params(logs::Query), responses((status = 200, description = "matching entries, oldest first (JSON lines as objects)", body = Vec<Object>), (status = 400, description = "a bad query", body = ErrorBody), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin", body = ErrorBody)))]
pub async fn search(
    State(app): State<AppState>,
    _admin: Admin,
    query: Result<Query<logs::Query>, QueryRejection>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let service = query.service.clone().unwrap_or_else(|| API_SERVICE.to_string());
    if service != API_SERVICE && services::get(&service).is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("there is no service named {service:?}"),
        ));
    }
    let dir = logs::dir(app.state.root());
    let entries = blocking(move || logs::search(&dir, &service, &query).map_err(ApiError::internal)).await?;
    Ok(Json(entries))
}
