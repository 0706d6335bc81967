//! Logging: what `pic` says on stderr, and for `pic serve` also JSON lines in
//! `<state>/logs/api.log`, rotated at 5 MB keeping 5 files; each service's container log is
//! copied beside it (`docker::collect_logs`), its level read from the line (`level_of`); `search`
//! reads them back, one service or all together, for `GET /api/logs`. Request bodies, headers
//! (so cookies) and passwords are never logged.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use pic_builder::config::LogLevel;
use serde_json::Value;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, reload};

pub const MAX_FILE_BYTES: usize = 5 * 1024 * 1024;
pub const KEPT_FILES: usize = 5;
/// The most entries one search returns.
pub const MAX_RESULTS: usize = 1000;

/// Changes the level of the JSON log file while the server runs.
pub struct FileLevel(Box<dyn Fn(LogLevel) + Send + Sync>);

impl FileLevel {
    pub fn set(&self, level: LogLevel) {
        (self.0)(level)
    }
}

/// The folder of the log files in a state directory.
pub fn dir(state: &Path) -> PathBuf {
    state.join("logs")
}

/// Installs logging: stderr always (filtered by `PIC_LOG`, default warnings), and with `file`
/// also JSON lines there, at `info` until told otherwise.
pub fn init(file: Option<&Path>) -> Result<Option<FileLevel>> {
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(EnvFilter::try_from_env("PIC_LOG").unwrap_or_else(|_| EnvFilter::new("warn")));
    let Some(file) = file else {
        tracing_subscriber::registry().with(stderr).init();
        return Ok(None);
    };
    let parent = file.parent().context("a log file has a folder")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let writer = std::sync::Mutex::new(rotating(file));
    let (level, handle) = reload::Layer::new(LevelFilter::INFO);
    let json = tracing_subscriber::fmt::layer().json().with_current_span(true).with_writer(writer).with_filter(level);
    tracing_subscriber::registry().with(stderr).with(json).init();
    Ok(Some(FileLevel(Box::new(move |level| {
        let filter = match level {
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Debug => LevelFilter::DEBUG,
        };
        let _ = handle.reload(filter);
    }))))
}

/// A log file of a service: `<service>.log`, moved to `.1` (and the others up by one) once it
/// passed 5 MB, the fifth dropped.
pub fn rotating(path: &Path) -> FileRotate<AppendCount> {
    FileRotate::new(
        path,
        AppendCount::new(KEPT_FILES),
        ContentLimit::BytesSurpassed(MAX_FILE_BYTES),
        Compression::None,
        None,
    )
}

/// What to look for in a service's logs.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// `api`, a service of the catalog or an app; absent: every service together.
    pub service: Option<String>,
    /// The least severe level to return.
    #[param(value_type = Option<String>)]
    pub level: Option<LogLevel>,
    /// Text the entry must contain.
    pub q: Option<String>,
    /// RFC 3339: only entries from then on.
    #[param(value_type = Option<String>)]
    pub since: Option<jiff::Timestamp>,
    /// At most this many (the newest); 200 by default, 1000 at most.
    pub limit: Option<usize>,
}

/// The entries of `service`'s log files (of every service's when `None`) that match, oldest
/// first; each names its service.
pub fn search(dir: &Path, service: Option<&str>, query: &Query) -> Result<Vec<Value>> {
    let limit = query.limit.unwrap_or(200).min(MAX_RESULTS);
    let services = match service {
        Some(service) => vec![service.to_owned()],
        None => services_with_logs(dir)?,
    };
    let mut found = Vec::new();
    for service in &services {
        found.extend(search_one(dir, service, query, limit)?);
    }
    if services.len() > 1 {
        // RFC 3339 times in UTC of one format sort as text.
        found.sort_by(|a, b| a["timestamp"].as_str().cmp(&b["timestamp"].as_str()));
        let skip = found.len().saturating_sub(limit);
        found.drain(..skip);
    }
    Ok(found)
}

/// The services that have a log file.
fn services_with_logs(dir: &Path) -> Result<Vec<String>> {
    let mut services = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(services),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let name = entry.with_context(|| format!("reading {}", dir.display()))?.file_name();
        if let Some(service) = name.to_string_lossy().strip_suffix(".log") {
            services.push(service.to_owned());
        }
    }
    services.sort();
    Ok(services)
}

