//! The public certificates the cell has, wherever they come from: the ones `pic serve` got by
//! DNS-01 (`secrets/acme/certificates/<name>/`) and the ones Caddy got by HTTP-01 (its storage,
//! `data/proxy/caddy/certificates/<issuer>/<name>/<name>.crt` and `.key`); and which of them
//! covers a name, for the services that read certificates as files.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use pic_builder::State;
use serde::Serialize;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// One certificate: the names it covers, who issued it, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Certificate {
    pub names: Vec<String>,
    pub issuer: String,
    #[schema(value_type = String)]
    pub not_after: Timestamp,
}

impl Certificate {
    /// Whether the certificate is for `name`: the name itself, or a wildcard one label above it.
    pub fn covers(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.names.iter().any(|n| {
            let n = n.to_ascii_lowercase();
            n == name
                || n.strip_prefix("*.").is_some_and(|parent| name.split_once('.').is_some_and(|(_, p)| p == parent))
        })
    }
}

/// A certificate with the files of its chain and key.
#[derive(Debug, Clone)]
pub struct Found {
    pub certificate: Certificate,
    pub chain: PathBuf,
    pub key: PathBuf,
}

/// The folder of the certificate `pic serve` got for `name` (and `*.name`).
pub fn issued_dir(state: &State, name: &str) -> PathBuf {
    state.secrets().dir().join("acme/certificates").join(name)
}

/// The certificate `pic serve` got for `name`, if there is one.
pub fn issued(state: &State, name: &str) -> Option<Found> {
    let dir = issued_dir(state, name);
    found(dir.join("cert.pem"), dir.join("key.pem"))
}

/// Every certificate `pic serve` and Caddy got, sorted by names.
pub fn all(state: &State) -> Vec<Found> {
    let mut all: Vec<Found> = read_dir(&state.secrets().dir().join("acme/certificates"))
        .into_iter()
        .filter(|dir| {
            !dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with(pic_builder::fsutil::TMP_PREFIX))
        })
        .filter_map(|dir| found(dir.join("cert.pem"), dir.join("key.pem")))
        .collect();
    for issuer in read_dir(&state.root().join("data/proxy/caddy/certificates")) {
        for dir in read_dir(&issuer) {
            let Some(name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
            all.extend(found(dir.join(format!("{name}.crt")), dir.join(format!("{name}.key"))));
        }
    }
    all.sort_by(|a, b| a.certificate.names.cmp(&b.certificate.names));
    all
}

/// The certificate for `name` that is valid at `now` and lasts longest, if any.
pub fn covering(state: &State, name: &str, now: Timestamp) -> Option<Found> {
    all(state)
        .into_iter()
        .filter(|f| f.certificate.covers(name) && f.certificate.not_after > now)
        .max_by_key(|f| f.certificate.not_after)
}

fn found(chain: PathBuf, key: PathBuf) -> Option<Found> {
    if !key.is_file() {
        return None;
    }
    match std::fs::read(&chain).map_err(anyhow::Error::from).and_then(|pem| parse(&pem)) {
        Ok(certificate) => Some(Found { certificate, chain, key }),
        Err(error) => {
            if chain.exists() {
                tracing::warn!(file = %chain.display(), error = %format!("{error:#}"), "an unreadable certificate");
            }
            None
        }
    }
}

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    entries.sort();
    entries
}

/// The first certificate of a PEM chain (the leaf).
pub fn parse(pem: &[u8]) -> anyhow::Result<Certificate> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem)?;
    let (_, certificate) = X509Certificate::from_der(&pem.contents)?;
    let mut names: Vec<String> = certificate
        .subject_alternative_name()?
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(name) => Some((*name).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let issuer =
        certificate.issuer().iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or("unknown").to_owned();
    let not_after = Timestamp::from_second(certificate.validity().not_after.timestamp())?;
    Ok(Certificate { names, issuer, not_after })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_covers_one_label() {
        let c = Certificate {
            names: vec!["*.me.duckdns.org".into(), "me.duckdns.org".into()],
            issuer: "x".into(),
            not_after: Timestamp::UNIX_EPOCH,
        };
        assert!(c.covers("me.duckdns.org") && c.covers("mail.me.duckdns.org") && c.covers("PIC.me.duckdns.org"));
        assert!(!c.covers("a.b.me.duckdns.org") && !c.covers("duckdns.org") && !c.covers("xme.duckdns.org"));
    }
}
