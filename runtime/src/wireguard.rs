//! The host's WireGuard interface, kept in step with the current generation through
//! wireguard-control: peers are added, changed and removed on the running interface, which is
//! never restarted (a restart cuts every connected device off until it retries, ~15 s).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use anyhow::{Context, Result, anyhow};
use pic_builder::State;
use serde::{Deserialize, Serialize};
use wireguard_control::{Backend, Device, DeviceUpdate, InterfaceName, Key, PeerConfigBuilder};

use pic_builder::command;

/// What the generation's `wireguard/interface.json` says the interface should be.
#[derive(Debug, Deserialize)]
struct Desired {
    address: Ipv4Addr,
    subnet: String,
    listen_port: u16,
    peers: Vec<DesiredPeer>,
    #[serde(default)]
    links: Vec<DesiredLink>,
}

/// A linked cell: a peer that carries its networks, dialled at its endpoint when it has one.
#[derive(Debug, Deserialize)]
struct DesiredLink {
    name: String,
    public_key: String,
    endpoint: String,
    networks: Vec<ipnet::Ipv4Net>,
}

/// Keeps the tunnel of a link alive behind NAT, and its handshake age meaningful.
const LINK_KEEPALIVE: u16 = 25;

#[derive(Debug, Deserialize)]
struct DesiredPeer {
    name: String,
    address: Ipv4Addr,
    public_key: String,
    /// RFC 3339 or empty: an expired peer is not let in.
    expires: String,
}

/// What one `apply` changed.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct ApplyReport {
    /// Whether the private key and port were (re)set: only when the interface is new or they
    /// changed, as setting them again makes wireguard-go rebind its socket.
    pub identity_set: bool,
    pub added: Vec<String>,
    pub removed: usize,
    pub unchanged: usize,
}

/// Live state of one peer.
#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    pub public_key: String,
    /// RFC 3339, if the peer ever completed a handshake.
    pub last_handshake: Option<String>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

pub struct Interface {
    name: InterfaceName,
    backend: Backend,
    /// The last status read and when: pages that poll share one read a second.
    recent: std::sync::Mutex<Option<(std::time::Instant, std::sync::Arc<Vec<PeerStatus>>)>>,
}

/// How old a status read may be and still be shown: handshakes are minutes apart, and a page
/// shows traffic a second late at most.
pub const STATUS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

impl Interface {
    pub fn new(name: &str, backend: Backend) -> Result<Interface> {
        let name = InterfaceName::from_str(name).map_err(|e| anyhow!("interface name {name:?}: {e}"))?;
        Ok(Interface { name, backend, recent: std::sync::Mutex::default() })
    }

