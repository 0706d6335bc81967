//! Services an admin stopped. Activations leave such a service's container as it is (stopped,
//! its new files waiting), the health monitor does not restart it and the health gate does not
//! count it, until an admin starts it again — also across new generations. The record is
//! `run/stopped.json` in the state directory, so a stop holds across a restart of `pic serve`
//! and a reboot.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;

use anyhow::{Context, Result};
use pic_builder::{State, fsutil};
use serde::{Deserialize, Serialize};

/// Who stopped a service, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stop {
    pub by: String,
    /// RFC 3339.
    pub at: String,
}

/// The stopped services, by service name.
pub type Stopped = BTreeMap<String, Stop>;

fn path(state: &State) -> PathBuf {
    state.root().join("run").join("stopped.json")
}

/// The services an admin stopped (none when nothing was ever stopped).
pub fn load(state: &State) -> Result<Stopped> {
    let path = path(state);
    fsutil::read_json_or_default(&path).with_context(|| format!("reading {}", path.display()))
}

/// Records that `by` stopped `service` now.
pub fn record(state: &State, service: &str, by: &str) -> Result<()> {
    let stop = Stop { by: by.to_owned(), at: jiff::Timestamp::now().round(jiff::Unit::Second)?.to_string() };
    change(state, |stopped| {
        stopped.insert(service.to_owned(), stop);
    })
}

/// Forgets a stop: the service is to run again. True when there was one.
pub fn clear(state: &State, service: &str) -> Result<bool> {
    let mut had = false;
    change(state, |stopped| had = stopped.remove(service).is_some())?;
    Ok(had)
}

/// Keeps only the stops of `services` (a service gone from the generation is not stopped when it
/// comes back later).
pub fn retain(state: &State, services: &[&str]) -> Result<()> {
    if load(state)?.keys().all(|s| services.contains(&s.as_str())) {
        return Ok(());
    }
    change(state, |stopped| stopped.retain(|s, _| services.contains(&s.as_str())))
}

/// Read, change and write under a lock of its own: `pic serve` and the command line both stop
/// and start services.
fn change(state: &State, edit: impl FnOnce(&mut Stopped)) -> Result<()> {
    let path = path(state);
    let dir = path.parent().expect("run/ holds it");
    fsutil::ensure_dir(dir, 0o755)?;
    let lock_path = dir.join("stopped.lock");
    let lock = File::options().create(true).truncate(false).write(true).open(&lock_path)?;
    lock.lock().with_context(|| format!("locking {}", lock_path.display()))?;
    let mut stopped = load(state)?;
    edit(&mut stopped);
    fsutil::write_json(&path, &stopped, 0o644).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_is_recorded_kept_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::new(dir.path().to_path_buf());
        assert!(load(&state).unwrap().is_empty());
        record(&state, "ntp", "alice").unwrap();
        record(&state, "mail", "root").unwrap();
        let stopped = load(&state).unwrap();
        assert_eq!(stopped["ntp"].by, "alice");
        assert!(stopped["ntp"].at.parse::<jiff::Timestamp>().is_ok(), "{}", stopped["ntp"].at);
        retain(&state, &["ntp", "dns"]).unwrap();
        assert_eq!(load(&state).unwrap().keys().collect::<Vec<_>>(), ["ntp"]);
        assert!(clear(&state, "ntp").unwrap());
        assert!(!clear(&state, "ntp").unwrap());
        assert!(load(&state).unwrap().is_empty());
    }
}
