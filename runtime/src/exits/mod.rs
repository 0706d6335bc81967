//! Exits on the host: each exit's tunnel (a WireGuard interface `x-<name>` through
//! wireguard-control), its routing table (the exit as default route, an unreachable default
//! under it so that a missing exit drops rather than leaks) and the `ip rule`s that send its
//! devices' marked packets there. The firewall marks the packets and holds the kill switch's
//! other half; `names` answers the exits' devices' DNS queries.

pub mod manage;
pub mod names;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use anyhow::{Context, Result, anyhow};
use pic_builder::exits::ExitSecrets;
use pic_builder::render::EXIT_INTERFACE_PREFIX;
use pic_builder::{State, command};
use serde::{Deserialize, Serialize};
use wireguard_control::{Backend, Device, DeviceUpdate, InterfaceName, Key, PeerConfigBuilder};

/// `ip rule` preferences: main's specific routes before any exit (an exit's devices reach the
/// cell's and linked networks locally), then each exit's mark, then its own traffic (the names
/// forwarder's sockets bound to the exit's interface).
const PREF_LOCAL_FIRST: &str = "5200";
const PREF_MARK: &str = "5210";
const PREF_BOUND: &str = "5220";

/// The tunnel's keepalive: a provider's NAT keeps the mapping, and a dead server shows as an
/// old handshake.
const KEEPALIVE: u16 = 25;

/// An exit as the current generation's `wireguard/interface.json` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct DesiredExit {
    pub name: String,
    pub interface: String,
    pub mark: u32,
    pub dns_port: u16,
    pub dns: Ipv4Addr,
    #[serde(default)]
    pub wireguard: Option<DesiredWireGuard>,
    /// An exit run by a container on the cell network (OpenVPN, Tor): its table's next hop.
    #[serde(default)]
    pub via: Option<Ipv4Addr>,
    #[serde(default)]
    pub devices: Vec<Ipv4Addr>,
    /// `wireguard`, `openvpn` or `tor`.
    #[serde(default)]
    pub kind: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DesiredWireGuard {
    pub address: ipnet::Ipv4Net,
    pub public_key: String,
    pub endpoint: String,
    pub mtu: u16,
}

#[derive(Debug, Deserialize)]
struct Desired {
    #[serde(default)]
    exits: Vec<DesiredExit>,
}

/// The exits of the current generation (none before the first).
pub fn desired(state: &State) -> Result<Vec<DesiredExit>> {
    let Some(text) = crate::wireguard::interface_json(state)? else { return Ok(Vec::new()) };
    let desired: Desired = serde_json::from_slice(&text).context("reading interface.json's exits")?;
    Ok(desired.exits)
}

/// What one `apply` did.
#[derive(Debug, Default, Serialize)]
pub struct ApplyReport {
    /// Exits whose tunnel was (re)configured.
    pub configured: Vec<String>,
    /// Exits that could not be brought up (their devices' internet traffic is dropped).
    pub failed: Vec<String>,
    /// Interfaces of exits no longer in the config, removed.
    pub removed: Vec<String>,
}

/// The host's exits, kept in step with the current generation.
pub struct Exits {
    backend: Backend,
    /// Whether the host may hold exits' interfaces or rules: true until an apply found none to
    /// keep, so that the first activation cleans up after an earlier run.
    active: std::sync::atomic::AtomicBool,
    /// The last look at each exit run by a container (the host sees no handshake of its
    /// tunnel): whether its provider's DNS answered through it, or why not, and its traffic.
    tested: std::sync::Mutex<std::collections::BTreeMap<String, ContainerExit>>,
}

/// What the last look at an exit's container found.
#[derive(Debug, Clone, Default)]
pub struct ContainerExit {
    pub answered: Option<Result<(), String>>,
    /// Bytes received and sent by its tunnel (OpenVPN's `tun0`) or by the container (Tor).
    pub traffic: Option<(u64, u64)>,
}

/// The interface whose counters are an exit container's traffic.
pub fn counted_interface(exit: &DesiredExit) -> &'static str {
    if exit.kind == "openvpn" { "tun0" } else { "eth0" }
}

impl Exits {
    pub fn new(backend: Backend) -> Exits {
        Exits { backend, active: std::sync::atomic::AtomicBool::new(true), tested: Default::default() }
    }