fn search_one(dir: &Path, service: &str, query: &Query, limit: usize) -> Result<Vec<Value>> {
    let mut files: Vec<PathBuf> = (1..=KEPT_FILES).rev().map(|n| dir.join(format!("{service}.log.{n}"))).collect();
    files.push(dir.join(format!("{service}.log")));
    let mut found = std::collections::VecDeque::new();
    for path in files.iter().filter(|p| p.exists()) {
        let file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        for line in BufReader::new(file).lines() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if query.q.as_deref().is_some_and(|q| !line.contains(q)) {
                continue;
            }
            let Ok(mut entry) = serde_json::from_str::<Value>(&line) else { continue };
            if !matches(&entry, query) {
                continue;
            }
            if entry.get("service").is_none() {
                entry["service"] = service.into();
            }
            if found.len() == limit {
                found.pop_front();
            }
            found.push_back(entry);
        }
    }
    Ok(found.into())
}

/// One entry as a line of text: time, service, level, message (and `pic serve`'s other fields).
pub fn describe(entry: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut message = text(&entry["fields"]["message"]);
    if let Some(fields) = entry["fields"].as_object() {
        for (name, value) in fields.iter().filter(|(name, _)| *name != "message") {
            message.push_str(&format!(" {name}={}", value.as_str().map_or_else(|| value.to_string(), str::to_owned)));
        }
    }
    format!("{} {:<8} {:<5} {message}", text(&entry["timestamp"]), text(&entry["service"]), text(&entry["level"]))
}

/// The level of a daemon's log line, as `pic serve`'s own lines spell it (`ERROR`, `WARN`,
/// `INFO`, `DEBUG`): a JSON line's `level` (Caddy), else the first level word near the start
/// (unbound's `debug:`, Postfix's `warning:`, Dovecot's `Error:`, Radicale's `[DEBUG]`, Apache's
/// `[core:debug]`); a line with none is `INFO`.
pub fn level_of(line: &str) -> &'static str {
    let trimmed = line.trim_start();
    if trimmed.starts_with('{')
        && let Ok(value) = serde_json::from_str::<Value>(trimmed)
        && let Some(level) = value.get("level").and_then(Value::as_str)
    {
        return word_level(&level.to_ascii_lowercase()).unwrap_or("INFO");
    }
    let head: String = trimmed.chars().take(120).collect::<String>().to_ascii_lowercase();
    head.split(|c: char| !c.is_ascii_alphanumeric()).find_map(word_level).unwrap_or("INFO")
}

fn word_level(word: &str) -> Option<&'static str> {
    Some(match word {
        "debug" | "trace" | "debug1" | "debug2" => "DEBUG",
        "info" | "notice" => "INFO",
        "warn" | "warning" => "WARN",
        "error" | "err" | "fatal" | "crit" | "critical" | "panic" | "dpanic" | "alert" | "emerg" => "ERROR",
        _ => return None,
    })
}

