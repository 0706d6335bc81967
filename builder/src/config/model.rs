//! The cell config: the one declarative description of a cell, as it is written in `cell_config.json`.
//!
//! These types only describe the shape (serde rejects unknown fields and wrong types); what the
//! values must satisfy is checked in `validate`, which reports every problem at once.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The config format this PIC writes; older versions are migrated when read.
pub const CURRENT_VERSION: u32 = 2;

/// A DNS label, also used for user, peer and cell names.
pub const LABEL_PATTERN: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";
/// A DNS name made of labels (no trailing dot).
pub const HOSTNAME_PATTERN: &str = "^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$";

/// A whole cell: identity, networks, VPN, services and users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "PIC cell config")]
pub struct CellConfig {
    /// Format version of this file; 2 is the current one (a version 1 file is migrated when read).
    pub version: u32,
    pub cell: Identity,
    pub network: Network,
    #[serde(default)]
    pub wireguard: WireGuard,
    #[serde(default)]
    pub services: Services,
    /// People who log in: admins manage the cell, peers see their own devices.
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub logging: Logging,
    /// Backups made by themselves: when, how many are kept, where they go (new in version 2).
    #[serde(default, skip_serializing_if = "Backups::is_empty")]
    pub backups: Backups,
    /// The service store: where its index is and whose signatures the cell trusts.
    #[serde(default, skip_serializing_if = "Store::is_empty")]
    pub store: Store,
    /// Apps installed from the service store, each with the manifest it was installed from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<super::app::App>,
    /// Other PIC cells this one is linked with over WireGuard (`pic link invite` / `accept`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// Ways to the internet other than the cell's own uplink, for chosen devices.
    #[serde(default, skip_serializing_if = "Connectivity::is_empty")]
    pub connectivity: Connectivity,
}

/// Other ways to the internet: exits that chosen devices' internet traffic leaves through.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Connectivity {
    /// The exits a device can be sent through (`wireguard.peers[].exit`, `users[].exit`).
    #[serde(default)]
    pub exits: Vec<Exit>,
}

impl Connectivity {
    pub fn is_empty(&self) -> bool {
        self.exits.is_empty()
    }
}

/// An exit: a tunnel that carries the internet traffic of the devices sent through it, and
/// nothing else of the cell. When it is down, their internet traffic is dropped, never sent
/// through the cell's own uplink. Its keys and credentials live in `secrets/exits/<name>/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exit {
    /// A DNS label of at most 12 characters (the exit's interface is `x-<name>`).
    #[schemars(regex(pattern = LABEL_PATTERN))]
    pub name: String,
    /// A WireGuard tunnel to a VPN provider (from the provider's wg-quick file; its private key
    /// is `secrets/exits/<name>/private.key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<WireGuardExit>,
    /// An OpenVPN connection to a provider, run in a container of its own on the cell network
    /// (its `.ovpn` file and credentials are `secrets/exits/<name>/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openvpn: Option<OpenVpnExit>,
    /// Tor, run in a container of its own on the cell network: the devices' TCP and names go
    /// into it, everything else of theirs is dropped. For getting around censorship; it does
    /// not make a device anonymous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tor: Option<TorExit>,
}

/// A Tor exit: where its container sits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TorExit {
    /// The exit container's address on the cell network (chosen when the exit is added).
    pub address: Ipv4Addr,
}

impl Exit {
    /// The address of the exit's container on the cell network, when it runs in one.
    pub fn container_address(&self) -> Option<Ipv4Addr> {
        self.openvpn.as_ref().map(|o| o.address).or(self.tor.as_ref().map(|t| t.address))
    }
}

/// An OpenVPN exit: where its container sits, and what the provider's file says publicly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenVpnExit {
    /// The exit container's address on the cell network (chosen when the exit is added).
    pub address: Ipv4Addr,
    /// The provider's servers as its file names them (`remote`), e.g. `vpn.example.net 1194 udp`.
    pub remotes: Vec<String>,
    /// The provider's DNS server, asked through the tunnel for the exit's devices' names.
    pub dns: Ipv4Addr,
}

