//! `/api/exits`: the exits (tunnels to VPN providers that chosen devices' internet traffic
//! leaves through), with their state; added from a provider's file and removed. Which device
//! uses which exit is the peer's `exit` (`PATCH /api/peers/{name}`).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::auth::Admin;
use super::error::{ApiError, ErrorBody, blocking};
use crate::exits::{ExitStatus, Exits, manage};

/// An exit as the config has it, with its state on the host.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExitView {
    pub name: String,
    /// `wireguard`, `openvpn` or `tor`.
    pub kind: String,
    /// The provider's server.
    pub endpoint: String,
    /// Its state; absent until the current generation has the exit.
    pub status: Option<ExitStatus>,
}

#[utoipa::path(get, path = "/api/exits", tag = "exits", responses((status = 200, description = "the exits: each with its provider's server, whether it is up (a handshake within 3 minutes), its traffic and the devices sent through it", body = Vec<ExitView>), (status = 403, description = "not an admin", body = ErrorBody)))]
pub async fn list(State(app): State<AppState>, _admin: Admin) -> Result<Json<Vec<ExitView>>, ApiError> {
    let views = blocking(move || {
        let config = app.state.desired_config()?.ok_or(pic_builder::Error::NoCurrentGeneration)?;
        let exits = app.exits.clone().unwrap_or_else(|| std::sync::Arc::new(Exits::here()));
        let statuses = exits.status(&app.state).unwrap_or_default();
        Ok(config
            .connectivity
            .exits
            .iter()
            .map(|exit| ExitView {
                name: exit.name.clone(),
                kind: if exit.openvpn.is_some() {
                    "openvpn"
                } else if exit.tor.is_some() {
                    "tor"
                } else {
                    "wireguard"
                }
                .into(),
                endpoint: match (&exit.wireguard, &exit.openvpn) {
                    (Some(w), _) => w.endpoint.clone(),
                    (_, Some(o)) => o.remotes.join(", "),
                    _ => "the Tor network".into(),
                },
                status: statuses.iter().find(|s| s.name == exit.name).cloned(),
            })
            .collect())
    })
    .await?;
    Ok(Json(views))
}

/// A new exit.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewExit {
    /// At most 12 characters: a DNS label.
    pub name: String,
    /// The provider's WireGuard (wg-quick) file, as text.
    #[serde(default)]
    pub wireguard: Option<String>,
    /// Or its OpenVPN file (`.ovpn`, keys inline), as text: the exit runs in a container.
    #[serde(default)]
    pub openvpn: Option<String>,
    /// OpenVPN: the provider's DNS server, asked through the tunnel.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub dns: Option<std::net::Ipv4Addr>,
    /// OpenVPN: the account's user name and password, when the file asks for them.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Or `true`: out through Tor, in a container.
    #[serde(default)]
    pub tor: bool,
}

#[utoipa::path(post, path = "/api/exits", tag = "exits", request_body = NewExit, responses((status = 201, description = "the exit is in a new generation, its keys in secrets/", body = Object), (status = 422, description = "the file or the name refused, each problem at its line", body = ErrorBody)))]
pub async fn add(
    State(app): State<AppState>,
    _admin: Admin,
    body: Result<Json<NewExit>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(new) = body?;
    let name = new.name.clone();
    let switched = blocking(move || {
        let single = |path: &str, message: &str, hint: &str| {
            ApiError::from(pic_builder::Error::Invalid(pic_builder::config::ValidationErrors::single(
                path, message, hint,
            )))
        };
        match (&new.wireguard, &new.openvpn) {
            (None, None) if new.tor => Ok(manage::add_tor(&app.state, &new.name)?),
            (Some(file), None) if !new.tor => Ok(manage::add_wireguard(&app.state, &new.name, file)?),
            (None, Some(file)) if !new.tor => {
                let dns = new.dns.ok_or_else(|| {
                    single("dns", "an OpenVPN exit needs its provider's DNS server", "the provider's guide names it")
                })?;
                let credentials = match (&new.username, &new.password) {
                    (Some(user), Some(password)) => Some((user.as_str(), password.as_str())),
                    (None, None) => None,
                    _ => return Err(single("password", "give both the user name and the password", "or neither")),
                };
                Ok(manage::add_openvpn(&app.state, &new.name, file, manage::OpenVpnInputs { dns, credentials })?)
            }
            _ => Err(single(
                "wireguard",
                "give one provider file",
                "`wireguard` (a wg-quick file) or `openvpn` (an .ovpn file)",
            )),
        }
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!({"exit": name, "generation": switched.to}))).into_response())
}

#[utoipa::path(delete, path = "/api/exits/{name}", tag = "exits", params(("name" = String, Path)), responses((status = 200, description = "removed: a new generation", body = Object), (status = 404, description = "no such exit", body = ErrorBody), (status = 409, description = "devices or users are sent through it", body = ErrorBody)))]
pub async fn remove(
    State(app): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let switched = blocking(move || Ok(manage::remove(&app.state, &name)?)).await?;
    Ok(Json(json!({"generation": switched.to})))
}

/// What a test of an exit found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExitTest {
    /// The exit's DNS server answered through the exit.
    pub ok: bool,
    /// How long it took, in milliseconds.
    pub milliseconds: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

#[utoipa::path(post, path = "/api/exits/{name}/test", tag = "exits", params(("name" = String, Path)), responses((status = 200, description = "the exit's DNS server asked for a name through the exit only: whether it answered and how fast", body = ExitTest), (status = 404, description = "no such exit in the current generation", body = ErrorBody)))]
pub async fn test(
    State(app): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<ExitTest>, ApiError> {
    let state = app.state.clone();
    let exits = blocking(move || crate::exits::desired(&state).map_err(ApiError::internal)).await?;
    let exit = exits
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| ApiError::from(pic_builder::Error::NoSuchExit(name.clone())))?;
    let out = crate::exits::names::Out::of(&exit);
    Ok(Json(match crate::exits::names::probe(&out, exit.dns).await {
        Ok(took) => ExitTest { ok: true, milliseconds: Some(took.as_millis() as u64), error: None },
        Err(error) => ExitTest { ok: false, milliseconds: None, error: Some(error.to_string()) },
    }))
}
