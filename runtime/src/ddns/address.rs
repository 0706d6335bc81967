//! The cell's public address: asked of "what is my address" services (plain-text answers), or
//! read from one of the host's interfaces. Only public addresses count: a private, loopback or
//! link-local one (a service behind the same NAT, a misconfigured interface) is never published.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Result, bail};
use pic_builder::config::AddressSource;

use super::{Addresses, Http};

/// The public IPv4 address, and the IPv6 one when asked for.
pub async fn find(source: &AddressSource, ipv6: bool, http: &Http) -> Result<Addresses> {
    match source {
        AddressSource::Web { urls, urls_v6 } => {
            let ipv4 = ask(&http.v4, urls, "IPv4").await?;
            let ipv6 = if ipv6 { Some(ask(&http.v6, urls_v6, "IPv6").await?) } else { None };
            Ok(Addresses {
                ipv4: Some(match ipv4 {
                    IpAddr::V4(a) => a,
                    IpAddr::V6(a) => bail!("asked for the IPv4 address, got {a}"),
                }),
                ipv6: match ipv6 {
                    Some(IpAddr::V6(a)) => Some(a),
                    Some(IpAddr::V4(a)) => bail!("asked for the IPv6 address, got {a}"),
                    None => None,
                },
            })
        }
        AddressSource::Interface { name } => from_interface(name, ipv6),
    }
}

/// The first service that answers with a public address of the family.
async fn ask(client: &reqwest::Client, urls: &[String], family: &str) -> Result<IpAddr> {
    let mut tried = Vec::new();
    for url in urls {
        let answer = match client.get(url).send().await.and_then(reqwest::Response::error_for_status) {
            Ok(response) => response.text().await.map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match answer.map(|text| text.trim().parse::<IpAddr>()) {
            Ok(Ok(address)) if is_public(address) => return Ok(address),
            Ok(Ok(address)) => tried.push(format!("{url}: {address} is not a public address")),
            Ok(Err(_)) => tried.push(format!("{url}: the answer is not an address")),
            Err(error) => tried.push(format!("{url}: {error}")),
        }
    }
    bail!("no service told the public {family} address ({})", tried.join("; "))
}

fn from_interface(name: &str, ipv6: bool) -> Result<Addresses> {
    let mut found = Addresses::default();
    for entry in nix::ifaddrs::getifaddrs()?.filter(|e| e.interface_name == name) {
        let Some(address) = entry.address else { continue };
        if let Some(v4) = address.as_sockaddr_in().map(|a| a.ip()).filter(|a| is_public((*a).into())) {
            found.ipv4.get_or_insert(v4);
        }
        if let Some(v6) = address.as_sockaddr_in6().map(|a| a.ip()).filter(|a| is_public((*a).into())) {
            found.ipv6.get_or_insert(v6);
        }
    }
    if found.ipv4.is_none() {
        bail!("the interface {name} has no public IPv4 address");
    }
    if ipv6 && found.ipv6.is_none() {
        bail!("the interface {name} has no public IPv6 address");
    }
    if !ipv6 {
        found.ipv6 = None;
    }
    Ok(found)
}

/// Whether others can reach the cell at `address`: not private, shared (CGNAT), loopback,
/// link-local, unspecified, multicast or broadcast; for IPv6 a global unicast address.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(a) => {
            let shared = ipnet::Ipv4Net::new(Ipv4Addr::new(100, 64, 0, 0), 10).is_ok_and(|n| n.contains(&a));
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_broadcast()
                || shared)
        }
        IpAddr::V6(a) => (a.segments()[0] & 0xe000) == 0x2000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_count() {
        for public in ["203.0.113.7", "8.8.8.8", "2a01:4f8::1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        for private in [
            "10.0.0.1",
            "192.168.1.2",
            "172.16.0.1",
            "100.64.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "fe80::1",
            "::1",
            "fd00::1",
            "ff02::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
    }
}