/// The public half of a provider's wg-quick file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WireGuardExit {
    /// The address the provider gave this cell on the tunnel (its `Address`), e.g. `10.64.0.2/32`.
    #[schemars(with = "String")]
    pub address: Ipv4Net,
    /// The provider's DNS server (its `DNS`): the exit's devices' names are asked there,
    /// through the tunnel.
    pub dns: Ipv4Addr,
    /// The provider's WireGuard public key (its `[Peer]` `PublicKey`).
    pub public_key: String,
    /// `host:port` of the provider's server (its `Endpoint`).
    pub endpoint: String,
    /// The tunnel's MTU (its `MTU`); 1420 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
}

/// The TCP port of the peer-sync server on a cell's tunnel address.
pub const LINK_SYNC_PORT: u16 = 7443;

/// A link to another PIC cell: a WireGuard peer that carries the other cell's networks, the
/// services of this cell its networks may reach, and where its names and mail go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// The other cell's name (a DNS label), e.g. `parents`.
    #[schemars(regex(pattern = LABEL_PATTERN))]
    pub name: String,
    /// Its domain: names under it are asked of its DNS, mail for it is delivered to its mail
    /// server, both through the link.
    #[schemars(regex(pattern = HOSTNAME_PATTERN))]
    pub domain: String,
    /// Its WireGuard public key (base64, 32 bytes).
    pub public_key: String,
    /// Its Ed25519 public key (base64, 32 bytes), which signs its invitation and peer-sync messages.
    pub signing_key: String,
    /// `host:port` where its WireGuard listens; without it, only the other cell dials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Its address on its WireGuard interface (in `vpn_subnet`): where its peer-sync server
    /// listens and the only source a peer-sync request from it may have.
    pub tunnel_address: Ipv4Addr,
    /// Its VPN subnet (its devices), reached through the link.
    #[schemars(with = "String")]
    pub vpn_subnet: Ipv4Net,
    /// Its cell network (its services), reached through the link.
    #[schemars(with = "String")]
    pub cell_subnet: Ipv4Net,
    /// Its DNS server on its cell network, if it runs one: names under `domain` are asked there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Ipv4Addr>,
    /// Its mail server on its cell network, if it runs one: mail for `domain` goes there, and
    /// it may deliver mail to this cell's mail server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<Ipv4Addr>,
    /// Services of this cell the other cell's networks may reach (catalog names, e.g.
    /// `["calendar", "files"]`); nothing else crosses the link from its side.
    #[serde(default)]
    pub grants: Vec<String>,
}

/// The service store's settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Store {
    /// The index: a folder or a `.tar.zst` on the cell, or the HTTP(S) URL of a `.tar.zst`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// The minisign public keys (the base64 line of a `minisign.pub`) whose signatures the cell
    /// accepts on an index and its manifests; no key, no app.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_keys: Vec<String>,
}

impl Store {
    pub fn is_empty(&self) -> bool {
        self.index.is_none() && self.trusted_keys.is_empty()
    }
}

/// Scheduled backups. An archive made on schedule holds the secrets encrypted to the age
/// recipient set up once with the backup passphrase (`pic backup key`), so no passphrase is
/// stored and a restore still needs only the passphrase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backups {
    /// When an archive is made; without it, archives are made only on request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<BackupSchedule>,
    /// How many scheduled archives are kept; older ones are removed after each scheduled run
    /// (archives made on request are never removed).
    #[serde(default)]
    pub keep: Retention,
    /// An absolute path of a mounted folder (a USB disk, a NAS share) that scheduled archives
    /// are written to, instead of `backups/` in the state directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Whether scheduled archives hold the services' data (mailboxes, calendars, files).
    #[serde(default = "yes")]
    pub include_data: bool,
}

impl Backups {
    pub fn is_empty(&self) -> bool {
        *self == Backups::default()
    }
}

impl Default for Backups {
    fn default() -> Self {
        Backups { schedule: None, keep: Retention::default(), destination: None, include_data: true }
    }
}

