//! The service catalog: what each service is called, where it lives on the cell network, which
//! host ports it publishes and whether the config enables it.
//!
//! Adding a service is a template folder `templates/<name>/` plus one entry in [`CATALOG`].

use crate::config::CellConfig;

/// One service of the cell.
pub struct ServiceDef {
    /// Name of the service; also its template folder and its store path suffix.
    pub name: &'static str,
    /// Host number of its default address in the cell subnet (the gateway is 1).
    pub offset: u32,
    /// Its name under the cell domain.
    pub host: &'static str,
    /// Web services are reached through the reverse proxy, so their name resolves to the proxy.
    pub via_proxy: bool,
    pub enabled: fn(&CellConfig) -> bool,
    /// Ports it publishes on the host, with the config field that sets each one.
    pub ports: fn(&CellConfig) -> Vec<PublishedPort>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// A host port a service publishes, and the config field it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    pub protocol: Protocol,
    pub port: u16,
    pub field: &'static str,
}

const fn port(protocol: Protocol, port: u16, field: &'static str) -> PublishedPort {
    PublishedPort {
        protocol,
        port,
        field,
    }
}

/// Every service, in the order of their default addresses.
pub static CATALOG: &[ServiceDef] = &[
    ServiceDef {
        name: "proxy",
        offset: 2,
        host: "proxy",
        via_proxy: false,
        enabled: |c| c.services.proxy.enabled,
        ports: |c| {
            let p = &c.services.proxy;
            vec![
                port(Protocol::Tcp, p.http_port, "services.proxy.http_port"),
                port(Protocol::Tcp, p.https_port, "services.proxy.https_port"),
            ]
        },
    },
    ServiceDef {
        name: "dns",
        offset: 3,
        host: "dns",
        via_proxy: false,
        enabled: |c| c.services.dns.enabled,
        ports: |_| {
            vec![
                port(Protocol::Udp, 53, "services.dns"),
                port(Protocol::Tcp, 53, "services.dns"),
            ]
        },
    },
    ServiceDef {
        name: "dhcp",
        offset: 4,
        host: "dhcp",
        via_proxy: false,
        enabled: |c| c.services.dhcp.enabled,
        ports: |_| vec![port(Protocol::Udp, 67, "services.dhcp")],
    },
    ServiceDef {
        name: "ntp",
        offset: 5,
        host: "ntp",
        via_proxy: false,
        enabled: |c| c.services.ntp.enabled,
        ports: |_| vec![port(Protocol::Udp, 123, "services.ntp")],
    },
    ServiceDef {
        name: "wireguard",
        offset: 6,
        host: "vpn",
        via_proxy: false,
        enabled: |c| c.wireguard.enabled,
        ports: |c| {
            vec![port(
                Protocol::Udp,
                c.wireguard.listen_port,
                "wireguard.listen_port",
            )]
        },
    },
    ServiceDef {
        name: "mail",
        offset: 7,
        host: "mail",
        via_proxy: false,
        enabled: |c| c.services.mail.enabled,
        ports: |_| {
            vec![
                port(Protocol::Tcp, 25, "services.mail"),
                port(Protocol::Tcp, 587, "services.mail"),
                port(Protocol::Tcp, 993, "services.mail"),
            ]
        },
    },
    ServiceDef {
        name: "calendar",
        offset: 8,
        host: "calendar",
        via_proxy: true,
        enabled: |c| c.services.calendar.enabled,
        ports: |_| Vec::new(),
    },
    ServiceDef {
        name: "files",
        offset: 9,
        host: "files",
        via_proxy: true,
        enabled: |c| c.services.files.enabled,
        ports: |_| Vec::new(),
    },
    ServiceDef {
        name: "webmail",
        offset: 10,
        host: "webmail",
        via_proxy: true,
        enabled: |c| c.services.webmail.enabled,
        ports: |_| Vec::new(),
    },
];

/// Name of the web UI and API under the cell domain; served by `pic serve` through the proxy.
pub const WEBUI_HOST: &str = "pic";

/// Looks a service up by name.
pub fn get(name: &str) -> Option<&'static ServiceDef> {
    CATALOG.iter().find(|s| s.name == name)
}

/// The enabled services, in catalog order.
pub fn enabled(config: &CellConfig) -> impl Iterator<Item = &'static ServiceDef> + '_ {
    CATALOG.iter().filter(move |s| (s.enabled)(config))
}

/// A certificate the cell needs: its name (the folder under `secrets/tls/`) and further names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSite {
    pub name: String,
    pub also: Vec<String>,
}

/// The certificates the cell CA must provide for a config: every site the proxy serves in local
/// domain mode (in the other modes Caddy gets them from ACME), and mail's in every mode.
pub fn tls_sites(config: &CellConfig) -> Vec<TlsSite> {
    let domain = config.domain();
    let fqdn = |host: &str| format!("{host}.{domain}");
    let mut sites = Vec::new();
    let local = matches!(config.cell.domain, crate::config::Domain::Local);
    if local && config.services.proxy.enabled {
        sites.push(TlsSite {
            name: fqdn(WEBUI_HOST),
            also: vec![domain.clone()],
        });
        for s in enabled(config).filter(|s| s.via_proxy) {
            sites.push(TlsSite {
                name: fqdn(s.host),
                also: Vec::new(),
            });
        }
    }
    if config.services.mail.enabled {
        sites.push(TlsSite {
            name: fqdn("mail"),
            also: Vec::new(),
        });
    }
    sites
}
