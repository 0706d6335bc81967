//! `/api/peers`: VPN peers. Admins see and change every peer; a user with role peer sees and
//! changes only the devices that name them as `user`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pic_builder::Error;
use pic_builder::config::{Peer, Role};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashMap;

use super::AppState;
use super::auth::{Admin, Session};
use super::error::{ApiError, ErrorBody, blocking};
#[allow(unused_imports)] // NewPeer and PeerPatch are named by the OpenAPI attributes.
use crate::peers::{self, ChangedBy, NewPeer, PeerPatch};
use crate::wireguard::PeerStatus;

/// The peers `session` may see.
fn visible(app: &AppState, session: &Session) -> Result<Vec<Peer>, ApiError> {
    let config = app.state.desired_config()?.ok_or_else(|| ApiError::internal("no desired config"))?;
    Ok(config.wireguard.peers.iter().filter(|p| may_see(session, p)).cloned().collect())
}

fn may_see(session: &Session, peer: &Peer) -> bool {
    session.role == Role::Admin || peer.user.as_deref() == Some(session.user.as_str())
}

/// The peer `name`, if `session` may see it; another user's peer is as absent as a missing one.
fn find(app: &AppState, session: &Session, name: &str) -> Result<Peer, ApiError> {
    visible(app, session)?.into_iter().find(|p| p.name == name).ok_or_else(|| Error::NoSuchPeer(name.into()).into())
}

/// A peer with its live state on the WireGuard interface, when there is one.
#[derive(Serialize)]
pub struct PeerView {
    #[serde(flatten)]
    peer: Peer,
    status: Option<PeerStatus>,
}

#[utoipa::path(get, path = "/api/peers", tag = "peers", responses((status = 200, description = "the peers the caller may see, with live status", body = Vec<Object>), (status = 401, description = "no session", body = ErrorBody)))]
pub async fn list(State(app): State<AppState>, session: Session) -> Result<Json<Vec<PeerView>>, ApiError> {
    // The common case stays on the executor: the config as read after its last change (one
    // `stat`) and the interface's status of the last second; a change or an old status is read
    // in the blocking pool.
    let config = match app.state.desired_config_if_unchanged() {
        Some(config) => config,
        None => {
            let state = app.state.clone();
            blocking(move || state.desired_config_shared()?.ok_or_else(|| ApiError::internal("no desired config")))
                .await?
        }
    };
    let status = match &app.wireguard {
        None => None,
        Some(wg) => match wg.recent_status() {
            Some(status) => Some(status),
            None => {
                let wg = wg.clone();
                blocking(move || Ok(wg.fresh_status().ok())).await?
            }
        },
    };
    let mut live: HashMap<&str, &PeerStatus> =
        status.iter().flat_map(|s| s.iter()).map(|s| (s.public_key.as_str(), s)).collect();
    let views = config
        .wireguard
        .peers
        .iter()
        .filter(|p| may_see(&session, p))
        .map(|peer| PeerView { status: live.remove(peer.public_key.as_str()).cloned(), peer: peer.clone() })
        .collect();
    Ok(Json(views))
}

#[utoipa::path(get, path = "/api/peers/{name}", tag = "peers", params(("name" = String, Path)), responses((status = 200, description = "the peer", body = Object), (status = 404, description = "no such peer (or not the caller's)", body = ErrorBody)))]
pub async fn one(
    State(app): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> Result<Json<Peer>, ApiError> {
    Ok(Json(blocking(move || find(&app, &session, &name)).await?))
}

#[utoipa::path(post, path = "/api/peers", tag = "peers", request_body = NewPeer, responses((status = 201, description = "added, built and switched; applied live", body = Object), (status = 422, description = "invalid", body = ErrorBody), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin, or no CSRF token", body = ErrorBody)))]
pub async fn create(
    State(app): State<AppState>,
    _admin: Admin,
    body: Result<Json<NewPeer>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(new) = body?;
    let state = app.state.clone();
    let (peer, switched) = blocking(move || {
        let reason = format!("POST /api/peers {}", new.name);
        Ok(peers::add(&state, new, &reason)?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!({"peer": peer, "generation": switched.to}))).into_response())
}

#[utoipa::path(patch, path = "/api/peers/{name}", tag = "peers", params(("name" = String, Path)), request_body = PeerPatch, responses((status = 200, description = "changed, built and switched", body = Object), (status = 403, description = "the caller owns the device but asked to let it reach more (turn it on, route everything, keep it longer, add services): only an admin may", body = ErrorBody), (status = 404, description = "no such peer (or not the caller's)", body = ErrorBody), (status = 422, description = "invalid", body = ErrorBody)))]
pub async fn update(
    State(app): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    body: Result<Json<PeerPatch>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(patch) = body?;
    let (peer, switched) = blocking(move || {
        find(&app, &session, &name)?;
        let by = if session.role == Role::Admin { ChangedBy::Admin } else { ChangedBy::Owner };
        Ok(peers::update(&app.state, &name, patch, &format!("PATCH /api/peers/{name}"), by)?)
    })
    .await?;
    Ok(Json(json!({"peer": peer, "generation": switched.to})))
}

#[utoipa::path(delete, path = "/api/peers/{name}", tag = "peers", params(("name" = String, Path)), responses((status = 200, description = "removed, built and switched", body = Object), (status = 404, description = "no such peer", body = ErrorBody), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin, or no CSRF token", body = ErrorBody)))]
pub async fn delete(
    State(app): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let state = app.state.clone();
    let switched = blocking(move || Ok(peers::remove(&state, &name, &format!("DELETE /api/peers/{name}"))?)).await?;
    Ok(Json(json!({"generation": switched.to})))
}

#[utoipa::path(get, path = "/api/peers/{name}/config", tag = "peers", params(("name" = String, Path)), responses((status = 200, description = "the wg-quick file for the device", content_type = "text/plain"), (status = 404, description = "no such peer (or not the caller's)", body = ErrorBody)))]
pub async fn config(
    State(app): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (name, text) = client_config(app, session, name).await?;
    let disposition = format!("attachment; filename=\"{name}.conf\"");
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, disposition)],
        text,
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/peers/{name}/qr.svg", tag = "peers", params(("name" = String, Path)), responses((status = 200, description = "the wg-quick file as a QR code", content_type = "image/svg+xml"), (status = 404, description = "no such peer (or not the caller's)", body = ErrorBody)))]
pub async fn qr(State(app): State<AppState>, session: Session, Path(name): Path<String>) -> Result<Response, ApiError> {
    let (_, text) = client_config(app, session, name).await?;
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(ApiError::internal)?;
    let svg = code.render::<qrcode::render::svg::Color>().min_dimensions(256, 256).build();
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

async fn client_config(app: AppState, session: Session, name: String) -> Result<(String, String), ApiError> {
    blocking(move || {
        find(&app, &session, &name)?;
        let text = peers::client_config(&app.state, &name)?;
        Ok((name, text))
    })
    .await
}
