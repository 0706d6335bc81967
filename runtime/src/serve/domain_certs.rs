//! The certificates the cell serves its names with, for `GET /api/domain`: in `local` mode the
//! cell CA's (its index), in `public` and `ddns` mode the ones Caddy got from the ACME CA (read
//! from the proxy's storage, `data/proxy/caddy/certificates/<issuer>/<name>/<name>.crt`).

use std::path::Path;

use pic_builder::State;
use serde::Serialize;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// One certificate: the names it covers, who issued it, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Certificate {
    pub names: Vec<String>,
    pub issuer: String,
    pub not_after: String,
}

/// The cell CA's certificates that are not revoked.
pub fn from_cell_ca(state: &State) -> anyhow::Result<Vec<Certificate>> {
    Ok(state
        .ca()
        .list()?
        .into_iter()
        .filter(|c| c.revoked.is_none())
        .map(|c| {
            let mut names = c.subject_alt_names;
            names.sort();
            Certificate { names, issuer: "the cell CA".into(), not_after: c.not_after }
        })
        .collect())
}

/// The certificates in Caddy's storage under `data/proxy/caddy`, sorted by name.
pub fn from_caddy(state: &State) -> Vec<Certificate> {
    let root = state.root().join("data/proxy/caddy/certificates");
    let mut found = Vec::new();
    for issuer in read_dir(&root) {
        for name in read_dir(&issuer) {
            for file in read_dir(&name).into_iter().filter(|f| f.extension().is_some_and(|e| e == "crt")) {
                match read(&file) {
                    Ok(certificate) => found.push(certificate),
                    Err(error) => tracing::warn!(file = %file.display(), %error, "an unreadable certificate"),
                }
            }
        }
    }
    found.sort_by(|a, b| a.names.cmp(&b.names));
    found
}

fn read_dir(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default()
}

/// The first certificate of a PEM file (the leaf of the chain Caddy stores).
fn read(path: &Path) -> anyhow::Result<Certificate> {
    let text = std::fs::read(path)?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text)?;
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
    let not_after = jiff::Timestamp::from_second(certificate.validity().not_after.timestamp())?.to_string();
    Ok(Certificate { names, issuer, not_after })
}
