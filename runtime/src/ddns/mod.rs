//! Dynamic DNS: keeps the cell's public name pointing at its public address. Each cycle (every
//! `interval_seconds` under `pic serve`, or `pic ddns update`) learns the public address and
//! sends the provider one update only when it changed, when the settings or the credential
//! changed, or when the provider's keep-alive is due; it honours the provider's answers (a
//! refusal stops it until the user changes something, "try later" backs off) and records the
//! outcome in `<state>/ddns.json`. Every step takes the time as an argument, so tests drive it
//! with their own clock.

pub mod address;
mod providers;
mod status;

use std::time::Duration;

use anyhow::{Context, Result};
use jiff::Timestamp;
use pic_builder::State;
use pic_builder::config::{AddressSource, DdnsProvider, Domain};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use providers::{clear_txt, set_txt};
pub use status::{Addresses, Status};

/// An update is sent at least this often even without a change: providers drop names that are
/// never refreshed (ddclient's `max-interval` is 25 days).
pub const KEEP_ALIVE: Duration = Duration::from_secs(25 * 24 * 3600);
/// How long a provider that said "try later" without saying how long is left alone (No-IP's 911:
/// "no sooner than 30 minutes").
pub const BACK_OFF: Duration = Duration::from_secs(30 * 60);

/// The dynamic DNS settings of the cell config, with the credential kept for them.
#[derive(Debug, Clone)]
pub struct Settings {
    pub provider: DdnsProvider,
    pub name: String,
    pub server: String,
    pub username: Option<String>,
    pub zone: Option<String>,
    pub address: AddressSource,
    pub ipv6: bool,
    pub interval: Duration,
    pub contact: String,
    pub credential: Option<String>,
}

impl Settings {
    /// The settings of the desired config, when its domain mode is `ddns`.
    pub fn load(state: &State) -> Result<Option<Settings>> {
        let Some(config) = state.desired_config().context("reading the desired config")? else { return Ok(None) };
        let Domain::Ddns {
            provider, name, acme_email, server, username, zone, address, ipv6, interval_seconds, ..
        } = &config.cell.domain
        else {
            return Ok(None);
        };
        let credential = state.secrets().ddns_credential(*provider)?;
        Ok(Some(Settings {
            provider: *provider,
            name: name.clone(),
            server: server.clone().unwrap_or_else(|| providers::default_server(*provider).to_owned()),
            username: username.clone(),
            zone: zone.clone(),
            address: address.clone(),
            ipv6: *ipv6,
            interval: Duration::from_secs(u64::from(*interval_seconds)),
            contact: acme_email.clone(),
            credential,
        }))
    }

    /// What, when it changes, calls for a new update and lifts a stop: every setting the update
    /// depends on, and the credential (hashed: the status file holds no secret).
    fn fingerprint(&self) -> String {
        let text = format!(
            "{}|{}|{}|{:?}|{:?}|{}|{}",
            self.provider.as_str(),
            self.name,
            self.server,
            self.username,
            self.zone,
            self.ipv6,
            self.credential.as_deref().unwrap_or("")
        );
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}

/// What the provider answered, as the cycle acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The record now holds the address.
    Updated,
    /// The record already held it (`nochg`).
    Unchanged,
    /// The provider refused for a reason only the user can fix (`badauth`, `nohost`, `abuse`):
    /// no more requests until the settings or the credential change.
    Stop(String),
    /// The provider asked to be left alone for a while (`911`, HTTP 429).
    RetryAfter(Duration, String),
    /// It did not work this time (no answer, a server error): the next cycle tries again.
    Failed(String),
}

/// What one cycle did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Cycle {
    /// The domain mode is not `ddns`.
    Off,
    /// Nothing to send: the address is the published one.
    Current,
    /// An update was sent and accepted.
    Published { addresses: Addresses },
    /// Nothing was sent, and why (no credential, stopped, backing off, no address found).
    Held { reason: String },
    /// An update was sent and failed.
    Failed { reason: String },
}

/// The HTTP clients of the DDNS client: one bound to IPv4 and one to IPv6, so that each "what
/// is my address" service sees the address of the family it is asked for.
#[derive(Clone)]
pub struct Http {
    pub v4: reqwest::Client,
    pub v6: reqwest::Client,
    /// For the provider's API, over whichever family reaches it.
    pub any: reqwest::Client,
}

