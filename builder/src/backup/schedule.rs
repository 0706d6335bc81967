//! Scheduled backups: when the next archive is due (in the cell's time zone, a run missed while
//! the device was off made at the next start), the run itself (secrets to the backup key), and
//! the retention that removes older scheduled archives. The time is always an argument.

use std::path::{Path, PathBuf};

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

use super::{BACKUPS_DIR, BackupInfo, EXTENSION, Progress, Sealing, Target};
use crate::config::{BackupSchedule, Backups, Every, Retention, Weekday};
use crate::error::{Error, IoContext};
use crate::fsutil::{self, TMP_PREFIX};
use crate::state::{State, Writer};

/// What the schedule has done, kept in `backups/schedule.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleStatus {
    /// When a schedule was first seen: runs due before then are not owed.
    pub since: Option<Timestamp>,
    pub last_attempt: Option<Timestamp>,
    pub last_success: Option<Timestamp>,
    /// The file name of the last scheduled archive.
    pub last_archive: Option<String>,
    /// Why the last attempt failed; `None` after a success.
    pub problem: Option<String>,
    /// Whether the last archive holds the secrets (a backup key was set up).
    pub secrets_included: Option<bool>,
}

/// A failed run is tried again after this long, not on every tick.
pub const RETRY_AFTER_MINUTES: i64 = 60;

const STATUS: &str = "schedule.json";

fn status_path(state: &State) -> PathBuf {
    state.root().join(BACKUPS_DIR).join(STATUS)
}

/// The schedule's record (empty before its first run).
pub fn status(state: &State) -> Result<ScheduleStatus, Error> {
    fsutil::read_json_or_default(&status_path(state))
}

fn save(state: &State, status: &ScheduleStatus) -> Result<(), Error> {
    fsutil::ensure_dir(&state.root().join(BACKUPS_DIR), 0o700)?;
    fsutil::write_json(&status_path(state), status, 0o600)
}

/// The last instant at or before `now` when `schedule` was due.
pub fn last_due(schedule: &BackupSchedule, tz: &TimeZone, now: Timestamp) -> Timestamp {
    let (hour, minute) = crate::config::backup_time(&schedule.at).unwrap_or((0, 0));
    let at = Time::constant(0, 0, 0, 0).with().hour(hour).minute(minute).build().unwrap_or(Time::midnight());
    let today = now.to_zoned_datetime(tz.clone()).date();
    let step = match schedule.every {
        Every::Day => 1,
        Every::Week => 7,
    };
    let mut day = match schedule.every {
        Every::Day => today,
        Every::Week => {
            let wanted = weekday(schedule.on.unwrap_or(Weekday::Sunday));
            let back = (today.weekday().to_monday_zero_offset() - wanted.to_monday_zero_offset()).rem_euclid(7);
            today.checked_sub(i64::from(back).days()).unwrap_or(today)
        }
    };
    loop {
        let due = instant(day, at, tz);
        if due <= now {
            return due;
        }
        day = day.checked_sub(step.days()).unwrap_or(Date::MIN);
    }
}

/// The next instant after `now` when `schedule` is due.
pub fn next_due(schedule: &BackupSchedule, tz: &TimeZone, now: Timestamp) -> Timestamp {
    let step = match schedule.every {
        Every::Day => 1,
        Every::Week => 7,
    };
    let last = last_due(schedule, tz, now).to_zoned_datetime(tz.clone());
    let day = last.date().checked_add(step.days()).unwrap_or(Date::MAX);
    instant(day, last.time(), tz)
}

fn instant(day: Date, at: Time, tz: &TimeZone) -> Timestamp {
    // A time that a clock change skips or repeats is taken as the clock shows it first.
    day.to_datetime(at).to_zoned_datetime(tz.clone()).map(|z| z.timestamp()).unwrap_or(Timestamp::MIN)
}

fn weekday(day: Weekday) -> jiff::civil::Weekday {
    use jiff::civil::Weekday as W;
    match day {
        Weekday::Monday => W::Monday,
        Weekday::Tuesday => W::Tuesday,
        Weekday::Wednesday => W::Wednesday,
        Weekday::Thursday => W::Thursday,
        Weekday::Friday => W::Friday,
        Weekday::Saturday => W::Saturday,
        Weekday::Sunday => W::Sunday,
    }
}

/// Whether a scheduled archive is owed at `now`: the schedule came due since the last success
/// (or since it was first seen), and the last failure is not too recent.
pub fn is_due(backups: &Backups, tz: &TimeZone, status: &ScheduleStatus, now: Timestamp) -> bool {
    let (Some(schedule), Some(since)) = (&backups.schedule, status.since) else { return false };
    let done = status.last_success.map_or(since, |t| t.max(since));
    let failed_lately = status.problem.is_some()
        && status.last_attempt.is_some_and(|t| now.duration_since(t).as_secs() < RETRY_AFTER_MINUTES * 60);
    last_due(schedule, tz, now) > done && !failed_lately
}