    /// The exits as this machine runs them, for a command beside `pic serve`: through
    /// wireguard-go when its control sockets are there, else the kernel's module.
    pub fn here() -> Exits {
        let userspace = std::fs::read_dir("/var/run/wireguard").is_ok_and(|entries| {
            entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with(EXIT_INTERFACE_PREFIX))
        });
        Exits::new(if userspace { Backend::Userspace } else { Backend::Kernel })
    }

    /// Whether an activation has anything to do here: exits are wanted, or some may be left.
    pub fn wanted(&self, state: &State) -> bool {
        self.active.load(std::sync::atomic::Ordering::SeqCst) || desired(state).is_ok_and(|e| !e.is_empty())
    }

    /// Brings every exit in line with the current generation: tunnels, tables and rules. An
    /// exit that fails is reported and left down; the others are still applied.
    pub fn apply(&self, state: &State) -> Result<ApplyReport> {
        let exits = desired(state)?;
        let mut report = ApplyReport::default();
        let secrets = ExitSecrets::new(state.secrets().dir());
        for exit in &exits {
            // The table first: with no tunnel yet, its devices meet the unreachable default.
            table(exit)?;
            match self.tunnel(exit, &secrets) {
                Ok(true) => report.configured.push(exit.name.clone()),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(exit = %exit.name, error = %format!("{error:#}"), "exit not brought up");
                    report.failed.push(exit.name.clone());
                }
            }
            // The default route goes with the interface; put it back when the interface is
            // back (made again here, or up again).
            if exit.wireguard.is_some() && interface_exists(&exit.interface) {
                command::run(
                    "ip",
                    &["route", "replace", "default", "dev", &exit.interface, "table", &exit.mark.to_string()],
                )?;
            }
            // A container's exit: its address is the next hop (once the cell network is up).
            if let Some(via) = exit.via {
                let via = via.to_string();
                match command::run("ip", &["route", "replace", "default", "via", &via, "table", &exit.mark.to_string()])
                {
                    Ok(_) => report.configured.push(exit.name.clone()),
                    Err(error) => {
                        tracing::warn!(exit = %exit.name, %error, "exit route not set (the cell network is not up yet)");
                        report.failed.push(exit.name.clone());
                    }
                }
            }
        }
        rules(&exits)?;
        report.removed = remove_others(&exits)?;
        self.active.store(!exits.is_empty(), std::sync::atomic::Ordering::SeqCst);
        tracing::info!(configured = ?report.configured, failed = ?report.failed, removed = ?report.removed, "exits applied");
        Ok(report)
    }

    /// Makes or updates the exit's tunnel; whether anything changed.
    fn tunnel(&self, exit: &DesiredExit, secrets: &ExitSecrets) -> Result<bool> {
        let Some(wg) = &exit.wireguard else { return Ok(false) };
        let name = InterfaceName::from_str_checked(&exit.interface)?;
        let private = key_from(&secrets.private_key_path(&exit.name)?)
            .with_context(|| format!("exit {}'s private key (`pic exit add` keeps it)", exit.name))?;
        let preshared = match secrets.preshared_key_path(&exit.name) {
            Ok(path) if path.exists() => Some(key_from(&path)?),
            _ => None,
        };
        let server = Key::from_base64(&wg.public_key).map_err(|_| anyhow!("exit {}: bad public key", exit.name))?;
        let endpoint =
            resolve(&wg.endpoint).with_context(|| format!("exit {}'s endpoint {}", exit.name, wg.endpoint))?;
        let existing = Device::get(&name, self.backend).ok();
        let same = existing.as_ref().is_some_and(|d| {
            d.private_key.as_ref() == Some(&private)
                && d.peers.len() == 1
                && d.peers[0].config.public_key == server
                && d.peers[0].config.endpoint == Some(endpoint)
                && d.peers[0].config.preshared_key == preshared
        });
        if !same {
            let mut peer = PeerConfigBuilder::new(&server)
                .replace_allowed_ips()
                .add_allowed_ip(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
                .set_endpoint(endpoint)
                .set_persistent_keepalive_interval(KEEPALIVE);
            if let Some(psk) = preshared {
                peer = peer.set_preshared_key(psk);
            }
            DeviceUpdate::new()
                .set_private_key(private)
                .replace_peers()
                .add_peer(peer)
                .apply(&name, self.backend)
                .with_context(|| format!("configuring {}", exit.interface))?;
        }
        let interface = exit.interface.as_str();
        command::run("ip", &["address", "replace", &wg.address.to_string(), "dev", interface])?;
        command::run("ip", &["link", "set", interface, "mtu", &wg.mtu.to_string(), "up"])?;
        // Answers from the internet come in through the exit, whose address is no route back
        // to them in the main table: strict reverse-path filtering would drop them.
        let rp_filter = format!("/proc/sys/net/ipv4/conf/{interface}/rp_filter");
        std::fs::write(&rp_filter, "2").with_context(|| format!("writing {rp_filter}"))?;
        Ok(!same)
    }
}

