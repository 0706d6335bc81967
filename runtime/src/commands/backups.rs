//! `pic backup`, `pic restore` and `pic backups`: the cell into one checked archive and back.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use pic_builder::State;
use pic_builder::backup::{
    self, BackupInfo, BackupOptions, Progress, RestoreOptions, RestoreReport, SecretString, SecretsOutcome,
};

use crate::cli::PassphraseArgs;
use crate::output::Output;

pub fn backup(
    state: &State,
    output: Option<&Path>,
    include_data: bool,
    args: &PassphraseArgs,
    out: &Output,
) -> Result<()> {
    let passphrase = passphrase(args, Confirm::Twice)?;
    if passphrase.is_none() {
        eprintln!("note: no passphrase (--passphrase-file FILE): the secrets are left out of this backup");
    }
    let options = BackupOptions { passphrase, include_data, work_factor: None };
    let info = backup::create(&state.writer()?, output, &options, &mut terminal_progress())?;
    out.emit(&info, describe_backup);
    Ok(())
}

/// `pic backup --scheduled`: what the schedule does when it is due, now.
pub fn scheduled(state: &State, out: &Output) -> Result<()> {
    let run = backup::schedule::run(&state.writer()?, jiff::Timestamp::now(), &mut terminal_progress())?;
    out.emit(&run, |run| {
        let mut s = describe_backup(&run.archive);
        if !run.removed.is_empty() {
            let _ = write!(s, "\nremoved by the retention: {}", run.removed.join(", "));
        }
        s
    });
    Ok(())
}

/// `pic backup-key`: the key scheduled archives encrypt the secrets to.
pub fn set_up_key(state: &State, args: &PassphraseArgs, out: &Output) -> Result<()> {
    let passphrase = passphrase(args, Confirm::Twice)?.ok_or_else(|| {
        pic_builder::Error::BadPassword("the backup key needs the backup passphrase: --passphrase-file FILE".into())
    })?;
    let recipient = backup::key::set_up(&state.writer()?, &passphrase, None)?;
    out.emit(&serde_json::json!({ "recipient": recipient }), |_| {
        format!("backup key set up ({recipient}): scheduled archives now hold the secrets, opened with this passphrase")
    });
    Ok(())
}

pub fn restore(
    state: &State,
    file: &Path,
    dry_run: bool,
    include_data: bool,
    args: &PassphraseArgs,
    docker_socket: &str,
    out: &Output,
) -> Result<()> {
    let archive = locate(state, file)?;
    let header = backup::header(&archive)?;
    let passphrase = match header.secrets {
        backup::SecretsIncluded::Encrypted | backup::SecretsIncluded::EncryptedToKey => {
            passphrase(args, Confirm::Once)?
        }
        backup::SecretsIncluded::Omitted => None,
    };
    let options = RestoreOptions { passphrase, include_data, dry_run };
    let report = backup::restore(state, &archive, &options, &mut terminal_progress())?;
    if !dry_run && !report.data.is_empty() {
        // A running container keeps the replaced data mounted: it must be made anew.
        super::containers::remove_services(docker_socket, &report.data);
    }
    out.emit(&report, describe_restore);
    Ok(())
}

pub fn list(state: &State, out: &Output) -> Result<()> {
    let backups = backup::list(state)?;
    let schedule = schedule_line(state)?;
    out.emit(&backups, |backups| {
        if backups.is_empty() {
            return format!(
                "no backups in {}; `pic backup` makes one\n{schedule}",
                state.root().join("backups").display()
            );
        }
        let mut s = format!("{schedule}\nCREATED               CELL      GENS  SECRETS    DATA  SIZE      NAME");
        for b in backups {
            match &b.header {
                Some(h) => {
                    let _ = write!(
                        s,
                        "\n{:<20}  {:<8}  {:>4}  {:<9}  {:<4}  {:>8}  {}",
                        h.created,
                        h.cell,
                        h.generations.len(),
                        match h.secrets {
                            backup::SecretsIncluded::Omitted => "omitted",
                            _ => "encrypted",
                        },
                        if h.data { "yes" } else { "no" },
                        megabytes(b.size),
                        b.id
                    );
                }
                None => {
                    let _ = write!(s, "\n(unreadable: {})  {}", b.problem.as_deref().unwrap_or(""), b.id);
                }
            }
        }
        s
    });
    Ok(())
}

