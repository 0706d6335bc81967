//! `/api/files`: the logged-in user's own WebDAV folder (`data/files/users/<user>`, what the
//! files service serves at `files.<domain>/<user>`), for the web UI's Files page: list, download,
//! upload (streamed), new folder, rename or move, delete. The session is the login: no second
//! password. Every path is relative to the user's folder, made only of plain names (no `..`, no
//! empty part), and no part of it may be a symbolic link, so nothing outside the folder is
//! reached; what is written is handed to the files service's user, as if WebDAV had written it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::AppState;
use super::auth::Session;
use super::error::{ApiError, ErrorBody, blocking};

/// The deepest folder the page goes into.
const MAX_DEPTH: usize = 32;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PathQuery {
    /// Relative to the user's folder: `docs/report.pdf`; empty for the folder itself.
    #[serde(default)]
    path: String,
}

/// The user's folder, if the files service is given to them; its owner (the service's user).
fn root(app: &AppState, session: &Session) -> Result<(PathBuf, (u32, u32)), ApiError> {
    let config = app.state.desired_config()?.ok_or_else(|| ApiError::internal("no desired config"))?;
    let files = &config.services.files;
    if !files.enabled || !files.users.contains(&session.user) {
        return Err(ApiError::forbidden(format!(
            "the files service is not given to {}: an admin adds them under Mail & files",
            session.user
        )));
    }
    let root = app.state.root().join("data/files/users").join(&session.user);
    let meta = std::fs::metadata(&root).map_err(|_| {
        ApiError::new(StatusCode::CONFLICT, "not_ready", "the folder is made when the files service first starts")
    })?;
    Ok((root, (meta.uid(), meta.gid())))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_path", message)
}

/// `relative` resolved under `root`: plain names only, no symbolic link on the way. The last
/// part need not exist.
fn resolve(root: &Path, relative: &str) -> Result<PathBuf, ApiError> {
    let parts: Vec<&str> = relative.split('/').filter(|p| !p.is_empty()).collect();
    if parts.len() > MAX_DEPTH {
        return Err(bad(format!("{relative:?} is deeper than {MAX_DEPTH} folders")));
    }
    let mut path = root.to_owned();
    for part in &parts {
        let plain = *part != "." && *part != ".." && part.len() <= 255 && !part.contains(['\0', '\\']);
        if !plain {
            return Err(bad(format!("{relative:?}: {part:?} is not a file or folder name")));
        }
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(bad(format!("{relative:?} goes through a link, which the Files page does not follow")));
            }
            _ => {}
        }
    }
    Ok(path)
}

fn not_found(relative: &str) -> ApiError {
    ApiError::not_found(format!("{relative:?} is not in your folder"))
}

#[derive(Serialize)]
struct Entry {
    name: String,
    folder: bool,
    size: u64,
    modified: String,
}

#[utoipa::path(get, path = "/api/files", tag = "files", params(PathQuery), responses((status = 200, description = "the folder's files and folders (folders first, by name)", body = Object), (status = 403, description = "the files service is not given to the user", body = ErrorBody), (status = 404, description = "no such folder", body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    session: Session,
    Query(q): Query<PathQuery>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let (root, _) = root(&app, &session)?;
        let dir = resolve(&root, &q.path)?;
        let read = std::fs::read_dir(&dir).map_err(|_| not_found(&q.path))?;
        let mut entries = Vec::new();
        for item in read.flatten() {
            let Ok(meta) = item.path().symlink_metadata() else { continue };
            // Links, sockets and the like are not the user's files.
            if !meta.is_file() && !meta.is_dir() {
                continue;
            }
            let modified = jiff::Timestamp::from_second(meta.mtime()).map(|t| t.to_string()).unwrap_or_default();
            entries.push(Entry {
                name: item.file_name().to_string_lossy().into_owned(),
                folder: meta.is_dir(),
                size: if meta.is_file() { meta.len() } else { 0 },
                modified,
            });
        }
        entries.sort_by(|a, b| b.folder.cmp(&a.folder).then_with(|| a.name.cmp(&b.name)));
        Ok(Json(json!({"path": q.path, "entries": entries})))
    })
    .await
}

