//! What is known of each link beyond the config (`<state>/links.json`): the last peer-sync, what
//! the other cell grants this one, the last message number seen from it (replays are refused)
//! and the last one sent.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pic_builder::{Error, State, fsutil};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Status {
    /// The number of the last message this cell sent (milliseconds since the epoch, or one
    /// more than the last when the clock did not move on).
    #[serde(default)]
    pub sent: u64,
    #[serde(default)]
    pub links: BTreeMap<String, LinkStatus>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LinkStatus {
    /// When a peer-sync exchange last succeeded (either way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub last_sync: Option<jiff::Timestamp>,
    /// What the other cell lets this one reach, as it last said.
    #[serde(default)]
    pub offered: Vec<String>,
    /// The highest message number received from it.
    #[serde(default)]
    pub received: u64,
    /// Why the last exchange this cell started failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn path(state: &State) -> PathBuf {
    state.root().join("links.json")
}

pub fn read(state: &State) -> Result<Status, Error> {
    fsutil::read_json_or_default(&path(state))
}

/// Changes the record, one change at a time in this process (the API, the peer-sync server
/// and its loop all record).
pub fn update<T>(state: &State, change: impl FnOnce(&mut Status) -> T) -> Result<T, Error> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut status = read(state)?;
    let result = change(&mut status);
    fsutil::write_json(&path(state), &status, 0o644)?;
    Ok(result)
}

pub fn record_offered(state: &State, name: &str, offered: &[String]) -> Result<(), Error> {
    update(state, |s| s.links.entry(name.to_owned()).or_default().offered = offered.to_vec())
}

pub fn forget(state: &State, name: &str) -> Result<(), Error> {
    update(state, |s| s.links.remove(name)).map(drop)
}

/// The next number for a message this cell sends: never one it used before.
pub fn next_sent(state: &State) -> Result<u64, Error> {
    update(state, |s| {
        let now = u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
        s.sent = now.max(s.sent + 1);
        s.sent
    })
}
