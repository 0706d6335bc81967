//! The parts of the render context that belong to one service each: DHCP, NTP, mail, the user
//! lists of calendar and files, and the two views of the access policy: the firewall's (ports and
//! peers) and the proxy's (who each site serves).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::config::ValidConfig;
use crate::config::access::AccessPolicy;
use crate::config::services::{self, CATALOG, ServiceDef};

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
    /// Other addresses of the mailboxes, sorted.
    pub aliases: Vec<crate::config::MailAlias>,
}

#[derive(Debug, Serialize)]
pub struct MailboxView {
    pub address: String,
    pub local: String,
    pub domain: String,
}

#[derive(Debug, Serialize)]
pub struct FirewallView {
    /// Whether inbound and forwarded traffic is filtered (`services.firewall.enabled`); without
    /// it the ruleset still publishes the services' ports.
    pub filter: bool,
    /// The WireGuard interface on the host.
    pub vpn_interface: &'static str,
    /// The WireGuard port, open on the host itself (the interface is the kernel's, not a container's).
    pub wireguard_port: Option<u16>,
    /// Every published port: the ruleset forwards it (DNAT) to its container's address; Docker
    /// runs without its own iptables rules on the appliance.
    pub published: Vec<PublishedView>,
    /// `address . protocol . port` of every enabled service, as elements of an nftables set.
    pub all_services: Vec<String>,
    /// Peers that may reach every service (the default), as one set: one rule covers them all.
    pub open_peers: Vec<Ipv4Addr>,
    /// Peers that route all their traffic through the cell.
    pub full_peers: Vec<Ipv4Addr>,
    /// Peers limited to some services, each with its own rule.
    pub restricted_peers: Vec<PeerRulesView>,
    /// The linked cells' rules: what their networks may reach here.
    pub links: Vec<LinkRulesView>,
    /// Every linked network, which the cell's services and devices may reach through the link
    /// (the other cell decides what they are let in to).
    pub linked_networks: Vec<String>,
    /// The peer-sync server's address (this cell's tunnel address), when cells are linked.
    pub peer_sync_address: Option<Ipv4Addr>,
    pub peer_sync_port: u16,
}

#[derive(Debug, Serialize)]
pub struct LinkRulesView {
    pub name: String,
    /// Its VPN subnet and cell network.
    pub networks: Vec<String>,
    /// `address . protocol . port` elements of what it was granted.
    pub allowed: Vec<String>,
    /// Its servers' rules: `source . address . protocol . port`, its DNS server asking ours,
    /// its mail server delivering to ours.
    pub servers: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PublishedView {
    pub service: &'static str,
    pub protocol: &'static str,
    /// On the host.
    pub port: u16,
    /// The container's address on the cell network and its port there.
    pub address: Ipv4Addr,
    pub container_port: u16,
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
    let mut aliases = config.services.mail.aliases.clone();
    aliases.sort_by(|a, b| a.address.cmp(&b.address));
    MailView { hostname: format!("mail.{}", config.domain()), domains, mailboxes, aliases }
}

/// Sorted user names, so that the order in the config does not matter.
pub fn sorted(users: &[String]) -> Vec<String> {
    let mut users = users.to_vec();
    users.sort();
    users
}

/// The firewall's view of the access policy: every device reaches the endpoints of the services
/// the policy admits it to (a service behind the proxy is reached at the proxy's ports, which
/// every device may reach for the web UI; the proxy then admits each site by the same policy).
pub fn firewall(config: &ValidConfig, policy: &AccessPolicy<'_>) -> FirewallView {
    let mut published = Vec::new();
    // A service of the host itself (WireGuard) listens on the host's port: nothing to forward.
    for s in services::enabled(config).filter(|s| s.offset.is_some()) {
        for p in (s.ports)(config) {
            let address = config.service_address(s);
            published.push(PublishedView {
                service: s.name,
                protocol: p.protocol.name(),
                port: p.port,
                address,
                container_port: p.container_port,
            });
        }
    }
    let endpoints = |admits: &dyn Fn(&ServiceDef) -> bool| {
        let mut set: Vec<String> = Vec::new();
        for s in CATALOG.iter().filter(|s| (s.enabled)(config) && admits(s)) {
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
    let open_peers: Vec<Ipv4Addr> = policy.devices.iter().filter(|d| d.access.is_none()).map(|d| d.address).collect();
    let full_peers: Vec<Ipv4Addr> = policy.devices.iter().filter(|d| d.full_routing).map(|d| d.address).collect();
    let mut restricted_peers: Vec<PeerRulesView> = policy
        .devices
        .iter()
        .filter(|d| d.access.is_some())
        .map(|d| PeerRulesView {
            name: d.name.to_owned(),
            address: d.address,
            allowed: endpoints(&|s| policy.admits(d, s)),
        })
        .collect();
    restricted_peers.sort_by(|a, b| a.name.cmp(&b.name));
    let enabled_at =
        |name: &str| services::get(name).filter(|s| (s.enabled)(config)).map(|s| config.service_address(s));
    let links: Vec<LinkRulesView> = policy
        .links
        .iter()
        .map(|l| {
            let mut servers = Vec::new();
            if let (Some(theirs), Some(ours)) = (l.dns, enabled_at("dns")) {
                servers.push(format!("{theirs} . {ours} . udp . 53"));
                servers.push(format!("{theirs} . {ours} . tcp . 53"));
            }
            if let (Some(theirs), Some(ours)) = (l.mail, enabled_at("mail")) {
                servers.push(format!("{theirs} . {ours} . tcp . 25"));
            }
            LinkRulesView {
                name: l.name.to_owned(),
                networks: l.networks.iter().map(|n| n.to_string()).collect(),
                allowed: endpoints(&|s| l.grants(s)),
                servers,
            }
        })
        .collect();
    let linked_networks = policy.links.iter().flat_map(|l| l.networks).map(|n| n.to_string()).collect();
    let peer_sync_address = (!links.is_empty()).then(|| config.wireguard_address());
    FirewallView {
        filter: config.services.firewall.enabled,
        vpn_interface: "wg0",
        wireguard_port: config.wireguard.enabled.then_some(config.wireguard.listen_port),
        published,
        all_services: endpoints(&|_| true),
        open_peers,
        full_peers,
        restricted_peers,
        links,
        linked_networks,
        peer_sync_address,
        peer_sync_port: crate::config::LINK_SYNC_PORT,
    }
}

/// What the proxy enforces for one site (see [`AccessPolicy::site`]), as prefixes in text.
#[derive(Debug, Serialize)]
pub struct SiteAccessView {
    /// Sources in these networks are served only from the admitted prefixes.
    pub restricted: Vec<String>,
    pub admitted: Vec<String>,
}

/// The site rules of the services behind the proxy, by service name.
pub fn sites(config: &ValidConfig, policy: &AccessPolicy<'_>) -> BTreeMap<&'static str, SiteAccessView> {
    services::enabled(config)
        .filter(|s| s.via_proxy || s.name == crate::config::access::WEB_UI_SERVICE)
        .filter_map(|s| {
            let site = policy.site(s)?;
            let text = |nets: &[ipnet::Ipv4Net]| nets.iter().map(|n| n.to_string()).collect();
            Some((s.name, SiteAccessView { restricted: text(&site.restricted), admitted: text(&site.admitted) }))
        })
        .collect()
}
