//! Peer-sync: linked cells keep each other up to date through the tunnel only. A message says
//! who sends it, to whom, its number, the sender's card and what it grants the receiver (or that
//! it removed the link); it is signed with the sender's Ed25519 key. The receiver admits it only
//! from the link's tunnel address (which WireGuard's cryptokey routing ties to the link's key),
//! naming the link's key, with the link's signature, and a number above every one it saw; it
//! answers with its own message, so one exchange brings both sides up to date.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use pic_builder::config::{LINK_SYNC_PORT, Link, ValidConfig};
use pic_builder::links::{self, Card};
use pic_builder::{Error, State};
use serde::{Deserialize, Serialize};

use super::{SIGNATURE_HEADER, own_card, status};

/// How often each link is synced without a change.
pub const INTERVAL: Duration = Duration::from_secs(20);
/// How long one exchange may take (the other cell is one tunnel away).
const TIMEOUT: Duration = Duration::from_secs(10);
/// The path of the exchange on the peer-sync server.
pub const PATH: &str = "/peer-sync/v1";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub from: String,
    pub to: String,
    /// Above every number the receiver saw from the sender.
    pub number: u64,
    pub card: Card,
    /// What the sender lets the receiver reach.
    pub grants: Vec<String>,
    /// The sender removed the link.
    #[serde(default)]
    pub removed: bool,
}

/// This cell's message to `link`, as signed bytes.
pub fn message(state: &State, config: &ValidConfig, link: &Link, removed: bool) -> Result<(Vec<u8>, String), Error> {
    let message = Message {
        from: config.cell.name.clone(),
        to: link.name.clone(),
        number: status::next_sent(state)?,
        card: own_card(state)?,
        grants: link.grants.clone(),
        removed,
    };
    let body = serde_json::to_vec(&message).expect("a message serializes");
    let signature = links::sign(&links::signing_key(state.secrets().dir())?, &body);
    Ok((body, signature))
}

/// Why a message is refused, and what to log.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Checks a message that came from `source` (signature header `signature`) against the config:
/// the link it is from. Nothing is recorded here.
pub fn admit<'c>(
    state: &State,
    config: &'c ValidConfig,
    source: IpAddr,
    body: &[u8],
    signature: Option<&str>,
) -> Result<(&'c Link, Message), Refused> {
    let link = config
        .links
        .iter()
        .find(|l| IpAddr::V4(l.tunnel_address) == source)
        .ok_or_else(|| Refused(format!("{source} is not the tunnel address of a linked cell")))?;
    let message: Message = serde_json::from_slice(body)
        .map_err(|e| Refused(format!("from {}: not a peer-sync message ({e})", link.name)))?;
    if message.card.public_key != link.public_key {
        return Err(Refused(format!("from {}'s address, but naming another WireGuard key", link.name)));
    }
    if !signature.is_some_and(|s| links::verify_base64(body, s, &link.signing_key)) {
        return Err(Refused(format!("from {}'s address, but not signed by its key", link.name)));
    }
    if message.from != link.name || message.to != config.cell.name {
        return Err(Refused(format!("from {}: addressed from {} to {}", link.name, message.from, message.to)));
    }
    let received = status::read(state).map(|s| s.links.get(&link.name).map_or(0, |l| l.received)).unwrap_or(0);
    if message.number <= received {
        return Err(Refused(format!(
            "from {}: message {} replayed (the last one was {received})",
            link.name, message.number
        )));
    }
    Ok((link, message))
}

/// What a message changed here.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Taken {
    /// A new generation was switched to (the link removed, or its card changed).
    pub switched: bool,
}

/// Records an admitted message: what the other cell offers, when, its number; the link goes
/// when the other cell removed it, and follows its card when that changed.
pub fn take(state: &State, link: &Link, message: &Message) -> Result<Taken, Error> {
    status::update(state, |s| {
        let entry = s.links.entry(link.name.clone()).or_default();
        entry.received = entry.received.max(message.number);
        entry.offered = message.grants.clone();
        entry.last_sync = Some(jiff::Timestamp::now());
        entry.error = None;
    })?;
    if message.removed {
        super::remove_local(state, &link.name, &format!("link removed by cell {}", link.name))?;
        return Ok(Taken { switched: true });
    }
    if message.card.matches(link) {
        return Ok(Taken::default());
    }
    let writer = state.writer()?;
    let config = writer.desired_with(|c| {
        if let Some(entry) = c.links.iter_mut().find(|l| l.name == link.name) {
            *entry = message.card.to_link(entry.grants.clone());
        }
        Ok(())
    })?;
    writer.build_and_switch(&config, &format!("cell {} changed how it is reached", link.name))?;
    Ok(Taken { switched: true })
}