trait CheckedName {
    fn from_str_checked(name: &str) -> Result<InterfaceName>;
}

impl CheckedName for InterfaceName {
    fn from_str_checked(name: &str) -> Result<InterfaceName> {
        name.parse().map_err(|e| anyhow!("interface name {name:?}: {e}"))
    }
}

fn key_from(path: &std::path::Path) -> Result<Key> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Key::from_base64(text.trim()).map_err(|_| anyhow!("{} does not hold a WireGuard key", path.display()))
}

fn resolve(endpoint: &str) -> Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    endpoint.to_socket_addrs()?.find(|a| a.is_ipv4()).ok_or_else(|| anyhow!("no IPv4 address"))
}

/// Whether the exit's table has its default route to the exit (the unreachable one aside).
fn routed(table: u32) -> bool {
    command::run("ip", &["-4", "route", "show", "table", &table.to_string(), "default"])
        .is_ok_and(|shown| shown.lines().any(|l| l.starts_with("default ")))
}

fn interface_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// The exit's routing table: the unreachable default always, under the exit's own.
fn table(exit: &DesiredExit) -> Result<()> {
    let table = exit.mark.to_string();
    command::run("ip", &["route", "replace", "unreachable", "default", "metric", "4294967295", "table", &table])?;
    Ok(())
}

/// One rule as `ip -j rule show` lists it.
#[derive(Debug, Deserialize)]
struct Rule {
    priority: u32,
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    fwmark: Option<String>,
    #[serde(default)]
    oif: Option<String>,
}

/// What identifies a rule of ours: its preference and what it selects.
type RuleKey = (String, String);

/// The rules that send the exits' traffic to their tables, and only those: stale ones go, and
/// with the last exit the rule that puts main's specific routes first.
fn rules(exits: &[DesiredExit]) -> Result<()> {
    let mut wanted: BTreeSet<RuleKey> = BTreeSet::new();
    if !exits.is_empty() {
        wanted.insert((PREF_LOCAL_FIRST.into(), "main".into()));
    }
    for exit in exits {
        wanted.insert((PREF_MARK.into(), exit.mark.to_string()));
        if exit.wireguard.is_some() {
            wanted.insert((PREF_BOUND.into(), exit.mark.to_string()));
        }
    }
    let listed = command::run("ip", &["-j", "-4", "rule", "show"])?;
    let rules: Vec<Rule> = serde_json::from_str(&listed).context("reading `ip -j rule show`")?;
    let ours = [PREF_LOCAL_FIRST, PREF_MARK, PREF_BOUND];
    let mut present: BTreeSet<RuleKey> = BTreeSet::new();
    for rule in rules.iter().filter(|r| ours.contains(&r.priority.to_string().as_str())) {
        let key = (rule.priority.to_string(), rule.table.clone().unwrap_or_default());
        let consistent = match key.0.as_str() {
            PREF_MARK => rule.fwmark.as_deref().and_then(parse_number) == key.1.parse().ok(),
            PREF_BOUND => {
                exits.iter().any(|e| e.mark.to_string() == key.1 && rule.oif.as_deref() == Some(&e.interface))
            }
            _ => true,
        };
        if wanted.contains(&key) && consistent && !present.contains(&key) {
            present.insert(key);
            continue;
        }
        let table = key.1.clone();
        command::run("ip", &["rule", "del", "pref", &key.0, "table", &table])?;
        if key.0 == PREF_MARK && table.parse::<u32>().is_ok() && !exits.iter().any(|e| e.mark.to_string() == table) {
            command::run("ip", &["route", "flush", "table", &table])?;
        }
    }
    for key in wanted.difference(&present) {
        match key.0.as_str() {
            PREF_LOCAL_FIRST => {
                command::run(
                    "ip",
                    &["rule", "add", "pref", PREF_LOCAL_FIRST, "table", "main", "suppress_prefixlength", "0"],
                )?;
            }
            PREF_MARK => {
                command::run("ip", &["rule", "add", "pref", PREF_MARK, "fwmark", &key.1, "table", &key.1])?;
            }
            _ => {
                let exit = exits.iter().find(|e| e.mark.to_string() == key.1).expect("a wanted rule is an exit's");
                command::run("ip", &["rule", "add", "pref", PREF_BOUND, "oif", &exit.interface, "table", &key.1])?;
            }
        }
    }
    Ok(())
}

