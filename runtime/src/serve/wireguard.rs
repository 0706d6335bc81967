//! The cell's WireGuard server as the WireGuard page shows it: what a device dials and the key
//! it trusts, and a new key when the old one may have leaked. Its settings are the config's
//! `wireguard` (changed like any other part of it).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Admin;
use super::error::{ApiError, ErrorBody, blocking};

#[utoipa::path(get, path = "/api/wireguard", tag = "peers", responses((status = 200, description = "the server: `public_key`, `address` (its address in the VPN), `subnet`, `listen_port`, `endpoint` (what devices dial, if set), `peers` (how many devices)", body = Object), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin", body = ErrorBody)))]
pub async fn server(State(app): State<AppState>, _admin: Admin) -> Result<Json<Value>, ApiError> {
    let state = app.state.clone();
    blocking(move || {
        let config = state.desired_config()?.ok_or_else(|| ApiError::internal("no desired config"))?;
        let wireguard = &config.wireguard;
        Ok(Json(json!({
            "public_key": state.public_keys()?.wireguard,
            "address": config.wireguard_address().to_string(),
            "subnet": wireguard.subnet.to_string(),
            "listen_port": wireguard.listen_port,
            "endpoint": wireguard.endpoint,
            "peers": wireguard.peers.len(),
        })))
    })
    .await
}

/// What a new server key is said as, in the history.
pub const ROTATED: &str = "rotated the VPN server's key";

#[utoipa::path(post, path = "/api/wireguard/rotate-key", tag = "peers", responses((status = 200, description = "a new server key pair, in a new generation switched to and applied: `public_key`, `generation`. Every device needs its config again (its QR code), since it trusts the old key; a rollback keeps the new key", body = Object), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin, or no CSRF token", body = ErrorBody), (status = 409, description = "`linked_cells`: linked cells know the old key and would lose their link; remove the links, rotate, link again", body = ErrorBody)))]
pub async fn rotate_key(State(app): State<AppState>, _admin: Admin) -> Result<Json<Value>, ApiError> {
    let state = app.state.clone();
    blocking(move || {
        let writer = state.writer()?;
        let config = state.desired_config()?.ok_or_else(|| ApiError::internal("no desired config"))?;
        if !config.links.is_empty() {
            let names: Vec<&str> = config.links.iter().map(|l| l.name.as_str()).collect();
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "linked_cells",
                format!(
                    "the linked cells {} reach this cell by its current key and would lose their link; \
                     remove the links, make the new key, then link the cells again",
                    names.join(", ")
                ),
            ));
        }
        let public_key = state.secrets().rotate_wireguard_key()?;
        let built = writer.build(None, ROTATED)?;
        writer.switch(built.generation)?;
        tracing::info!(generation = built.generation, "the VPN server has a new key");
        Ok(Json(json!({"public_key": public_key, "generation": built.generation})))
    })
    .await
}