    /// How the interface is run: the kernel's module or wireguard-go.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Brings the interface in line with the current generation: creates it if it is missing,
    /// then adds and removes only the peers that differ.
    pub fn apply(&self, state: &State) -> Result<Option<ApplyReport>> {
        let Some(text) = interface_json(state)? else { return Ok(None) };
        let desired: Desired = serde_json::from_slice(&text).context("reading interface.json")?;

        let existing = Device::get(&self.name, self.backend).ok();
        let mut update = DeviceUpdate::new();
        let mut changed = false;
        let private_key = key_from_file(&state.secrets().wireguard_private_key_path())?;
        let needs_identity = existing
            .as_ref()
            .is_none_or(|d| d.private_key.as_ref() != Some(&private_key) || d.listen_port != Some(desired.listen_port));
        if needs_identity {
            update = update.set_private_key(private_key).set_listen_port(desired.listen_port);
            changed = true;
        }

        let now = jiff::Timestamp::now();
        let mut live: HashMap<Key, Vec<(IpAddr, u8)>> = existing
            .iter()
            .flat_map(|d| d.peers.iter())
            .map(|p| (p.config.public_key.clone(), p.config.allowed_ips.iter().map(|a| (a.address, a.cidr)).collect()))
            .collect();
        let mut report = ApplyReport { identity_set: needs_identity, ..ApplyReport::default() };
        for peer in &desired.peers {
            let expired = jiff::Timestamp::from_str(&peer.expires).is_ok_and(|t| t <= now);
            if expired {
                continue;
            }
            let key = Key::from_base64(&peer.public_key).map_err(|_| anyhow!("peer {}: bad public key", peer.name))?;
            let allowed = vec![(IpAddr::V4(peer.address), 32)];
            if live.remove(&key).as_ref() == Some(&allowed) {
                report.unchanged += 1;
                continue;
            }
            update =
                update.add_peer(PeerConfigBuilder::new(&key).replace_allowed_ips().add_allowed_ip(allowed[0].0, 32));
            report.added.push(peer.name.clone());
            changed = true;
        }
        for link in &desired.links {
            let key = Key::from_base64(&link.public_key).map_err(|_| anyhow!("link {}: bad public key", link.name))?;
            let allowed: Vec<(IpAddr, u8)> =
                link.networks.iter().map(|n| (IpAddr::V4(n.network()), n.prefix_len())).collect();
            let endpoint = resolve_endpoint(&link.endpoint);
            let unchanged =
                existing.as_ref().and_then(|d| d.peers.iter().find(|p| p.config.public_key == key)).is_some_and(|p| {
                    endpoint.is_none_or(|e| p.config.endpoint == Some(e))
                        && p.config.persistent_keepalive_interval == Some(LINK_KEEPALIVE)
                });
            if live.remove(&key).as_ref() == Some(&allowed) && unchanged {
                report.unchanged += 1;
                continue;
            }
            let mut peer =
                PeerConfigBuilder::new(&key).replace_allowed_ips().set_persistent_keepalive_interval(LINK_KEEPALIVE);
            for (address, prefix) in &allowed {
                peer = peer.add_allowed_ip(*address, *prefix);
            }
            if let Some(endpoint) = endpoint {
                peer = peer.set_endpoint(endpoint);
            }
            update = update.add_peer(peer);
            report.added.push(format!("cell {}", link.name));
            changed = true;
        }
        for key in live.keys() {
            update = update.remove_peer_by_key(key);
            report.removed += 1;
            changed = true;
        }
        if changed {
            update.apply(&self.name, self.backend).with_context(|| format!("configuring {}", self.name))?;
        }
        let prefix = desired.subnet.rsplit_once('/').map_or("32", |(_, p)| p);
        let name = self.name.to_string();
        if existing.is_none() {
            command::run("ip", &["address", "replace", &format!("{}/{prefix}", desired.address), "dev", &name])?;
            command::run("ip", &["link", "set", &name, "up"])?;
        }
        let linked: Vec<ipnet::Ipv4Net> = desired.links.iter().flat_map(|l| l.networks.iter().copied()).collect();
        self.route_links(&linked)?;
        tracing::info!(
            interface = %name,
            identity_set = report.identity_set,
            added = ?report.added,
            removed = report.removed,
            "wireguard applied"
        );
        Ok(Some(report))
    }

    /// Routes the linked cells' networks into the interface, and only them: a route this
    /// cell made (protocol `static`, scope link) for a network no longer linked is removed.
    fn route_links(&self, linked: &[ipnet::Ipv4Net]) -> Result<()> {
        let name = self.name.to_string();
        let shown = command::run("ip", &["-4", "route", "show", "dev", &name, "proto", "static"])?;
        let routed: Vec<ipnet::Ipv4Net> =
            shown.lines().filter_map(|l| l.split_whitespace().next()).filter_map(|n| n.parse().ok()).collect();
        for net in linked.iter().filter(|n| !routed.contains(n)) {
            command::run("ip", &["route", "replace", &net.to_string(), "dev", &name, "proto", "static"])?;
        }
        for net in routed.iter().filter(|n| !linked.contains(n)) {
            command::run("ip", &["route", "del", &net.to_string(), "dev", &name, "proto", "static"])?;
        }
        Ok(())
    }