#[utoipa::path(get, path = "/api/files/content", tag = "files", params(PathQuery), responses((status = 200, description = "the file, as a download", content_type = "application/octet-stream"), (status = 404, description = "no such file", body = ErrorBody)))]
pub async fn download(
    State(app): State<AppState>,
    session: Session,
    Query(q): Query<PathQuery>,
) -> Result<Response, ApiError> {
    let relative = q.path.clone();
    let path = blocking(move || {
        let (root, _) = root(&app, &session)?;
        resolve(&root, &q.path)
    })
    .await?;
    let file = tokio::fs::File::open(&path).await.map_err(|_| not_found(&relative))?;
    let meta = file.metadata().await.map_err(ApiError::internal)?;
    if !meta.is_file() {
        return Err(bad(format!("{relative:?} is a folder")));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let encoded = percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC).to_string();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, meta.len().to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename*=UTF-8''{encoded}")),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}

#[utoipa::path(put, path = "/api/files/content", tag = "files", params(PathQuery), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file's content"), responses((status = 201, description = "written (streamed to a temporary file, then renamed into place: a reader never sees half a file); an existing file is replaced", body = Object), (status = 400, description = "a path that is not plain names, or a folder", body = ErrorBody), (status = 404, description = "the folder it goes into does not exist", body = ErrorBody)))]
pub async fn upload(
    State(app): State<AppState>,
    session: Session,
    Query(q): Query<PathQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let relative = q.path.clone();
    let (path, owner) = blocking(move || {
        let (root, owner) = root(&app, &session)?;
        let path = resolve(&root, &q.path)?;
        if path == root {
            return Err(bad("name the file to write"));
        }
        if path.is_dir() {
            return Err(bad(format!("{:?} is a folder", q.path)));
        }
        Ok((path, owner))
    })
    .await?;
    let dir = path.parent().expect("under the root").to_owned();
    if !dir.is_dir() {
        return Err(not_found(&relative));
    }
    let tmp = dir.join(format!(".pic-upload-{}", pic_builder::credentials::random_key()));
    let written = receive(request.into_body(), &tmp, owner).await;
    let written = match written {
        Ok(size) => tokio::fs::rename(&tmp, &path).await.map(|()| size).map_err(ApiError::internal),
        Err(error) => Err(error),
    };
    if written.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    Ok((StatusCode::CREATED, Json(json!({"path": relative, "size": written?}))).into_response())
}

async fn receive(body: Body, path: &Path, (uid, gid): (u32, u32)) -> Result<u64, ApiError> {
    let mut file =
        tokio::fs::OpenOptions::new().write(true).create_new(true).open(path).await.map_err(ApiError::internal)?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(ApiError::internal)?;
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
        size += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    file.sync_all().await.map_err(ApiError::internal)?;
    Ok(size)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFolder {
    pub path: String,
}

#[utoipa::path(post, path = "/api/files/folder", tag = "files", request_body = NewFolder, responses((status = 201, description = "made", body = Object), (status = 409, description = "something of that name is there", body = ErrorBody)))]
pub async fn folder(
    State(app): State<AppState>,
    session: Session,
    body: Result<Json<NewFolder>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(new) = body?;
    blocking(move || {
        let (root, (uid, gid)) = root(&app, &session)?;
        let path = resolve(&root, &new.path)?;
        if path == root {
            return Err(bad("name the folder to make"));
        }
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(ApiError::new(StatusCode::CONFLICT, "exists", format!("{:?} is already there", new.path)));
            }
            Err(_) => return Err(not_found(&new.path)),
        }
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(ApiError::internal)?;
        Ok((StatusCode::CREATED, Json(json!({"path": new.path}))).into_response())
    })
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Move {
    pub from: String,
    pub to: String,
}

#[utoipa::path(post, path = "/api/files/move", tag = "files", request_body = Move, responses((status = 200, description = "renamed or moved", body = Object), (status = 404, description = "no such file or folder", body = ErrorBody), (status = 409, description = "something is already at the target", body = ErrorBody)))]
pub async fn rename(
    State(app): State<AppState>,
    session: Session,
    body: Result<Json<Move>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(change) = body?;
    blocking(move || {
        let (root, _) = root(&app, &session)?;
        let (from, to) = (resolve(&root, &change.from)?, resolve(&root, &change.to)?);
        if from == root || to == root {
            return Err(bad("your folder itself cannot be moved"));
        }
        if to.starts_with(&from) {
            return Err(bad("a folder cannot move into itself"));
        }
        if std::fs::symlink_metadata(&from).is_err() {
            return Err(not_found(&change.from));
        }
        if std::fs::symlink_metadata(&to).is_ok() {
            return Err(ApiError::new(StatusCode::CONFLICT, "exists", format!("{:?} is already there", change.to)));
        }
        std::fs::rename(&from, &to).map_err(|_| not_found(&change.to))?;
        Ok(Json(json!({"from": change.from, "to": change.to})))
    })
    .await
}

#[utoipa::path(delete, path = "/api/files", tag = "files", params(PathQuery), responses((status = 200, description = "deleted (a folder with what it holds)", body = Object), (status = 404, description = "no such file or folder", body = ErrorBody)))]
pub async fn delete(
    State(app): State<AppState>,
    session: Session,
    Query(q): Query<PathQuery>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let (root, _) = root(&app, &session)?;
        let path = resolve(&root, &q.path)?;
        if path == root {
            return Err(bad("your folder itself cannot be deleted"));
        }
        let meta = std::fs::symlink_metadata(&path).map_err(|_| not_found(&q.path))?;
        let removed = if meta.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        removed.map_err(ApiError::internal)?;
        Ok(Json(json!({"deleted": q.path})))
    })
    .await
}
