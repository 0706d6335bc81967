//! Who may reach which service: the one access policy that the firewall's rules and the proxy's
//! site rules are both rendered from, so that the two layers always agree.
//!
//! A device's `access` list names the services it may reach through the VPN (no list: all of
//! them). The firewall enforces it for services with an address and port of their own; the
//! proxy enforces it per site for the services behind it, because every device must reach the
//! proxy's ports: the web UI is served there, and a device's owner manages it through the web UI.
//! Sources outside the restricted networks (the cell network, the LAN, the internet through
//! published ports) are not devices of the cell and are not limited here.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::services::ServiceDef;
use super::{Routing, ValidConfig};

/// The service whose site is the web UI: every device may reach it.
pub const WEB_UI_SERVICE: &str = "proxy";

/// The access policy of one config.
#[derive(Debug, Clone)]
pub struct AccessPolicy<'c> {
    /// Networks in which a source is admitted only as a device or a linked cell of this
    /// policy: the VPN subnet and the networks of linked cells.
    pub restricted: Vec<Ipv4Net>,
    /// The devices that can connect (enabled peers while WireGuard is on), sorted by address.
    pub devices: Vec<Device<'c>>,
    /// The linked cells, in the config's order.
    pub links: Vec<LinkAccess<'c>>,
}

/// A linked cell: its networks and the services it was granted. Deny by default: its networks
/// reach only the granted services (its DNS server ours, its mail server ours, for names and
/// mail), never the web UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkAccess<'c> {
    pub name: &'c str,
    /// Its VPN subnet and cell network.
    pub networks: [Ipv4Net; 2],
    pub grants: &'c [String],
    /// Its DNS server, which asks ours for names under this cell's domain.
    pub dns: Option<Ipv4Addr>,
    /// Its mail server, which delivers mail for this cell's domain to ours.
    pub mail: Option<Ipv4Addr>,
}

impl LinkAccess<'_> {
    pub fn grants(&self, service: &ServiceDef) -> bool {
        self.grants.iter().any(|g| g == service.name)
    }
}

/// One device that can connect, with the services it may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device<'c> {
    pub name: &'c str,
    pub address: Ipv4Addr,
    /// `None`: every service.
    pub access: Option<&'c [String]>,
    /// It routes everything through the cell, so it may reach the internet through it.
    pub full_routing: bool,
}

impl<'c> AccessPolicy<'c> {
    pub fn new(config: &'c ValidConfig) -> AccessPolicy<'c> {
        let wg = &config.wireguard;
        let mut devices: Vec<Device<'c>> = wg
            .peers
            .iter()
            .filter(|p| wg.enabled && p.enabled)
            .map(|p| Device {
                name: &p.name,
                address: p.address,
                access: p.access.as_deref(),
                full_routing: p.routing == Routing::Full,
            })
            .collect();
        devices.sort_by_key(|d| d.address);
        let links: Vec<LinkAccess<'c>> = config
            .links
            .iter()
            .filter(|_| wg.enabled)
            .map(|l| LinkAccess {
                name: &l.name,
                networks: [l.vpn_subnet.trunc(), l.cell_subnet.trunc()],
                grants: &l.grants,
                dns: l.dns,
                mail: l.mail,
            })
            .collect();
        let mut restricted = if wg.enabled { vec![wg.subnet.trunc()] } else { Vec::new() };
        restricted.extend(links.iter().flat_map(|l| l.networks));
        AccessPolicy { restricted, devices, links }
    }

    /// Whether `device` may reach `service`.
    pub fn admits(&self, device: &Device<'_>, service: &ServiceDef) -> bool {
        service.name == WEB_UI_SERVICE || device.access.is_none_or(|names| names.iter().any(|n| n == service.name))
    }

    /// The devices admitted to `service`.
    pub fn admitted<'p>(&'p self, service: &'p ServiceDef) -> impl Iterator<Item = &'p Device<'c>> + 'p {
        self.devices.iter().filter(move |d| self.admits(d, service))
    }

    /// The addresses admitted to `service` as the fewest prefixes that cover exactly them: its
    /// devices, and the networks of the linked cells granted it (never the web UI).
    pub fn admitted_prefixes(&self, service: &ServiceDef) -> Vec<Ipv4Net> {
        let mut prefixes: Vec<Ipv4Net> = self.admitted(service).map(|d| Ipv4Net::from(d.address)).collect();
        if service.name != WEB_UI_SERVICE {
            prefixes.extend(self.links.iter().filter(|l| l.grants(service)).flat_map(|l| l.networks));
        }
        Ipv4Net::aggregate(&prefixes)
    }

    /// What the proxy enforces for the site of `service`, or `None` when it admits everyone:
    /// a cell without a VPN, and the web UI unless cells are linked (whose networks it refuses:
    /// it is the cell's own people's).
    pub fn site(&self, service: &ServiceDef) -> Option<SiteAccess> {
        if self.restricted.is_empty() {
            return None;
        }
        if service.name == WEB_UI_SERVICE {
            let linked: Vec<Ipv4Net> = self.links.iter().flat_map(|l| l.networks).collect();
            return (!linked.is_empty()).then_some(SiteAccess { restricted: linked, admitted: Vec::new() });
        }
        Some(SiteAccess { restricted: self.restricted.clone(), admitted: self.admitted_prefixes(service) })
    }
}

/// A site's rule: a request from a `restricted` network is served only when it comes from one
/// of the `admitted` prefixes; every other source is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteAccess {
    pub restricted: Vec<Ipv4Net>,
    pub admitted: Vec<Ipv4Net>,
}

