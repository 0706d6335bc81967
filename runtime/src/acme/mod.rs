//! Public certificates `pic serve` gets itself: in `ddns` mode with a provider that has a record
//! API (Cloudflare, DuckDNS) it orders one certificate for the name and `*.name` by DNS-01,
//! keeps it in `secrets/acme/certificates/<name>/`, and renews it 30 days before it expires.
//! A failed order keeps the certificate there was, records why in `<state>/acme.json` and is
//! tried again an hour later. In `public` mode (and with other providers) Caddy gets its own by
//! HTTP-01; either way `certificates::covering` is what Caddy and mail are handed for a name.
//! Every step takes the time as an argument, so tests drive it with their own clock.

pub mod certificates;
mod order;
#[cfg(test)]
mod tests;

use std::time::Duration;

use anyhow::{Context, Result};
use jiff::{SignedDuration, Timestamp};
use pic_builder::config::{Certificates, DdnsProvider};
use pic_builder::{State, fsutil};
use serde::{Deserialize, Serialize};

use crate::ddns;

/// A certificate is renewed when it has less than this left (Let's Encrypt's advice for its
/// 90-day certificates).
pub const RENEW_BEFORE: SignedDuration = SignedDuration::from_hours(30 * 24);
/// How long after a failed order the next one is tried (Let's Encrypt allows 5 failed
/// validations per name and hour).
pub const RETRY_AFTER_FAILURE: SignedDuration = SignedDuration::from_hours(1);
/// How often `pic serve` looks whether a renewal is due.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(6 * 3600);

/// What an order needs: the names, the ACME CA, and the DDNS provider that publishes the TXT
/// records.
#[derive(Debug, Clone)]
pub struct Settings {
    pub name: String,
    /// `name` and `*.name`.
    pub names: Vec<String>,
    pub directory: String,
    pub email: String,
    pub ca_root: Option<String>,
    pub ddns: ddns::Settings,
    /// The provider's credential (checked to be there before an order starts).
    credential: String,
    /// How long after the provider took a TXT record the CA is asked to look.
    pub propagation: Duration,
}

/// How long a provider's name servers take to serve a new TXT record, when `pic serve` is not
/// told otherwise: Cloudflare's are updated within seconds, DuckDNS's within a minute.
pub fn default_propagation(provider: DdnsProvider) -> Duration {
    match provider {
        DdnsProvider::Cloudflare => Duration::from_secs(10),
        _ => Duration::from_secs(60),
    }
}

/// What the certificate client recorded: `<state>/acme.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Status {
    /// The names of the last order.
    pub names: Vec<String>,
    /// The directory the kept certificate came from.
    pub certificate_directory: Option<String>,
    #[schema(value_type = Option<String>)]
    pub last_attempt: Option<Timestamp>,
    #[schema(value_type = Option<String>)]
    pub last_success: Option<Timestamp>,
    pub last_error: Option<Failure>,
    /// No order before this time (the last one failed).
    #[schema(value_type = Option<String>)]
    pub retry_after: Option<Timestamp>,
    /// The names and directory the wait is about: other settings lift it.
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Failure {
    #[schema(value_type = String)]
    pub at: Timestamp,
    pub message: String,
}

/// What one look at the certificate did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Renewal {
    /// Certificates are not `pic serve`'s to get in this domain mode.
    Off,
    /// The kept certificate is good for more than `RENEW_BEFORE`.
    Current {
        not_after: Timestamp,
    },
    /// Not tried now, and why.
    Held {
        reason: String,
    },
    Issued {
        names: Vec<String>,
        not_after: Timestamp,
    },
    /// The order failed; the kept certificate (if any) stays.
    Failed {
        reason: String,
    },
}

pub fn status_path(state: &State) -> std::path::PathBuf {
    state.root().join("acme.json")
}

/// The recorded status (empty before the first order).
pub fn status(state: &State) -> Result<Status> {
    Ok(fsutil::read_json_or_default(&status_path(state))?)
}

/// The settings of the desired config when its certificates are `pic serve`'s to get, with the
/// provider's credential if it is kept.
fn load(state: &State, propagation: Option<Duration>) -> Result<Option<(Settings, bool)>> {
    let Some(config) = state.desired_config().context("reading the desired config")? else { return Ok(None) };
    if config.cell.domain.certificates() != Certificates::Pic {
        return Ok(None);
    }
    let (Some(acme), Some(ddns)) = (config.cell.domain.acme(), ddns::Settings::load(state)?) else { return Ok(None) };
    let name = ddns.name.to_ascii_lowercase();
    let credential = ddns.credential.clone();
    let settings = Settings {
        names: vec![name.clone(), format!("*.{name}")],
        name,
        directory: acme.directory.to_owned(),
        email: acme.email.to_owned(),
        ca_root: acme.ca_root.map(str::to_owned),
        propagation: propagation.unwrap_or_else(|| default_propagation(ddns.provider)),
        ddns,
        credential: credential.clone().unwrap_or_default(),
    };
    Ok(Some((settings, credential.is_some())))
}

