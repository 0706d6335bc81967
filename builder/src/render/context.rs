//! The render context: the validated config turned into what templates need, with every derived
//! value (names under the cell domain, addresses, record lists) computed once, here.
//!
//! The context is plain data: the benchmark serializes it to JSON and renders the same templates
//! with Python's Jinja2, so nothing in it may depend on minijinja features.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Serialize;

use super::apps_context::{self, AppView};
use super::services_context::{self, DhcpView, FirewallView, MailView, NtpView, PathsView, SiteAccessView};
use crate::config::access::AccessPolicy;
use crate::config::services::{CATALOG, WEBUI_HOST};
use crate::config::{Certificates, Domain, RecordType, Routing, ValidConfig};

/// The public key material rendering may use; private keys never reach a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeys {
    /// The WireGuard server's public key (base64).
    pub wireguard: String,
}

/// Port `pic serve` listens on, on the cell network's gateway.
pub const WEBUI_PORT: u16 = 3000;
/// Port of `pic serve`'s front door on the appliance (`--front-door`): what answers on the
/// host's port 80 where the ruleset does not send it to the cell's Caddy (before setup, and
/// while the containers start after a boot).
pub const FRONT_DOOR_PORT: u16 = 80;

#[derive(Debug, Serialize)]
pub struct Context {
    pub cell: CellView,
    pub network: NetworkView,
    pub services: BTreeMap<&'static str, ServiceView>,
    pub webui: WebUiView,
    pub wireguard: WireGuardView,
    pub dns: DnsView,
    pub dhcp: Option<DhcpView>,
    pub ntp: NtpView,
    pub mail: MailView,
    pub calendar: UsersView,
    pub files: UsersView,
    pub firewall: FirewallView,
    /// The proxy's rule for each site behind it that does not serve everyone, by service name.
    pub site_access: BTreeMap<&'static str, SiteAccessView>,
    pub paths: &'static PathsView,
    /// Certificates the cell CA provides (see `services::tls_sites`).
    pub tls_sites: Vec<TlsSiteView>,
    /// The apps installed from the service store.
    pub apps: Vec<AppView>,
    /// Every service's log level (`error`, `warn`, `info` or `debug`).
    pub log_level: BTreeMap<&'static str, &'static str>,
    /// The linked cells, sorted by name.
    pub links: Vec<LinkView>,
    /// The exits, sorted by name.
    pub exits: Vec<super::exits_context::ExitView>,
}

/// A linked cell as the WireGuard, DNS and mail templates need it.
#[derive(Debug, Serialize)]
pub struct LinkView {
    pub name: String,
    pub domain: String,
    pub public_key: String,
    /// `host:port`, or empty when only the other cell dials.
    pub endpoint: String,
    pub tunnel_address: Ipv4Addr,
    /// The networks the link carries: its VPN subnet and its cell network.
    pub networks: Vec<String>,
    /// Its DNS and mail servers, or empty.
    pub dns: String,
    pub mail: String,
}

#[derive(Debug, Serialize)]
pub struct TlsSiteView {
    pub name: String,
    /// The service that serves it: `proxy` or `mail`.
    pub service: &'static str,
}

