//! Links between cells: what one cell tells another about itself (its card), the invitation
//! that carries a card signed by the inviting cell, the ledger of invitations a cell gave, and
//! the signatures of peer-sync messages. All signing is Ed25519 with the cell's own key, kept in
//! `secrets/links/`; a card holds only public keys.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::config::{CellConfig, Link, services};
use crate::error::{Error, IoContext};
use crate::{fsutil, hashing};

/// What starts every invitation token, naming its format.
pub const TOKEN_PREFIX: &str = "pic-link1.";

/// How long an invitation lasts unless the inviter says otherwise.
pub const DEFAULT_EXPIRY: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// What a cell tells a cell it links with: who it is and how it is reached. Everything a
/// [`Link`] holds but the grants, which each side decides for itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Card {
    pub name: String,
    pub domain: String,
    pub public_key: String,
    pub signing_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub tunnel_address: Ipv4Addr,
    pub vpn_subnet: Ipv4Net,
    pub cell_subnet: Ipv4Net,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<Ipv4Addr>,
}

impl Card {
    /// This cell's card, from its config and its public keys.
    pub fn of(config: &CellConfig, wireguard_key: &str, signing_key: &VerifyingKey) -> Card {
        let address =
            |name: &str| services::get(name).filter(|s| (s.enabled)(config)).map(|s| config.service_address(s));
        Card {
            name: config.cell.name.clone(),
            domain: config.domain(),
            public_key: wireguard_key.to_owned(),
            signing_key: STANDARD.encode(signing_key.as_bytes()),
            endpoint: config.wireguard.endpoint.clone(),
            tunnel_address: config.wireguard_address(),
            vpn_subnet: config.wireguard.subnet.trunc(),
            cell_subnet: config.network.subnet.trunc(),
            dns: address("dns"),
            mail: address("mail"),
        }
    }

    /// The link entry for this card, with what the linking cell grants it.
    pub fn to_link(&self, grants: Vec<String>) -> Link {
        Link {
            name: self.name.clone(),
            domain: self.domain.clone(),
            public_key: self.public_key.clone(),
            signing_key: self.signing_key.clone(),
            endpoint: self.endpoint.clone(),
            tunnel_address: self.tunnel_address,
            vpn_subnet: self.vpn_subnet,
            cell_subnet: self.cell_subnet,
            dns: self.dns,
            mail: self.mail,
            grants,
        }
    }

    /// Whether `link` says what this card says (its grants aside).
    pub fn matches(&self, link: &Link) -> bool {
        self.to_link(link.grants.clone()) == *link
    }
}

/// An invitation to link with a cell: its card, what it offers, where to accept it, and a
/// one-time secret, signed by the inviting cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invitation {
    pub card: Card,
    /// The services the inviting cell grants the invited one.
    pub grants: Vec<String>,
    /// Where the invited cell completes the exchange (`POST <url>/api/links/accept`).
    pub url: String,
    /// The PEM certificate of the inviting cell's CA, which the invited cell trusts for that
    /// one request (a cell with a local domain has no public certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Base64 of 32 random bytes; the inviting cell keeps only its hash.
    pub secret: String,
    pub expires: jiff::Timestamp,
}

impl Invitation {
    /// The token a person hands to the other cell: prefix, then the invitation and its signature.
    pub fn seal(&self, key: &SigningKey) -> String {
        let body = serde_json::to_vec(self).expect("an invitation serializes");
        let signature = key.sign(&body);
        format!("{TOKEN_PREFIX}{}.{}", URL_SAFE_NO_PAD.encode(&body), URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// Reads a token and checks its signature against the key it names (the token is handed
    /// over by a person; what it proves is that it was not changed on the way) and its expiry.
    pub fn open(token: &str, now: jiff::Timestamp) -> Result<Invitation, Error> {
        let refused = |why: &str| Error::LinkRefused(format!("the invitation {why}"));
        let rest = token.trim().strip_prefix(TOKEN_PREFIX).ok_or_else(|| {
            refused("is not one: a token starts with pic-link1. (copy all of what `pic link invite` printed)")
        })?;
        let (body, signature) = rest.split_once('.').ok_or_else(|| refused("is cut short: copy all of it"))?;
        let body = URL_SAFE_NO_PAD.decode(body).map_err(|_| refused("is damaged: copy it again"))?;
        let invitation: Invitation =
            serde_json::from_slice(&body).map_err(|e| refused(&format!("cannot be read ({e})")))?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| refused("is damaged: copy it again"))?;
        if !verify(&body, &signature, &invitation.card.signing_key) {
            return Err(refused("was changed after it was signed: ask for a new one"));
        }
        if invitation.expires <= now {
            return Err(refused(&format!("expired at {}: ask for a new one", invitation.expires)));
        }
        Ok(invitation)
    }
}

/// The signature of `body` by `key`, base64.
pub fn sign(key: &SigningKey, body: &[u8]) -> String {
    STANDARD.encode(key.sign(body).to_bytes())
}

/// Whether `signature` (raw bytes) is `public_key`'s (base64) over `body`.
pub fn verify(body: &[u8], signature: &[u8], public_key: &str) -> bool {
    let Ok(key) = STANDARD.decode(public_key) else { return false };
    let (Ok(key), Ok(signature)) = (<[u8; 32]>::try_from(key.as_slice()), <[u8; 64]>::try_from(signature)) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&key) else { return false };
    key.verify_strict(body, &ed25519_dalek::Signature::from_bytes(&signature)).is_ok()
}