impl Http {
    pub fn new() -> Result<Http> {
        let build = |local: Option<std::net::IpAddr>| {
            reqwest::Client::builder()
                .user_agent(concat!("PIC pic/", env!("CARGO_PKG_VERSION")))
                .timeout(Duration::from_secs(30))
                .local_address(local)
                .build()
                .context("making the HTTP client")
        };
        Ok(Http {
            v4: build(Some(std::net::Ipv4Addr::UNSPECIFIED.into()))?,
            v6: build(Some(std::net::Ipv6Addr::UNSPECIFIED.into()))?,
            any: build(None)?,
        })
    }
}

/// One cycle at `now`: learns the public address, publishes it when needed, records the
/// outcome. `force` sends an update even when nothing changed (the user's "update now").
pub async fn cycle(state: &State, http: &Http, now: Timestamp, force: bool) -> Result<Cycle> {
    let Some(settings) = Settings::load(state)? else {
        return Ok(Cycle::Off);
    };
    let path = status::path(state);
    let mut status = status::load(&path)?;
    let result = step(&settings, &mut status, http, now, force).await;
    status.last_check = Some(now);
    status::save(&path, &status)?;
    Ok(result)
}

async fn step(settings: &Settings, status: &mut Status, http: &Http, now: Timestamp, force: bool) -> Cycle {
    let fingerprint = settings.fingerprint();
    let changed = status.fingerprint != fingerprint;
    if changed {
        // New settings or a new credential: what was published for the old ones says nothing,
        // and a stop or a back-off was about them.
        *status = Status {
            fingerprint,
            provider: Some(settings.provider),
            name: Some(settings.name.clone()),
            ..Status::default()
        };
    }
    let Some(credential) = settings.credential.as_deref() else {
        return hold(
            status,
            now,
            format!(
                "no credential for {}: set it with `pic ddns credential` or in Settings",
                settings.provider.as_str()
            ),
        );
    };
    if let Some(reason) = &status.stopped {
        return Cycle::Held { reason: format!("stopped until the settings or the credential change: {reason}") };
    }
    if let Some(until) = status.retry_after.filter(|until| *until > now) {
        return Cycle::Held { reason: format!("the provider asked to wait until {until}") };
    }
    let found = match address::find(&settings.address, settings.ipv6, http).await {
        Ok(found) => found,
        Err(error) => return hold(status, now, format!("{error:#}")),
    };
    status.detected = found.clone();
    let keep_alive_due =
        status.last_update.is_none_or(|last| now.duration_since(last).as_secs() >= KEEP_ALIVE.as_secs() as i64);
    if !force && found == status.published && !keep_alive_due {
        return Cycle::Current;
    }
    let outcome = providers::update(settings, credential, &found, status, http).await;
    match outcome {
        Outcome::Updated | Outcome::Unchanged => {
            status.published = found.clone();
            status.last_update = Some(now);
            status.last_success = Some(now);
            status.last_error = None;
            status.updates += 1;
            tracing::info!(provider = settings.provider.as_str(), name = %settings.name, addresses = ?found, "published");
            Cycle::Published { addresses: found }
        }
        Outcome::Stop(reason) => {
            status.stopped = Some(reason.clone());
            fail(status, now, reason)
        }
        Outcome::RetryAfter(wait, reason) => {
            status.retry_after = Some(now + jiff::SignedDuration::try_from(wait).unwrap_or_default());
            fail(status, now, reason)
        }
        Outcome::Failed(reason) => fail(status, now, reason),
    }
}

fn hold(status: &mut Status, now: Timestamp, reason: String) -> Cycle {
    status.last_error = Some(status::Error { at: now, message: reason.clone() });
    Cycle::Held { reason }
}

fn fail(status: &mut Status, now: Timestamp, reason: String) -> Cycle {
    tracing::warn!(%reason, "the dynamic DNS update failed");
    status.last_error = Some(status::Error { at: now, message: reason.clone() });
    Cycle::Failed { reason }
}

/// The recorded status, for `pic ddns status` and `GET /api/domain`.
pub fn status(state: &State) -> Result<Status> {
    status::load(&status::path(state))
}

#[cfg(test)]
mod tests;