/// Who may use a per-user service.
#[derive(Debug, Serialize)]
pub struct UsersView {
    pub users: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct CellView {
    pub name: String,
    pub domain: String,
    pub domain_mode: &'static str,
    /// Contact for the ACME CA; empty in local mode (certificates come from the cell CA).
    pub acme_email: String,
    /// The ACME CA's directory when the config names one (else Caddy's default).
    pub acme_ca: Option<String>,
    /// Whether the ACME CA's HTTPS certificate needs the config's root (rendered into the
    /// proxy's bundle as `acme_ca_root.pem`, which is empty otherwise).
    pub acme_ca_root: Option<String>,
    /// Who gets the certificates: `cell_ca`, `caddy` (HTTP-01) or `pic` (DNS-01); in the
    /// first and last, Caddy serves the files of `tls_sites`.
    pub certificates: Certificates,
    pub timezone: String,
}

#[derive(Debug, Serialize)]
pub struct NetworkView {
    pub subnet: String,
    pub gateway: String,
}

#[derive(Debug, Serialize)]
pub struct ServiceView {
    pub enabled: bool,
    /// Its fully qualified name.
    pub fqdn: String,
    /// Its own address on the cell network.
    pub address: String,
    /// Host ports it publishes.
    pub published: Vec<PortView>,
}

#[derive(Debug, Serialize)]
pub struct PortView {
    pub host: u16,
    pub container: u16,
    pub protocol: &'static str,
}

#[derive(Debug, Serialize)]
pub struct WebUiView {
    pub fqdn: String,
    /// The certificate folder of the web UI at the device's LAN addresses (cell CA, IP names).
    pub lan_site: &'static str,
    pub upstream: String,
    pub port: u16,
    pub front_door_port: u16,
}

#[derive(Debug, Serialize)]
pub struct WireGuardView {
    pub enabled: bool,
    pub listen_port: u16,
    pub subnet: String,
    pub prefix: u8,
    pub address: String,
    /// `host:port` peers dial; empty when the config leaves it to the runtime to discover.
    pub endpoint: String,
    pub public_key: String,
    /// Enabled peers, sorted by name (the config's order does not matter).
    pub peers: Vec<PeerView>,
    /// What a split-routing client sends through the tunnel.
    pub split_allowed_ips: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PeerView {
    pub name: String,
    pub fqdn: String,
    pub public_key: String,
    pub address: Ipv4Addr,
    pub routing: &'static str,
    /// RFC 3339, or empty; enforced by the runtime, shown in the rendered files.
    pub expires: String,
}

#[derive(Debug, Serialize)]
pub struct DnsView {
    pub upstreams: Vec<String>,
    /// Every record under the cell domain, sorted, as `name type value` parts.
    pub records: Vec<RecordView>,
    /// Reverse (PTR) entries for every address the cell names.
    pub reverse: Vec<ReverseView>,
    /// Networks allowed to query.
    pub allowed: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordView {
    pub fqdn: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The record data as the zone format writes it (names end in a dot, TXT is quoted).
    pub data: String,
}

/// Ordered by address (numerically), then name.
#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReverseView {
    pub address: Ipv4Addr,
    pub fqdn: String,
}

impl Context {
    pub fn new(config: &ValidConfig, keys: &PublicKeys) -> Context {
        let domain = config.domain();
        let fqdn = |name: &str| format!("{name}.{domain}");
        let domain_mode = match &config.cell.domain {
            Domain::Local => "local",
            Domain::Public { .. } => "public",
            Domain::Ddns { .. } => "ddns",
        };
        let acme = config.cell.domain.acme();
        let (acme_ca, acme_ca_root) = match &config.cell.domain {
            Domain::Local => (None, None),
            Domain::Public { acme_ca, acme_ca_root, .. } | Domain::Ddns { acme_ca, acme_ca_root, .. } => {
                (acme_ca.clone(), acme_ca_root.as_ref().map(|pem| format!("{}\n", pem.trim())))
            }
        };

        let services: BTreeMap<_, _> = CATALOG
            .iter()
            .map(|s| {
                let view = ServiceView {
                    enabled: (s.enabled)(config),
                    fqdn: fqdn(s.host),
                    address: config.service_address(s).to_string(),
                    published: (s.ports)(config)
                        .into_iter()
                        .map(|p| PortView { host: p.port, container: p.container_port, protocol: p.protocol.name() })
                        .collect(),
                };
                (s.name, view)
            })
            .collect();

        let wg = &config.wireguard;
        let mut peers: Vec<PeerView> = wg
            .peers
            .iter()
            .filter(|p| wg.enabled && p.enabled)
            .map(|p| PeerView {
                name: p.name.clone(),
                fqdn: fqdn(&p.name),
                public_key: p.public_key.clone(),
                address: p.address,
                routing: match p.routing {
                    Routing::Split => "split",
                    Routing::Full => "full",
                },
                expires: p.expires.map(|t| t.to_string()).unwrap_or_default(),
            })
            .collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name));

        let dns = dns_view(config, &domain, &peers);
        let policy = AccessPolicy::new(config);
        let wireguard = WireGuardView {
            enabled: wg.enabled,
            listen_port: wg.listen_port,
            subnet: wg.subnet.to_string(),
            prefix: wg.subnet.prefix_len(),
            address: config.wireguard_address().to_string(),
            endpoint: wg.endpoint.clone().unwrap_or_default(),
            public_key: keys.wireguard.clone(),
            peers,
            split_allowed_ips: [wg.subnet, config.network.subnet]
                .into_iter()
                .chain(policy.links.iter().flat_map(|l| l.networks))
                .map(|n| n.to_string())
                .collect(),
        };
        let mut links: Vec<LinkView> = config
            .links
            .iter()
            .map(|l| LinkView {
                name: l.name.clone(),
                domain: l.domain.clone(),
                public_key: l.public_key.clone(),
                endpoint: l.endpoint.clone().unwrap_or_default(),
                tunnel_address: l.tunnel_address,
                networks: vec![l.vpn_subnet.trunc().to_string(), l.cell_subnet.trunc().to_string()],
                dns: l.dns.map(|a| a.to_string()).unwrap_or_default(),
                mail: l.mail.map(|a| a.to_string()).unwrap_or_default(),
            })
            .collect();
        links.sort_by(|a, b| a.name.cmp(&b.name));

