//! The parts of the render context that belong to one service each: DHCP, NTP, mail, the user
//! lists of calendar and files, and the firewall's view of ports and peers.

use std::net::Ipv4Addr;

use serde::Serialize;

use crate::config::ValidConfig;
use crate::config::services::{self, CATALOG};

/// Where containers find what the runtime mounts for them (never part of a bundle).
#[derive(Debug, Serialize)]
pub struct PathsView {
    /// The service's own bundle, read-only.
    pub bundle: &'static str,
    /// The service's `data/<service>` directory, read-write.
    pub data: &'static str,
    /// Certificates and keys from the cell CA: `<tls>/<name>/{cert,key}.pem`.
    pub tls: &'static str,
    /// Daemon credential files derived from `secrets/`.
    pub credentials: &'static str,
    /// The cell CA's certificate, in `ca_dir`.
    pub ca_file: &'static str,
    pub ca_dir: &'static str,
}

pub const PATHS: PathsView = PathsView {
    bundle: "/etc/pic/bundle",
    data: "/srv",
    tls: "/run/pic/tls",
    credentials: "/run/pic/credentials",
    ca_file: "/run/pic/ca/ca.crt",
    ca_dir: "/run/pic/ca",
};

#[derive(Debug, Serialize)]
pub struct DhcpView {
    pub start: String,
    pub end: String,
    pub netmask: String,
    pub router: String,
    /// The cell's DNS and NTP servers, when those services run.
    pub dns_server: String,
    pub ntp_server: String,
    pub reservations: Vec<ReservationView>,
}

#[derive(Debug, Serialize)]
pub struct ReservationView {
    pub name: String,
    pub mac: String,
    pub address: Ipv4Addr,
}

#[derive(Debug, Serialize)]
pub struct NtpView {
    pub servers: Vec<String>,
    /// Networks allowed to ask for time.
    pub allowed: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct MailView {
    pub hostname: String,
    pub domains: Vec<String>,
    /// Sorted by address.
    pub mailboxes: Vec<MailboxView>,
}

#[derive(Debug, Serialize)]
pub struct MailboxView {
    pub address: String,
    pub local: String,
    pub domain: String,
}

#[derive(Debug, Serialize)]
pub struct FirewallView {
    /// The WireGuard interface on the host.
    pub vpn_interface: &'static str,
    /// The WireGuard port, open on the host itself (the interface is the kernel's, not a container's).
    pub wireguard_port: Option<u16>,
    /// Every published port, for the record (Docker forwards them; the forward chain lets them in).
    pub published: Vec<PublishedView>,
    /// `address . protocol . port` of every enabled service, as elements of an nftables set.
    pub all_services: Vec<String>,
    /// Peers that may reach every service (the default), as one set: one rule covers them all.
    pub open_peers: Vec<Ipv4Addr>,
    /// Peers that route all their traffic through the cell.
    pub full_peers: Vec<Ipv4Addr>,
    /// Peers limited to some services, each with its own rule.
    pub restricted_peers: Vec<PeerRulesView>,
}

#[derive(Debug, Serialize)]
pub struct PublishedView {
    pub service: &'static str,
    pub protocol: &'static str,
    pub port: u16,
}

#[derive(Debug, Serialize)]
pub struct PeerRulesView {
    pub name: String,
    pub address: Ipv4Addr,
    /// `address . protocol . port` elements of an nftables set.
    pub allowed: Vec<String>,
}

pub fn dhcp(config: &ValidConfig) -> Option<DhcpView> {
    let range = config.services.dhcp.range.as_ref()?;
    let address_of = |name: &str| {
        services::get(name)
            .filter(|s| (s.enabled)(config))
            .map(|s| config.service_address(s).to_string())
            .unwrap_or_default()
    };
    let mut reservations: Vec<ReservationView> = config
        .services
        .dhcp
        .reservations
        .iter()
        .map(|r| ReservationView { name: r.name.clone(), mac: r.mac.to_ascii_lowercase(), address: r.address })
        .collect();
    reservations.sort_by_key(|r| r.address);
    Some(DhcpView {
        start: range.start.to_string(),
        end: range.end.to_string(),
        netmask: config.network.subnet.netmask().to_string(),
        router: config.gateway().to_string(),
        dns_server: address_of("dns"),
        ntp_server: address_of("ntp"),
        reservations,
    })
}

pub fn ntp(config: &ValidConfig) -> NtpView {
    let mut allowed = vec![config.network.subnet.to_string()];
    if config.wireguard.enabled {
        allowed.push(config.wireguard.subnet.to_string());
    }
    NtpView { servers: config.services.ntp.servers.clone(), allowed }
}

pub fn mail(config: &ValidConfig) -> MailView {
    let mut mailboxes: Vec<MailboxView> = config
        .services
        .mail
        .mailboxes
        .iter()
        .filter_map(|m| {
            let (local, domain) = m.address.split_once('@')?;
            Some(MailboxView { address: m.address.clone(), local: local.into(), domain: domain.into() })
        })
        .collect();
    mailboxes.sort_by(|a, b| a.address.cmp(&b.address));
    let mut domains = config.services.mail.domains.clone();
    domains.sort();
    MailView { hostname: format!("mail.{}", config.domain()), domains, mailboxes }
}

/// Sorted user names, so that the order in the config does not matter.
pub fn sorted(users: &[String]) -> Vec<String> {
    let mut users = users.to_vec();
    users.sort();
    users
}

pub fn firewall(config: &ValidConfig) -> FirewallView {
    let mut published = Vec::new();
    for s in services::enabled(config) {
        for p in (s.ports)(config) {
            published.push(PublishedView { service: s.name, protocol: p.protocol.name(), port: p.port });
        }
    }
    let wg = &config.wireguard;
    let peers: Vec<&crate::config::Peer> = wg.peers.iter().filter(|p| wg.enabled && p.enabled).collect();
    let endpoints = |allowed: &dyn Fn(&str) -> bool| {
        let mut set: Vec<String> = Vec::new();
        for s in CATALOG.iter().filter(|s| (s.enabled)(config) && allowed(s.name)) {
            // A web service is reached through the proxy, so access to it opens the proxy's ports.
            let (target, ports) = match services::get("proxy") {
                Some(proxy) if s.via_proxy => (config.service_address(proxy), proxy.listens),
                _ => (config.service_address(s), s.listens),
            };
            for (protocol, port) in ports {
                set.push(format!("{target} . {} . {port}", protocol.name()));
            }
        }
        set.sort();
        set.dedup();
        set
    };
    let mut open_peers: Vec<Ipv4Addr> = peers.iter().filter(|p| p.access.is_none()).map(|p| p.address).collect();
    open_peers.sort();
    let mut full_peers: Vec<Ipv4Addr> =
        peers.iter().filter(|p| p.routing == crate::config::Routing::Full).map(|p| p.address).collect();
    full_peers.sort();
    let mut restricted_peers: Vec<PeerRulesView> = peers
        .iter()
        .filter_map(|peer| {
            let names = peer.access.as_ref()?;
            let allowed = endpoints(&|name| names.iter().any(|n| n == name));
            Some(PeerRulesView { name: peer.name.clone(), address: peer.address, allowed })
        })
        .collect();
    restricted_peers.sort_by(|a, b| a.name.cmp(&b.name));
    FirewallView {
        vpn_interface: "wg0",
        wireguard_port: wg.enabled.then_some(wg.listen_port),
        published,
        all_services: endpoints(&|_| true),
        open_peers,
        full_peers,
        restricted_peers,
    }
}