/// The schedule in one line: when the next archive is due, the last one, the last problem.
fn schedule_line(state: &State) -> Result<String> {
    let Some(config) = state.desired_config()? else { return Ok(String::new()) };
    let Some(schedule) = &config.backups.schedule else {
        return Ok("schedule: none (`backups.schedule` in the config)".into());
    };
    let tz = jiff::tz::db().get(&config.cell.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    let next = backup::schedule::next_due(schedule, &tz, jiff::Timestamp::now());
    let status = backup::schedule::status(state)?;
    let mut s = format!("schedule: next {}", next.to_zoned_datetime(tz).strftime("%Y-%m-%d %H:%M %Z"));
    if let Some(last) = status.last_success {
        let _ = write!(s, ", last {last}");
    }
    if let Some(problem) = &status.problem {
        let _ = write!(s, ", last attempt failed: {problem}");
    }
    if status.secrets_included == Some(false) {
        s.push_str(", secrets left out (no backup key: `pic backup-key`)");
    }
    Ok(s)
}

/// An archive path as given, or the name of one in `backups/`.
fn locate(state: &State, file: &Path) -> Result<PathBuf> {
    if file.exists() {
        return Ok(file.to_owned());
    }
    let name = file.to_string_lossy();
    backup::find(state, &name).with_context(|| format!("{} does not exist", file.display()))
}

#[derive(PartialEq)]
enum Confirm {
    Once,
    Twice,
}

/// The passphrase from `--passphrase-file`, or typed at the terminal; `None` when neither is
/// there (a backup then leaves the secrets out, a restore of secrets refuses).
fn passphrase(args: &PassphraseArgs, confirm: Confirm) -> Result<Option<SecretString>> {
    let text = match &args.passphrase_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            text.lines().next().unwrap_or("").to_owned()
        }
        None if std::io::stdin().is_terminal() => {
            let first = rpassword::prompt_password("backup passphrase: ").context("reading the passphrase")?;
            if confirm == Confirm::Twice {
                let again = rpassword::prompt_password("again: ").context("reading the passphrase")?;
                if again != first {
                    bail!(pic_builder::Error::BadPassword("the two passphrases differ".into()));
                }
            }
            first
        }
        None => return Ok(None),
    };
    Ok(Some(backup::check_passphrase(text)?))
}

/// Progress on the terminal (nothing when stderr is not one).
fn terminal_progress() -> impl FnMut(Progress) {
    let terminal = std::io::stderr().is_terminal();
    move |p: Progress| {
        if terminal && p.total_bytes > 0 {
            eprint!("\r{}: {:>3}%", p.operation, p.done_bytes * 100 / p.total_bytes);
            if p.done_bytes >= p.total_bytes {
                eprintln!();
            }
        }
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn describe_backup(info: &BackupInfo) -> String {
    let mut s = format!("wrote {} ({})", info.path.display(), megabytes(info.size));
    if let Some(h) = &info.header {
        let _ = write!(
            s,
            "\ncell {}, generations {:?} (current {}), secrets {}, data {}",
            h.cell,
            h.generations,
            h.current_generation.map_or("none".into(), |n| n.to_string()),
            match h.secrets {
                backup::SecretsIncluded::Encrypted => "encrypted",
                backup::SecretsIncluded::EncryptedToKey => "encrypted (to the backup key; the passphrase opens it)",
                backup::SecretsIncluded::Omitted if h.scheduled => "left out (no backup key: `pic backup-key`)",
                backup::SecretsIncluded::Omitted => "left out (no passphrase)",
            },
            if h.data { "included" } else { "left out" }
        );
    }
    if let Some(sha) = &info.sha256 {
        let _ = write!(s, "\nsha256 {sha}");
    }
    s
}

fn describe_restore(r: &RestoreReport) -> String {
    let mut s = String::new();
    let verb = if r.dry_run { "would" } else { "did" };
    let _ = writeln!(s, "archive of cell {} from {}: every member checked", r.archive.cell, r.archive.created);
    let list = |n: &[u64]| if n.is_empty() { "none".to_owned() } else { format!("{n:?}") };
    let _ = writeln!(s, "generations restored: {}", list(&r.restored_generations));
    if !r.present_generations.is_empty() {
        let _ = writeln!(s, "already here: {}", list(&r.present_generations));
    }
    if !r.kept_local_generations.is_empty() {
        let _ = writeln!(
            s,
            "kept (the local history has other generations of these numbers): {}",
            list(&r.kept_local_generations)
        );
    }
    match r.new_generation {
        Some(n) => {
            let _ = writeln!(
                s,
                "the archive's current generation {} become generation {n}{}",
                if r.dry_run { "would" } else { "has" },
                r.previous_generation.map(|p| format!(" (`pic rollback` returns to {p})")).unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(s, "the archive has no current generation: only its config is restored");
        }
    }
    let _ = writeln!(
        s,
        "services changed: {}",
        if r.changed_services.is_empty() { "none".into() } else { r.changed_services.join(", ") }
    );
    let _ = writeln!(
        s,
        "secrets: {}",
        match r.secrets {
            SecretsOutcome::Restored => "the archive's (keys, CA, passwords)",
            SecretsOutcome::NotInArchive => "not in the archive: this machine's own are kept",
        }
    );
    if !r.data.is_empty() {
        let _ = writeln!(s, "data ({verb} replace): {}", r.data.join(", "));
    }
    if let Some(aside) = &r.data_set_aside {
        let _ = writeln!(s, "the replaced data is in {}", aside.display());
    }
    if let Some(safety) = &r.safety_backup {
        let _ = writeln!(s, "the cell as it was is backed up in {}", safety.display());
    }
    if r.config_diff.contains("@@ -0,0 ") {
        s.push_str("desired config: the archive's (there was none here)\n");
    } else if !r.config_diff.is_empty() {
        s.push_str(&r.config_diff);
    }
    if r.dry_run {
        s.push_str("dry run: nothing was changed");
    }
    s
}