/// `0xcb20` or `52000`.
fn parse_number(text: &str) -> Option<u32> {
    match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Removes the interfaces of exits no longer in the config.
fn remove_others(exits: &[DesiredExit]) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else { return Ok(removed) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(EXIT_INTERFACE_PREFIX) && !exits.iter().any(|e| e.interface == name) {
            command::run("ip", &["link", "del", &name])?;
            removed.push(name);
        }
    }
    Ok(removed)
}

/// An exit's state, for `GET /api/exits` and `pic exit list`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExitStatus {
    pub name: String,
    /// The tunnel had a handshake within the last 3 minutes.
    pub up: bool,
    /// Why it is down, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// RFC 3339.
    pub last_handshake: Option<String>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// The devices sent through it.
    #[schema(value_type = Vec<String>)]
    pub devices: Vec<Ipv4Addr>,
}

/// A handshake older than this means the tunnel is down (WireGuard rekeys every 2 minutes).
const HANDSHAKE_STALE: std::time::Duration = std::time::Duration::from_secs(180);

impl Exits {
    /// Records what a look at an exit's container found (see [`Exits::status`]).
    pub fn record(&self, name: &str, seen: ContainerExit) {
        self.tested.lock().expect("the tests' lock").insert(name.to_owned(), seen);
    }

    /// Each exit of the current generation, as the host runs it.
    pub fn status(&self, state: &State) -> Result<Vec<ExitStatus>> {
        let now = jiff::Timestamp::now();
        let tested = self.tested.lock().expect("the tests' lock").clone();
        Ok(desired(state)?
            .into_iter()
            .map(|exit| {
                if exit.via.is_some() {
                    let seen = tested.get(&exit.name).cloned().unwrap_or_default();
                    let result = seen.answered.unwrap_or(Err("not tested yet".into()));
                    let (rx_bytes, tx_bytes) = seen.traffic.unwrap_or_default();
                    return ExitStatus {
                        name: exit.name,
                        up: result.is_ok(),
                        problem: result.err(),
                        last_handshake: None,
                        rx_bytes,
                        tx_bytes,
                        devices: exit.devices,
                    };
                }
                let device = InterfaceName::from_str_checked(&exit.interface)
                    .ok()
                    .and_then(|name| Device::get(&name, self.backend).ok());
                let peer = device.as_ref().and_then(|d| d.peers.first());
                let handshake =
                    peer.and_then(|p| p.stats.last_handshake_time).and_then(|t| jiff::Timestamp::try_from(t).ok());
                let fresh = handshake.is_some_and(|t| now.duration_since(t).unsigned_abs() < HANDSHAKE_STALE);
                let problem = if device.is_none() {
                    Some("its tunnel interface is missing".to_owned())
                } else if handshake.is_none() {
                    Some("no handshake with the provider's server yet".to_owned())
                } else if !fresh {
                    Some("the provider's server stopped answering".to_owned())
                } else {
                    None
                };
                ExitStatus {
                    name: exit.name,
                    up: fresh,
                    problem,
                    last_handshake: handshake.map(|t| t.to_string()),
                    rx_bytes: peer.map_or(0, |p| p.stats.rx_bytes),
                    tx_bytes: peer.map_or(0, |p| p.stats.tx_bytes),
                    devices: exit.devices,
                }
            })
            .collect())
    }

    /// The exits whose interface went missing (removed by hand, or its wireguard-go died): the
    /// caller applies again, which makes them anew.
    pub fn missing(&self, state: &State) -> Vec<String> {
        desired(state)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| {
                (e.wireguard.is_some() && !interface_exists(&e.interface)) || (e.via.is_some() && !routed(e.mark))
            })
            .map(|e| e.name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_read_in_either_base() {
        assert_eq!(parse_number("0xcb20"), Some(52000));
        assert_eq!(parse_number("52000"), Some(52000));
        assert_eq!(parse_number("x"), None);
    }
}
