//! `GET /metrics`: the cell in the Prometheus text format, for a scraper or a person. What is
//! counted as it happens (switch and activation durations, health-gate rollbacks) lives in
//! `Metrics`; the rest is read at each scrape (peers, services, the current generation, backups,
//! certificates, DDNS, the data partition). Readable with an admin's session or the bearer token
//! kept in `secrets/metrics.token` (`pic metrics token` prints it, making it the first time).

use std::collections::HashMap;
use std::path::Path;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, Registry, TextEncoder};
use sha2::{Digest, Sha256};

use super::AppState;
use super::auth::SESSION_COOKIE;
use super::error::{ApiError, ErrorBody, blocking};

/// What is counted as it happens.
pub struct Metrics {
    registry: Registry,
    /// A change request that built and switched a generation, from request to switched.
    pub switch_seconds: Histogram,
    /// One activation: firewall, WireGuard, containers behind the health gate.
    pub activation_seconds: Histogram,
    /// Generations the health gate rolled back.
    pub rollbacks: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let histogram =
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("a valid histogram");
            registry.register(Box::new(histogram.clone())).expect("registered once");
            histogram
        };
        let switch_seconds = histogram(
            "pic_switch_duration_seconds",
            "Time from a change request to its generation built and switched.",
            vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
        );
        let activation_seconds = histogram(
            "pic_activation_duration_seconds",
            "Time an activation took: firewall, WireGuard and containers behind the health gate.",
            vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0],
        );
        let rollbacks = IntCounter::new("pic_rollbacks_total", "Generations the health gate rolled back.")
            .expect("a valid counter");
        registry.register(Box::new(rollbacks.clone())).expect("registered once");
        Metrics { registry, switch_seconds, activation_seconds, rollbacks }
    }
}

/// The token file, under `secrets/`.
const TOKEN_FILE: &str = "metrics.token";

/// The scraper's bearer token, made (random, 0600) the first time it is asked for.
pub fn token(secrets: &Path) -> Result<String, pic_builder::Error> {
    let path = secrets.join(TOKEN_FILE);
    if let Ok(text) = std::fs::read_to_string(&path)
        && !text.trim().is_empty()
    {
        return Ok(text.trim().to_owned());
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    let token = hex::encode(bytes);
    pic_builder::fsutil::write_atomic(&path, format!("{token}\n").as_bytes(), 0o600)?;
    Ok(token)
}

/// Whether `given` is the token kept in `secrets/` (compared as digests, so that the time taken
/// says nothing about the token).
fn token_matches(secrets: &Path, given: &str) -> bool {
    let Ok(kept) = std::fs::read_to_string(secrets.join(TOKEN_FILE)) else { return false };
    let kept = kept.trim();
    !kept.is_empty() && Sha256::digest(kept.as_bytes()) == Sha256::digest(given.as_bytes())
}

#[utoipa::path(get, path = "/metrics", tag = "metrics", responses((status = 200, description = "the cell's metrics in the Prometheus text format (0.0.4)", content_type = "text/plain"), (status = 401, description = "neither an admin's session nor the metrics token (`Authorization: Bearer …`)", body = ErrorBody), (status = 403, description = "a session that is not an admin's", body = ErrorBody)))]
pub async fn scrape(State(app): State<AppState>, jar: CookieJar, headers: HeaderMap) -> Result<Response, ApiError> {
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match (bearer, jar.get(SESSION_COOKIE).and_then(|c| app.sessions.get(c.value()))) {
        (Some(token), _) if token_matches(app.state.secrets().dir(), token) => {}
        (_, Some(session)) if session.role == pic_builder::config::Role::Admin => {}
        (_, Some(_)) => return Err(ApiError::forbidden("the metrics are for an admin or the metrics token")),
        _ => return Err(ApiError::unauthorized()),
    }
    let health = app.containers.as_ref().map(|c| c.health()).unwrap_or_default();
    let seconds = |t: jiff::Timestamp| t.as_second();
    let metrics = app.metrics.clone();
    let wireguard = app.wireguard.clone();
    let state = app.state.clone();
    let text = blocking(move || {
        let registry = Registry::new();
        let now = jiff::Timestamp::now();
        let gauges = Gauges::new(&registry);

        if let Some(config) = state.desired_config()? {
            let live: HashMap<String, crate::wireguard::PeerStatus> = wireguard
                .as_ref()
                .and_then(|wg| wg.status().ok())
                .unwrap_or_default()
                .into_iter()
                .map(|s| (s.public_key.clone(), s))
                .collect();
            gauges.set("pic_peers", "Devices (WireGuard peers) in the config.", config.wireguard.peers.len() as i64);
            let mut online = 0;
            for peer in &config.wireguard.peers {
                let Some(status) = live.get(&peer.public_key) else { continue };
                gauges.received.with_label_values(&[&peer.name]).set(status.rx_bytes as i64);
                gauges.sent.with_label_values(&[&peer.name]).set(status.tx_bytes as i64);
                if let Some(at) = status.last_handshake.as_deref().and_then(|t| t.parse::<jiff::Timestamp>().ok()) {
                    let age = (seconds(now) - seconds(at)).max(0);
                    gauges.handshake_age.with_label_values(&[&peer.name]).set(age);
                    if age < 180 {
                        online += 1;
                    }
                }
            }
            gauges.set("pic_peers_online", "Devices with a handshake in the last three minutes.", online);
        }
        for (service, h) in &health {
            gauges.healthy.with_label_values(&[service]).set(i64::from(h.healthy));
            gauges.restarts.with_label_values(&[service]).set(i64::from(h.restarts));
        }
        if let Some(current) = state.current()? {
            gauges.set("pic_generation_current", "The current generation's number.", current as i64);
        }
        let schedule = pic_builder::backup::schedule::status(&state)?;
        // The list holds the schedule's destination too, when that is another disk.
        let newest = pic_builder::backup::list(&state)?
            .into_iter()
            .filter_map(|b| Some((b.header?.created.parse::<jiff::Timestamp>().ok()?, b.size)))
            .max_by_key(|(at, _)| *at);
        gauges.set(
            "pic_backup_schedule_failing",
            "1 when the last scheduled backup failed (its reason is in the web UI and `pic backups`).",
            i64::from(schedule.problem.is_some()),
        );
        if let Some((at, size)) = newest {
            let age = (seconds(now) - seconds(at)).max(0);
            gauges.set("pic_backup_age_seconds", "Seconds since the newest backup was made.", age);
            gauges.set("pic_backup_size_bytes", "Size of the newest backup.", size as i64);
        }
        let mut active: HashMap<String, pic_builder::ca::IssuedCert> = HashMap::new();
        for cert in state.ca().list()?.into_iter().filter(|c| c.revoked.is_none()) {
            match active.get(&cert.name) {
                Some(kept) if kept.not_before >= cert.not_before => {}
                _ => {
                    active.insert(cert.name.clone(), cert);
                }
            }
        }
        for (name, cert) in &active {
            if let Ok(end) = cert.not_after.parse::<jiff::Timestamp>() {
                gauges.certificate_left.with_label_values(&[name]).set(seconds(end) - seconds(now));
            }
        }
        if let Ok(ddns) = crate::ddns::status(&state)
            && let Some(at) = ddns.last_success
        {
            let help = "When the dynamic DNS name last pointed at the cell's address (Unix time).";
            gauges.set("pic_ddns_last_success_timestamp_seconds", help, at.as_second());
        }
        if let Ok(storage) = crate::device::storage::measure(state.root()) {
            gauges.set("pic_data_free_bytes", "Free space of the data partition.", storage.free_bytes as i64);
            gauges.set("pic_data_size_bytes", "Size of the data partition.", storage.data_bytes as i64);
        }
        let mut families = metrics.registry.gather();
        families.extend(registry.gather());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut text = Vec::new();
        TextEncoder::new().encode(&families, &mut text).map_err(ApiError::internal)?;
        Ok(text)
    })
    .await?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response())
}

