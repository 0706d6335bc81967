//! The cell CA over HTTP: its certificate for devices to trust, the certificates it issued, and
//! revocation (the CRL is rewritten and a replacement issued at once).

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use pic_builder::ca::{CaIdentity, IssuedCert};
use serde_json::json;

use super::auth::{Admin, Session};
use super::error::{ApiError, ErrorBody, blocking};
use super::{AfterChange, AppState};

#[utoipa::path(get, path = "/api/ca.crt", tag = "certificates", responses((status = 200, description = "the cell CA's certificate (PEM), for devices to trust", content_type = "application/x-pem-file"), (status = 401, description = "no session", body = ErrorBody)))]
pub async fn ca(State(app): State<AppState>, _session: Session) -> Result<impl IntoResponse, ApiError> {
    let state = app.state.clone();
    let pem = blocking(move || Ok(state.ca().certificate_pem()?)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-pem-file"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"cell-ca.crt\""),
        ],
        pem,
    ))
}

#[utoipa::path(get, path = "/api/ca", tag = "certificates", responses((status = 200, description = "the cell CA as a person checks it before trusting it: `subject`, `fingerprint_sha256` (as browsers show it), `not_after`", body = Object), (status = 401, description = "no session", body = ErrorBody)))]
pub async fn identity(State(app): State<AppState>, _session: Session) -> Result<Json<CaIdentity>, ApiError> {
    let state = app.state.clone();
    Ok(Json(blocking(move || Ok(state.ca().identity()?)).await?))
}

#[utoipa::path(get, path = "/api/certs", tag = "certificates", responses((status = 200, description = "every certificate the cell CA issued", body = Vec<Object>), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin", body = ErrorBody)))]
pub async fn list(State(app): State<AppState>, _admin: Admin) -> Result<Json<Vec<IssuedCert>>, ApiError> {
    let state = app.state.clone();
    Ok(Json(blocking(move || Ok(state.ca().list()?)).await?))
}

#[utoipa::path(post, path = "/api/certs/{serial}/revoke", tag = "certificates", params(("serial" = String, Path, description = "hex serial")), responses((status = 200, description = "revoked; the CRL is rewritten and the name gets a new certificate", body = Object), (status = 404, description = "no certificate has that serial", body = ErrorBody), (status = 403, description = "not an admin", body = ErrorBody)))]
pub async fn revoke(
    State(app): State<AppState>,
    _admin: Admin,
    Path(serial): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let state = app.state.clone();
    let revoked = blocking(move || {
        let writer = state.writer()?;
        let revoked = state.ca().revoke(&serial)?;
        // A build keeps the certificates current: the revoked name gets a new one now.
        writer.build(None, &format!("revoked certificate {serial}"))?;
        Ok(revoked)
    })
    .await?;
    // No generation changed, but the name's new certificate must reach the daemons that serve it.
    Ok((Extension(AfterChange::Activate), Json(json!({"revoked": revoked}))))
}
