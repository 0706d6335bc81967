//! Links with other cells, shared by the CLI and the API: invitations given and accepted, the
//! grants of a link, its removal, and what is known of each link (`status`). The exchange that
//! keeps linked cells in step afterwards is `sync`.

pub mod status;
pub mod sync;

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use pic_builder::config::{Link, ValidConfig};
use pic_builder::links::{self, Card, Invitation, Ledger};
use pic_builder::state::SwitchOutcome;
use pic_builder::{Error, State};
use serde::{Deserialize, Serialize};

/// How long the invited cell waits for the inviting one to answer.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The header that carries the Ed25519 signature of a body, base64.
pub const SIGNATURE_HEADER: &str = "x-pic-signature";

/// What the invited cell sends the inviting one to complete an invitation.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// The invitation's one-time secret.
    pub secret: String,
    /// The invited cell's card.
    #[schema(value_type = Object)]
    pub card: Card,
}

/// The inviting cell's answer: its card as it is now (signed in [`SIGNATURE_HEADER`]).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Joined {
    pub card: Card,
}

/// This cell's card, from its desired config.
pub fn own_card(state: &State) -> Result<Card, Error> {
    let config = desired(state)?;
    let key = links::signing_key(state.secrets().dir())?;
    Ok(Card::of(&config, &state.secrets().wireguard_public_key()?, &key.verifying_key()))
}

fn desired(state: &State) -> Result<ValidConfig, Error> {
    state.desired_config()?.ok_or_else(|| Error::NoDesiredConfig(state.root().to_path_buf()))
}

