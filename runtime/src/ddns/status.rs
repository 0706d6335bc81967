//! What the DDNS client recorded: `<state>/ddns.json`, written atomically after every cycle.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use anyhow::Result;
use jiff::Timestamp;
use pic_builder::State;
use pic_builder::config::DdnsProvider;
use serde::{Deserialize, Serialize};

/// The public addresses, by family.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Addresses {
    #[schema(value_type = Option<String>)]
    pub ipv4: Option<Ipv4Addr>,
    #[schema(value_type = Option<String>)]
    pub ipv6: Option<Ipv6Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Error {
    #[schema(value_type = String)]
    pub at: Timestamp,
    pub message: String,
}

/// Cloudflare's ids of the zone and the records, looked up once per settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CloudflareIds {
    pub zone: Option<String>,
    pub a: Option<String>,
    pub aaaa: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Status {
    #[schema(value_type = Option<String>)]
    pub provider: Option<DdnsProvider>,
    pub name: Option<String>,
    /// What the provider holds, as far as the cell knows.
    pub published: Addresses,
    /// What the last cycle found.
    pub detected: Addresses,
    #[schema(value_type = Option<String>)]
    pub last_check: Option<Timestamp>,
    #[schema(value_type = Option<String>)]
    pub last_update: Option<Timestamp>,
    #[schema(value_type = Option<String>)]
    pub last_success: Option<Timestamp>,
    pub last_error: Option<Error>,
    /// Why updates stopped until the user changes the settings or the credential.
    pub stopped: Option<String>,
    /// No request before this time (the provider asked for it).
    #[schema(value_type = Option<String>)]
    pub retry_after: Option<Timestamp>,
    /// Updates accepted since the settings last changed.
    pub updates: u64,
    #[serde(default)]
    pub cloudflare: CloudflareIds,
    /// A hash of the settings and the credential the status is about.
    pub fingerprint: String,
}

pub fn path(state: &State) -> PathBuf {
    state.root().join("ddns.json")
}

pub fn load(path: &Path) -> Result<Status> {
    Ok(pic_builder::fsutil::read_json_or_default(path)?)
}

pub fn save(path: &Path, status: &Status) -> Result<()> {
    Ok(pic_builder::fsutil::write_json(path, status, 0o644)?)
}
