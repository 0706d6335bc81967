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
    /// Networks in which a source is admitted only as a device of this policy: the VPN subnet.
    pub restricted: Vec<Ipv4Net>,
    /// The devices that can connect (enabled peers while WireGuard is on), sorted by address.
    pub devices: Vec<Device<'c>>,
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
        let restricted = if wg.enabled { vec![wg.subnet.trunc()] } else { Vec::new() };
        AccessPolicy { restricted, devices }
    }

    /// Whether `device` may reach `service`.
    pub fn admits(&self, device: &Device<'_>, service: &ServiceDef) -> bool {
        service.name == WEB_UI_SERVICE || device.access.is_none_or(|names| names.iter().any(|n| n == service.name))
    }

    /// The devices admitted to `service`.
    pub fn admitted<'p>(&'p self, service: &'p ServiceDef) -> impl Iterator<Item = &'p Device<'c>> + 'p {
        self.devices.iter().filter(move |d| self.admits(d, service))
    }

    /// The addresses admitted to `service` as the fewest prefixes that cover exactly them.
    pub fn admitted_prefixes(&self, service: &ServiceDef) -> Vec<Ipv4Net> {
        let hosts: Vec<Ipv4Net> = self.admitted(service).map(|d| Ipv4Net::from(d.address)).collect();
        Ipv4Net::aggregate(&hosts)
    }

    /// What the proxy enforces for the site of `service`, or `None` when it admits everyone
    /// (the web UI, or a cell without a VPN).
    pub fn site(&self, service: &ServiceDef) -> Option<SiteAccess> {
        if service.name == WEB_UI_SERVICE || self.restricted.is_empty() {
            return None;
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
            "version": 1,
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
    fn neighbouring_devices_merge_into_one_prefix() {
        let c = config(serde_json::json!([peer(4, None), peer(5, None), peer(6, None), peer(7, None)]));
        let policy = AccessPolicy::new(&c);
        let site = policy.site(services::get("calendar").unwrap()).unwrap();
        assert_eq!(site.admitted, vec!["10.8.0.4/30".parse::<Ipv4Net>().unwrap()]);
    }
}