/// Makes an invitation token granting `grants`, valid for `valid`, accepted at `url` (by
/// default `https://<the cell's domain>`). Changes no generation.
pub fn invite(
    state: &State,
    grants: Vec<String>,
    valid: Duration,
    url: Option<String>,
) -> Result<(String, Invitation)> {
    let config = desired(state)?;
    // The grants must be ones the config accepts: checked on a copy with a stand-in link.
    check_grants(&config, &grants)?;
    if !config.wireguard.enabled {
        return Err(Error::LinkRefused("WireGuard is off: links are WireGuard peers; turn it on first".into()).into());
    }
    let card = own_card(state)?;
    let url = url.unwrap_or_else(|| format!("https://{}", config.domain()));
    let parsed = reqwest::Url::parse(&url).map_err(|e| Error::LinkRefused(format!("--url {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
        return Err(Error::LinkRefused(format!("--url {url:?} is not an http(s) URL")).into());
    }
    let now = jiff::Timestamp::now();
    let expires = now + jiff::SignedDuration::try_from(valid).context("the expiry")?;
    let invitation = Invitation {
        card,
        grants,
        url,
        ca: Some(state.ca().certificate_pem()?),
        secret: links::new_secret()?,
        expires,
    };
    let key = links::signing_key(state.secrets().dir())?;
    Ledger::new(state.secrets().dir()).record(&invitation, now)?;
    Ok((invitation.seal(&key), invitation))
}

/// Refuses grants the config would refuse, naming them.
fn check_grants(config: &ValidConfig, grants: &[String]) -> Result<(), Error> {
    let mut probe = config.clone().into_inner();
    probe.links = vec![Link {
        name: "probe".into(),
        domain: "probe.invalid".into(),
        public_key: "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=".into(),
        signing_key: "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=".into(),
        endpoint: None,
        tunnel_address: Ipv4Addr::new(192, 0, 2, 1),
        vpn_subnet: "192.0.2.0/25".parse().expect("a net"),
        cell_subnet: "192.0.2.128/25".parse().expect("a net"),
        dns: None,
        mail: None,
        grants: grants.to_vec(),
    }];
    match pic_builder::config::validate(probe) {
        Ok(_) => Ok(()),
        Err(errors) => {
            let about: Vec<_> = errors.0.into_iter().filter(|e| e.path.starts_with("links[0].grants")).collect();
            if about.is_empty() {
                Ok(())
            } else {
                Err(Error::Invalid(pic_builder::config::ValidationErrors(
                    about.into_iter().map(|e| pic_builder::config::FieldError { path: "grants".into(), ..e }).collect(),
                )))
            }
        }
    }
}

/// The inviting side of an exchange: redeems the invitation, adds the link with the grants it
/// offered, and answers with this cell's card (signed). Under the writer lock: an invitation is
/// used once.
pub fn join(state: &State, request: &Join) -> Result<(Joined, SwitchOutcome), Error> {
    let writer = state.writer()?;
    let now = jiff::Timestamp::now();
    // The config is checked before the invitation is used up: a refused link leaves it usable.
    writer.desired_with(|c| {
        c.links.push(request.card.to_link(Vec::new()));
        Ok(())
    })?;
    let grants = Ledger::new(state.secrets().dir()).redeem(&request.secret, &request.card.name, now)?;
    let config = writer.desired_with(|c| {
        c.links.push(request.card.to_link(grants));
        Ok(())
    })?;
    let switched =
        writer.build_and_switch(&config, &format!("link with cell {} (invitation accepted)", request.card.name))?;
    drop(writer);
    Ok((Joined { card: own_card(state)? }, switched))
}

/// The invited side: checks the token, asks the inviting cell to complete the exchange over
/// HTTPS (trusting its CA for that request), then adds the link with `grants`.
pub async fn accept(state: &State, token: &str, grants: Vec<String>) -> Result<(Link, SwitchOutcome)> {
    let invitation = Invitation::open(token, jiff::Timestamp::now())?;
    let config = desired(state)?;
    check_grants(&config, &grants)?;
    // Refused here before anything is sent, so that the other cell's invitation stays usable.
    if config.links.iter().any(|l| l.name == invitation.card.name) {
        return Err(Error::LinkRefused(format!("this cell is already linked with {}", invitation.card.name)).into());
    }
    let mut probe = config.clone().into_inner();
    probe.links.push(invitation.card.to_link(grants.clone()));
    pic_builder::config::validate(probe).map_err(Error::Invalid)?;
    let card = own_card(state)?;
    let mut client = reqwest::Client::builder().timeout(ACCEPT_TIMEOUT);
    if let Some(pem) = &invitation.ca {
        let ca = reqwest::Certificate::from_pem(pem.as_bytes()).context("the invitation's CA certificate")?;
        client = client.add_root_certificate(ca);
    }
    let url = format!("{}/api/cells/join", invitation.url.trim_end_matches('/'));
    let request = Join { secret: invitation.secret.clone(), card };
    let response = client
        .build()?
        .post(&url)
        .json(&request)
        .send()
        .await
        .with_context(|| format!("reaching the inviting cell at {url}"))?;
    let status = response.status();
    let signature = response.headers().get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.bytes().await.context("reading the inviting cell's answer")?;
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        let refusal = format!("the cell {} refused: {message}", invitation.card.name);
        return Err(if status.is_client_error() { Error::LinkRefused(refusal).into() } else { anyhow!(refusal) });
    }
    let signed = signature.is_some_and(|s| links::verify_base64(&body, &s, &invitation.card.signing_key));
    if !signed {
        return Err(anyhow!("the answer from {url} is not signed by the cell that made the invitation"));
    }
    let joined: Joined = serde_json::from_slice(&body).context("reading the inviting cell's answer")?;
    if joined.card.signing_key != invitation.card.signing_key || joined.card.name != invitation.card.name {
        return Err(anyhow!("the answer from {url} names another cell than the invitation"));
    }
    let writer = state.writer()?;
    let config = writer.desired_with(|c| {
        c.links.push(joined.card.to_link(grants.clone()));
        Ok(())
    })?;
    let switched = writer.build_and_switch(&config, &format!("link with cell {}", joined.card.name))?;
    let link = config.links.iter().find(|l| l.name == joined.card.name).cloned().expect("just added");
    status::record_offered(state, &link.name, &invitation.grants)?;
    Ok((link, switched))
}

/// Sets what the linked cell `name` may reach here.
pub fn set_grants(state: &State, name: &str, grants: Vec<String>) -> Result<SwitchOutcome, Error> {
    let writer = state.writer()?;
    let config = writer.desired_with(|c| {
        let link = c.links.iter_mut().find(|l| l.name == name).ok_or_else(|| Error::NoSuchLink(name.into()))?;
        link.grants = grants;
        Ok(())
    })?;
    writer.build_and_switch(&config, &format!("grants of cell {name}"))
}

/// Removes the link `name` from this cell's config (the other side is told by `sync::tell_removed`).
pub fn remove_local(state: &State, name: &str, reason: &str) -> Result<SwitchOutcome, Error> {
    let writer = state.writer()?;
    let config = writer.desired_with(|c| {
        let before = c.links.len();
        c.links.retain(|l| l.name != name);
        if c.links.len() == before { Err(Error::NoSuchLink(name.into())) } else { Ok(()) }
    })?;
    let switched = writer.build_and_switch(&config, reason)?;
    status::forget(state, name)?;
    Ok(switched)
}

/// Removes the link on both sides: the other cell is told first (through the tunnel), and the
/// link goes here whether it answered or not. The error of telling, if any, is returned with it.
pub async fn remove(state: &State, name: &str) -> Result<(SwitchOutcome, Option<String>)> {
    let config = desired(state)?;
    let link = config.links.iter().find(|l| l.name == name).cloned().ok_or_else(|| Error::NoSuchLink(name.into()))?;
    let told = sync::tell_removed(state, &config, &link).await.err().map(|e| format!("{e:#}"));
    let switched = remove_local(state, name, &format!("link with cell {name} removed"))?;
    Ok((switched, told))
}
