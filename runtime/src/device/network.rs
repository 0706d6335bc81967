//! The device's address on its network: the IPv4 addresses of its network cards (interfaces
//! backed by a device, so not Docker's bridges, WireGuard or veth pairs) and of any interface
//! that holds a default route; and the web UI's certificate for them.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use nix::net::if_::InterfaceFlags;

/// The addresses other machines can open the cell at, sorted.
pub fn lan_addresses() -> Vec<Ipv4Addr> {
    let routed = default_route_interfaces();
    let Ok(addresses) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    let mut found = BTreeSet::new();
    for entry in addresses {
        let up = entry.flags.contains(InterfaceFlags::IFF_UP | InterfaceFlags::IFF_RUNNING);
        if !up || entry.flags.contains(InterfaceFlags::IFF_LOOPBACK) {
            continue;
        }
        let card = std::path::Path::new("/sys/class/net").join(&entry.interface_name).join("device").exists();
        if !card && !routed.contains(&entry.interface_name) {
            continue;
        }
        if let Some(address) = entry.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
            found.insert(address.ip());
        }
    }
    found.into_iter().collect()
}

/// Keeps the cell CA's certificate of the web UI at the LAN addresses naming the addresses the
/// device has now (a new DHCP lease, another network); true when it was issued anew. Nothing
/// before setup, when there is no CA yet.
pub fn ensure_lan_certificate(state: &pic_builder::State) -> Result<bool, pic_builder::Error> {
    let ca = state.ca();
    if !ca.cert_path().exists() {
        return Ok(false);
    }
    let addresses: Vec<std::net::IpAddr> = lan_addresses().into_iter().map(std::net::IpAddr::V4).collect();
    ca.ensure_address_leaf(pic_builder::config::services::LAN_SITE, &addresses)
}

/// The interfaces that hold an IPv4 default route (`/proc/net/route`, destination 0).
fn default_route_interfaces() -> BTreeSet<String> {
    let table = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let interface = fields.next()?;
            (fields.next()? == "00000000").then(|| interface.to_owned())
        })
        .collect()
}

/// Seconds since the machine booted (CLOCK_BOOTTIME): how long a missing address has been missing.
pub fn uptime() -> std::time::Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).map(std::time::Duration::from).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_machine_has_an_address_on_its_network() {
        // The test machines reach their package mirrors, so they have a default route.
        let addresses = super::lan_addresses();
        assert!(
            !addresses.is_empty(),
            "no LAN address found; /proc/net/route: {}",
            std::fs::read_to_string("/proc/net/route").unwrap_or_default()
        );
        assert!(addresses.iter().all(|a| !a.is_loopback()), "{addresses:?}");
    }
}
