//! The cell's WireGuard server as the WireGuard page shows it: what a device dials and the key
//! it trusts. Its settings are the config's `wireguard` (changed like any other part of it).

use axum::Json;
use axum::extract::State;
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
