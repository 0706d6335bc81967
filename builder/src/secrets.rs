//! `secrets/` (mode 0700): private keys and credentials. Nothing here is ever rendered into the
//! store or a generation; only public halves leave this directory.

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::config::DdnsProvider;
use crate::error::{Error, IoContext};
use crate::fsutil;

const WIREGUARD_DIR: &str = "wireguard";
const WIREGUARD_PRIVATE: &str = "server.key";
const WIREGUARD_PUBLIC: &str = "server.pub";
const DDNS_DIR: &str = "ddns";

pub struct Secrets {
    dir: PathBuf,
}

impl Secrets {
    pub fn new(dir: PathBuf) -> Secrets {
        Secrets { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the WireGuard server's private key, for whatever brings the interface up.
    pub fn wireguard_private_key_path(&self) -> PathBuf {
        self.dir.join(WIREGUARD_DIR).join(WIREGUARD_PRIVATE)
    }

    /// Creates the WireGuard server key pair unless it exists; true when it was created. A
    /// public half that is not the private key's (a crash in the middle of a rotation) is
    /// written again from the private key.
    pub fn ensure_wireguard_key(&self) -> Result<bool, Error> {
        let dir = self.dir.join(WIREGUARD_DIR);
        fsutil::ensure_dir(&dir, 0o700)?;
        let path = self.wireguard_private_key_path();
        if path.exists() {
            let public = public_of(fs::read_to_string(&path).at(&path)?.trim())
                .ok_or_else(|| Error::corrupt(path.display().to_string(), "not a WireGuard private key"))?;
            if self.wireguard_public_key().ok().as_deref() != Some(public.as_str()) {
                fsutil::write_atomic(&dir.join(WIREGUARD_PUBLIC), format!("{public}\n").as_bytes(), 0o644)?;
            }
            return Ok(false);
        }
        let (private, public) = generate_keypair();
        // The public half first: a crash between the two leaves no private key without its public key.
        fsutil::write_atomic(&dir.join(WIREGUARD_PUBLIC), format!("{public}\n").as_bytes(), 0o644)?;
        fsutil::write_atomic(&path, format!("{private}\n").as_bytes(), 0o600)?;
        Ok(true)
    }

    /// Replaces the WireGuard server's key pair; the new public key. The private key is the one
    /// that counts: after a crash between the two writes, `ensure_wireguard_key` mends the
    /// public half.
    pub fn rotate_wireguard_key(&self) -> Result<String, Error> {
        fsutil::ensure_dir(&self.dir.join(WIREGUARD_DIR), 0o700)?;
        let (private, public) = generate_keypair();
        fsutil::write_atomic(&self.wireguard_private_key_path(), format!("{private}\n").as_bytes(), 0o600)?;
        let public_path = self.dir.join(WIREGUARD_DIR).join(WIREGUARD_PUBLIC);
        fsutil::write_atomic(&public_path, format!("{public}\n").as_bytes(), 0o644)?;
        Ok(public)
    }

    /// Keeps the dynamic DNS provider's token or password (checked for its shape first).
    pub fn set_ddns_credential(&self, provider: DdnsProvider, credential: &str) -> Result<(), Error> {
        provider.check_credential(credential)?;
        let dir = self.dir.join(DDNS_DIR);
        fsutil::ensure_dir(&self.dir, 0o700)?;
        fsutil::ensure_dir(&dir, 0o700)?;
        fsutil::write_atomic(&dir.join(provider.as_str()), format!("{credential}\n").as_bytes(), 0o600)
    }

    /// The dynamic DNS provider's token or password, if one was kept.
    pub fn ddns_credential(&self, provider: DdnsProvider) -> Result<Option<String>, Error> {
        let path = self.dir.join(DDNS_DIR).join(provider.as_str());
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at(&path),
        }
    }

    /// The WireGuard server's public key (base64).
    pub fn wireguard_public_key(&self) -> Result<String, Error> {
        let path = self.dir.join(WIREGUARD_DIR).join(WIREGUARD_PUBLIC);
        let text = fs::read_to_string(&path).at(&path)?;
        let key = text.trim().to_string();
        if !crate::config::is_wireguard_key(&key) {
            return Err(Error::corrupt(path.display().to_string(), "not a WireGuard public key"));
        }
        Ok(key)
    }
}

/// A WireGuard key pair (private, public), base64. The private key is stored clamped, as
/// WireGuard itself holds it, so that what an interface reports back compares equal to it.
pub fn generate_keypair() -> (String, String) {
    let secret = x25519_dalek::StaticSecret::random();
    let public = x25519_dalek::PublicKey::from(&secret);
    (STANDARD.encode(clamp(secret.to_bytes())), STANDARD.encode(public.as_bytes()))
}

/// The public key of a private key (base64), if it is one.
fn public_of(private: &str) -> Option<String> {
    let bytes: [u8; 32] = STANDARD.decode(private).ok()?.try_into().ok()?;
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(bytes));
    Some(STANDARD.encode(public.as_bytes()))
}

/// X25519 clamping (RFC 7748), which WireGuard applies to every private key it is given.
pub fn clamp(mut key: [u8; 32]) -> [u8; 32] {
    key[0] &= 248;
    key[31] &= 127;
    key[31] |= 64;
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_private_keys_are_clamped_and_match_their_public_key() {
        let (private, public) = generate_keypair();
        let bytes: [u8; 32] = STANDARD.decode(&private).unwrap().try_into().unwrap();
        assert_eq!(bytes, clamp(bytes));
        let derived = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(bytes));
        assert_eq!(STANDARD.encode(derived.as_bytes()), public);
    }

    #[test]
    fn a_rotation_replaces_the_pair_and_a_half_done_one_is_mended() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = Secrets::new(dir.path().to_path_buf());
        assert!(secrets.ensure_wireguard_key().unwrap());
        let first = secrets.wireguard_public_key().unwrap();
        let second = secrets.rotate_wireguard_key().unwrap();
        assert_ne!(first, second);
        assert_eq!(secrets.wireguard_public_key().unwrap(), second);
        // A crash after the private key was written: the old public half is still there.
        let public_path = dir.path().join(WIREGUARD_DIR).join(WIREGUARD_PUBLIC);
        fs::write(&public_path, format!("{first}\n")).unwrap();
        assert!(!secrets.ensure_wireguard_key().unwrap());
        assert_eq!(secrets.wireguard_public_key().unwrap(), second);
    }
}