fn matches(entry: &Value, query: &Query) -> bool {
    let level_ok = query.level.is_none_or(|min| {
        let level = match entry["level"].as_str().unwrap_or("") {
            "ERROR" => LogLevel::Error,
            "WARN" => LogLevel::Warn,
            "INFO" => LogLevel::Info,
            _ => LogLevel::Debug,
        };
        // More severe levels sort first.
        level <= min
    });
    let since_ok = query.since.is_none_or(|since| {
        entry["timestamp"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()).is_some_and(|t| t >= since)
    });
    level_ok && since_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_filters_by_level_text_time_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let line = |t: &str, level: &str, msg: &str| {
            format!("{{\"timestamp\":\"{t}\",\"level\":\"{level}\",\"fields\":{{\"message\":\"{msg}\"}}}}\n")
        };
        fs::write(dir.path().join("api.log.1"), line("2026-01-01T00:00:00Z", "INFO", "old start")).unwrap();
        fs::write(
            dir.path().join("api.log"),
            line("2026-01-02T00:00:00Z", "WARN", "disk low")
                + &line("2026-01-03T00:00:00Z", "DEBUG", "detail")
                + "not json\n",
        )
        .unwrap();
        let all = search(dir.path(), Some("api"), &Query::default()).unwrap();
        assert_eq!(all.len(), 3, "rotated files first, unparsable lines skipped");
        assert_eq!(all[0]["fields"]["message"], "old start");
        let warn = search(dir.path(), Some("api"), &Query { level: Some(LogLevel::Warn), ..Query::default() }).unwrap();
        assert_eq!(warn.len(), 1);
        let text = search(dir.path(), Some("api"), &Query { q: Some("start".into()), ..Query::default() }).unwrap();
        assert_eq!(text.len(), 1);
        let since = Query { since: Some("2026-01-02T00:00:00Z".parse().unwrap()), ..Query::default() };
        assert_eq!(search(dir.path(), Some("api"), &since).unwrap().len(), 2);
        let newest = search(dir.path(), Some("api"), &Query { limit: Some(1), ..Query::default() }).unwrap();
        assert_eq!(newest[0]["fields"]["message"], "detail");
        assert!(search(dir.path(), Some("dns"), &Query::default()).unwrap().is_empty());
        assert_eq!(all[0]["service"], "api");

        // Every service together, in time order, each entry naming its service.
        let dns = crate::docker::collect_logs::entry("dns", "2026-01-02T12:00:00Z".parse().unwrap(), "debug: query");
        fs::write(dir.path().join("dns.log"), format!("{dns}\n")).unwrap();
        let together = search(dir.path(), None, &Query::default()).unwrap();
        let order: Vec<&str> = together.iter().map(|e| e["service"].as_str().unwrap()).collect();
        assert_eq!(order, ["api", "api", "dns", "api"]);
        let debug_only = search(dir.path(), None, &Query { q: Some("query".into()), ..Query::default() }).unwrap();
        assert_eq!(debug_only.len(), 1);
    }

    #[test]
    fn a_log_is_rotated_at_5_mb_keeping_5_files() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut file = rotating(&dir.path().join("dns.log"));
        let line = format!("{}\n", "x".repeat(1023));
        for _ in 0..(7 * MAX_FILE_BYTES / line.len()) {
            file.write_all(line.as_bytes()).unwrap();
        }
        file.flush().unwrap();
        let mut names: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["dns.log", "dns.log.1", "dns.log.2", "dns.log.3", "dns.log.4", "dns.log.5"]);
        for name in &names {
            let size = fs::metadata(dir.path().join(name)).unwrap().len() as usize;
            assert!(size <= MAX_FILE_BYTES + line.len(), "{name} has {size} bytes");
        }
    }

    #[test]
    fn each_daemons_level_is_read_from_its_line() {
        let cases = [
            ("[1764558000] unbound[1:0] debug: module config \"validator iterator\"", "DEBUG"),
            ("[1764558000] unbound[1:0] info: start of service (unbound 1.22.0).", "INFO"),
            ("[1764558000] unbound[1:0] warning: so-rcvbuf 1048576 was not granted", "WARN"),
            ("[1764558000] unbound[1:0] error: can't bind socket: Address already in use", "ERROR"),
            ("dnsmasq[1]: started, version 2.90 cachesize 150", "INFO"),
            ("dnsmasq-dhcp[1]: DHCPDISCOVER(eth0) 02:42:ac:14:00:09", "INFO"),
            (r#"{"level":"debug","ts":1764558000.1,"logger":"http","msg":"matched"}"#, "DEBUG"),
            (r#"{"level":"error","ts":1764558000.1,"logger":"tls","msg":"could not get certificate"}"#, "ERROR"),
            ("[2026-12-01 03:00:00 +0000] [1/Thread-2] [DEBUG] Request received", "DEBUG"),
            ("[2026-12-01 03:00:00 +0000] [1/MainThread] [WARNING] No user authentication", "WARN"),
            ("[Tue Dec 01 03:00:00.123 2026] [mpm_event:notice] [pid 1:tid 1] AH00489: resuming", "INFO"),
            ("[Tue Dec 01 03:00:00.123 2026] [dav:error] [pid 9:tid 9] (13)Permission denied", "ERROR"),
            ("postfix/smtpd[120]: warning: hostname unknown does not resolve", "WARN"),
            ("postfix/master[1]: fatal: bind 0.0.0.0 port 25: Address in use", "ERROR"),
            ("Dec 01 03:00:00 auth: Debug: auth client connected (pid=7)", "DEBUG"),
            ("Dec 01 03:00:00 imap-login: Info: Login: user=<alice>", "INFO"),
            ("2026-12-01T03:00:00Z chronyd version 4.6 starting (+CMDMON +NTP)", "INFO"),
        ];
        for (line, level) in cases {
            assert_eq!(level_of(line), level, "{line}");
        }
    }
}
