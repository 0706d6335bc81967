//! `/api/cells`: links with other cells — invitations, accepting one, grants, removal and each
//! link's state — and, under `pic serve`, the peer-sync server on the tunnel address and the
//! loop that syncs every link.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use pic_builder::Error;
use pic_builder::config::Link;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::auth::Admin;
use super::error::{ApiError, ErrorBody, blocking};
use crate::links::{self, Join, SIGNATURE_HEADER, status, sync};
use crate::wireguard::PeerStatus;

/// A handshake older than this means the link is down (WireGuard rekeys every 2 minutes and
/// gives a session up after 3).
const HANDSHAKE_STALE: Duration = Duration::from_secs(180);

/// A linked cell as `GET /api/cells` and `pic link list` show it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CellView {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub link: Link,
    /// The tunnel carried a handshake within the last 3 minutes.
    pub up: bool,
    #[schema(value_type = Option<Object>)]
    pub wireguard: Option<PeerStatus>,
    #[serde(flatten)]
    pub status: status::LinkStatus,
}

/// Every link with its state.
pub fn views(app: &AppState) -> Result<Vec<CellView>, ApiError> {
    let config = app.state.desired_config()?.ok_or_else(|| ApiError::internal("no desired config"))?;
    let mut known = status::read(&app.state)?;
    let live: Vec<PeerStatus> = app.wireguard.as_ref().and_then(|w| w.status().ok()).unwrap_or_default();
    let now = jiff::Timestamp::now();
    Ok(config
        .links
        .iter()
        .map(|link| {
            let wireguard = live.iter().find(|p| p.public_key == link.public_key).cloned();
            let up = wireguard
                .as_ref()
                .and_then(|w| w.last_handshake.as_deref())
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .is_some_and(|t| now.duration_since(t).unsigned_abs() < HANDSHAKE_STALE);
            CellView { link: link.clone(), up, wireguard, status: known.links.remove(&link.name).unwrap_or_default() }
        })
        .collect())
}

#[utoipa::path(get, path = "/api/cells", tag = "cells", responses((status = 200, description = "the linked cells: the link, the tunnel's state, the last peer-sync and what the other cell grants this one", body = Vec<CellView>), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin", body = ErrorBody)))]
pub async fn list(State(app): State<AppState>, _admin: Admin) -> Result<Json<Vec<CellView>>, ApiError> {
    Ok(Json(blocking(move || views(&app)).await?))
}

/// An invitation to make.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    /// The services of this cell the invited cell may reach.
    #[serde(default)]
    pub grants: Vec<String>,
    /// Hours until it expires (default 168, a week).
    #[serde(default)]
    pub expires_in_hours: Option<u32>,
    /// Where the invited cell completes the exchange (default `https://<this cell's domain>`).
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvitationView {
    /// The token to hand to the other cell's admin (`pic link accept TOKEN`, or the web UI).
    pub token: String,
    #[schema(value_type = String)]
    pub expires: jiff::Timestamp,
    pub grants: Vec<String>,
}

#[utoipa::path(post, path = "/api/cells/invitations", tag = "cells", request_body = NewInvitation, responses((status = 201, description = "a signed invitation token; nothing else changed", body = InvitationView), (status = 422, description = "a grant the cell cannot give", body = ErrorBody), (status = 403, description = "not an admin, or no CSRF token", body = ErrorBody)))]
pub async fn invite(
    State(app): State<AppState>,
    _admin: Admin,
    body: Result<Json<NewInvitation>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(new) = body?;
    let hours = new.expires_in_hours.unwrap_or(168);
    if hours == 0 || hours > 24 * 90 {
        let errors = pic_builder::config::ValidationErrors::single(
            "expires_in_hours",
            format!("{hours} is out of range"),
            "give 1 to 2160 hours (90 days)",
        );
        return Err(errors.into());
    }
    let state = app.state.clone();
    let (token, invitation) = blocking(move || {
        links::invite(&state, new.grants, Duration::from_secs(u64::from(hours) * 3600), new.url).map_err(api_error)
    })
    .await?;
    let view = InvitationView { token, expires: invitation.expires, grants: invitation.grants };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// An invitation token from another cell, and what this cell grants it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Acceptance {
    pub token: String,
    #[serde(default)]
    pub grants: Vec<String>,
}