/// When scheduled archives are made, in the cell's time zone (`cell.timezone`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupSchedule {
    pub every: Every,
    /// The time of day, `HH:MM` (24 hours).
    #[schemars(regex(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub at: String,
    /// The day of a weekly schedule; Sunday when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Weekday>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Every {
    Day,
    Week,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

/// How many scheduled archives are kept: the newest of each of the last `daily` days that have
/// one, and the newest of each of the last `weekly` weeks (an archive may count for both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[serde(default = "default_keep_daily")]
    pub daily: u32,
    #[serde(default = "default_keep_weekly")]
    pub weekly: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { daily: default_keep_daily(), weekly: default_keep_weekly() }
    }
}

fn default_keep_daily() -> u32 {
    7
}
fn default_keep_weekly() -> u32 {
    4
}

/// How much each service logs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    /// Per service (a catalog name, or `api` for `pic serve`); the rest log at `info`.
    #[serde(default)]
    pub levels: BTreeMap<String, LogLevel>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

/// The name under which `pic serve` itself appears in `logging.levels` and in the logs.
pub const API_SERVICE: &str = "api";

/// Who the cell is and where it can be reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The cell's name, a DNS label such as `home`.
    #[schemars(regex(pattern = LABEL_PATTERN))]
    pub name: String,
    #[serde(default)]
    pub domain: Domain,
    /// IANA time zone such as `Europe/Berlin`, or `UTC`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

/// How the cell's names are published and where its TLS certificates come from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Domain {
    /// Names under `<cell name>.cell`, served by the cell's DNS, certificates from the cell CA.
    #[default]
    Local,
    /// A domain the owner controls; certificates from an ACME CA.
    Public {
        #[schemars(regex(pattern = HOSTNAME_PATTERN))]
        name: String,
        /// Contact address given to the ACME CA.
        acme_email: String,
        /// The ACME CA's directory, when not Let's Encrypt's (e.g. its staging directory while
        /// trying things out).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        acme_ca: Option<String>,
        /// The PEM certificate of the root that signed the ACME CA's own HTTPS certificate, when
        /// it is not publicly trusted (a private CA such as step-ca or Pebble).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        acme_ca_root: Option<String>,
    },
    /// A name kept pointing at the cell's public address by a dynamic DNS provider. The
    /// provider's token or password is not part of the config: `pic ddns credential` (or the web
    /// UI) keeps it in `secrets/ddns/`.
    Ddns {
        provider: DdnsProvider,
        #[schemars(regex(pattern = HOSTNAME_PATTERN))]
        name: String,
        acme_email: String,
        /// The ACME CA's directory, when not Let's Encrypt's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        acme_ca: Option<String>,
        /// The PEM certificate of the root that signed the ACME CA's own HTTPS certificate, when
        /// it is not publicly trusted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        acme_ca_root: Option<String>,
        /// The provider's API, when not its public one: required for `dyndns2`, and for
        /// `pic_ngo` when its service moves (default `https://ddns.pic.ngo`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server: Option<String>,
        /// The account (No-IP's DDNS key name, a dyndns2 user); required by `noip` and `dyndns2`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        /// Cloudflare's zone holding `name`; by default the nearest parent domain Cloudflare has.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        zone: Option<String>,
        /// Where the cell learns its public address.
        #[serde(default)]
        address: AddressSource,
        /// Also publish the public IPv6 address (an AAAA record).
        #[serde(default)]
        ipv6: bool,
        /// How often the public address is compared with the published one, in seconds.
        #[serde(default = "default_ddns_interval")]
        interval_seconds: u32,
    },
}

/// Let's Encrypt's production directory: the ACME CA when the config names none.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// What a public or ddns domain asks of an ACME CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acme<'a> {
    pub email: &'a str,
    /// The directory URL (Let's Encrypt's when the config names none).
    pub directory: &'a str,
    pub ca_root: Option<&'a str>,
}

/// Who gets the certificates of the cell's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Certificates {
    /// The cell CA (local mode).
    CellCa,
    /// Caddy, from the ACME CA by HTTP-01, one certificate per name.
    Caddy,
    /// `pic serve`, from the ACME CA by DNS-01 through the DDNS provider's record API: one
    /// certificate for the name and `*.name`, handed to Caddy and mail as files.
    Pic,
}