/// Looks at the certificate at `now` and orders a new one when there is none, it misses a name,
/// came from another CA, or has less than `RENEW_BEFORE` left; `force` orders one regardless
/// (and regardless of the wait after a failure).
pub async fn renew(
    state: &State,
    http: &ddns::Http,
    now: Timestamp,
    force: bool,
    propagation: Option<Duration>,
) -> Result<Renewal> {
    // One order at a time (the loop, the API's "renew now", the command line in this process).
    static ORDER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _order = ORDER.lock().await;
    let Some((settings, has_credential)) = load(state, propagation)? else { return Ok(Renewal::Off) };
    let path = status_path(state);
    let mut status: Status = fsutil::read_json_or_default(&path)?;
    let fingerprint = format!("{}|{}", settings.names.join(","), settings.directory);
    if status.fingerprint != fingerprint {
        status.retry_after = None;
        status.fingerprint = fingerprint;
    }
    let current = certificates::issued(state, &settings.name).map(|f| f.certificate);
    let due = match &current {
        None => true,
        Some(c) => {
            !settings.names.iter().all(|n| c.names.contains(n))
                || c.not_after.duration_since(now) < RENEW_BEFORE
                || status.certificate_directory.as_deref() != Some(settings.directory.as_str())
        }
    };
    if !due && !force {
        return Ok(Renewal::Current { not_after: current.expect("not due without one").not_after });
    }
    if !has_credential {
        let reason =
            format!("no {} credential is kept: set it under Settings, Domain", settings.ddns.provider.as_str());
        return Ok(Renewal::Held { reason });
    }
    if !force && let Some(after) = status.retry_after.filter(|t| *t > now) {
        let last = status.last_error.as_ref().map(|e| e.message.as_str()).unwrap_or("a failed order");
        return Ok(Renewal::Held { reason: format!("waiting until {after} after: {last}") });
    }
    status.names = settings.names.clone();
    status.last_attempt = Some(now);
    fsutil::write_json(&path, &status, 0o644)?;
    let renewal = match order::obtain(state, &settings, http).await {
        Ok(issued) => {
            let certificate = certificates::parse(issued.chain.as_bytes()).context("the issued certificate")?;
            keep(state, &settings.name, &issued)?;
            status.last_success = Some(now);
            status.last_error = None;
            status.retry_after = None;
            status.certificate_directory = Some(settings.directory.clone());
            tracing::info!(names = ?certificate.names, not_after = %certificate.not_after, "certificate issued");
            Renewal::Issued { names: certificate.names, not_after: certificate.not_after }
        }
        Err(reason) => {
            tracing::warn!(%reason, "the certificate order failed; the kept certificate stays");
            status.last_error = Some(Failure { at: now, message: reason.clone() });
            status.retry_after = now.checked_add(RETRY_AFTER_FAILURE).ok();
            Renewal::Failed { reason }
        }
    };
    fsutil::write_json(&path, &status, 0o644)?;
    Ok(renewal)
}

/// Puts a new chain and key in place of the kept ones at once: both are written into a new
/// folder that is then exchanged with the old one, so a reader never pairs a key with the wrong
/// certificate.
fn keep(state: &State, name: &str, issued: &order::Issued) -> Result<()> {
    let dir = certificates::issued_dir(state, name);
    let parent = dir.parent().expect("under secrets/acme/certificates");
    fsutil::ensure_dir(&state.secrets().dir().join("acme"), 0o700)?;
    fsutil::ensure_dir(parent, 0o700)?;
    let new = parent.join(format!("{}{name}", fsutil::TMP_PREFIX));
    if new.exists() {
        fsutil::remove_tree(&new)?;
    }
    fsutil::ensure_dir(&new, 0o700)?;
    fsutil::write_atomic(&new.join("key.pem"), issued.key.as_bytes(), 0o600)?;
    fsutil::write_atomic(&new.join("cert.pem"), issued.chain.as_bytes(), 0o644)?;
    if dir.exists() {
        fsutil::exchange(&new, &dir)?;
        fsutil::remove_tree(&new)?;
    } else {
        fsutil::rename_durable(&new, &dir)?;
    }
    Ok(())
}