impl SiteAccess {
    pub fn serves(&self, source: Ipv4Addr) -> bool {
        !self.restricted.iter().any(|n| n.contains(&source)) || self.admitted.iter().any(|n| n.contains(&source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::services;

    fn config(peers: serde_json::Value) -> ValidConfig {
        let text = serde_json::json!({
            "version": 2,
            "cell": {"name": "t"},
            "network": {"subnet": "172.20.0.0/24"},
            "wireguard": {"subnet": "10.8.0.0/24", "peers": peers},
            "services": {"proxy": {"enabled": true}, "dns": {"enabled": true}, "calendar": {"enabled": true}}
        });
        crate::config::parse(&text.to_string()).unwrap()
    }

    fn peer(n: u8, access: Option<&[&str]>) -> serde_json::Value {
        let key = base64_key(n);
        let mut p = serde_json::json!({"name": format!("d{n}"), "public_key": key, "address": format!("10.8.0.{n}")});
        if let Some(access) = access {
            p["access"] = serde_json::json!(access);
        }
        p
    }

    fn base64_key(n: u8) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode([n; 32])
    }

    #[test]
    fn the_web_ui_admits_every_device_and_a_list_limits_the_rest() {
        let c = config(serde_json::json!([peer(2, None), peer(3, Some(&["dns"])), peer(4, Some(&["calendar"]))]));
        let policy = AccessPolicy::new(&c);
        let calendar = services::get("calendar").unwrap();
        assert_eq!(policy.site(services::get("proxy").unwrap()), None);
        let site = policy.site(calendar).unwrap();
        // .2 and .4 admitted: not adjacent in one prefix, so two host prefixes.
        assert_eq!(site.admitted, vec!["10.8.0.2/32".parse().unwrap(), "10.8.0.4/32".parse().unwrap()]);
        assert!(site.serves("10.8.0.2".parse().unwrap()));
        assert!(!site.serves("10.8.0.3".parse().unwrap()));
        assert!(!site.serves("10.8.0.99".parse().unwrap()), "an address no device has is refused");
        assert!(site.serves("172.20.0.1".parse().unwrap()), "the cell network is not restricted");
        assert!(site.serves("192.168.1.20".parse().unwrap()), "the LAN is not restricted");
        let proxy = services::get("proxy").unwrap();
        assert!(policy.devices.iter().all(|d| policy.admits(d, proxy)));
    }

    #[test]
    fn a_linked_cell_reaches_what_it_was_granted_and_never_the_web_ui() {
        let mut c = config(serde_json::json!([peer(2, None)])).into_inner();
        c.links.push(crate::config::Link {
            name: "parents".into(),
            domain: "parents.cell".into(),
            public_key: base64_key(9),
            signing_key: base64_key(10),
            endpoint: None,
            tunnel_address: "10.9.0.1".parse().unwrap(),
            vpn_subnet: "10.9.0.0/24".parse().unwrap(),
            cell_subnet: "172.21.0.0/24".parse().unwrap(),
            dns: None,
            mail: None,
            grants: vec!["calendar".into()],
        });
        let c = crate::config::validate(c).unwrap();
        let policy = AccessPolicy::new(&c);
        let calendar = policy.site(services::get("calendar").unwrap()).unwrap();
        assert!(calendar.serves("10.9.0.7".parse().unwrap()), "a device of the linked cell");
        assert!(calendar.serves("172.21.0.3".parse().unwrap()), "a service of the linked cell");
        assert!(calendar.serves("10.8.0.2".parse().unwrap()), "our own device");
        let dns = policy.site(services::get("dns").unwrap()).unwrap();
        assert!(!dns.serves("10.9.0.7".parse().unwrap()), "not granted");
        let web_ui = policy.site(services::get(WEB_UI_SERVICE).unwrap()).unwrap();
        assert!(!web_ui.serves("10.9.0.7".parse().unwrap()) && !web_ui.serves("172.21.0.3".parse().unwrap()));
        assert!(web_ui.serves("10.8.0.2".parse().unwrap()) && web_ui.serves("192.168.1.20".parse().unwrap()));
    }

    #[test]
    fn neighbouring_devices_merge_into_one_prefix() {
        let c = config(serde_json::json!([peer(4, None), peer(5, None), peer(6, None), peer(7, None)]));
        let policy = AccessPolicy::new(&c);
        let site = policy.site(services::get("calendar").unwrap()).unwrap();
        assert_eq!(site.admitted, vec!["10.8.0.4/30".parse::<Ipv4Net>().unwrap()]);
    }
}