#[utoipa::path(post, path = "/api/cells/accept", tag = "cells", request_body = Acceptance, responses((status = 201, description = "linked: the other cell completed the exchange; built, switched and applied", body = Object), (status = 422, description = "the token is not valid here (expired, changed, overlapping networks, a domain clash) or the other cell refused it", body = ErrorBody), (status = 502, description = "the other cell could not be reached", body = ErrorBody)))]
pub async fn accept(
    State(app): State<AppState>,
    _admin: Admin,
    body: Result<Json<Acceptance>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(acceptance) = body?;
    let (link, switched) = links::accept(&app.state, &acceptance.token, acceptance.grants).await.map_err(|e| {
        match e.downcast::<Error>() {
            Ok(error) => ApiError::from(error),
            Err(other) => ApiError::new(StatusCode::BAD_GATEWAY, "link_unreachable", format!("{other:#}")),
        }
    })?;
    Ok((StatusCode::CREATED, Json(json!({"link": link, "generation": switched.to}))).into_response())
}

#[utoipa::path(post, path = "/api/cells/join", tag = "cells", request_body = Join, responses((status = 200, description = "the invitation was used: the link is in this cell's config; the answer is this cell's card, signed in x-pic-signature", body = Object), (status = 422, description = "no such invitation, used, expired, or a link the config refuses", body = ErrorBody)))]
/// The one route an invited cell calls without a session: the invitation's secret is what
/// admits it.
pub async fn join(State(app): State<AppState>, body: Result<Json<Join>, JsonRejection>) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let state = app.state.clone();
    let name = request.card.name.clone();
    let (joined, _) = blocking(move || Ok(links::join(&state, &request)?)).await.inspect_err(|e| {
        tracing::warn!(cell = %name, error = %e.message, "an invitation was refused");
    })?;
    let body = serde_json::to_vec(&joined).map_err(|e| ApiError::internal(e.to_string()))?;
    let key = pic_builder::links::signing_key(app.state.secrets().dir())?;
    let signature = pic_builder::links::sign(&key, &body);
    tracing::info!(cell = %joined.card.name, "linked with a cell that accepted an invitation");
    Ok(([(SIGNATURE_HEADER, signature), ("content-type", "application/json".into())], body).into_response())
}

/// Grants to set.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    pub grants: Vec<String>,
}

#[utoipa::path(put, path = "/api/cells/{name}/grants", tag = "cells", params(("name" = String, Path)), request_body = Grants, responses((status = 200, description = "built, switched and applied; the other cell hears of it at the next peer-sync", body = Object), (status = 404, description = "no such link", body = ErrorBody), (status = 422, description = "a grant the cell cannot give", body = ErrorBody)))]
pub async fn grants(
    State(app): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
    body: Result<Json<Grants>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(grants) = body?;
    let state = app.state.clone();
    let switched = blocking(move || Ok(links::set_grants(&state, &name, grants.grants)?)).await?;
    Ok(Json(json!({"generation": switched.to})))
}

#[utoipa::path(delete, path = "/api/cells/{name}", tag = "cells", params(("name" = String, Path)), responses((status = 200, description = "removed here, and on the other cell when it could be told (`told_other_cell`)", body = Object), (status = 404, description = "no such link", body = ErrorBody)))]
pub async fn remove(
    State(app): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (switched, error) = links::remove(&app.state, &name).await.map_err(api_error)?;
    Ok(Json(json!({"generation": switched.to, "told_other_cell": error.is_none(), "error": error})))
}

/// A builder error as itself (4xx for what the caller asked), anything else as a failure.
fn api_error(error: anyhow::Error) -> ApiError {
    match error.downcast::<Error>() {
        Ok(error) => ApiError::from(error),
        Err(other) => ApiError::internal(format!("{other:#}")),
    }
}

