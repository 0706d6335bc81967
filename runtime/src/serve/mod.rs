//! `pic serve`: the HTTP API (axum) that the web UI, scripts and the CLI talk to. It never renders
//! templates: every change writes the desired config, asks the builder for a generation and
//! switches to it.

mod auth;
mod config;
mod error;
mod generations;
mod peers;
mod setup;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{Json, Router};
use pic_builder::State;
use serde_json::json;

pub use error::ApiError;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub state: Arc<State>,
    pub sessions: Arc<auth::Sessions>,
}

impl AppState {
    pub fn new(state: State) -> AppState {
        AppState { state: Arc::new(state), sessions: Arc::default() }
    }

    /// Setup is complete once a desired config exists.
    pub async fn setup_complete(&self) -> Result<bool, ApiError> {
        tokio::fs::try_exists(self.state.desired_config_path()).await.map_err(ApiError::internal)
    }
}

/// Every route, behind the gate (setup, session, CSRF).
pub fn router(app: AppState) -> Router {
    let api = Router::new()
        .route("/api/setup/status", get(setup::status))
        .route("/api/setup", post(setup::setup))
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/logout", post(auth::logout))
        .route("/api/auth/me", get(auth::me))
        .route("/api/config", get(config::get).put(config::put))
        .route("/api/generations", get(generations::list))
        .route("/api/generations/{n}", get(generations::one))
        .route("/api/generations/{a}/diff/{b}", get(generations::diff))
        .route("/api/generations/{n}/switch", post(generations::switch))
        .route("/api/rollback", post(generations::rollback))
        .route("/api/services", get(generations::services))
        .route("/api/peers", get(peers::list).post(peers::create))
        .route("/api/peers/{name}", get(peers::one).patch(peers::update).delete(peers::delete))
        .route("/api/peers/{name}/config", get(peers::config))
        .route("/api/peers/{name}/qr.svg", get(peers::qr));
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .merge(api)
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(app.clone(), auth::gate))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}

/// Serves the API until interrupted (Ctrl-C or SIGTERM).
pub async fn serve(state: State, listen: SocketAddr) -> anyhow::Result<()> {
    if !state.is_initialized() {
        state.init(None).context("initializing the state directory")?;
    }
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    tracing::info!(%listen, state = %state.root().display(), "pic serve is listening");
    eprintln!("pic serve: http://{listen}/ (state {})", state.root().display());
    let app = router(AppState::new(state));
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown())
        .await
        .context("serving HTTP")
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}

#[cfg(test)]
mod tests;