        Context {
            cell: CellView {
                name: config.cell.name.clone(),
                domain: domain.clone(),
                domain_mode,
                acme_email: acme.map(|a| a.email.to_owned()).unwrap_or_default(),
                acme_ca,
                acme_ca_root,
                certificates: config.cell.domain.certificates(),
                timezone: config.cell.timezone.clone(),
            },
            network: NetworkView { subnet: config.network.subnet.to_string(), gateway: config.gateway().to_string() },
            services,
            webui: WebUiView {
                fqdn: fqdn(WEBUI_HOST),
                lan_site: crate::config::services::LAN_SITE,
                upstream: format!("{}:{WEBUI_PORT}", config.gateway()),
                port: WEBUI_PORT,
                front_door_port: FRONT_DOOR_PORT,
            },
            wireguard,
            dns,
            dhcp: services_context::dhcp(config),
            ntp: services_context::ntp(config),
            mail: services_context::mail(config),
            calendar: UsersView { users: services_context::sorted(&config.services.calendar.users) },
            files: UsersView { users: services_context::sorted(&config.services.files.users) },
            firewall: services_context::firewall(config, &policy),
            site_access: services_context::sites(config, &policy),
            apps: apps_context::apps(config, &policy, &domain),
            paths: &services_context::PATHS,
            log_level: std::iter::once(crate::config::API_SERVICE)
                .chain(CATALOG.iter().map(|s| s.name))
                .map(|name| {
                    let level = config.logging.levels.get(name).copied().unwrap_or_default();
                    (name, level.as_str())
                })
                .collect(),
            tls_sites: crate::config::services::tls_sites(config)
                .into_iter()
                .map(|s| TlsSiteView { name: s.name, service: s.service })
                .collect(),
            links,
            exits: super::exits_context::exits(config),
        }
    }
}

fn dns_view(config: &ValidConfig, domain: &str, peers: &[PeerView]) -> DnsView {
    let fqdn = |name: &str| format!("{name}.{domain}");
    let mut records = Vec::new();
    let mut reverse = Vec::new();
    let mut a = |name: String, address: Ipv4Addr, ptr: bool| {
        if ptr {
            reverse.push(ReverseView { address, fqdn: name.clone() });
        }
        records.push(RecordView { fqdn: name, kind: "A", data: address.to_string() });
    };

    let proxy = crate::config::services::get("proxy").expect("the catalog has a proxy");
    if (proxy.enabled)(config) {
        a(domain.to_string(), config.service_address(proxy), false);
        a(fqdn(WEBUI_HOST), config.service_address(proxy), false);
    }
    for s in crate::config::services::enabled(config) {
        // A web service's name points at the proxy; its own address gets no PTR then.
        a(fqdn(s.host), config.service_front_address(s), !s.via_proxy);
    }
    for app in &config.apps {
        a(fqdn(&app.manifest.site.host), config.service_address(proxy), false);
    }
    for p in peers {
        a(p.fqdn.clone(), p.address, true);
    }
    if config.services.dhcp.enabled {
        for r in &config.services.dhcp.reservations {
            a(fqdn(&r.name), r.address, true);
        }
    }
    for r in &config.services.dns.records {
        let absolute = |v: &str| {
            if v.contains('.') { format!("{v}.") } else { format!("{}.", fqdn(v)) }
        };
        let (kind, data) = match r.kind {
            RecordType::A => ("A", r.value.clone()),
            RecordType::AAAA => ("AAAA", r.value.clone()),
            RecordType::CNAME => ("CNAME", absolute(&r.value)),
            RecordType::MX => ("MX", format!("10 {}", absolute(&r.value))),
            RecordType::TXT => ("TXT", format!("\"{}\"", r.value)),
        };
        records.push(RecordView { fqdn: fqdn(&r.name), kind, data });
    }
    records.sort();
    records.dedup();
    reverse.sort();
    reverse.dedup();

    let mut allowed = vec![config.network.subnet.to_string()];
    if config.wireguard.enabled {
        allowed.push(config.wireguard.subnet.to_string());
    }
    allowed.extend(config.services.dns.allowed_networks.iter().map(|n| n.trunc().to_string()));
    // A linked cell's DNS server asks for names under this cell's domain.
    allowed.extend(config.links.iter().filter_map(|l| l.dns).map(|a| format!("{a}/32")));
    DnsView {
        upstreams: config.services.dns.upstreams.iter().map(|u| u.to_string()).collect(),
        records,
        reverse,
        allowed,
    }
}