/// One exchange with `link`, from this cell's tunnel address: the other cell's answer,
/// admitted like a request.
pub async fn exchange(state: &State, config: &ValidConfig, link: &Link, removed: bool) -> Result<Message> {
    let (body, signature) = message(state, config, link, removed)?;
    let client =
        reqwest::Client::builder().timeout(TIMEOUT).local_address(IpAddr::V4(config.wireguard_address())).build()?;
    let url = format!("http://{}{PATH}", SocketAddr::from((link.tunnel_address, LINK_SYNC_PORT)));
    let response = client
        .post(&url)
        .header(SIGNATURE_HEADER, signature)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .with_context(|| format!("reaching cell {} at {url}", link.name))?;
    let status = response.status();
    let signature = response.headers().get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let answer = response.bytes().await.with_context(|| format!("reading cell {}'s answer", link.name))?;
    if !status.is_success() {
        return Err(anyhow!("cell {} refused: {} {}", link.name, status.as_u16(), String::from_utf8_lossy(&answer)));
    }
    let source = IpAddr::V4(link.tunnel_address);
    let (_, message) = admit(state, config, source, &answer, signature.as_deref())
        .map_err(|e| anyhow!("cell {}'s answer refused: {e}", link.name))?;
    Ok(message)
}

/// Tells `link` this cell removed it.
pub async fn tell_removed(state: &State, config: &ValidConfig, link: &Link) -> Result<()> {
    exchange(state, config, link, true).await.map(drop)
}

/// The address the peer-sync server listens on: this cell's tunnel address.
pub fn listen_address(config: &ValidConfig) -> SocketAddr {
    SocketAddr::from((config.wireguard_address(), LINK_SYNC_PORT))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two cells' states, each with the other as a link (as an exchange of invitations leaves them).
    fn linked() -> (tempfile::TempDir, State, State) {
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str, n: u8| {
            let state = State::new(dir.path().join(name));
            let config = serde_json::json!({
                "version": 2,
                "cell": {"name": name},
                "network": {"subnet": format!("172.2{n}.0.0/24")},
                "wireguard": {"subnet": format!("10.{n}.0.0/24")},
                "users": [{"name": "admin", "role": "admin"}]
            });
            state.init(Some(&pic_builder::config::parse(&config.to_string()).unwrap())).unwrap();
            state
        };
        let (a, b) = (make("a", 1), make("b", 2));
        for (here, there) in [(&a, &b), (&b, &a)] {
            let card = own_card(there).unwrap();
            let writer = here.writer().unwrap();
            let config = writer
                .desired_with(|c| {
                    c.links.push(card.to_link(vec!["calendar".into()]));
                    Ok(())
                })
                .unwrap();
            writer.build_and_switch(&config, "linked").unwrap();
        }
        (dir, a, b)
    }

    #[test]
    fn a_message_is_admitted_only_from_the_link_with_its_key_signature_and_a_new_number() {
        let (_dir, a, b) = linked();
        let (config_a, config_b) = (a.desired_config().unwrap().unwrap(), b.desired_config().unwrap().unwrap());
        let link_to_a = &config_b.links[0];
        let (body, signature) = message(&b, &config_b, link_to_a, false).unwrap();
        let from_b = IpAddr::V4(config_b.wireguard_address());

        let (link, admitted) = admit(&a, &config_a, from_b, &body, Some(&signature)).unwrap();
        assert_eq!((link.name.as_str(), admitted.grants.clone()), ("b", vec!["calendar".to_owned()]));
        take(&a, link, &admitted).unwrap();
        assert_eq!(status::read(&a).unwrap().links["b"].offered, vec!["calendar".to_owned()]);

        let refused = |source: IpAddr, body: &[u8], signature: Option<&str>| {
            admit(&a, &config_a, source, body, signature).unwrap_err().0
        };
        let replayed = refused(from_b, &body, Some(&signature));
        assert!(replayed.contains("replayed"), "{replayed}");
        let (body, signature) = message(&b, &config_b, link_to_a, false).unwrap();
        let elsewhere = refused("10.2.0.7".parse().unwrap(), &body, Some(&signature));
        assert!(elsewhere.contains("not the tunnel address"), "{elsewhere}");
        assert!(refused(from_b, &body, None).contains("not signed"));
        // Another key named in a message signed by b (b's signing key taken, say).
        let mut other: Message = serde_json::from_slice(&body).unwrap();
        other.card.public_key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=".into();
        let forged = serde_json::to_vec(&other).unwrap();
        let key = links::signing_key(b.secrets().dir()).unwrap();
        let refusal = refused(from_b, &forged, Some(&links::sign(&key, &forged)));
        assert!(refusal.contains("another WireGuard key"), "{refusal}");
        // The real one still goes through: nothing above was recorded.
        admit(&a, &config_a, from_b, &body, Some(&signature)).unwrap();
    }

    #[test]
    fn a_removal_message_takes_the_link_away() {
        let (_dir, a, b) = linked();
        let config_b = b.desired_config().unwrap().unwrap();
        let (body, signature) = message(&b, &config_b, &config_b.links[0], true).unwrap();
        let config_a = a.desired_config().unwrap().unwrap();
        let (link, admitted) =
            admit(&a, &config_a, IpAddr::V4(config_b.wireguard_address()), &body, Some(&signature)).unwrap();
        assert!(take(&a, link, &admitted).unwrap().switched);
        assert!(a.desired_config().unwrap().unwrap().links.is_empty());
    }
}
