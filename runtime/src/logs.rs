//! Logging: what `pic` says on stderr, and for `pic serve` also JSON lines in
//! `<state>/logs/api.log`, rotated at 5 MB keeping 5 files (the files of the other services will
//! sit beside it); `search` reads them back for `GET /api/logs`. Request bodies, headers (so
//! cookies) and passwords are never logged.

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
    let writer = std::sync::Mutex::new(FileRotate::new(
        file,
        AppendCount::new(KEPT_FILES),
        ContentLimit::BytesSurpassed(MAX_FILE_BYTES),
        Compression::None,
        None,
    ));
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

/// What to look for in a service's logs.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// `api`, or a service of the catalog.
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

/// The entries of `service`'s log files that match, oldest first.
pub fn search(dir: &Path, service: &str, query: &Query) -> Result<Vec<Value>> {
    let mut files: Vec<PathBuf> = (1..=KEPT_FILES).rev().map(|n| dir.join(format!("{service}.log.{n}"))).collect();
    files.push(dir.join(format!("{service}.log")));
    let limit = query.limit.unwrap_or(200).min(MAX_RESULTS);
    let mut found = std::collections::VecDeque::new();
    for path in files.iter().filter(|p| p.exists()) {
        let file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        for line in BufReader::new(file).lines() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if query.q.as_deref().is_some_and(|q| !line.contains(q)) {
                continue;
            }
            let Ok(entry) = serde_json::from_str::<Value>(&line) else { continue };
            if !matches(&entry, query) {
                continue;
            }
            if found.len() == limit {
                found.pop_front();
            }
            found.push_back(entry);
        }
    }
    Ok(found.into())
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
        let all = search(dir.path(), "api", &Query::default()).unwrap();
        assert_eq!(all.len(), 3, "rotated files first, unparsable lines skipped");
        assert_eq!(all[0]["fields"]["message"], "old start");
        let warn = search(dir.path(), "api", &Query { level: Some(LogLevel::Warn), ..Query::default() }).unwrap();
        assert_eq!(warn.len(), 1);
        let text = search(dir.path(), "api", &Query { q: Some("start".into()), ..Query::default() }).unwrap();
        assert_eq!(text.len(), 1);
        let since = Query { since: Some("2026-01-02T00:00:00Z".parse().unwrap()), ..Query::default() };
        assert_eq!(search(dir.path(), "api", &since).unwrap().len(), 2);
        let newest = search(dir.path(), "api", &Query { limit: Some(1), ..Query::default() }).unwrap();
        assert_eq!(newest[0]["fields"]["message"], "detail");
        assert!(search(dir.path(), "dns", &Query::default()).unwrap().is_empty());
    }
}
