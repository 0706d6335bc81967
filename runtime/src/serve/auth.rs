//! Sessions (HttpOnly, SameSite=Strict cookie), login with lockout, CSRF double submit, and the
//! gate every request passes: setup first (428), then a session (401), then CSRF (403).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use pic_builder::config::Role;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, ErrorBody, blocking};

pub const SESSION_COOKIE: &str = "pic_session";
pub const CSRF_COOKIE: &str = "csrf_token";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session ends this long after login.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Failed logins allowed per account and per address within `LOCKOUT_WINDOW`.
pub const MAX_FAILURES: usize = 5;
pub const LOCKOUT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Who a request is from.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    pub user: String,
    pub role: Role,
    #[serde(skip)]
    pub csrf: String,
    #[serde(skip)]
    pub expires: Instant,
}

/// Live sessions and recent login failures, in memory: a restart logs everyone out.
#[derive(Default)]
pub struct Sessions {
    by_token: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl Sessions {
    fn create(&self, user: String, role: Role) -> (String, Session) {
        let session = Session { user, role, csrf: random_token(), expires: Instant::now() + SESSION_LIFETIME };
        let token = random_token();
        let mut sessions = self.by_token.lock().expect("sessions lock");
        sessions.retain(|_, s| s.expires > Instant::now());
        sessions.insert(token.clone(), session.clone());
        (token, session)
    }

    pub fn get(&self, token: &str) -> Option<Session> {
        let sessions = self.by_token.lock().expect("sessions lock");
        sessions.get(token).filter(|s| s.expires > Instant::now()).cloned()
    }

    /// Moves every session `by` closer to its end, as if that much time had passed.
    #[cfg(test)]
    pub fn age(&self, by: Duration) {
        for session in self.by_token.lock().expect("sessions lock").values_mut() {
            // Before the clock's origin (a machine up for less than `by`) is just as expired.
            session.expires = session.expires.checked_sub(by).unwrap_or_else(Instant::now);
        }
    }

    fn remove(&self, token: &str) {
        self.by_token.lock().expect("sessions lock").remove(token);
    }

    /// Seconds until `keys` may try again, if any of them failed too often lately.
    fn locked_for(&self, keys: &[String]) -> Option<u64> {
        let now = Instant::now();
        let failures = self.failures.lock().expect("failures lock");
        keys.iter()
            .filter_map(|k| failures.get(k))
            .filter_map(|times| {
                let recent: Vec<&Instant> = times.iter().filter(|t| now.duration_since(**t) < LOCKOUT_WINDOW).collect();
                (recent.len() >= MAX_FAILURES).then(|| {
                    let oldest = recent.iter().min().expect("five failures");
                    (LOCKOUT_WINDOW - now.duration_since(**oldest)).as_secs().max(1)
                })
            })
            .max()
    }

    fn record_failure(&self, keys: &[String]) {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("failures lock");
        // Forget what is out of the window, so that guessing many names cannot grow the map for ever.
        failures.retain(|_, times| times.iter().any(|t| now.duration_since(*t) < LOCKOUT_WINDOW));
        for key in keys {
            let times = failures.entry(key.clone()).or_default();
            times.retain(|t| now.duration_since(*t) < LOCKOUT_WINDOW);
            times.push(now);
        }
    }

    fn clear_failures(&self, user_key: &str) {
        self.failures.lock().expect("failures lock").remove(user_key);
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    hex::encode(bytes)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub username: String,
    pub password: String,
}

#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = Login, responses((status = 200, description = "logged in; sets the session and csrf_token cookies", body = Object), (status = 401, description = "wrong user name or password", body = ErrorBody), (status = 429, description = "too many failed logins (Retry-After)", body = ErrorBody)))]
pub async fn login(
    State(app): State<AppState>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: axum::http::HeaderMap,
    jar: CookieJar,
    body: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(login) = body?;
    // Over HTTPS (the cell's Caddy says so; it sets the header itself) the cookies are `Secure`:
    // a browser never sends them over plain HTTP.
    let secure = headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let address = connect.map_or_else(|| "unknown".to_string(), |c| c.0.0.ip().to_string());
    let keys = [format!("user:{}", login.username), format!("ip:{address}")];
    if let Some(seconds) = app.sessions.locked_for(&keys) {
        return Err(ApiError {
            retry_after: Some(seconds),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", "too many failed logins; try later")
        });
    }
    let state = app.state.clone();
    let username = login.username.clone();
    let role = blocking(move || {
        let config = state.desired_config()?;
        let role = config.and_then(|c| c.users.iter().find(|u| u.name == username).map(|u| u.role));
        // `verify` costs the same for an unknown user, so timing does not tell which names exist.
        let ok = state.credentials().verify(&username, &login.password)?;
        Ok(role.filter(|_| ok))
    })
    .await?;
    let Some(role) = role else {
        app.sessions.record_failure(&keys);
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "bad_credentials", "wrong user name or password"));
    };
    app.sessions.clear_failures(&keys[0]);
    let (token, session) = app.sessions.create(login.username, role);
    let jar = jar.add(cookie(SESSION_COOKIE, token, true, secure)).add(cookie(
        CSRF_COOKIE,
        session.csrf.clone(),
        false,
        secure,
    ));
    Ok((jar, Json(session_body(&session))).into_response())
}