    /// Whether the interface sends `address` to the peer with `public_key` (WireGuard's
    /// cryptokey routing: a packet from `address` was sent with that key).
    pub fn routes_to(&self, public_key: &str, address: IpAddr) -> Result<bool> {
        let device = Device::get(&self.name, self.backend).with_context(|| format!("reading {}", self.name))?;
        let Ok(key) = Key::from_base64(public_key) else { return Ok(false) };
        Ok(device
            .peers
            .iter()
            .filter(|p| p.config.public_key == key)
            .flat_map(|p| &p.config.allowed_ips)
            .any(|a| ipnet::IpNet::new(a.address, a.cidr).is_ok_and(|net| net.contains(&address))))
    }

    /// The status read within the last [`STATUS_MAX_AGE`], if there is one (no I/O).
    pub fn recent_status(&self) -> Option<std::sync::Arc<Vec<PeerStatus>>> {
        let recent = self.recent.lock().expect("status lock");
        recent.as_ref().filter(|(at, _)| at.elapsed() < STATUS_MAX_AGE).map(|(_, status)| status.clone())
    }

    /// The status read now, kept as the recent one.
    pub fn fresh_status(&self) -> Result<std::sync::Arc<Vec<PeerStatus>>> {
        let status = std::sync::Arc::new(self.status()?);
        *self.recent.lock().expect("status lock") = Some((std::time::Instant::now(), status.clone()));
        Ok(status)
    }

    /// Last handshake and traffic of every peer on the interface.
    pub fn status(&self) -> Result<Vec<PeerStatus>> {
        let device = Device::get(&self.name, self.backend).with_context(|| format!("reading {}", self.name))?;
        Ok(device
            .peers
            .iter()
            .map(|p| PeerStatus {
                public_key: p.config.public_key.to_base64(),
                last_handshake: p
                    .stats
                    .last_handshake_time
                    .and_then(|t| jiff::Timestamp::try_from(t).ok())
                    .map(|t| t.to_string()),
                rx_bytes: p.stats.rx_bytes,
                tx_bytes: p.stats.tx_bytes,
            })
            .collect())
    }
}

/// The current generation's `wireguard/interface.json`: the interface, its peers, links and
/// exits (none before the first generation, or when WireGuard is not in it).
pub fn interface_json(state: &State) -> Result<Option<Vec<u8>>> {
    let Some(current) = state.current()? else { return Ok(None) };
    let manifest = state.manifest(current)?;
    let Some(entry) = manifest.services.get("wireguard") else { return Ok(None) };
    let mut bundle = state.bundle(entry)?;
    let text = bundle.files.remove("interface.json").context("the wireguard bundle has no interface.json")?;
    Ok(Some(text))
}

/// The peers of the interface `name` as this machine runs it (the kernel's, else wireguard-go's),
/// for commands run beside `pic serve`; empty when there is no such interface.
pub fn live_status(name: &str) -> Vec<PeerStatus> {
    [Backend::Kernel, Backend::Userspace]
        .into_iter()
        .find_map(|backend| Interface::new(name, backend).ok()?.status().ok())
        .unwrap_or_default()
}

/// A link's `host:port` as a socket address (a host name is looked up now), if it has one.
fn resolve_endpoint(endpoint: &str) -> Option<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    if endpoint.is_empty() {
        return None;
    }
    match endpoint.to_socket_addrs() {
        Ok(mut addresses) => addresses.next(),
        Err(error) => {
            tracing::warn!(endpoint, %error, "a linked cell's endpoint cannot be resolved; it must dial this cell");
            None
        }
    }
}

/// The private key in `path`, clamped as WireGuard reports it back (so that comparing the two
/// tells a real change from none: re-sending the identity makes wireguard-go rebind its socket,
/// which drops packets).
fn key_from_file(path: &std::path::Path) -> Result<Key> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let key = Key::from_base64(text.trim()).map_err(|_| anyhow!("{} does not hold a WireGuard key", path.display()))?;
    Ok(Key(pic_builder::secrets::clamp(key.0)))
}