/// The peer-sync server: on this cell's tunnel address only (bound once the interface has it),
/// never behind the proxy. Every refusal is logged with its reason.
pub async fn serve_peer_sync(app: AppState) {
    let mut bound: Option<(SocketAddr, tokio::task::JoinHandle<()>)> = None;
    loop {
        let wanted =
            app.state.desired_config().ok().flatten().filter(|c| c.wireguard.enabled).map(|c| sync::listen_address(&c));
        let current = bound.as_ref().map(|(a, _)| *a);
        if wanted != current {
            if let Some((_, task)) = bound.take() {
                task.abort();
            }
            if let Some(address) = wanted {
                match tokio::net::TcpListener::bind(address).await {
                    Ok(listener) => {
                        tracing::info!(%address, "peer-sync listening");
                        let router = axum::Router::new()
                            .route(sync::PATH, axum::routing::post(exchange))
                            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
                            .with_state(app.clone());
                        let task = tokio::spawn(async move {
                            let service = router.into_make_service_with_connect_info::<SocketAddr>();
                            if let Err(error) = axum::serve(listener, service).await {
                                tracing::warn!(%error, "peer-sync server stopped");
                            }
                        });
                        bound = Some((address, task));
                    }
                    // The interface may not carry the address yet.
                    Err(error) => tracing::debug!(%address, %error, "peer-sync cannot listen yet"),
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// `POST /peer-sync/v1` on the tunnel address.
async fn exchange(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let refuse = |reason: String| {
        tracing::warn!(source = %peer.ip(), %reason, "peer-sync refused");
        (StatusCode::FORBIDDEN, Json(json!({"error": {"code": "refused", "message": reason}}))).into_response()
    };
    let Ok(Some(config)) = app.state.desired_config() else { return refuse("no config".into()) };
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let (link, message) = match sync::admit(&app.state, &config, peer.ip(), &body, signature) {
        Ok(admitted) => admitted,
        Err(refused) => return refuse(refused.0),
    };
    if let Some(wireguard) = &app.wireguard
        && !wireguard.routes_to(&link.public_key, peer.ip()).unwrap_or(false)
    {
        return refuse(format!("{} is not routed to {}'s WireGuard key here", peer.ip(), link.name));
    }
    let (link, state) = (link.clone(), app.state.clone());
    let reply_config = config.clone();
    let answer = tokio::task::spawn_blocking(move || {
        // The answer is made before the message is taken: a removal takes the link away.
        let answer = sync::message(&state, &reply_config, &link, false)?;
        let taken = sync::take(&state, &link, &message)?;
        Ok::<_, Error>((answer, taken))
    })
    .await;
    match answer {
        Ok(Ok(((body, signature), taken))) => {
            if taken.switched {
                let app = app.clone();
                tokio::spawn(async move { app.activate().await });
            }
            ([(SIGNATURE_HEADER, signature), ("content-type", "application/json".into())], body).into_response()
        }
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "peer-sync message not taken");
            ApiError::from(error).into_response()
        }
        Err(error) => ApiError::internal(error.to_string()).into_response(),
    }
}

/// Syncs every link every [`sync::INTERVAL`], and at once after an activation (a grant changed).
pub async fn sync_links(app: AppState) {
    loop {
        let wake = app.links_wake.notified();
        if let Ok(Some(config)) = app.state.desired_config() {
            for link in &config.links {
                let outcome = sync::exchange(&app.state, &config, link, false).await;
                let state = app.state.clone();
                let link = link.clone();
                let recorded = tokio::task::spawn_blocking(move || match outcome {
                    Ok(message) => sync::take(&state, &link, &message).map(|t| t.switched),
                    Err(error) => status::update(&state, |s| {
                        s.links.entry(link.name.clone()).or_default().error = Some(format!("{error:#}"));
                        false
                    }),
                })
                .await;
                match recorded {
                    Ok(Ok(true)) => app.activate().await,
                    Ok(Err(error)) => tracing::warn!(%error, "peer-sync not recorded"),
                    _ => {}
                }
            }
        }
        let _ = tokio::time::timeout(sync::INTERVAL, wake).await;
    }
}