/// Records when the schedule was first seen, so that runs due before it are not owed. Returns
/// the status as it now is.
pub fn notice(state: &State, backups: &Backups, now: Timestamp) -> Result<ScheduleStatus, Error> {
    let mut status = status(state)?;
    if backups.schedule.is_some() && status.since.is_none() {
        status.since = Some(now);
        save(state, &status)?;
    }
    Ok(status)
}

/// What a scheduled run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduledRun {
    pub archive: BackupInfo,
    /// Whether the secrets are in it (encrypted to the backup key); without a backup key they
    /// are left out.
    pub secrets_included: bool,
    /// Older scheduled archives the retention removed.
    pub removed: Vec<String>,
}

/// Makes a scheduled archive into the destination, then applies the retention; the outcome,
/// good or bad, is recorded in the schedule's status.
pub fn run(writer: &Writer<'_>, now: Timestamp, report: &mut dyn FnMut(Progress)) -> Result<ScheduledRun, Error> {
    let state = writer.state();
    let config = state.desired_config()?.ok_or_else(|| Error::NoDesiredConfig(state.root().to_owned()))?;
    let result = run_with(writer, &config.backups, &config.cell.timezone, report);
    let mut status = status(state)?;
    status.since.get_or_insert(now);
    status.last_attempt = Some(now);
    match &result {
        Ok(run) => {
            status.last_success = Some(now);
            status.last_archive = Some(run.archive.id.clone());
            status.problem = None;
            status.secrets_included = Some(run.secrets_included);
        }
        Err(e) => status.problem = Some(e.to_string()),
    }
    save(state, &status)?;
    result
}

fn run_with(
    writer: &Writer<'_>,
    backups: &Backups,
    timezone: &str,
    report: &mut dyn FnMut(Progress),
) -> Result<ScheduledRun, Error> {
    let state = writer.state();
    let folder = destination(state, backups)?;
    let key = super::key::load(state)?;
    let sealing = match &key {
        Some(key) => Sealing::Key(key),
        None => Sealing::Omitted,
    };
    let archive = super::write_backup(writer, Target::Folder(&folder), sealing, backups.include_data, true, report)?;
    let tz = jiff::tz::db().get(timezone).unwrap_or(TimeZone::UTC);
    let cell = archive.header.as_ref().map(|h| h.cell.clone()).unwrap_or_default();
    let removed = prune(&folder, &cell, &backups.keep, &tz)?;
    Ok(ScheduledRun { archive, secrets_included: key.is_some(), removed })
}

/// The folder scheduled archives go to. A configured destination must already be a folder: a
/// disk that is not mounted is reported, not replaced by a folder on the data partition.
pub fn destination(state: &State, backups: &Backups) -> Result<PathBuf, Error> {
    match &backups.destination {
        None => Ok(state.root().join(BACKUPS_DIR)),
        Some(path) => {
            let path = PathBuf::from(path);
            if path.is_dir() { Ok(path) } else { Err(Error::BackupDestination(path)) }
        }
    }
}

/// Removes the scheduled archives of `cell` in `folder` that the retention does not keep.
fn prune(folder: &Path, cell: &str, keep: &Retention, tz: &TimeZone) -> Result<Vec<String>, Error> {
    let mut archives = Vec::new();
    for entry in std::fs::read_dir(folder).at(folder)? {
        let entry = entry.at(folder)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TMP_PREFIX) || !name.ends_with(EXTENSION) {
            continue;
        }
        // An archive whose header cannot be read is not one the schedule made: left alone.
        let Ok(header) = super::read::header(&entry.path()) else { continue };
        let Ok(created) = header.created.parse::<Timestamp>() else { continue };
        if header.scheduled && header.cell == cell {
            archives.push((name, created));
        }
    }
    let removed = to_remove(&archives, keep, tz);
    for name in &removed {
        let path = folder.join(name);
        std::fs::remove_file(&path).at(&path)?;
    }
    Ok(removed)
}