/// What is read at each scrape, registered afresh so that a removed peer or service leaves.
struct Gauges<'r> {
    registry: &'r Registry,
    handshake_age: prometheus::IntGaugeVec,
    received: prometheus::IntGaugeVec,
    sent: prometheus::IntGaugeVec,
    healthy: prometheus::IntGaugeVec,
    restarts: prometheus::IntGaugeVec,
    certificate_left: prometheus::IntGaugeVec,
}

impl Gauges<'_> {
    /// One value, there only when known (a missing backup is not a backup of age 0).
    fn set(&self, name: &str, help: &str, value: i64) {
        let gauge = prometheus::IntGauge::new(name, help).expect("a valid gauge");
        gauge.set(value);
        self.registry.register(Box::new(gauge)).expect("registered once");
    }

    fn new(registry: &Registry) -> Gauges<'_> {
        let by = |name: &str, help: &str, label: &str| {
            let gauge =
                prometheus::IntGaugeVec::new(prometheus::Opts::new(name, help), &[label]).expect("a valid gauge");
            registry.register(Box::new(gauge.clone())).expect("registered once");
            gauge
        };
        Gauges {
            registry,
            handshake_age: by(
                "pic_peer_last_handshake_age_seconds",
                "Seconds since each device's last handshake.",
                "peer",
            ),
            received: by(
                "pic_peer_received_bytes",
                "Bytes received from each device since the interface came up.",
                "peer",
            ),
            sent: by("pic_peer_sent_bytes", "Bytes sent to each device since the interface came up.", "peer"),
            healthy: by("pic_service_healthy", "1 when the service's container passes its health check.", "service"),
            restarts: by("pic_service_restarts", "Times the health monitor restarted the service.", "service"),
            certificate_left: by(
                "pic_certificate_remaining_seconds",
                "Seconds until each certificate of the cell CA expires.",
                "name",
            ),
        }
    }
}
