//! The cell's backup key: an age X25519 identity made once with the backup passphrase, so that
//! scheduled archives can encrypt the secrets without a passphrase being stored. The cell keeps
//! the recipient (public) and the identity only encrypted with the passphrase; every scheduled
//! archive carries that encrypted identity, so a restore needs nothing but the passphrase.

use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, IoContext};
use crate::fsutil;
use crate::state::{State, Writer};

/// The key's folder inside `secrets/`.
pub const DIR: &str = "backup";
const RECIPIENT: &str = "recipient.txt";
const IDENTITY: &str = "identity.age";

/// The backup key as the cell keeps it.
pub struct BackupKey {
    pub recipient: age::x25519::Recipient,
    /// The identity, age-encrypted with the passphrase: what goes into each scheduled archive.
    pub sealed_identity: Vec<u8>,
}

/// Makes a new backup key protected by `passphrase` (replacing one set up before: archives made
/// with it still open with the passphrase they were made with). Returns the recipient.
pub fn set_up(writer: &Writer<'_>, passphrase: &SecretString, work_factor: Option<u8>) -> Result<String, Error> {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();
    let mut scrypt = age::scrypt::Recipient::new(passphrase.clone());
    if let Some(log_n) = work_factor {
        scrypt.set_work_factor(log_n);
    }
    let dir = writer.state().secrets().dir().join(DIR);
    fsutil::ensure_dir(&dir, 0o700)?;
    let sealed = super::secrets::seal(identity.to_string().expose_secret().as_bytes(), &scrypt, &dir)?;
    // The identity first: a recipient on disk always has its identity beside it.
    fsutil::write_atomic(&dir.join(IDENTITY), &sealed, 0o600)?;
    fsutil::write_atomic(&dir.join(RECIPIENT), format!("{recipient}\n").as_bytes(), 0o600)?;
    Ok(recipient.to_string())
}

/// The backup key, when one was set up.
pub fn load(state: &State) -> Result<Option<BackupKey>, Error> {
    let dir = state.secrets().dir().join(DIR);
    let (recipient_path, identity_path) = (dir.join(RECIPIENT), dir.join(IDENTITY));
    if !recipient_path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&recipient_path).at(&recipient_path)?;
    let recipient = age::x25519::Recipient::from_str(text.trim())
        .map_err(|e| Error::corrupt(recipient_path.display().to_string(), e))?;
    let sealed_identity = std::fs::read(&identity_path).at(&identity_path)?;
    Ok(Some(BackupKey { recipient, sealed_identity }))
}

/// Opens the identity sealed with the passphrase (`member` names where it was read from).
pub(super) fn open_identity(
    sealed: &[u8],
    passphrase: &SecretString,
    member: &str,
) -> Result<age::x25519::Identity, Error> {
    let plain = super::secrets::open(sealed, &age::scrypt::Identity::new(passphrase.clone()), member)?;
    let text = String::from_utf8(plain).map_err(|_| Error::backup_refused(member, "does not hold an age identity"))?;
    age::x25519::Identity::from_str(text.trim())
        .map_err(|_| Error::backup_refused(member, "does not hold an age identity"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_opens_only_with_the_passphrase_and_matches_the_recipient() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::new(dir.path().to_path_buf());
        state.init(None).unwrap();
        let writer = state.writer().unwrap();
        let pass = SecretString::from("correct horse".to_owned());
        let recipient = set_up(&writer, &pass, Some(4)).unwrap();
        let key = load(&state).unwrap().unwrap();
        assert_eq!(key.recipient.to_string(), recipient);
        assert!(
            !String::from_utf8_lossy(&key.sealed_identity).contains("AGE-SECRET-KEY"),
            "the identity is in the clear"
        );
        let identity = open_identity(&key.sealed_identity, &pass, "identity").unwrap();
        assert_eq!(identity.to_public().to_string(), recipient);
        let wrong = open_identity(&key.sealed_identity, &SecretString::from("wrong horse".to_owned()), "identity");
        assert!(wrong.err().unwrap().to_string().contains("passphrase"));
    }
}