impl Domain {
    /// The ACME settings of a public or ddns domain.
    pub fn acme(&self) -> Option<Acme<'_>> {
        match self {
            Domain::Local => None,
            Domain::Public { acme_email, acme_ca, acme_ca_root, .. }
            | Domain::Ddns { acme_email, acme_ca, acme_ca_root, .. } => Some(Acme {
                email: acme_email,
                directory: acme_ca.as_deref().unwrap_or(LETS_ENCRYPT),
                ca_root: acme_ca_root.as_deref(),
            }),
        }
    }

    /// Where the certificates come from: DNS-01 needs a provider with a record API (Cloudflare's
    /// API, DuckDNS's TXT update); every other public name is proven by HTTP-01 on port 80.
    pub fn certificates(&self) -> Certificates {
        match self {
            Domain::Local => Certificates::CellCa,
            Domain::Ddns { provider: DdnsProvider::Cloudflare | DdnsProvider::Duckdns, .. } => Certificates::Pic,
            Domain::Public { .. } | Domain::Ddns { .. } => Certificates::Caddy,
        }
    }
}

fn default_ddns_interval() -> u32 {
    300
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DdnsProvider {
    /// The original cell's own service; its protocol is dyndns2 with the token as the password.
    PicNgo,
    /// Cloudflare's API v4 with an API token (Zone:Read, DNS:Edit).
    Cloudflare,
    /// DuckDNS: a name under duckdns.org and the account's token.
    Duckdns,
    /// No-IP's dyndns2 endpoint with a DDNS key (username and password).
    Noip,
    /// FreeDNS (afraid.org), dynamic update v2: the record's own token.
    Freedns,
    /// Any dyndns2 server (`server`, `username`, the password as the credential).
    Dyndns2,
}

impl DdnsProvider {
    /// The provider's name as the config spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            DdnsProvider::PicNgo => "pic_ngo",
            DdnsProvider::Cloudflare => "cloudflare",
            DdnsProvider::Duckdns => "duckdns",
            DdnsProvider::Noip => "noip",
            DdnsProvider::Freedns => "freedns",
            DdnsProvider::Dyndns2 => "dyndns2",
        }
    }

    /// Checks a token or password for this provider before it is kept: the shape each provider
    /// gives its credentials, so that a pasted fragment or a line break is refused at once.
    pub fn check_credential(self, credential: &str) -> Result<(), crate::error::ValidationErrors> {
        let printable = |s: &str| s.bytes().all(|c| (0x21..0x7f).contains(&c));
        let (ok, hint) = match self {
            DdnsProvider::Cloudflare => (
                (20..=100).contains(&credential.len())
                    && credential.bytes().all(|c| c.is_ascii_alphanumeric() || b"_-".contains(&c)),
                "a Cloudflare API token: letters, digits, _ and - (made under My Profile, API Tokens, with Zone:Read and DNS:Edit)",
            ),
            DdnsProvider::Duckdns => (
                credential.len() == 36
                    && credential
                        .bytes()
                        .enumerate()
                        .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == b'-' } else { c.is_ascii_hexdigit() }),
                "DuckDNS's token as its page shows it: 8-4-4-4-12 hex digits",
            ),
            DdnsProvider::Freedns => (
                (10..=64).contains(&credential.len()) && credential.bytes().all(|c| c.is_ascii_alphanumeric()),
                "the record's token from FreeDNS's Dynamic DNS page (v2): letters and digits",
            ),
            DdnsProvider::Noip | DdnsProvider::Dyndns2 | DdnsProvider::PicNgo => (
                (1..=256).contains(&credential.len()) && printable(credential),
                "the password or token: printable characters, no spaces or line breaks",
            ),
        };
        if ok {
            Ok(())
        } else {
            Err(crate::error::ValidationErrors::single(
                "credential",
                format!("this is not a {} credential", self.as_str()),
                hint,
            ))
        }
    }
}