/// Which archives the retention removes: it keeps the newest of each of the last `daily` days
/// that have one and the newest of each of the last `weekly` ISO weeks.
pub fn to_remove(archives: &[(String, Timestamp)], keep: &Retention, tz: &TimeZone) -> Vec<String> {
    let mut newest_first: Vec<&(String, Timestamp)> = archives.iter().collect();
    newest_first.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let mut kept = std::collections::BTreeSet::new();
    let mut days = Vec::new();
    let mut weeks = Vec::new();
    for (name, created) in &newest_first {
        let date = created.to_zoned_datetime(tz.clone()).date();
        let week = date.iso_week_date();
        let week = (week.year(), week.week());
        if !days.contains(&date) && days.len() < keep.daily as usize {
            days.push(date);
            kept.insert(name.as_str());
        }
        if !weeks.contains(&week) && weeks.len() < keep.weekly as usize {
            weeks.push(week);
            kept.insert(name.as_str());
        }
    }
    newest_first.iter().filter(|(name, _)| !kept.contains(name.as_str())).map(|(name, _)| name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn schedule(every: Every, at: &str, on: Option<Weekday>) -> BackupSchedule {
        BackupSchedule { every, at: at.into(), on }
    }

    #[test]
    fn a_daily_schedule_is_due_at_its_time_in_the_cells_zone() {
        let berlin = jiff::tz::db().get("Europe/Berlin").unwrap();
        let daily = schedule(Every::Day, "03:30", None);
        // 03:30 in Berlin in winter is 02:30 UTC.
        assert_eq!(last_due(&daily, &berlin, at("2026-12-01T09:00:00Z")), at("2026-12-01T02:30:00Z"));
        assert_eq!(last_due(&daily, &berlin, at("2026-12-01T02:29:59Z")), at("2026-11-30T02:30:00Z"));
        assert_eq!(last_due(&daily, &berlin, at("2026-12-01T02:30:00Z")), at("2026-12-01T02:30:00Z"));
        assert_eq!(next_due(&daily, &berlin, at("2026-12-01T09:00:00Z")), at("2026-12-02T02:30:00Z"));
        // Summer time: 03:30 is 01:30 UTC.
        assert_eq!(last_due(&daily, &berlin, at("2026-07-01T09:00:00Z")), at("2026-07-01T01:30:00Z"));
    }

    #[test]
    fn a_weekly_schedule_is_due_on_its_day() {
        let utc = TimeZone::UTC;
        // 2026-12-01 is a Tuesday.
        let sunday = schedule(Every::Week, "04:00", None);
        assert_eq!(last_due(&sunday, &utc, at("2026-12-01T12:00:00Z")), at("2026-11-29T04:00:00Z"));
        let tuesday = schedule(Every::Week, "04:00", Some(Weekday::Tuesday));
        assert_eq!(last_due(&tuesday, &utc, at("2026-12-01T12:00:00Z")), at("2026-12-01T04:00:00Z"));
        assert_eq!(last_due(&tuesday, &utc, at("2026-12-01T03:00:00Z")), at("2026-11-24T04:00:00Z"));
        assert_eq!(next_due(&tuesday, &utc, at("2026-12-01T12:00:00Z")), at("2026-12-08T04:00:00Z"));
    }

    #[test]
    fn a_run_missed_while_the_device_was_off_is_due_at_the_next_start() {
        let utc = TimeZone::UTC;
        let backups = Backups { schedule: Some(schedule(Every::Day, "03:00", None)), ..Backups::default() };
        let mut status = ScheduleStatus {
            since: Some(at("2026-11-01T00:00:00Z")),
            last_success: Some(at("2026-11-30T03:00:05Z")),
            ..ScheduleStatus::default()
        };
        // Off from before 03:00 to 09:00: today's run is owed.
        assert!(is_due(&backups, &utc, &status, at("2026-12-01T09:00:00Z")));
        // Before today's time, yesterday's was made.
        assert!(!is_due(&backups, &utc, &status, at("2026-12-01T02:00:00Z")));
        // A schedule seen for the first time owes nothing from before.
        let fresh = ScheduleStatus { since: Some(at("2026-12-01T08:00:00Z")), ..ScheduleStatus::default() };
        assert!(!is_due(&backups, &utc, &fresh, at("2026-12-01T09:00:00Z")));
        assert!(is_due(&backups, &utc, &fresh, at("2026-12-02T03:00:00Z")));
        // A failure is tried again after an hour, not at every tick.
        status.last_attempt = Some(at("2026-12-01T09:00:00Z"));
        status.problem = Some("the disk is full".into());
        assert!(!is_due(&backups, &utc, &status, at("2026-12-01T09:30:00Z")));
        assert!(is_due(&backups, &utc, &status, at("2026-12-01T10:00:01Z")));
        // No schedule, nothing due.
        assert!(!is_due(&Backups::default(), &utc, &status, at("2026-12-09T00:00:00Z")));
    }

    #[test]
    fn the_retention_keeps_the_newest_of_each_day_and_week() {
        let utc = TimeZone::UTC;
        // Two a day for 20 days, from Sunday 2026-11-01.
        let mut archives = Vec::new();
        for day in 0..20 {
            for hour in [3, 15] {
                let t = at("2026-11-01T00:00:00Z") + jiff::SignedDuration::from_hours(day * 24 + hour);
                archives.push((format!("a-{day:02}-{hour:02}"), t));
            }
        }
        let removed = to_remove(&archives, &Retention { daily: 3, weekly: 2 }, &utc);
        let kept: Vec<&str> =
            archives.iter().map(|(n, _)| n.as_str()).filter(|n| !removed.iter().any(|r| r == n)).collect();
        // The last three days' newest, and the newest of the week before (the current week's
        // newest is today's). 2026-11-16 is a Monday: days 15-19 are the current ISO week.
        assert_eq!(kept, ["a-14-15", "a-17-15", "a-18-15", "a-19-15"]);
        assert_eq!(removed.len(), 36);
        assert!(to_remove(&archives[..1], &Retention { daily: 1, weekly: 0 }, &utc).is_empty());
    }
}
