//! The exits as the firewall and WireGuard templates need them: each with its interface, the
//! firewall mark and routing table its devices' packets get, the port of the names forwarder
//! that `pic serve` runs for it, and the devices sent through it.

use std::net::Ipv4Addr;

use serde::Serialize;

use crate::config::ValidConfig;

/// An exit's interface is this prefix and its name.
pub const EXIT_INTERFACE_PREFIX: &str = "x-";
/// The first exit's firewall mark and routing table (exits are numbered by name).
pub const EXIT_TABLE_BASE: u32 = 52000;
/// The first exit's names forwarder port, on the cell's VPN address.
pub const EXIT_DNS_PORT_BASE: u16 = 5300;
/// The tunnel's MTU when the provider's file names none (wg-quick's default).
pub const EXIT_DEFAULT_MTU: u16 = 1420;

#[derive(Debug, Serialize)]
pub struct ExitView {
    pub name: String,
    pub interface: String,
    /// The firewall mark of its devices' packets, and the number of its routing table.
    pub mark: u32,
    /// Where its devices' DNS queries are sent (on the cell's VPN address): `pic serve` answers
    /// the cell's own names from the cell's DNS and asks the exit's DNS server for the rest,
    /// through the exit only.
    pub dns_port: u16,
    /// The exit's DNS server.
    pub dns: Ipv4Addr,
    /// The devices sent through it.
    pub devices: Vec<Ipv4Addr>,
    /// `wireguard`, `openvpn` or `tor`.
    pub kind: &'static str,
    /// The exit's container on the cell network (OpenVPN, Tor): its routing table's next hop.
    pub via: Option<Ipv4Addr>,
    pub wireguard: Option<WireGuardExitView>,
    pub openvpn: Option<OpenVpnExitView>,
    pub tor: Option<TorExitView>,
}

/// A Tor exit: its container (`exit-<name>`), where the devices' TCP and names are redirected
/// into Tor.
#[derive(Debug, Serialize)]
pub struct TorExitView {
    pub service: String,
    pub address: Ipv4Addr,
    /// Tor's transparent proxy port.
    pub trans_port: u16,
    /// Tor's DNS port.
    pub dns_port: u16,
}

/// Tor's ports inside its container.
pub const TOR_TRANS_PORT: u16 = 9040;
pub const TOR_DNS_PORT: u16 = 5353;

/// An OpenVPN exit: its container (`exit-<name>`) on the cell network, which the exit's
/// devices' packets are routed to.
#[derive(Debug, Serialize)]
pub struct OpenVpnExitView {
    /// The container's service name.
    pub service: String,
    /// Its address on the cell network: the next hop of the exit's routing table.
    pub address: Ipv4Addr,
    pub remotes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct WireGuardExitView {
    pub address: String,
    pub public_key: String,
    pub endpoint: String,
    pub mtu: u16,
}

/// The service (and container) name of an exit that runs in a container.
pub fn exit_service(name: &str) -> String {
    format!("exit-{name}")
}

/// Every exit, sorted by name.
pub fn exits(config: &ValidConfig) -> Vec<ExitView> {
    let mut exits: Vec<_> = config.connectivity.exits.iter().collect();
    exits.sort_by(|a, b| a.name.cmp(&b.name));
    exits
        .into_iter()
        .zip(0u16..)
        .map(|(exit, n)| {
            let mut devices: Vec<Ipv4Addr> = config
                .wireguard
                .peers
                .iter()
                .filter(|p| config.wireguard.enabled && p.enabled)
                .filter(|p| config.exit_of(p).is_some_and(|e| e.name == exit.name))
                .map(|p| p.address)
                .collect();
            devices.sort();
            let wireguard = exit.wireguard.as_ref();
            let openvpn = exit.openvpn.as_ref();
            let tor = exit.tor.as_ref();
            ExitView {
                name: exit.name.clone(),
                interface: format!("{EXIT_INTERFACE_PREFIX}{}", exit.name),
                mark: EXIT_TABLE_BASE + u32::from(n),
                dns_port: EXIT_DNS_PORT_BASE + n,
                // A Tor exit's names: its container, which redirects them into Tor.
                dns: wireguard
                    .map(|w| w.dns)
                    .or(openvpn.map(|o| o.dns))
                    .or(tor.map(|t| t.address))
                    .unwrap_or(Ipv4Addr::UNSPECIFIED),
                devices,
                kind: if openvpn.is_some() {
                    "openvpn"
                } else if tor.is_some() {
                    "tor"
                } else {
                    "wireguard"
                },
                via: exit.container_address(),
                wireguard: wireguard.map(|w| WireGuardExitView {
                    address: w.address.to_string(),
                    public_key: w.public_key.clone(),
                    endpoint: w.endpoint.clone(),
                    mtu: w.mtu.unwrap_or(EXIT_DEFAULT_MTU),
                }),
                openvpn: openvpn.map(|o| OpenVpnExitView {
                    service: exit_service(&exit.name),
                    address: o.address,
                    remotes: o.remotes.clone(),
                }),
                tor: tor.map(|t| TorExitView {
                    service: exit_service(&exit.name),
                    address: t.address,
                    trans_port: TOR_TRANS_PORT,
                    dns_port: TOR_DNS_PORT,
                }),
            }
        })
        .collect()
}