/// Where the cell learns its public address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "from", rename_all = "snake_case", deny_unknown_fields)]
pub enum AddressSource {
    /// "What is my address" services, asked in turn until one answers with an address: plain
    /// text bodies. IPv6 asks `urls_v6`.
    Web {
        urls: Vec<String>,
        #[serde(default = "default_urls_v6")]
        urls_v6: Vec<String>,
    },
    /// The address of one of the host's interfaces (a box with its public address on it).
    Interface { name: String },
}

impl Default for AddressSource {
    fn default() -> AddressSource {
        AddressSource::Web {
            urls: vec!["https://api.ipify.org/".into(), "https://ipv4.icanhazip.com/".into()],
            urls_v6: default_urls_v6(),
        }
    }
}

fn default_urls_v6() -> Vec<String> {
    vec!["https://api6.ipify.org/".into(), "https://ipv6.icanhazip.com/".into()]
}

/// The cell network: the bridge the service containers (and DHCP clients) live on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// IPv4 subnet of the cell network, /27 or larger, e.g. `172.20.0.0/24`.
    #[schemars(with = "String")]
    pub subnet: Ipv4Net,
    /// Overrides of service addresses (service name → address); the rest follow the defaults
    /// (gateway .1, then proxy .2, dns .3, ... in the order of the service catalog).
    #[serde(default)]
    pub addresses: BTreeMap<String, Ipv4Addr>,
}

/// The WireGuard VPN that peers use to reach the cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WireGuard {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_wireguard_port")]
    pub listen_port: u16,
    /// VPN subnet, e.g. `10.8.0.0/24`.
    #[serde(default = "default_wireguard_subnet")]
    #[schemars(with = "String")]
    pub subnet: Ipv4Net,
    /// The server's address in the VPN subnet; defaults to the subnet's first host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
    /// `host:port` that peers dial, e.g. `vpn.example.org:51820`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub peers: Vec<Peer>,
}

impl Default for WireGuard {
    fn default() -> Self {
        WireGuard {
            enabled: true,
            listen_port: default_wireguard_port(),
            subnet: default_wireguard_subnet(),
            address: None,
            endpoint: None,
            peers: Vec::new(),
        }
    }
}

/// A device allowed into the VPN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// A DNS label; the peer is reachable as `<name>.<cell domain>`.
    #[schemars(regex(pattern = LABEL_PATTERN))]
    pub name: String,
    /// The peer's WireGuard public key (base64, 32 bytes).
    pub public_key: String,
    /// The peer's address in the VPN subnet.
    pub address: Ipv4Addr,
    #[serde(default)]
    pub routing: Routing,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// After this instant (RFC 3339) the runtime stops accepting the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub expires: Option<jiff::Timestamp>,
    /// The user who owns this device (a user with role `peer` sees only their own devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Services the peer may reach through the VPN (names from the service catalog, e.g.
    /// `["dns", "calendar"]`); absent means every service. The firewall refuses the others, the
    /// proxy answers their sites 403; the web UI stays open to every device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Vec<String>>,
    /// The exit (`connectivity.exits[].name`) the device's internet traffic leaves through,
    /// instead of the cell's uplink; needs `routing: full`. Absent: its user's exit, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
}

/// Which of the peer's traffic goes through the tunnel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// Only the cell and VPN networks.
    #[default]
    Split,
    /// Everything: the cell is the peer's exit to the internet.
    Full,
}

/// Every service the cell can run, each with its enable flag and settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Services {
    #[serde(default)]
    pub proxy: Proxy,
    #[serde(default)]
    pub dns: Dns,
    #[serde(default)]
    pub dhcp: Dhcp,
    #[serde(default)]
    pub ntp: Ntp,
    #[serde(default)]
    pub mail: Mail,
    #[serde(default)]
    pub calendar: UserService,
    #[serde(default)]
    pub files: UserService,
    #[serde(default)]
    pub webmail: Toggle,
    #[serde(default)]
    pub firewall: Firewall,
}

