//! Values that follow from the config without being written in it: the cell domain, the
//! gateway, default service addresses, the WireGuard server address.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::model::{CellConfig, Domain, Exit, Peer, Routing};
use super::services::{self, ServiceDef};

/// The n-th address of a subnet, if the subnet has that many.
pub fn nth_host(net: &Ipv4Net, n: u32) -> Option<Ipv4Addr> {
    let size = 1u64 << (32 - u32::from(net.prefix_len()));
    (u64::from(n) < size).then(|| Ipv4Addr::from(u32::from(net.network()) + n))
}

/// True for the network and broadcast addresses of a subnet with room for hosts.
pub fn is_reserved(net: &Ipv4Net, addr: Ipv4Addr) -> bool {
    net.prefix_len() < 31 && (addr == net.network() || addr == net.broadcast())
}

impl CellConfig {
    /// The exit a device's internet traffic leaves through: its own, else its user's; none
    /// for a device that sends only the cell's networks through the tunnel.
    pub fn exit_of(&self, peer: &Peer) -> Option<&Exit> {
        if peer.routing != Routing::Full {
            return None;
        }
        let user_exit = || self.users.iter().find(|u| Some(&u.name) == peer.user.as_ref())?.exit.as_ref();
        let name = peer.exit.as_ref().or_else(user_exit)?;
        self.connectivity.exits.iter().find(|e| &e.name == name)
    }

    /// The DNS domain the cell's names live under (without a trailing dot).
    pub fn domain(&self) -> String {
        match &self.cell.domain {
            Domain::Local => format!("{}.cell", self.cell.name),
            Domain::Public { name, .. } | Domain::Ddns { name, .. } => name.clone(),
        }
    }

    /// The host's address on the cell network (the bridge gateway); `pic serve` listens here.
    pub fn gateway(&self) -> Ipv4Addr {
        nth_host(&self.network.subnet, 1).unwrap_or(self.network.subnet.network())
    }

    /// A service's address on the cell network: the override if there is one, else its default;
    /// a service of the host itself is at the gateway.
    pub fn service_address(&self, service: &ServiceDef) -> Ipv4Addr {
        let Some(offset) = service.offset else { return self.gateway() };
        self.network
            .addresses
            .get(service.name)
            .copied()
            .or_else(|| nth_host(&self.network.subnet, offset))
            .unwrap_or(self.network.subnet.network())
    }

    /// The address clients use for a service: web services are reached through the proxy.
    pub fn service_front_address(&self, service: &ServiceDef) -> Ipv4Addr {
        match services::get("proxy") {
            Some(proxy) if service.via_proxy => self.service_address(proxy),
            _ => self.service_address(service),
        }
    }

    /// The WireGuard server's address in the VPN subnet.
    pub fn wireguard_address(&self) -> Ipv4Addr {
        self.wireguard
            .address
            .or_else(|| nth_host(&self.wireguard.subnet, 1))
            .unwrap_or(self.wireguard.subnet.network())
    }
}
