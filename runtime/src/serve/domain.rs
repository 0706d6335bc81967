//! `/api/domain`: how the cell is reached from the internet: the domain mode and, in `ddns`
//! mode, the provider's status (what was published, when, the last error), its credential, and
//! an update now (the web UI's "test credentials"); the certificates the names are served with
//! and, where `pic serve` gets them (DNS-01), the last order and a renewal now.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use pic_builder::config::Domain;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Admin;
use super::domain_certs;
use super::error::{ApiError, ErrorBody, blocking};
use crate::{acme, ddns};

#[utoipa::path(get, path = "/api/domain", tag = "domain", responses((status = 200, description = "the domain mode and name, the certificates its names are served with (names, issuer, expiry: the cell CA's, or those Caddy got from the ACME CA); in ddns mode the provider, whether its credential is kept, and the client's status (published addresses, last check, update and error, whether updates are stopped)", body = Object), (status = 403, description = "not an admin", body = ErrorBody)))]
pub async fn get(State(app): State<AppState>, _admin: Admin) -> Result<Json<Value>, ApiError> {
    let state = app.state.clone();
    blocking(move || {
        let config = state.desired_config()?.ok_or_else(|| ApiError::internal("no desired config"))?;
        Ok(Json(match &config.cell.domain {
            Domain::Local => json!({
                "mode": "local",
                "name": format!("{}.cell", config.cell.name),
                "certificates": domain_certs::from_cell_ca(&state).map_err(ApiError::internal)?,
            }),
            Domain::Public { name, .. } => json!({
                "mode": "public",
                "name": name,
                "certificates_by": config.cell.domain.certificates(),
                "certificates": domain_certs::public(&state),
            }),
            Domain::Ddns { provider, name, .. } => json!({
                "mode": "ddns",
                "name": name,
                "provider": provider,
                "credential_set": state.secrets().ddns_credential(*provider)?.is_some(),
                "ddns": ddns::status(&state).map_err(ApiError::internal)?,
                "certificates_by": config.cell.domain.certificates(),
                "certificates": domain_certs::public(&state),
                "acme": acme::status(&state).map_err(ApiError::internal)?,
            }),
        }))
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// The provider's API token, token or password.
    credential: String,
}

#[utoipa::path(put, path = "/api/domain/credential", tag = "domain", request_body = Credential, responses((status = 200, description = "kept in secrets/ddns/; the next cycle uses it (and a stop is lifted)", body = Object), (status = 409, description = "the domain mode is not ddns", body = ErrorBody), (status = 422, description = "not this provider's kind of credential (field `credential`)", body = ErrorBody)))]
pub async fn set_credential(
    State(app): State<AppState>,
    _admin: Admin,
    body: Result<Json<Credential>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let state = app.state.clone();
    let provider = blocking(move || {
        let config = state.desired_config()?.ok_or_else(|| ApiError::internal("no desired config"))?;
        let Domain::Ddns { provider, .. } = config.cell.domain else {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "not_ddns",
                "the domain mode is not ddns: choose a provider first",
            ));
        };
        state.secrets().set_ddns_credential(provider, &body.credential)?;
        Ok(provider)
    })
    .await?;
    app.ddns_wake.notify_one();
    app.acme_wake.notify_one();
    Ok(Json(json!({"provider": provider, "kept": true})))
}

#[utoipa::path(post, path = "/api/domain/update", tag = "domain", responses((status = 200, description = "one cycle now, sending an update even without a change: `result` is published, current, held (with `reason`: no credential, stopped, waiting) or failed (with the provider's `reason`)", body = Object), (status = 403, description = "not an admin", body = ErrorBody)))]
pub async fn update(State(app): State<AppState>, _admin: Admin) -> Result<Json<Value>, ApiError> {
    let http = ddns::Http::new().map_err(ApiError::internal)?;
    let cycle = ddns::cycle(&app.state, &http, jiff::Timestamp::now(), true).await.map_err(ApiError::internal)?;
    app.emit(json!({"step": "ddns", "result": cycle}));
    Ok(Json(serde_json::to_value(&cycle).map_err(ApiError::internal)?))
}

/// The client under `pic serve`: a cycle every `interval_seconds` (five minutes by default), and
/// one at once after a change of the config or the credential.
pub async fn run(app: AppState) {
    let http = match ddns::Http::new() {
        Ok(http) => http,
        Err(error) => return tracing::error!(error = %format!("{error:#}"), "no dynamic DNS client"),
    };
    loop {
        let state = app.state.clone();
        let interval = tokio::task::spawn_blocking(move || ddns::Settings::load(&state))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
            .map(|s| s.interval);
        if interval.is_some() {
            match ddns::cycle(&app.state, &http, jiff::Timestamp::now(), false).await {
                Ok(cycle @ (ddns::Cycle::Published { .. } | ddns::Cycle::Failed { .. })) => {
                    app.emit(json!({"step": "ddns", "result": cycle}));
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(error = %format!("{error:#}"), "the dynamic DNS cycle failed"),
            }
        }
        let wait = interval.unwrap_or(std::time::Duration::from_secs(300));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = app.ddns_wake.notified() => {}
        }
    }
}

#[utoipa::path(post, path = "/api/domain/certificate", tag = "domain", responses((status = 200, description = "an order now, where pic serve gets the certificate (ddns mode with Cloudflare or DuckDNS, by DNS-01): `result` is issued (names, not_after), failed (`reason`; the kept certificate stays), held (`reason`: no credential) or off (Caddy gets the certificates, or local mode)", body = Object), (status = 403, description = "not an admin", body = ErrorBody)))]
pub async fn renew(State(app): State<AppState>, _admin: Admin) -> Result<Json<Value>, ApiError> {
    let http = ddns::Http::new().map_err(ApiError::internal)?;
    let renewal = acme::renew(&app.state, &http, jiff::Timestamp::now(), true, app.dns_propagation)
        .await
        .map_err(ApiError::internal)?;
    app.emit(json!({"step": "certificate", "result": renewal}));
    app.acme_wake.notify_one();
    Ok(Json(serde_json::to_value(&renewal).map_err(ApiError::internal)?))
}

/// The certificate client under `pic serve`: a look every `acme::CHECK_INTERVAL`, and one at
/// once after a change of the config or the credential. A new certificate reaches Caddy and mail
/// through the monitor, which hands the services the certificates that cover their names.
pub async fn renew_certificates(app: AppState) {
    let http = match ddns::Http::new() {
        Ok(http) => http,
        Err(error) => return tracing::error!(error = %format!("{error:#}"), "no certificate client"),
    };
    loop {
        match acme::renew(&app.state, &http, jiff::Timestamp::now(), false, app.dns_propagation).await {
            Ok(renewal @ (acme::Renewal::Issued { .. } | acme::Renewal::Failed { .. })) => {
                app.emit(json!({"step": "certificate", "result": renewal}));
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %format!("{error:#}"), "the certificate check failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(acme::CHECK_INTERVAL) => {}
            _ = app.acme_wake.notified() => {}
        }
    }
}
