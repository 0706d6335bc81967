//! Peer changes shared by the CLI (`pic peer`) and the API (`/api/peers`): each one edits the
//! desired config, builds a generation and switches to it, under the writer lock.

use std::net::Ipv4Addr;

use pic_builder::config::{FieldError, Peer, Routing};
use pic_builder::peers::{self, PeerKeys};
use pic_builder::state::SwitchOutcome;
use pic_builder::{Error, State};
use serde::Deserialize;

/// A peer to add; what is left out is chosen: a key pair, the next free address, split routing.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPeer {
    pub name: String,
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub address: Option<Ipv4Addr>,
    /// `split` (default) or `full`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub routing: Option<Routing>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub access: Option<Vec<String>>,
    /// The exit its internet traffic leaves through (needs `full` routing).
    #[serde(default)]
    pub exit: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub expires: Option<jiff::Timestamp>,
}

/// Changes to a peer; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerPatch {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub routing: Option<Routing>,
    /// RFC 3339; `null` removes the expiry.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub expires: Option<Option<jiff::Timestamp>>,
    /// Service names; `null` gives access to every service.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub access: Option<Option<Vec<String>>>,
    /// An exit's name; `null` sends its internet traffic through the cell's uplink (or its
    /// user's exit).
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub exit: Option<Option<String>>,
}

pub fn add(state: &State, new: NewPeer, reason: &str) -> Result<(Peer, SwitchOutcome), Error> {
    let writer = state.writer()?;
    let generated = new.public_key.is_none().then(PeerKeys::generate);
    let public_key = new.public_key.clone().or_else(|| generated.as_ref().map(|(_, public)| public.clone()));
    let config = writer.desired_with(|c| {
        let address = new.address.or_else(|| peers::next_free_address(c)).ok_or_else(|| {
            Error::Invalid(pic_builder::config::ValidationErrors::single(
                "wireguard.subnet",
                "the VPN subnet has no free address",
                "use a larger wireguard.subnet",
            ))
        })?;
        c.wireguard.peers.push(Peer {
            name: new.name.clone(),
            public_key: public_key.clone().unwrap_or_default(),
            address,
            routing: new.routing.unwrap_or_default(),
            enabled: true,
            expires: new.expires,
            user: new.user.clone(),
            access: new.access.clone(),
            exit: new.exit.clone(),
        });
        Ok(())
    })?;
    if let Some((private, _)) = &generated {
        PeerKeys::new(state.secrets().dir()).store(&new.name, private)?;
    }
    let switched = writer.build_and_switch(&config, reason)?;
    let peer = config.wireguard.peers.iter().find(|p| p.name == new.name).cloned().expect("just added");
    Ok((peer, switched))
}

/// Who changes a device: an admin may change anything; its owner (a user with role peer) may only
/// narrow what the device reaches — otherwise an access list an admin set would not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangedBy {
    Admin,
    Owner,
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Builder(#[from] Error),
    /// The owner asked for more than the device has; every such field is named.
    #[error("only an admin can let a device reach more: {}", describe(.0))]
    Widens(Vec<FieldError>),
}

fn describe(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("{}: {}", e.path, e.message)).collect::<Vec<_>>().join("; ")
}

impl PeerPatch {
    /// The fields of this patch that would let `current` reach more than it does now: turned on
    /// again, routed to the internet, kept in longer, or given services it lacks.
    pub fn widenings(&self, current: &Peer) -> Vec<FieldError> {
        let ask = "ask an admin of the cell to change it";
        let mut found = Vec::new();
        let mut widens =
            |path: &str, message: String| found.push(FieldError { path: path.into(), message, hint: ask.into() });
        if self.enabled == Some(true) && !current.enabled {
            widens("enabled", format!("{} was turned off; turning it on again lets it back in", current.name));
        }
        if self.routing == Some(Routing::Full) && current.routing != Routing::Full {
            widens("routing", "routing everything through the cell makes the cell its way to the internet".into());
        }
        match (self.expires, current.expires) {
            (Some(None), Some(until)) => widens("expires", format!("removing the expiry keeps it in past {until}")),
            (Some(Some(new)), Some(until)) if new > until => {
                widens("expires", format!("{new} is later than its expiry {until}"))
            }
            _ => {}
        }
        match (&self.access, &current.access) {
            (Some(None), Some(_)) => widens("access", "no list would let it reach every service".into()),
            (Some(Some(new)), Some(old)) => {
                let added: Vec<&str> = new.iter().filter(|s| !old.contains(s)).map(String::as_str).collect();
                if !added.is_empty() {
                    widens("access", format!("it may not reach {} now", added.join(", ")));
                }
            }
            _ => {}
        }
        found
    }
}

pub fn update(
    state: &State,
    name: &str,
    patch: PeerPatch,
    reason: &str,
    by: ChangedBy,
) -> Result<(Peer, SwitchOutcome), UpdateError> {
    let writer = state.writer()?;
    if by == ChangedBy::Owner {
        // Checked under the writer lock, against the config the change applies to.
        let desired = state.desired_config()?.ok_or_else(|| Error::NoDesiredConfig(state.root().to_path_buf()))?;
        let current =
            desired.wireguard.peers.iter().find(|p| p.name == name).ok_or_else(|| Error::NoSuchPeer(name.into()))?;
        let widenings = patch.widenings(current);
        if !widenings.is_empty() {
            return Err(UpdateError::Widens(widenings));
        }
    }
    let config = writer.desired_with(|c| {
        let peer =
            c.wireguard.peers.iter_mut().find(|p| p.name == name).ok_or_else(|| Error::NoSuchPeer(name.into()))?;
        if let Some(enabled) = patch.enabled {
            peer.enabled = enabled;
        }
        if let Some(routing) = patch.routing {
            peer.routing = routing;
        }
        if let Some(expires) = patch.expires {
            peer.expires = expires;
        }
        if let Some(access) = patch.access {
            peer.access = access;
        }
        if let Some(exit) = patch.exit {
            peer.exit = exit;
        }
        Ok(())
    })?;
    let switched = writer.build_and_switch(&config, reason)?;
    let peer = config.wireguard.peers.iter().find(|p| p.name == name).cloned().expect("just updated");
    Ok((peer, switched))
}

pub fn remove(state: &State, name: &str, reason: &str) -> Result<SwitchOutcome, Error> {
    let writer = state.writer()?;
    let config = writer.desired_with(|c| {
        let before = c.wireguard.peers.len();
        c.wireguard.peers.retain(|p| p.name != name);
        if c.wireguard.peers.len() == before { Err(Error::NoSuchPeer(name.into())) } else { Ok(()) }
    })?;
    let switched = writer.build_and_switch(&config, reason)?;
    PeerKeys::new(state.secrets().dir()).remove(name)?;
    Ok(switched)
}

/// The wg-quick file of a peer in the desired config.
pub fn client_config(state: &State, name: &str) -> Result<String, Error> {
    let config = state.desired_config()?.ok_or_else(|| Error::NoDesiredConfig(state.root().to_path_buf()))?;
    let private = PeerKeys::new(state.secrets().dir()).private_key(name)?;
    peers::client_config(&config, name, &state.secrets().wireguard_public_key()?, private.as_deref())
}

/// Tells a field that is absent (`None`) from one that is `null` (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}