/// Whether `signature` (base64) is `public_key`'s over `body`.
pub fn verify_base64(body: &[u8], signature: &str, public_key: &str) -> bool {
    STANDARD.decode(signature.trim()).is_ok_and(|s| verify(body, &s, public_key))
}

/// The cell's own signing key, made on first use.
pub fn signing_key(secrets: &Path) -> Result<SigningKey, Error> {
    let dir = secrets.join("links");
    let path = dir.join("signing.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let seed = STANDARD.decode(text.trim()).ok().and_then(|s| <[u8; 32]>::try_from(s.as_slice()).ok());
            seed.map(|s| SigningKey::from_bytes(&s))
                .ok_or_else(|| Error::corrupt(path.display().to_string(), "not an Ed25519 key"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| Error::corrupt("the system's random source", e))?;
            fsutil::ensure_dir(secrets, 0o700)?;
            fsutil::ensure_dir(&dir, 0o700)?;
            fsutil::write_atomic(&path, format!("{}\n", STANDARD.encode(seed)).as_bytes(), 0o600)?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) => Err(e).at(&path),
    }
}

/// A fresh one-time secret, base64.
pub fn new_secret() -> Result<String, Error> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| Error::corrupt("the system's random source", e))?;
    Ok(STANDARD.encode(secret))
}

/// One invitation this cell gave: the secret's hash only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Given {
    pub secret_sha256: String,
    pub grants: Vec<String>,
    pub expires: jiff::Timestamp,
    /// The cell that accepted it; an invitation is used once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_by: Option<String>,
}

/// The invitations this cell gave (`secrets/links/invitations.json`).
pub struct Ledger {
    path: PathBuf,
}

impl Ledger {
    pub fn new(secrets: &Path) -> Ledger {
        Ledger { path: secrets.join("links").join("invitations.json") }
    }

    fn read(&self) -> Result<Vec<Given>, Error> {
        fsutil::read_json_or_default(&self.path)
    }

    /// Records an invitation; expired ones are forgotten on the way.
    pub fn record(&self, invitation: &Invitation, now: jiff::Timestamp) -> Result<(), Error> {
        let mut given = self.read()?;
        given.retain(|g| g.expires > now);
        given.push(Given {
            secret_sha256: hashing::sha256_hex(invitation.secret.as_bytes()),
            grants: invitation.grants.clone(),
            expires: invitation.expires,
            accepted_by: None,
        });
        self.write(&given)
    }

    /// Uses the invitation whose secret this is, for `cell`: its grants, or why not.
    /// Called under the state's writer lock, so that two accepts cannot both use it.
    pub fn redeem(&self, secret: &str, cell: &str, now: jiff::Timestamp) -> Result<Vec<String>, Error> {
        let hash = hashing::sha256_hex(secret.as_bytes());
        let mut given = self.read()?;
        // Every entry is compared, so that the time taken says nothing about which matched.
        let found = given.iter().position(|g| constant_time_eq(g.secret_sha256.as_bytes(), hash.as_bytes()));
        let Some(i) = found else {
            return Err(Error::LinkRefused(
                "this cell gave no such invitation (or forgot it): ask for a new one".into(),
            ));
        };
        let entry = &mut given[i];
        if let Some(by) = &entry.accepted_by {
            return Err(Error::LinkRefused(format!("the invitation was already used (by {by}): ask for a new one")));
        }
        if entry.expires <= now {
            return Err(Error::LinkRefused(format!("the invitation expired at {}: ask for a new one", entry.expires)));
        }
        entry.accepted_by = Some(cell.to_owned());
        let grants = entry.grants.clone();
        self.write(&given)?;
        Ok(grants)
    }

