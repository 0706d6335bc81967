//! The builder's error type; [`Error::is_invalid_input`] separates the user's mistakes from failures.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cell config is not valid; every problem is listed.
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),

    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },

    #[error("rendering {template}: {message}")]
    Render { template: String, message: String },

    #[error("generation {0} does not exist; `pic generations` lists the ones there are")]
    NoSuchGeneration(u64),

    #[error("there is no generation before {0} to roll back to")]
    NothingToRollBackTo(u64),

    #[error("no generation is current yet; run `pic switch` first")]
    NoCurrentGeneration,

    #[error("{} has no desired cell config; give one with `--config FILE` (or `pic init --config FILE`)", .0.display())]
    NoDesiredConfig(PathBuf),

    #[error("{} is not an initialized PIC state directory; run `pic --state {} init` first", .0.display(), .0.display())]
    NotInitialized(PathBuf),

    #[error("certificate authority: {0}")]
    Certificate(String),

    #[error("no certificate has serial {0}; `pic cert list` shows the serials")]
    NoSuchCertificate(String),

    #[error("{0:?} is not a valid host name; use dot-separated labels of lowercase letters, digits and hyphens")]
    InvalidName(String),

    #[error("{0}")]
    BadPassword(String),

    #[error("no user is named {0:?}; `pic user list` shows the users")]
    NoSuchUser(String),

    #[error("no peer is named {0:?}; `pic peer list` shows the peers")]
    NoSuchPeer(String),

    #[error("no app named {0:?} is installed; `pic store installed` lists them")]
    NoSuchApp(String),

    #[error("{0} is already installed; `pic store update {0}` installs the index's version")]
    AppInstalled(String),

    #[error("the cell network has no free address for another app; remove an app or use a larger network.subnet")]
    NoAppAddress,

    #[error("`--keep` must be at least 1")]
    KeepZero,

    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },

    #[error("image definitions: {0}")]
    Image(String),

    #[error("{what} is corrupt: {detail}")]
    Corrupt { what: String, detail: String },

    /// A backup archive that cannot be restored as it is; nothing was changed.
    #[error("backup refused, nothing was changed: {what} {reason}")]
    BackupRefused { what: String, reason: String },

    #[error("no space left on the device of {} for {doing} ({needed_mb} MB needed, {free_mb} MB free); nothing was changed: free some space (`pic gc`, old backups) and try again", path.display())]
    NoSpace { path: PathBuf, doing: &'static str, needed_mb: u64, free_mb: u64 },

    #[error("no backup is named {0:?}; `pic backups` lists them")]
    NoSuchBackup(String),

    #[error(
        "the backup destination {0} is not a folder here: is its disk mounted? (`backups.destination` in the config)"
    )]
    BackupDestination(std::path::PathBuf),

    /// An invitation or peer-sync message that cannot be used; nothing was changed.
    #[error("{0}")]
    LinkRefused(String),

    #[error("no linked cell is named {0:?}; `pic link list` shows the links")]
    NoSuchLink(String),

    #[error("no exit is named {0:?}; `pic exit list` shows the exits")]
    NoSuchExit(String),

    /// An exit that devices are sent through cannot go: their traffic would silently take the
    /// cell's own uplink instead.
    #[error("the exit {name} is in use by {users}: send them through another exit or none first")]
    ExitInUse { name: String, users: String },

    /// An update bundle this device does not take; nothing was written.
    #[error("update refused, nothing was written: {reason}")]
    UpdateRefused { kind: crate::update::bundle::Refusal, reason: String },
}

impl Error {
    /// True for errors caused by what the user asked for (exit code 2, HTTP 4xx), as opposed to
    /// failures of the machine or of the state directory.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Error::Invalid(_)
                | Error::NoSuchGeneration(_)
                | Error::NothingToRollBackTo(_)
                | Error::KeepZero
                | Error::NoSuchCertificate(_)
                | Error::InvalidName(_)
                | Error::BadPassword(_)
                | Error::NoSuchUser(_)
                | Error::NoSuchPeer(_)
                | Error::NoSuchApp(_)
                | Error::AppInstalled(_)
                | Error::BackupRefused { .. }
                | Error::NoSuchBackup(_)
                | Error::LinkRefused(_)
                | Error::NoSuchLink(_)
                | Error::NoSuchExit(_)
                | Error::ExitInUse { .. }
                | Error::UpdateRefused { .. }
        )
    }

    /// A backup refused because of one of its members.
    pub(crate) fn backup_refused(member: &str, reason: impl Into<String>) -> Self {
        Error::BackupRefused { what: format!("member {member:?}"), reason: reason.into() }
    }

    /// A backup refused as a whole (its format, its passphrase, its end).
    pub(crate) fn archive_refused(reason: impl Into<String>) -> Self {
        Error::BackupRefused { what: "the archive".into(), reason: reason.into() }
    }

    pub(crate) fn corrupt(what: impl Into<String>, detail: impl ToString) -> Self {
        Error::Corrupt { what: what.into(), detail: detail.to_string() }
    }
}

/// Attaches the path an I/O error happened at.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T, Error>;
}

impl<T> IoContext<T> for Result<T, io::Error> {
    fn at(self, path: &Path) -> Result<T, Error> {
        self.map_err(|source| Error::Io { path: path.to_path_buf(), source })
    }
}

/// One problem with one field of the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Where the problem is, e.g. `wireguard.peers[2].name`.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

/// Every problem found in a config, in the order of the fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "the cell config has {n} problem{}:", if n == 1 { "" } else { "s" })?;
        for e in &self.0 {
            write!(f, "\n  {}: {} ({})", e.path, e.message, e.hint)?;
        }
        Ok(())
    }
}

impl ValidationErrors {
    pub fn single(path: impl Into<String>, message: impl Into<String>, hint: impl Into<String>) -> Self {
        ValidationErrors(vec![FieldError { path: path.into(), message: message.into(), hint: hint.into() }])
    }
}
