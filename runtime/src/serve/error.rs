//! `ApiError`: every error of the HTTP API, as `{"error": {"code", "message", "details"}}`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pic_builder::Error;
use pic_builder::config::FieldError;
use serde_json::json;

/// The shape of every error response (for the OpenAPI document).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
    /// Only on 428 before setup: where the wizard is.
    redirect: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ErrorDetail {
    code: String,
    message: String,
    /// For invalid configs: every problem, with `path`, `message` and `hint`.
    details: Vec<serde_json::Value>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<FieldError>,
    /// Extra top-level fields (`redirect` on the setup gate) and headers (`Retry-After`).
    pub redirect: Option<&'static str>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), details: Vec::new(), redirect: None, retry_after: None }
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "log in first: POST /api/auth/login")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        tracing::error!(%error, "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", error.to_string())
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        match error {
            Error::Invalid(errors) => ApiError {
                details: errors.0.clone(),
                ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_config", errors.to_string())
            },
            Error::NoSuchGeneration(_) | Error::NoSuchCertificate(_) | Error::NoSuchUser(_) | Error::NoSuchPeer(_) => {
                ApiError::not_found(error.to_string())
            }
            Error::NoSuchBackup(_) | Error::NoSuchApp(_) | Error::NoSuchLink(_) | Error::NoSuchExit(_) => {
                ApiError::not_found(error.to_string())
            }
            Error::LinkRefused(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "link_refused", error.to_string()),
            Error::AppInstalled(_) => ApiError::new(StatusCode::CONFLICT, "installed", error.to_string()),
            Error::ExitInUse { .. } => ApiError::new(StatusCode::CONFLICT, "exit_in_use", error.to_string()),
            Error::BackupRefused { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "backup_refused", error.to_string())
            }
            Error::NoSpace { .. } => ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "no_space", error.to_string()),
            Error::UpdateRefused { kind, .. } => {
                use pic_builder::update::bundle::Refusal;
                let status = match kind {
                    Refusal::NotConfirmed | Refusal::Unsupported => StatusCode::CONFLICT,
                    Refusal::NoSpace => StatusCode::INSUFFICIENT_STORAGE,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                ApiError::new(status, kind.code(), error.to_string())
            }
            Error::NoCurrentGeneration | Error::NothingToRollBackTo(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", error.to_string())
            }
            e if e.is_invalid_input() => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", e.to_string())
            }
            e => ApiError::internal(e),
        }
    }
}

impl From<crate::peers::UpdateError> for ApiError {
    fn from(error: crate::peers::UpdateError) -> ApiError {
        match error {
            crate::peers::UpdateError::Builder(e) => e.into(),
            crate::peers::UpdateError::Widens(ref details) => {
                ApiError { details: details.clone(), ..ApiError::forbidden(error.to_string()) }
            }
        }
    }
}

impl From<pic_builder::config::ValidationErrors> for ApiError {
    fn from(errors: pic_builder::config::ValidationErrors) -> ApiError {
        Error::Invalid(errors).into()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let status = rejection.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "bad_request",
        };
        // Wrong types and unknown fields are the client's mistake: 4xx, never 5xx.
        let status = if status.is_server_error() { StatusCode::BAD_REQUEST } else { status };
        ApiError::new(status, code, rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": {"code": self.code, "message": self.message, "details": self.details}});
        if let Some(redirect) = self.redirect {
            body["redirect"] = redirect.into();
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Runs blocking builder work (file locks, fsync) off the async executor.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(ApiError::internal)?
}
