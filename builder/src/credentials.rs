//! User passwords: one per user, kept only as hashes in `secrets/users.json`, and the credential
//! files each daemon reads, derived from those hashes for the users the config lets in.
//!
//! bcrypt (`$2y$`) is the one hash that dovecot (BLF-CRYPT), Apache's htpasswd and radicale
//! (htpasswd, bcrypt) all verify, so a password is hashed once for every service.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use argon2::PasswordHasher;

use crate::config::CellConfig;
use crate::config::app::SettingKind;
use crate::error::Error;
use crate::fsutil;

/// Passwords shorter than this are refused.
pub const MIN_PASSWORD_LEN: usize = 8;
/// bcrypt reads at most 72 bytes; a longer password would be silently cut.
pub const MAX_PASSWORD_LEN: usize = 72;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Hashes {
    users: BTreeMap<String, UserHashes>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct UserHashes {
    /// For the daemons (dovecot, radicale, Apache).
    bcrypt: String,
    /// For logging in to `pic serve`.
    argon2: String,
}

pub struct Credentials {
    secrets: PathBuf,
}

/// Refuses a password that is too short, too long for bcrypt, or holds control characters.
pub fn check_password(password: &str) -> Result<(), Error> {
    let len = password.len();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&len) {
        return Err(Error::BadPassword(format!(
            "a password needs {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} bytes, this one has {len}"
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(Error::BadPassword("a password cannot contain control characters".into()));
    }
    Ok(())
}

/// How hard a password is to guess, in words a person can act on (zxcvbn's estimate: common
/// passwords, words, names, dates, keyboard walks and the cell's own names count for little).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Strength {
    /// 0 (guessed at once) to 4 (very hard to guess).
    pub score: u8,
    /// `too weak`, `weak`, `fair`, `good` or `strong`.
    pub verdict: &'static str,
    /// How long guessing it would take someone who stole the password hashes.
    pub guess_time: String,
    /// What is wrong with it, if something is.
    pub warning: Option<String>,
    /// How to make it stronger.
    pub suggestions: Vec<String>,
}

/// Rates `password`; `context` holds words an attacker would try first (the user's and the
/// cell's names). Only the first `MAX_PASSWORD_LEN` bytes count, as for bcrypt, which also
/// bounds the estimate's work.
pub fn password_strength(password: &str, context: &[&str]) -> Strength {
    let mut end = password.len().min(MAX_PASSWORD_LEN);
    while !password.is_char_boundary(end) {
        end -= 1;
    }
    let estimate = zxcvbn::zxcvbn(&password[..end], context);
    let score = u8::from(estimate.score());
    let feedback = estimate.feedback();
    Strength {
        score,
        verdict: ["too weak", "weak", "fair", "good", "strong"][usize::from(score.min(4))],
        guess_time: estimate.crack_times().offline_slow_hashing_1e4_per_second().to_string(),
        warning: feedback.and_then(|f| f.warning()).map(|w| w.to_string()),
        suggestions: feedback.map(|f| f.suggestions().iter().map(ToString::to_string).collect()).unwrap_or_default(),
    }
}

impl Credentials {
    pub fn new(secrets: PathBuf) -> Credentials {
        Credentials { secrets }
    }

    fn hashes_path(&self) -> PathBuf {
        self.secrets.join("users.json")
    }

    /// The folder of daemon credential files (mounted read-only into the containers).
    pub fn dir(&self) -> PathBuf {
        self.secrets.join("credentials")
    }

    /// Users that have a password.
    pub fn users_with_password(&self) -> Result<Vec<String>, Error> {
        Ok(self.hashes()?.users.into_keys().collect())
    }

    /// Sets (or replaces) a user's password.
    pub fn set_password(&self, user: &str, password: &str) -> Result<(), Error> {
        check_password(password)?;
        let bcrypt = bcrypt::hash_with_result(password, bcrypt::DEFAULT_COST)
            .map_err(|e| Error::BadPassword(e.to_string()))?
            .format_for_version(bcrypt::Version::TwoY);
        let argon2 = argon2::Argon2::default()
            .hash_password(password.as_bytes())
            .map_err(|e| Error::BadPassword(e.to_string()))?
            .to_string();
        let mut hashes = self.hashes()?;
        hashes.users.insert(user.to_string(), UserHashes { bcrypt, argon2 });
        self.write_hashes(&hashes)
    }

    /// Forgets a user's password; true when there was one.
    pub fn remove(&self, user: &str) -> Result<bool, Error> {
        let mut hashes = self.hashes()?;
        let removed = hashes.users.remove(user).is_some();
        if removed {
            self.write_hashes(&hashes)?;
        }
        Ok(removed)
    }

    /// True when `password` is the user's password (checked against the argon2 hash). An unknown
    /// user costs as much as a known one, so that timing does not tell which names exist.
    pub fn verify(&self, user: &str, password: &str) -> Result<bool, Error> {
        use argon2::PasswordVerifier;
        static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let hashes = self.hashes()?;
        let (hash, known) = match hashes.users.get(user) {
            Some(h) => (h.argon2.as_str(), true),
            None => (
                DECOY
                    .get_or_init(|| {
                        argon2::Argon2::default()
                            .hash_password(random_key().as_bytes())
                            .map(|h| h.to_string())
                            .unwrap_or_default()
                    })
                    .as_str(),
                false,
            ),
        };
        let matches = argon2::Argon2::default().verify_password(password.as_bytes(), hash).is_ok();
        Ok(known && matches)
    }

    /// Writes every daemon's credential file for `config`: only users the config gives the
    /// service to, and only those with a password, are in each. Unchanged files are not rewritten.
    pub fn write_daemon_files(&self, config: &CellConfig) -> Result<(), Error> {
        let hashes = self.hashes()?;
        let hash = |user: &str| hashes.users.get(user).map(|h| h.bcrypt.as_str());
        fsutil::ensure_dir(&self.dir(), 0o700)?;

        let mut dovecot = String::new();
        let mut mailboxes: Vec<_> = config.services.mail.mailboxes.iter().collect();
        mailboxes.sort_by(|a, b| a.address.cmp(&b.address));
        for m in mailboxes {
            if let Some(h) = hash(&m.user) {
                let _ = writeln!(dovecot, "{}:{{BLF-CRYPT}}{h}", m.address);
            }
        }
        self.write_if_changed("dovecot.passwd", &dovecot)?;
        self.write_if_changed("radicale.htpasswd", &htpasswd(&config.services.calendar.users, hash))?;
        self.write_if_changed("webdav.htpasswd", &htpasswd(&config.services.files.users, hash))?;

        let roundcube = self.dir().join("roundcube-secrets.inc.php");
        if !roundcube.exists() {
            let key = random_key();
            let text = format!(
                "<?php\n// Roundcube's session encryption key, made once for this cell.\n$config['des_key'] = '{key}';\n"
            );
            fsutil::write_atomic(&roundcube, text.as_bytes(), 0o644)?;
        }
        // An app's secret settings are made once and kept across updates, removal and
        // reinstallation, like its data.
        for app in &config.apps {
            for (name, setting) in &app.manifest.settings {
                let path = self.dir().join(app.secret_file(name));
                if setting.kind == SettingKind::Secret && !path.exists() {
                    fsutil::write_atomic(&path, random_key().as_bytes(), 0o644)?;
                }
            }
        }
        Ok(())
    }

    fn write_if_changed(&self, name: &str, text: &str) -> Result<(), Error> {
        let path = self.dir().join(name);
        if fs::read_to_string(&path).is_ok_and(|old| old == text) {
            return Ok(());
        }
        // World-readable inside the 0700 folder: the daemons run as their own users.
        fsutil::write_atomic(&path, text.as_bytes(), 0o644)
    }

    fn hashes(&self) -> Result<Hashes, Error> {
        fsutil::read_json_or_default(&self.hashes_path())
    }

    fn write_hashes(&self, hashes: &Hashes) -> Result<(), Error> {
        fsutil::write_json(&self.hashes_path(), hashes, 0o600)
    }
}

fn htpasswd<'a>(users: &[String], hash: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut users: Vec<&String> = users.iter().collect();
    users.sort();
    let mut text = String::new();
    for user in users {
        if let Some(h) = hash(user) {
            let _ = writeln!(text, "{user}:{h}");
        }
    }
    text
}

/// 24 random letters and digits: roundcube's des_key, and passwords `pic admin-password reset` makes.
pub fn random_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength_counts_common_passwords_and_the_cells_names_for_little() {
        let weak = password_strength("password1", &[]);
        assert_eq!((weak.score, weak.verdict), (0, "too weak"));
        assert!(weak.warning.is_some(), "{weak:?}");
        // The cell's own name is among the first guesses.
        assert!(password_strength("bluefjord77", &["bluefjord77"]).score < password_strength("bluefjord77", &[]).score);
        let strong = password_strength("vivid-otter-carries-47-lanterns", &["home"]);
        assert_eq!((strong.score, strong.verdict), (4, "strong"), "{strong:?}");
        assert_eq!(strong.warning, None);
        // Only what bcrypt reads counts, and a cut never splits a character.
        assert_eq!(password_strength(&"é".repeat(100), &[]).score, password_strength(&"é".repeat(36), &[]).score);
    }
}
