//! The first-run wizard's API: `GET /api/setup/status` and `POST /api/setup`, which writes the
//! cell config, sets the admin password and builds and switches generation 1. Setup happens once.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use pic_builder::config::{self, CellConfig, DhcpRange, Domain};
use pic_builder::credentials::{Strength, check_password, password_strength};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ErrorBody, blocking};

/// The user the wizard creates.
pub const ADMIN_USER: &str = "admin";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Setup {
    pub cell_name: String,
    /// `{"mode": "local"}` (default), or public/ddns with `name` and `acme_email`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub domain: Domain,
    #[serde(default = "utc")]
    pub timezone: String,
    pub admin_password: String,
    /// Services to enable, by catalog name (WireGuard and the firewall are always on).
    #[serde(default)]
    pub services: Vec<String>,
}

fn utc() -> String {
    "UTC".into()
}

#[utoipa::path(get, path = "/api/setup/status", tag = "setup", responses((status = 200, description = "whether setup is complete, whether the cell's services were started for the current generation (`ready`), and what the device is doing (`device`: its phase, the steps of its start, a problem that stops it, its network addresses)", body = Object)))]
pub async fn status(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let complete = app.setup_complete().await?;
    // The wizard waits for `ready` after setup: until then the first activation is replacing
    // the setup proxy it talks through.
    let current = app.state.current().ok().flatten();
    let ready = match &app.containers {
        Some(containers) => current.is_some() && containers.activated() == current,
        None => current.is_some(),
    };
    Ok(Json(json!({"complete": complete, "ready": ready, "device": app.device.status()})))
}

#[utoipa::path(get, path = "/api/setup/timezones", tag = "setup", responses((status = 200, description = "every time zone the cell accepts (its IANA database), sorted: what the wizard and Settings offer", body = [String])))]
pub async fn timezones() -> Json<Vec<String>> {
    Json(config::timezones())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StrengthQuestion {
    pub password: String,
    /// Words an attacker would try first: the user's name, the cell's name.
    #[serde(default)]
    pub context: Vec<String>,
}

/// A password's strength for the wizard's and Settings' feedback while it is typed. A POST, so
/// that the password stays out of URLs and access logs; it changes nothing and keeps nothing.
#[utoipa::path(post, path = "/api/setup/password-strength", tag = "setup", request_body = StrengthQuestion, responses((status = 200, description = "`score` 0-4, `verdict` (too weak … strong), `guess_time` (for someone holding the password hashes), `warning`, `suggestions`", body = Object), (status = 422, description = "not such a question", body = ErrorBody)))]
pub async fn strength(body: Result<Json<StrengthQuestion>, JsonRejection>) -> Result<Json<Strength>, ApiError> {
    let Json(question) = body?;
    let context: Vec<&str> = question
        .context
        .iter()
        .take(8)
        .map(|word| word.char_indices().nth(64).map_or(word.as_str(), |(end, _)| &word[..end]))
        .collect();
    Ok(Json(password_strength(&question.password, &context)))
}

#[utoipa::path(post, path = "/api/setup", tag = "setup", request_body = Setup, responses((status = 200, description = "config written; generation 1 built and current", body = Object), (status = 409, description = "setup is already complete", body = ErrorBody), (status = 422, description = "invalid answers, with field paths", body = ErrorBody)))]
pub async fn setup(
    State(app): State<AppState>,
    body: Result<Json<Setup>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(setup) = body?;
    if app.device.blocked() {
        let problem = app.device.status().problem.map(|p| p.message).unwrap_or_default();
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "device_blocked", problem));
    }
    // Named as a field, so that the wizard shows it at the password.
    check_password(&setup.admin_password).map_err(|error| ApiError {
        details: vec![pic_builder::config::FieldError {
            path: "admin_password".into(),
            message: error.to_string(),
            hint: "8 to 72 bytes without control characters".into(),
        }],
        ..ApiError::from(error)
    })?;
    let config = config::validate(initial_config(&setup)?)?;
    let state = app.state.clone();
    let generation = blocking(move || {
        state.init(None)?;
        let writer = state.writer()?;
        // Checked under the writer lock: two wizards racing cannot both finish.
        if state.desired_config_path().exists() {
            return Err(ApiError::new(StatusCode::CONFLICT, "setup_complete", "setup is already complete"));
        }
        let started = std::time::Instant::now();
        state.credentials().set_password(ADMIN_USER, &setup.admin_password)?;
        let hashed = started.elapsed();
        let generation = writer.build_and_switch(&config, "setup wizard")?.to;
        // Setup's wait on a slow board is this, then the first activation (logged by steps).
        tracing::info!(
            password_seconds = hashed.as_secs_f64(),
            build_seconds = (started.elapsed() - hashed).as_secs_f64(),
            "setup: generation {generation} built"
        );
        Ok(generation)
    })
    .await?;
    Ok(Json(json!({"complete": true, "generation": generation})))
}

/// The config the wizard's answers describe: the defaults of a small home cell.
fn initial_config(setup: &Setup) -> Result<CellConfig, ApiError> {
    let mut value = json!({
        "version": config::CURRENT_VERSION,
        "cell": {"name": setup.cell_name, "domain": setup.domain, "timezone": setup.timezone},
        "network": {"subnet": "172.20.0.0/24"},
        "users": [{"name": ADMIN_USER, "role": "admin"}],
    });
    let domain = match &setup.domain {
        Domain::Local => format!("{}.cell", setup.cell_name),
        Domain::Public { name, .. } | Domain::Ddns { name, .. } => name.clone(),
    };
    for (i, service) in setup.services.iter().enumerate() {
        let settings = match service.as_str() {
            "proxy" | "webmail" => json!({"enabled": true}),
            "dns" => json!({"enabled": true, "upstreams": ["9.9.9.9", "149.112.112.112"]}),
            "dhcp" => {
                json!({"enabled": true, "range": DhcpRange { start: [172, 20, 0, 100].into(), end: [172, 20, 0, 200].into() }})
            }
            "ntp" => json!({"enabled": true, "servers": ["0.debian.pool.ntp.org", "1.debian.pool.ntp.org"]}),
            "mail" => {
                json!({"enabled": true, "domains": [domain], "mailboxes": [{"address": format!("{ADMIN_USER}@{domain}"), "user": ADMIN_USER}]})
            }
            "calendar" | "files" => json!({"enabled": true, "users": [ADMIN_USER]}),
            other => {
                return Err(ApiError {
                    details: vec![config::FieldError {
                        path: format!("services[{i}]"),
                        message: format!("there is no service named {other:?}"),
                        hint: "use some of: proxy, dns, dhcp, ntp, mail, calendar, files, webmail".into(),
                    }],
                    ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", "unknown service")
                });
            }
        };
        value["services"][service] = settings;
    }
    let config: CellConfig = serde_json::from_value(value).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!("setup answers do not form a config: {e}"),
        )
    })?;
    Ok(config)
}
