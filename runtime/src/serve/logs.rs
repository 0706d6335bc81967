//! `GET /api/logs`: searching the log files of one service or of all together (level, text,
//! time): `pic serve`'s own and each container's, copied by `docker::collect_logs`.

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

#[utoipa::path(get, path = "/api/logs", tag = "logs", params(logs::Query), responses((status = 200, description = "matching entries, oldest first (JSON lines as objects, each with its `service`)", body = Vec<Object>), (status = 400, description = "a bad query", body = ErrorBody), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin", body = ErrorBody)))]
pub async fn search(
    State(app): State<AppState>,
    _admin: Admin,
    query: Result<Query<logs::Query>, QueryRejection>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let service = query.service.clone();
    let dir = logs::dir(app.state.root());
    // An app's or an exit's container has a log file of its name once it ran.
    if let Some(service) = &service
        && service != API_SERVICE
        && services::get(service).is_none()
        && !(pic_builder::config::is_label(service) && dir.join(format!("{service}.log")).is_file())
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("there is no service named {service:?}"),
        ));
    }
    let entries = blocking(move || logs::search(&dir, service.as_deref(), &query).map_err(ApiError::internal)).await?;
    Ok(Json(entries))
}
