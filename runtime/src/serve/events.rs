//! `GET /api/events`: Server-Sent Events reporting each change as it happens (requested,
//! switched, activating, activated, done), for the web UI's progress display.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use super::AppState;
use super::auth::Session;
use super::error::ErrorBody;

#[utoipa::path(get, path = "/api/events", tag = "events", responses((status = 200, description = "Server-Sent Events, one `progress` event per step of each change", content_type = "text/event-stream"), (status = 401, description = "no session", body = ErrorBody)))]
pub async fn stream(
    State(app): State<AppState>,
    _session: Session,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // A listener too slow to keep up skips what it missed rather than stalling the server.
    let events = BroadcastStream::new(app.events.subscribe())
        .filter_map(|event| event.ok())
        .map(|event| Ok(Event::default().event("progress").data(event.to_string())));
    Sse::new(events).keep_alive(KeepAlive::default())
}
