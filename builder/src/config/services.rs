//! The service catalog: what each service is called, where it lives on the cell network, which
//! host ports it publishes and whether the config enables it.
//!
//! Adding a service is a template folder `templates/<name>/` plus one entry in [`CATALOG`].

use super::CellConfig;

/// One service of the cell.
pub struct ServiceDef {
    /// Name of the service; also its template folder and its store path suffix.
    pub name: &'static str,
    /// Host number of its default address in the cell subnet (the gateway is 1); `None` for a
    /// service of the host itself (kernel WireGuard, the firewall), whose address is the gateway.
    pub offset: Option<u32>,
    /// Its name under the cell domain.
    pub host: &'static str,
    /// Web services are reached through the reverse proxy, so their name resolves to the proxy.
    pub via_proxy: bool,
    pub enabled: fn(&CellConfig) -> bool,
    /// Ports it listens on inside its container.
    pub listens: &'static [(Protocol, u16)],
    /// Ports it publishes on the host, with the container port and the config field of each.
    pub ports: fn(&CellConfig) -> Vec<PublishedPort>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Tcp => "tcp",
            Udp => "udp",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A host port a service publishes, the container port behind it, and the config field that sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    pub protocol: Protocol,
    pub port: u16,
    pub container_port: u16,
    pub field: &'static str,
}

/// A port published on the same number as inside the container.
const fn port(protocol: Protocol, port: u16, field: &'static str) -> PublishedPort {
    PublishedPort { protocol, port, container_port: port, field }
}

use Protocol::{Tcp, Udp};

/// Every service, in the order of their default addresses.
pub static CATALOG: &[ServiceDef] = &[
    ServiceDef {
        name: "proxy",
        offset: Some(2),
        host: "proxy",
        via_proxy: false,
        enabled: |c| c.services.proxy.enabled,
        listens: &[(Tcp, 80), (Tcp, 443)],
        ports: |c| {
            let p = &c.services.proxy;
            vec![
                PublishedPort {
                    protocol: Tcp,
                    port: p.http_port,
                    container_port: 80,
                    field: "services.proxy.http_port",
                },
                PublishedPort {
                    protocol: Tcp,
                    port: p.https_port,
                    container_port: 443,
                    field: "services.proxy.https_port",
                },
            ]
        },
    },
    ServiceDef {
        name: "dns",
        offset: Some(3),
        host: "dns",
        via_proxy: false,
        enabled: |c| c.services.dns.enabled,
        listens: &[(Udp, 53), (Tcp, 53)],
        ports: |_| vec![port(Udp, 53, "services.dns"), port(Tcp, 53, "services.dns")],
    },
    ServiceDef {
        name: "dhcp",
        offset: Some(4),
        host: "dhcp",
        via_proxy: false,
        enabled: |c| c.services.dhcp.enabled,
        listens: &[(Udp, 67)],
        ports: |_| vec![port(Udp, 67, "services.dhcp")],
    },
    ServiceDef {
        name: "ntp",
        offset: Some(5),
        host: "ntp",
        via_proxy: false,
        enabled: |c| c.services.ntp.enabled,
        listens: &[(Udp, 123)],
        ports: |_| vec![port(Udp, 123, "services.ntp")],
    },
    ServiceDef {
        name: "wireguard",
        offset: None,
        host: "vpn",
        via_proxy: false,
        enabled: |c| c.wireguard.enabled,
        listens: &[],
        ports: |c| vec![port(Udp, c.wireguard.listen_port, "wireguard.listen_port")],
    },
    ServiceDef {
        name: "mail",
        offset: Some(7),
        host: "mail",
        via_proxy: false,
        enabled: |c| c.services.mail.enabled,
        listens: &[(Tcp, 25), (Tcp, 587), (Tcp, 993)],
        ports: |_| {
            vec![port(Tcp, 25, "services.mail"), port(Tcp, 587, "services.mail"), port(Tcp, 993, "services.mail")]
        },
    },
    ServiceDef {
        name: "calendar",
        offset: Some(8),
        host: "calendar",
        via_proxy: true,
        enabled: |c| c.services.calendar.enabled,
        listens: &[(Tcp, 5232)],
        ports: |_| Vec::new(),
    },
    ServiceDef {
        name: "files",
        offset: Some(9),
        host: "files",
        via_proxy: true,
        enabled: |c| c.services.files.enabled,
        listens: &[(Tcp, 8080)],
        ports: |_| Vec::new(),
    },
    ServiceDef {
        name: "webmail",
        offset: Some(10),
        host: "webmail",
        via_proxy: true,
        enabled: |c| c.services.webmail.enabled,
        listens: &[(Tcp, 8080)],
        ports: |_| Vec::new(),
    },
    ServiceDef {
        name: "firewall",
        offset: None,
        host: "firewall",
        via_proxy: false,
        // The ruleset also publishes the services' ports on the appliance: it is always there;
        // `services.firewall.enabled` says whether it filters.
        enabled: |_| true,
        listens: &[],
        ports: |_| Vec::new(),
    },
];

/// Name of the web UI and API under the cell domain; served by `pic serve` through the proxy.
pub const WEBUI_HOST: &str = "pic";
/// The certificate of the web UI at the device's LAN addresses: no host name has no dot in it,
/// so the folder cannot be any site's.
pub const LAN_SITE: &str = "lan";

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
    /// The service that serves the name.
    pub service: &'static str,
}

/// The certificates Caddy and mail read as files: every site the proxy serves unless Caddy gets
/// its own from the ACME CA (HTTP-01), the web UI's at the LAN addresses (always the cell CA's:
/// no public CA certifies a private address), and mail's in every mode. The cell CA keeps one for each;
/// where `pic serve` has a public certificate that covers the name, the services get that one.
pub fn tls_sites(config: &CellConfig) -> Vec<TlsSite> {
    let domain = config.domain();
    let fqdn = |host: &str| format!("{host}.{domain}");
    let mut sites = Vec::new();
    match config.cell.domain.certificates() {
        super::Certificates::CellCa if config.services.proxy.enabled => {
            sites.push(TlsSite { name: fqdn(WEBUI_HOST), also: vec![domain.clone()], service: "proxy" });
            for s in enabled(config).filter(|s| s.via_proxy) {
                sites.push(TlsSite { name: fqdn(s.host), also: Vec::new(), service: "proxy" });
            }
            for app in &config.apps {
                sites.push(TlsSite { name: fqdn(&app.manifest.site.host), also: Vec::new(), service: "proxy" });
            }
        }
        // One certificate for the name and every name under it, as `pic serve` gets it.
        super::Certificates::Pic if config.services.proxy.enabled => {
            sites.push(TlsSite { name: domain.clone(), also: vec![format!("*.{domain}")], service: "proxy" });
        }
        _ => {}
    }
    if config.services.proxy.enabled {
        sites.push(TlsSite { name: LAN_SITE.to_string(), also: Vec::new(), service: "proxy" });
    }
    if config.services.mail.enabled {
        sites.push(TlsSite { name: fqdn("mail"), also: Vec::new(), service: "mail" });
    }
    sites
}