/// The host's nftables ruleset: inbound closed except published ports, peers limited to their
/// access. Off, the ruleset filters nothing but still publishes the services' ports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Firewall {
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for Firewall {
    fn default() -> Self {
        Firewall { enabled: true }
    }
}

/// The reverse proxy that terminates TLS for the web UI, calendar, files and webmail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Proxy {
    #[serde(default)]
    pub enabled: bool,
    /// Host port for plain HTTP (redirects to HTTPS).
    #[serde(default = "default_http_port")]
    pub http_port: u16,
    /// Host port for HTTPS.
    #[serde(default = "default_https_port")]
    pub https_port: u16,
}

impl Default for Proxy {
    fn default() -> Self {
        Proxy { enabled: false, http_port: default_http_port(), https_port: default_https_port() }
    }
}

/// The cell's resolver: names under the cell domain, everything else forwarded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    #[serde(default)]
    pub enabled: bool,
    /// Resolvers that other names are forwarded to; empty means resolve from the root servers.
    #[serde(default)]
    pub upstreams: Vec<IpAddr>,
    /// Extra records under the cell domain.
    #[serde(default)]
    pub records: Vec<DnsRecord>,
    /// Networks besides the cell's and the VPN's whose devices may query, e.g. the LAN the
    /// appliance is plugged into (`192.168.1.0/24`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_networks: Vec<Ipv4Net>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsRecord {
    /// Name relative to the cell domain, e.g. `nas` or `printer.office`.
    #[schemars(regex(pattern = HOSTNAME_PATTERN))]
    pub name: String,
    #[serde(rename = "type")]
    pub kind: RecordType,
    /// An IPv4 address (A), IPv6 address (AAAA), host name (CNAME, MX) or printable text (TXT).
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum RecordType {
    A,
    AAAA,
    CNAME,
    MX,
    TXT,
}

/// DHCP for the cell network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dhcp {
    #[serde(default)]
    pub enabled: bool,
    /// Addresses handed out; required when DHCP is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<DhcpRange>,
    #[serde(default)]
    pub reservations: Vec<Reservation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DhcpRange {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
}

/// A fixed address for one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reservation {
    #[schemars(regex(pattern = LABEL_PATTERN))]
    pub name: String,
    /// MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    pub address: Ipv4Addr,
}

/// NTP for the cell and VPN networks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ntp {
    #[serde(default)]
    pub enabled: bool,
    /// Upstream servers or pools (host names or addresses).
    #[serde(default)]
    pub servers: Vec<String>,
}

/// Mail: domains the cell receives for, and the mailboxes in them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mail {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub mailboxes: Vec<Mailbox>,
    /// Other addresses whose mail goes into a mailbox (`postmaster@`, `info@`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<MailAlias>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MailAlias {
    /// `local@domain`, with a domain from `services.mail.domains`, not a mailbox's.
    pub address: String,
    /// The mailbox (one of `services.mail.mailboxes`) that receives its mail.
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mailbox {
    /// `local@domain`, with a domain from `services.mail.domains`.
    pub address: String,
    /// The user who logs in to read it.
    pub user: String,
}

/// A service whose only setting is who may use it (calendar and contacts, files).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserService {
    #[serde(default)]
    pub enabled: bool,
    /// Names from `users`.
    #[serde(default)]
    pub users: Vec<String>,
}

/// A service with nothing to set but whether it runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Toggle {
    #[serde(default)]
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name, a DNS label.
    #[schemars(regex(pattern = LABEL_PATTERN))]
    pub name: String,
    pub role: Role,
    /// The exit the internet traffic of this user's devices leaves through, for those that
    /// route everything through the cell and name no exit of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages the whole cell.
    Admin,
    /// Uses the cell: their own devices, mail, calendar and files.
    Peer,
}

fn yes() -> bool {
    true
}
fn default_timezone() -> String {
    "UTC".into()
}
fn default_wireguard_port() -> u16 {
    51820
}
fn default_wireguard_subnet() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 8, 0, 0), 24).expect("a /24 is a valid prefix")
}
fn default_http_port() -> u16 {
    80
}
fn default_https_port() -> u16 {
    443
}
