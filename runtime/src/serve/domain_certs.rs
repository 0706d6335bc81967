//! The certificates the cell serves its names with, for `GET /api/domain`: in `local` mode the
//! cell CA's (its index), in `public` and `ddns` mode the ones from the ACME CA (`pic serve`'s
//! and Caddy's, see `acme::certificates`).

use pic_builder::State;
use serde::Serialize;

use crate::acme;

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

/// The public certificates: the ones `pic serve` got (DNS-01) and Caddy's (HTTP-01).
pub fn public(state: &State) -> Vec<Certificate> {
    acme::certificates::all(state)
        .into_iter()
        .map(|f| Certificate {
            names: f.certificate.names,
            issuer: f.certificate.issuer,
            not_after: f.certificate.not_after.to_string(),
        })
        .collect()
}
