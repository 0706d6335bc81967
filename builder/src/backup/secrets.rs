//! `secrets.tar.age`: the `secrets/` folder as a tar, encrypted in the age format — with a
//! passphrase (scrypt) for an archive made on request, or to the cell's backup key for a
//! scheduled one, whose identity travels beside it encrypted with the passphrase
//! (`secrets.key.age`) — so that private keys and password hashes never sit in an archive in the
//! clear and a restore needs only the passphrase.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

use age::secrecy::SecretString;

use crate::error::{Error, IoContext};
use crate::fsutil;

/// One file or folder of `secrets/`, relative to it.
pub struct SecretEntry {
    pub path: String,
    pub mode: u32,
    /// `None` for a folder.
    pub contents: Option<Vec<u8>>,
}

/// Tars `dir` and encrypts the tar to `passphrase`. `work_factor` (scrypt's log2 N) defaults to
/// what takes about a second here.
pub fn encrypt(dir: &Path, passphrase: &SecretString, work_factor: Option<u8>) -> Result<Vec<u8>, Error> {
    let mut recipient = age::scrypt::Recipient::new(passphrase.clone());
    if let Some(log_n) = work_factor {
        recipient.set_work_factor(log_n);
    }
    seal(&tar_of(dir)?, &recipient, dir)
}

/// Tars `dir` and encrypts the tar to an X25519 recipient (the cell's backup key).
pub fn encrypt_to(dir: &Path, recipient: &age::x25519::Recipient) -> Result<Vec<u8>, Error> {
    seal(&tar_of(dir)?, recipient, dir)
}

fn tar_of(dir: &Path) -> Result<Vec<u8>, Error> {
    let mut tar = tar::Builder::new(Vec::new());
    for entry in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let entry = entry.map_err(|e| Error::corrupt(dir.display().to_string(), e))?;
        let meta = entry.metadata().map_err(|e| Error::corrupt(entry.path().display().to_string(), e))?;
        let rel = entry.path().strip_prefix(dir).expect("walked from dir");
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_mtime(0);
        if meta.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            tar.append_data(&mut header, rel, std::io::empty()).at(dir)?;
        } else if meta.is_file() {
            let contents = fs::read(entry.path()).at(entry.path())?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(contents.len() as u64);
            tar.append_data(&mut header, rel, contents.as_slice()).at(dir)?;
        }
    }
    tar.into_inner().at(dir)
}

/// Encrypts `plain` to one recipient; `at` names what it is for in an error.
pub(super) fn seal(plain: &[u8], recipient: &dyn age::Recipient, at: &Path) -> Result<Vec<u8>, Error> {
    let dir = at;
    let encryptor = age::Encryptor::with_recipients(std::iter::once(recipient))
        .map_err(|e| Error::corrupt("the secrets' encryption", e))?;
    let mut out = Vec::new();
    let mut writer = encryptor.wrap_output(&mut out).at(dir)?;
    writer.write_all(plain).at(dir)?;
    writer.finish().at(dir)?;
    Ok(out)
}

/// Decrypts `secrets.tar.age` and reads its entries, refusing a wrong passphrase and any entry
/// that is not a plain file or folder inside `secrets/`.
pub fn decrypt(archive: &[u8], passphrase: &SecretString) -> Result<Vec<SecretEntry>, Error> {
    let identity = age::scrypt::Identity::new(passphrase.clone());
    entries(&open(archive, &identity, super::format::SECRETS)?)
}

/// Decrypts the secrets of a scheduled archive: the backup key's identity (`sealed_key`, the
/// member `secrets.key.age`) with the passphrase, then the secrets with that identity.
pub fn decrypt_with_key(
    archive: &[u8],
    sealed_key: &[u8],
    passphrase: &SecretString,
) -> Result<Vec<SecretEntry>, Error> {
    let identity = super::key::open_identity(sealed_key, passphrase, super::format::SECRETS_KEY)?;
    entries(&open(archive, &identity, super::format::SECRETS)?)
}

/// Decrypts one age file of the archive (`member`) with `identity`; a key that does not fit is
/// a wrong passphrase.
pub(super) fn open(sealed: &[u8], identity: &dyn age::Identity, member: &str) -> Result<Vec<u8>, Error> {
    let decryptor =
        age::Decryptor::new_buffered(sealed).map_err(|e| Error::backup_refused(member, format!("is not age: {e}")))?;
    let mut reader = decryptor.decrypt(std::iter::once(identity)).map_err(|e| match e {
        age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys => {
            Error::archive_refused("cannot be opened with this passphrase: it is not the one the backup was made with")
        }
        e => Error::backup_refused(member, e.to_string()),
    })?;
    let mut plain = Vec::new();
    reader.read_to_end(&mut plain).map_err(|e| Error::backup_refused(member, format!("does not decrypt: {e}")))?;
    Ok(plain)
}

fn entries(plain: &[u8]) -> Result<Vec<SecretEntry>, Error> {
    let member = super::format::SECRETS;
    let mut entries = Vec::new();
    let mut tar = tar::Archive::new(plain);
    for entry in tar.entries().map_err(|e| Error::backup_refused(member, e.to_string()))? {
        let mut entry = entry.map_err(|e| Error::backup_refused(member, e.to_string()))?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let inside = Path::new(&path).components().all(|c| matches!(c, Component::Normal(_)));
        if !inside || path.is_empty() {
            return Err(Error::backup_refused(member, format!("holds {path:?}, outside secrets/")));
        }
        let mode = entry.header().mode().map_err(|e| Error::backup_refused(member, e.to_string()))?;
        let contents = match entry.header().entry_type() {
            tar::EntryType::Directory => None,
            tar::EntryType::Regular => {
                let mut contents = Vec::new();
                entry.read_to_end(&mut contents).map_err(|e| Error::backup_refused(member, e.to_string()))?;
                Some(contents)
            }
            other => return Err(Error::backup_refused(member, format!("holds {path:?}, a {other:?}, not a file"))),
        };
        entries.push(SecretEntry { path, mode: mode & 0o7777, contents });
    }
    Ok(entries)
}

/// Writes decrypted secrets into a new folder `dir` (0700).
pub fn write(entries: &[SecretEntry], dir: &Path) -> Result<(), Error> {
    fsutil::ensure_dir(dir, 0o700)?;
    for entry in entries {
        let path = dir.join(&entry.path);
        match &entry.contents {
            None => fsutil::ensure_dir(&path, entry.mode)?,
            Some(contents) => fsutil::write_new(&path, contents, entry.mode)?,
        }
    }
    fsutil::fsync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_and_a_wrong_passphrase_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets");
        fs::create_dir_all(secrets.join("ca")).unwrap();
        fs::write(secrets.join("ca/ca.key"), "PRIVATE").unwrap();
        let pass = SecretString::from("correct horse".to_owned());
        let sealed = encrypt(&secrets, &pass, Some(4)).unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"PRIVATE"), "the secrets are in the clear");
        let entries = decrypt(&sealed, &pass).unwrap();
        let paths: Vec<_> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["ca", "ca/ca.key"]);
        assert_eq!(entries[1].contents.as_deref(), Some(&b"PRIVATE"[..]));
        let wrong = decrypt(&sealed, &SecretString::from("wrong horse".to_owned())).err().unwrap();
        assert!(wrong.to_string().contains("passphrase"), "{wrong}");
    }
}
