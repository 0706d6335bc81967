//! `GET /api/config` and `PUT /api/config`: the desired config, with its content hash as ETag so
//! that two clients editing at once cannot overwrite each other (If-Match, 412).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pic_builder::config;
use pic_builder::hashing::sha256_hex;
use serde_json::json;

use super::AppState;
use super::auth::Admin;
use super::error::{ApiError, ErrorBody, blocking};

/// The ETag of a config text: a quoted prefix of its sha256.
fn etag_of(text: &str) -> String {
    format!("\"{}\"", &sha256_hex(text.as_bytes())[..32])
}

#[utoipa::path(get, path = "/api/config", tag = "config", responses((status = 200, description = "the desired cell config (see `pic schema`); ETag is its revision", body = Object), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin, or no CSRF token", body = ErrorBody)))]
pub async fn get(State(app): State<AppState>, _admin: Admin) -> Result<Response, ApiError> {
    let path = app.state.desired_config_path();
    let text = tokio::fs::read_to_string(&path).await.map_err(ApiError::internal)?;
    let etag = etag_of(&text);
    let value: serde_json::Value = serde_json::from_str(&text).map_err(ApiError::internal)?;
    let mut response = Json(value).into_response();
    response.headers_mut().insert(header::ETAG, HeaderValue::from_str(&etag).map_err(ApiError::internal)?);
    Ok(response)
}

/// The largest config `PUT /api/config` takes (a cell of 10,000 peers is about 3 MiB).
pub const CONFIG_BODY_LIMIT: usize = 8 << 20;

#[utoipa::path(put, path = "/api/config", tag = "config", request_body(content = Object, description = "a whole cell config"), params(("If-Match" = String, Header, description = "the ETag of GET /api/config")), responses((status = 200, description = "built and switched; the new ETag", body = Object), (status = 412, description = "the config changed since it was read", body = ErrorBody), (status = 422, description = "invalid: every problem with its field path", body = ErrorBody), (status = 428, description = "If-Match missing", body = ErrorBody), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin, or no CSRF token", body = ErrorBody)))]
pub async fn put(
    State(app): State<AppState>,
    _admin: Admin,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let if_match =
        headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()).map(str::to_string).ok_or_else(|| {
            ApiError::new(
                StatusCode::PRECONDITION_REQUIRED,
                "if_match_required",
                "send If-Match with the ETag of GET /api/config",
            )
        })?;
    // A whole config may be large (thousands of peers): its own limit, above every other body's.
    let body = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, CONFIG_BODY_LIMIT))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("a config is at most {} MiB", CONFIG_BODY_LIMIT >> 20),
            )
        })?
        .to_bytes();
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "the body is not UTF-8"))?;
    let new_config = config::parse(text)?;
    let state = app.state.clone();
    let (generation, etag) = blocking(move || {
        let writer = state.writer()?;
        // Compared under the writer lock: of two PUTs with the same ETag, exactly one wins.
        let current = std::fs::read_to_string(state.desired_config_path()).map_err(ApiError::internal)?;
        if etag_of(&current) != if_match {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "stale_config",
                "the config changed since you read it; GET it again",
            ));
        }
        let switched = writer.build_and_switch(&new_config, "PUT /api/config")?;
        Ok((switched.to, etag_of(&config::to_canonical_json(&new_config))))
    })
    .await?;
    let mut response = Json(json!({"generation": generation})).into_response();
    response.headers_mut().insert(header::ETAG, HeaderValue::from_str(&etag).map_err(ApiError::internal)?);
    Ok(response)
}
