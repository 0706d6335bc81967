//! Every service container's log copied into `logs/<service>.log` as JSON lines (the shape of
//! `pic serve`'s own, with the level read from the line), rotated at 5 MB keeping 5 files, so
//! that they outlive the container (a new generation recreates it) and are searched together.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use jiff::Timestamp;
use tokio::task::JoinHandle;

use super::Engine;
use crate::logs;

/// How often the containers are looked at: a new one's log is followed at most this late (its
/// earlier lines are read from Docker, so none is lost).
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// Follows the log of every managed container while `pic serve` runs. `engine` gives the engine
/// when it answers.
pub async fn run<F, Fut>(dir: PathBuf, engine: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Engine>>,
{
    let mut followed: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut tick = tokio::time::interval(LOOK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        followed.retain(|_, task| !task.is_finished());
        let Ok(engine) = engine().await else { continue };
        let Ok(containers) = super::container_infos(&engine).await else { continue };
        for container in containers {
            if container.state != "running" || container.service.is_empty() || followed.contains_key(&container.service)
            {
                continue;
            }
            let (engine, dir, service) = (engine.clone(), dir.clone(), container.service.clone());
            let task = tokio::spawn(async move {
                if let Err(error) = follow(&engine, &dir, &service, &container.name).await {
                    tracing::debug!(service, error = %format!("{error:#}"), "following a container's log");
                }
            });
            followed.insert(container.service, task);
        }
    }
}

/// Copies one container's log from where the file left off until the container stops.
async fn follow(engine: &Engine, dir: &Path, service: &str, container: &str) -> Result<()> {
    let path = dir.join(format!("{service}.log"));
    let mut last = tokio::task::spawn_blocking({
        let path = path.clone();
        move || last_timestamp(&path)
    })
    .await?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut file = logs::rotating(&path);
    // Docker's `since` is in whole seconds: the lines of that second already copied are skipped.
    let since = last.map_or(0, |t| t.as_second());
    let options = bollard::query_parameters::LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .follow(true)
        .timestamps(true)
        .since(i32::try_from(since).unwrap_or(0))
        .build();
    let mut stream = engine.api().logs(container, Some(options));
    let mut pending = String::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("reading the log of {container}"))?;
        pending.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let Some((time, message)) = line.trim_end().split_once(' ') else { continue };
            let Ok(time) = time.parse::<Timestamp>() else { continue };
            if last.is_some_and(|last| time <= last) {
                continue;
            }
            last = Some(time);
            let entry = entry(service, time, message);
            writeln!(file, "{entry}").with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

/// One line of a service's log as it is kept: the shape of `pic serve`'s own lines.
pub fn entry(service: &str, time: Timestamp, message: &str) -> serde_json::Value {
    serde_json::json!({
        "timestamp": time.to_string(),
        "level": logs::level_of(message),
        "service": service,
        "fields": { "message": message },
    })
}

/// The time of the last line copied, from the newest file.
fn last_timestamp(path: &Path) -> Option<Timestamp> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    let entry: serde_json::Value = serde_json::from_str(line).ok()?;
    entry["timestamp"].as_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_copied_line_is_where_copying_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dns.log");
        assert_eq!(last_timestamp(&path), None);
        let first = entry("dns", "2026-12-01T03:00:00.5Z".parse().unwrap(), "info: start of service");
        let second = entry("dns", "2026-12-01T03:00:01.25Z".parse().unwrap(), "debug: query");
        std::fs::write(&path, format!("{first}\n{second}\n")).unwrap();
        assert_eq!(last_timestamp(&path), Some("2026-12-01T03:00:01.25Z".parse().unwrap()));
        assert_eq!(second["level"], "DEBUG");
        assert_eq!(second["service"], "dns");
    }
}