#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", responses((status = 204, description = "logged out"), (status = 401, description = "no session", body = ErrorBody)))]
pub async fn logout(State(app): State<AppState>, jar: CookieJar) -> Result<Response, ApiError> {
    let token = jar.get(SESSION_COOKIE).map(|c| c.value().to_string()).ok_or_else(ApiError::unauthorized)?;
    app.sessions.remove(&token);
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/")).remove(Cookie::build(CSRF_COOKIE).path("/"));
    Ok((jar, StatusCode::NO_CONTENT).into_response())
}

#[utoipa::path(get, path = "/api/auth/me", tag = "auth", responses((status = 200, description = "who is logged in", body = Object), (status = 401, description = "no session", body = ErrorBody)))]
pub async fn me(State(app): State<AppState>, jar: CookieJar) -> Result<Json<serde_json::Value>, ApiError> {
    let session =
        jar.get(SESSION_COOKIE).and_then(|c| app.sessions.get(c.value())).ok_or_else(ApiError::unauthorized)?;
    Ok(Json(session_body(&session)))
}

fn session_body(session: &Session) -> serde_json::Value {
    serde_json::json!({"user": session.user, "role": session.role, "csrf_token": session.csrf})
}

fn cookie(name: &'static str, value: String, http_only: bool, secure: bool) -> Cookie<'static> {
    Cookie::build((name, value)).path("/").http_only(http_only).secure(secure).same_site(SameSite::Strict).build()
}

/// What the gate asks of a request to `path`.
pub struct GateRules {
    /// Refused (428) until setup is complete.
    pub needs_setup: bool,
    /// Refused without a session (401), and a change without the CSRF token (403).
    pub needs_session: bool,
}

/// The setup wizard and the API's description need nothing (the description holds no data); an
/// invited cell completing its invitation is admitted by the invitation's secret; logging in
/// needs setup done; everything else under `/api/` a session. Outside `/api/` (the web UI,
/// `/health`, `/metrics` with its own check) the gate asks nothing.
pub fn gate_for(path: &str) -> GateRules {
    let open = !path.starts_with("/api/")
        || path.starts_with("/api/setup")
        || path == "/api/openapi.json"
        || path == "/api/cells/join";
    GateRules { needs_setup: !open, needs_session: !open && !path.starts_with("/api/auth/") }
}

/// The gate in front of every route.
pub async fn gate(State(app): State<AppState>, jar: CookieJar, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let csrf_header = request.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    match check(&app, &jar, &path, changes_state, csrf_header.as_deref()).await {
        Ok(Some(session)) => {
            request.extensions_mut().insert(session);
            next.run(request).await
        }
        Ok(None) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

async fn check(
    app: &AppState,
    jar: &CookieJar,
    path: &str,
    changes_state: bool,
    csrf_header: Option<&str>,
) -> Result<Option<Session>, ApiError> {
    let gate = gate_for(path);
    if !gate.needs_setup {
        return Ok(None);
    }
    if !app.setup_complete().await? {
        return Err(ApiError {
            redirect: Some("/setup"),
            ..ApiError::new(StatusCode::PRECONDITION_REQUIRED, "setup_required", "finish the setup wizard first")
        });
    }
    if !gate.needs_session {
        return Ok(None);
    }
    let session =
        jar.get(SESSION_COOKIE).and_then(|c| app.sessions.get(c.value())).ok_or_else(ApiError::unauthorized)?;
    if changes_state {
        let cookie = jar.get(CSRF_COOKIE).map(|c| c.value());
        let matches = csrf_header.is_some() && csrf_header == cookie && csrf_header == Some(session.csrf.as_str());
        if !matches {
            return Err(ApiError::forbidden(
                "missing or wrong X-CSRF-Token header (it must match the csrf_token cookie)",
            ));
        }
    }
    Ok(Some(session))
}

/// Extractor: the session the gate found for this request.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Session>().cloned().ok_or_else(ApiError::unauthorized)
    }
}

/// Extractor (a guard) for handlers only an admin may use.
pub struct Admin;

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, ApiError> {
        let session = parts.extensions.get::<Session>().cloned().ok_or_else(ApiError::unauthorized)?;
        if session.role != Role::Admin {
            return Err(ApiError::forbidden("only an admin may do this"));
        }
        Ok(Admin)
    }
}