    fn write(&self, given: &[Given]) -> Result<(), Error> {
        if let Some(dir) = self.path.parent() {
            fsutil::ensure_dir(dir, 0o700)?;
        }
        fsutil::write_json(&self.path, &given, 0o600)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invitation(expires: jiff::Timestamp, key: &SigningKey) -> Invitation {
        Invitation {
            card: Card {
                name: "a".into(),
                domain: "a.cell".into(),
                public_key: STANDARD.encode([1u8; 32]),
                signing_key: STANDARD.encode(key.verifying_key().as_bytes()),
                endpoint: Some("10.200.0.1:51820".into()),
                tunnel_address: "10.8.0.1".parse().unwrap(),
                vpn_subnet: "10.8.0.0/24".parse().unwrap(),
                cell_subnet: "172.20.0.0/24".parse().unwrap(),
                dns: Some("172.20.0.3".parse().unwrap()),
                mail: None,
            },
            grants: vec!["calendar".into()],
            url: "https://a.example.org".into(),
            ca: None,
            secret: new_secret().unwrap(),
            expires,
        }
    }

    #[test]
    fn a_token_opens_as_it_was_sealed_and_not_once_changed_or_expired() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let now = jiff::Timestamp::now();
        let later = now + jiff::SignedDuration::from_hours(1);
        let sealed = invitation(later, &key);
        let token = sealed.seal(&key);
        assert_eq!(Invitation::open(&token, now).unwrap(), sealed);
        assert_eq!(Invitation::open(&format!("  {token}\n"), now).unwrap(), sealed, "pasted with whitespace");

        // Another cell's grants written into the token: the signature no longer fits.
        let (body, signature) = token.strip_prefix(TOKEN_PREFIX).unwrap().split_once('.').unwrap();
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
        let forged = URL_SAFE_NO_PAD.encode(text.replace("calendar", "files"));
        let error = Invitation::open(&format!("{TOKEN_PREFIX}{forged}.{signature}"), now).unwrap_err();
        assert!(error.to_string().contains("changed after it was signed"), "{error}");

        let error = Invitation::open(&token, later).unwrap_err();
        assert!(error.to_string().contains("expired"), "{error}");
        let error = Invitation::open("hello", now).unwrap_err();
        assert!(error.to_string().contains("pic-link1."), "{error}");
        assert!(matches!(error, Error::LinkRefused(_)) && error.is_invalid_input());
    }

    #[test]
    fn an_invitation_is_redeemed_once_and_only_before_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(dir.path());
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let now = jiff::Timestamp::now();
        let soon = now + jiff::SignedDuration::from_mins(5);
        let first = invitation(soon, &key);
        let second = invitation(soon, &key);
        ledger.record(&first, now).unwrap();
        ledger.record(&second, now).unwrap();
        assert_eq!(ledger.redeem(&first.secret, "b", now).unwrap(), vec!["calendar".to_owned()]);
        let again = ledger.redeem(&first.secret, "c", now).unwrap_err();
        assert!(again.to_string().contains("already used (by b)"), "{again}");
        let late = ledger.redeem(&second.secret, "b", soon).unwrap_err();
        assert!(late.to_string().contains("expired"), "{late}");
        let unknown = ledger.redeem(&new_secret().unwrap(), "b", now).unwrap_err();
        assert!(unknown.to_string().contains("no such invitation"), "{unknown}");
        let stored = std::fs::read_to_string(dir.path().join("links/invitations.json")).unwrap();
        assert!(!stored.contains(&first.secret), "only the secret's hash is kept");
    }

    #[test]
    fn the_signing_key_is_made_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = signing_key(dir.path()).unwrap();
        assert_eq!(signing_key(dir.path()).unwrap().to_bytes(), key.to_bytes());
        let mode = std::fs::metadata(dir.path().join("links/signing.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
        let body = b"message";
        let public = STANDARD.encode(key.verifying_key().as_bytes());
        assert!(verify_base64(body, &sign(&key, body), &public));
        assert!(!verify_base64(b"other", &sign(&key, body), &public));
    }
}
