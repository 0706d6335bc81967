//! One ACME order by DNS-01 (RFC 8555 with the `instant-acme` client): the account (made once
//! per directory, kept in `secrets/acme/account.json`), then for each name of the order a TXT
//! record published through the DDNS provider, the CA asked to look, the record removed again;
//! then a new key and the certificate chain. The names are proven one after another: the name
//! and its wildcard share one record name, and DuckDNS holds one TXT value at a time.

use std::time::{Duration, Instant};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use pic_builder::{State, fsutil};
use serde::{Deserialize, Serialize};

use super::Settings;
use crate::ddns;

/// How long the CA has to look at one record and to issue the certificate.
const VALIDATION: Duration = Duration::from_secs(120);

/// A certificate chain and its key, both PEM.
pub struct Issued {
    pub chain: String,
    pub key: String,
}

#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// Orders a certificate for `settings.names`; the error says which step failed and why.
pub async fn obtain(state: &State, settings: &Settings, http: &ddns::Http) -> Result<Issued, String> {
    let account = account(state, settings).await?;
    let identifiers: Vec<Identifier> = settings.names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("the ACME CA refused the order: {e}"))?;
    // A handle to an authorization borrows the order, and its challenge borrows the handle for
    // good: each step takes the authorization afresh by its place in the order.
    let count = order.state().authorizations.len();
    let mut ids = ddns::Status::default();
    for index in 0..count {
        let mut prepared = None;
        let mut authorizations = order.authorizations();
        let mut place = 0;
        while let Some(authorization) = authorizations.next().await {
            if place < index {
                place += 1;
                continue;
            }
            let mut authorization = authorization.map_err(|e| format!("reading an authorization: {e}"))?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => break,
                other => return Err(format!("the authorization for {} is {other:?}", authorization.identifier())),
            }
            let name = authorization.identifier().to_string();
            let mut challenge = authorization
                .challenge(ChallengeType::Dns01)
                .ok_or_else(|| format!("the ACME CA offers no dns-01 challenge for {name}"))?;
            let value = challenge.key_authorization().dns_value();
            let record = ddns::set_txt(&settings.ddns, &settings.credential, &value, &mut ids, http)
                .await
                .map_err(|e| format!("publishing the TXT record for {name}: {e}"))?;
            // Providers answer before their name servers all have the record.
            tokio::time::sleep(settings.propagation).await;
            let ready = challenge
                .set_ready()
                .await
                .map_err(|e| format!("the ACME CA did not take the challenge for {name}: {e}"));
            prepared = Some((name, record, ready));
            break;
        }
        let Some((name, record, ready)) = prepared else { continue };
        let result = match ready {
            Ok(()) => wait_valid(&mut order, index, &name).await,
            Err(e) => Err(e),
        };
        if let Err(error) = ddns::clear_txt(&settings.ddns, &settings.credential, &record, http).await {
            tracing::warn!(%error, name, "the TXT record of a challenge was not removed");
        }
        result?;
    }
    let retries = RetryPolicy::new().timeout(VALIDATION);
    match order.poll_ready(&retries).await {
        Ok(OrderStatus::Ready) => {}
        Ok(status) => return Err(format!("the order is {status:?}, not ready")),
        Err(e) => return Err(format!("the order did not become ready: {e}")),
    }
    let key = order.finalize().await.map_err(|e| format!("finalizing the order: {e}"))?;
    let chain = order.poll_certificate(&retries).await.map_err(|e| format!("fetching the certificate: {e}"))?;
    Ok(Issued { chain, key })
}

/// Waits until the CA has looked at the record of the order's authorization at `index`: valid,
/// or why not.
async fn wait_valid(order: &mut instant_acme::Order, index: usize, name: &str) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let mut authorizations = order.authorizations();
        let mut place = 0;
        let mut status = None;
        while let Some(authorization) = authorizations.next().await {
            if place < index {
                place += 1;
                continue;
            }
            let mut authorization = authorization.map_err(|e| format!("reading {name}'s authorization: {e}"))?;
            let state = authorization.refresh().await.map_err(|e| format!("asking how {name}'s check went: {e}"))?;
            let why = state.challenges.iter().find_map(|c| c.error.as_ref()).map(|p| p.to_string());
            status = Some((state.status, why));
            break;
        }
        match status {
            Some((AuthorizationStatus::Valid, _)) => return Ok(()),
            Some((AuthorizationStatus::Pending, _)) if started.elapsed() < VALIDATION => {}
            Some((AuthorizationStatus::Pending, _)) => {
                return Err(format!("the ACME CA did not check {name} within {} s", VALIDATION.as_secs()));
            }
            Some((other, why)) => {
                let why = why.unwrap_or_else(|| format!("{other:?}"));
                return Err(format!("the ACME CA could not verify {name}: {why}"));
            }
            None => return Err(format!("the order has no authorization for {name}")),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The account at the settings' directory: the kept one, or a new one (kept for next time).
async fn account(state: &State, settings: &Settings) -> Result<Account, String> {
    let dir = state.secrets().dir().join("acme");
    let path = dir.join("account.json");
    let builder = || match &settings.ca_root {
        Some(pem) => {
            // instant-acme reads a custom root from a file; the root is public, not a secret.
            let file = state.root().join("run/acme_ca_root.pem");
            fsutil::ensure_dir(&state.root().join("run"), 0o755).map_err(|e| e.to_string())?;
            fsutil::write_atomic(&file, pem.as_bytes(), 0o644).map_err(|e| e.to_string())?;
            Account::builder_with_root(&file).map_err(|e| format!("the ACME CA's root: {e}"))
        }
        None => Account::builder().map_err(|e| format!("the HTTPS client: {e}")),
    };
    if let Ok(text) = std::fs::read(&path)
        && let Ok(stored) = serde_json::from_slice::<StoredAccount>(&text)
        && stored.directory == settings.directory
    {
        return builder()?
            .from_credentials(stored.credentials)
            .await
            .map_err(|e| format!("the ACME CA at {}: {e}", settings.directory));
    }
    let contact = format!("mailto:{}", settings.email);
    let new = NewAccount { contact: &[&contact], terms_of_service_agreed: true, only_return_existing: false };
    let (account, credentials) = builder()?
        .create(&new, settings.directory.clone(), None)
        .await
        .map_err(|e| format!("making an account at the ACME CA {}: {e}", settings.directory))?;
    let stored = StoredAccount { directory: settings.directory.clone(), credentials };
    let write = || -> Result<(), pic_builder::Error> {
        fsutil::ensure_dir(&dir, 0o700)?;
        fsutil::write_json(&path, &stored, 0o600)
    };
    write().map_err(|e| format!("keeping the ACME account in {}: {e}", path.display()))?;
    Ok(account)
}
