//! `/api/users`: who may log in, and their passwords (an admin sets anyone's; a user their own).
//! The daemons' credential files follow at once; activation copies them into the containers.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use pic_builder::config::Role;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Admin, Session};
use super::error::{ApiError, ErrorBody, blocking};

#[utoipa::path(get, path = "/api/users", tag = "users", responses((status = 200, description = "each user with role, whether a password is set, and the per-user services they are in", body = Vec<Object>), (status = 401, description = "no session", body = ErrorBody), (status = 403, description = "not an admin", body = ErrorBody)))]
pub async fn list(State(app): State<AppState>, _admin: Admin) -> Result<Json<Vec<Value>>, ApiError> {
    let state = app.state.clone();
    let users = blocking(move || {
        let config = state.desired_config()?.ok_or_else(|| ApiError::internal("no desired config"))?;
        let with_password = state.credentials().users_with_password()?;
        Ok(config
            .users
            .iter()
            .map(|u| {
                json!({
                    "name": u.name,
                    "role": u.role,
                    "password_set": with_password.contains(&u.name),
                    "calendar": config.services.calendar.users.contains(&u.name),
                    "files": config.services.files.users.contains(&u.name),
                    "mailboxes": config.services.mail.mailboxes.iter().filter(|m| m.user == u.name).map(|m| &m.address).collect::<Vec<_>>(),
                })
            })
            .collect())
    })
    .await?;
    Ok(Json(users))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    password: String,
}

#[utoipa::path(post, path = "/api/users/{name}/password", tag = "users", params(("name" = String, Path, description = "user name")), request_body = NewPassword, responses((status = 200, description = "set; every daemon's credential file follows", body = Object), (status = 403, description = "another user's password, and not an admin", body = ErrorBody), (status = 404, description = "no such user", body = ErrorBody), (status = 422, description = "too weak (the message says why)", body = ErrorBody)))]
pub async fn set_password(
    State(app): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    body: Result<Json<NewPassword>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(new) = body?;
    if session.role != Role::Admin && session.user != name {
        return Err(ApiError::forbidden("you may change only your own password"));
    }
    let state = app.state.clone();
    let user = name.clone();
    let containers = app.containers.is_some();
    blocking(move || {
        state.writer()?.set_password(&user, &new.password)?;
        // The daemons read their credential files afresh: new copies are all it takes.
        if containers {
            crate::docker::activation::refresh_credentials(&state).map_err(ApiError::internal)?;
        }
        Ok(())
    })
    .await?;
    Ok(Json(json!({"user": name, "password": "set"})))
}
