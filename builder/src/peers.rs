//! VPN peers beyond the config: key pairs the cell generates for them (private halves in
//! `secrets/peers/`), free addresses, and the wg-quick file a device imports.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::config::{CellConfig, Routing, is_label, nth_host};
use crate::error::{Error, IoContext};
use crate::fsutil;

pub struct PeerKeys {
    dir: PathBuf,
}

impl PeerKeys {
    /// The peer keys kept in the state directory's `secrets/`.
    pub fn new(secrets: &std::path::Path) -> PeerKeys {
        PeerKeys { dir: secrets.join("peers") }
    }

    fn path(&self, name: &str) -> Result<PathBuf, Error> {
        // The name becomes a file name: only a DNS label may.
        if !is_label(name) {
            return Err(Error::InvalidName(name.to_string()));
        }
        Ok(self.dir.join(format!("{name}.key")))
    }

    /// A new key pair: (private, public), base64. Nothing is written until [`PeerKeys::store`].
    pub fn generate() -> (String, String) {
        crate::secrets::generate_keypair()
    }

    /// Keeps the private key the cell generated for a peer.
    pub fn store(&self, name: &str, private_key: &str) -> Result<(), Error> {
        let path = self.path(name)?;
        fsutil::ensure_dir(&self.dir, 0o700)?;
        fsutil::write_atomic(&path, format!("{private_key}\n").as_bytes(), 0o600)
    }

    /// The private key the cell generated for a peer, if it did.
    pub fn private_key(&self, name: &str) -> Result<Option<String>, Error> {
        let path = self.path(name)?;
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at(&path),
        }
    }

    pub fn remove(&self, name: &str) -> Result<(), Error> {
        let path = self.path(name)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at(&path),
            _ => Ok(()),
        }
    }
}

/// The lowest address of the VPN subnet that neither the server nor a peer uses.
pub fn next_free_address(config: &CellConfig) -> Option<Ipv4Addr> {
    let net = config.wireguard.subnet;
    let server = config.wireguard_address();
    let hosts = (1u64 << (32 - u32::from(net.prefix_len()))).saturating_sub(1);
    (2..hosts as u32)
        .filter_map(|n| nth_host(&net, n))
        .find(|a| *a != server && !config.wireguard.peers.iter().any(|p| p.address == *a))
}

/// The wg-quick file for a peer's device. Without the private key (a peer that brought its own
/// key pair), the `PrivateKey` line says where the device's own key goes.
pub fn client_config(
    config: &CellConfig,
    peer: &str,
    server_public_key: &str,
    private_key: Option<&str>,
) -> Result<String, Error> {
    let peer =
        config.wireguard.peers.iter().find(|p| p.name == peer).ok_or_else(|| Error::NoSuchPeer(peer.to_string()))?;
    let mut text = String::new();
    let _ = writeln!(text, "# {} on cell {}", peer.name, config.cell.name);
    let _ = writeln!(text, "[Interface]");
    match private_key {
        Some(key) => {
            let _ = writeln!(text, "PrivateKey = {key}");
        }
        None => {
            let _ = writeln!(text, "# PrivateKey = <the private key of {}: it never left the device>", peer.public_key);
        }
    }
    let _ = writeln!(text, "Address = {}/32", peer.address);
    if let Some(dns) = crate::config::services::get("dns").filter(|s| (s.enabled)(config)) {
        let _ = writeln!(text, "DNS = {}, {}", config.service_address(dns), config.domain());
    }
    let _ = writeln!(text, "\n[Peer]");
    let _ = writeln!(text, "PublicKey = {server_public_key}");
    if let Some(endpoint) = &config.wireguard.endpoint {
        let _ = writeln!(text, "Endpoint = {endpoint}");
    } else {
        let _ = writeln!(text, "# Endpoint = <the cell's public address>:{}", config.wireguard.listen_port);
    }
    let _ = writeln!(text, "AllowedIPs = {}", routed_through_cell(config, peer.routing));
    let _ = writeln!(text, "PersistentKeepalive = 25");
    Ok(text)
}

/// What a device sends through the cell: the VPN and cell networks, or everything (`full`).
pub fn routed_through_cell(config: &CellConfig, routing: Routing) -> String {
    match routing {
        // Linked cells' networks too: what they grant is reached through this cell.
        Routing::Split => [config.wireguard.subnet, config.network.subnet]
            .into_iter()
            .chain(config.links.iter().flat_map(|l| [l.vpn_subnet, l.cell_subnet]))
            .map(|n| n.trunc().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        Routing::Full => "0.0.0.0/0, ::/0".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> CellConfig {
        let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
        crate::config::parse(&std::fs::read_to_string(path).unwrap()).unwrap().into_inner()
    }

    #[test]
    fn split_routing_reaches_linked_cells_through_this_one() {
        let config = example("linked.json");
        assert_eq!(
            routed_through_cell(&config, Routing::Split),
            "10.8.0.0/24, 172.20.0.0/24, 10.9.0.0/24, 172.21.0.0/24, 10.10.0.0/24, 172.22.0.0/24"
        );
        assert_eq!(routed_through_cell(&example("cell.json"), Routing::Split), "10.8.0.0/24, 172.20.0.0/24");
        assert_eq!(routed_through_cell(&config, Routing::Full), "0.0.0.0/0, ::/0");
    }
}
