//! Semantic validation of a cell config: every rule, every error at once, each naming its field
//! and saying how to fix it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;

pub use crate::error::{FieldError, ValidationErrors};

use super::derived::{is_reserved, nth_host};
use super::model::{API_SERVICE, AddressSource, CURRENT_VERSION, CellConfig, DdnsProvider, Domain, RecordType, Role};
use super::services::{self, CATALOG, ServiceDef, WEBUI_HOST};
use super::syntax;

/// A config that passed every rule. Only [`validate`] makes one, so whatever renders from it
/// can rely on the rules (in particular: no string carries characters special to a config format).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidConfig(CellConfig);

impl std::ops::Deref for ValidConfig {
    type Target = CellConfig;
    fn deref(&self) -> &CellConfig {
        &self.0
    }
}

impl ValidConfig {
    pub fn into_inner(self) -> CellConfig {
        self.0
    }
}

/// Checks every rule and returns the config, or all the problems found.
pub fn validate(config: CellConfig) -> Result<ValidConfig, ValidationErrors> {
    let user_names = config.users.iter().map(|u| u.name.as_str()).collect();
    let mut v = Validator { c: &config, user_names, errors: Vec::new() };
    v.version();
    v.identity();
    v.network();
    v.wireguard();
    v.dns();
    v.dhcp();
    v.ntp();
    v.mail();
    v.user_services();
    v.users();
    v.ports();
    v.names();
    v.logging();
    v.backups();
    v.store();
    v.apps();
    v.links();
    v.exits();
    if v.errors.is_empty() { Ok(ValidConfig(config)) } else { Err(ValidationErrors(v.errors)) }
}

/// An exit's interface is `x-<name>`, and Linux allows 15 characters.
const MAX_EXIT_NAME: usize = 12;

const LABEL_HINT: &str = "use 1 to 63 lowercase letters, digits and hyphens, not starting or ending with a hyphen";
const HOSTNAME_HINT: &str = "use dot-separated labels of lowercase letters, digits and hyphens, e.g. example.org";

struct Validator<'a> {
    c: &'a CellConfig,
    user_names: HashSet<&'a str>,
    errors: Vec<FieldError>,
}

impl<'a> Validator<'a> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>, hint: impl Into<String>) {
        self.errors.push(FieldError { path: path.into(), message: message.into(), hint: hint.into() });
    }

    fn label(&mut self, path: impl fmt::Display, value: &str) {
        if !syntax::is_label(value) {
            self.err(path.to_string(), format!("{value:?} is not a valid name"), LABEL_HINT);
        }
    }

    fn hostname(&mut self, path: impl fmt::Display, value: &str) {
        if !syntax::is_hostname(value) {
            self.err(path.to_string(), format!("{value:?} is not a valid host name"), HOSTNAME_HINT);
        }
    }

    fn email(&mut self, path: impl fmt::Display, value: &str) {
        if !syntax::is_mail_address(value) {
            self.err(
                path.to_string(),
                format!("{value:?} is not a valid mail address"),
                "use local@domain, e.g. admin@example.org",
            );
        }
    }

    /// Flags every value that occurs more than once, at each later occurrence; `path` names the
    /// field of the i-th value (made only for errors: configs have thousands of peers).
    fn unique<K: Eq + std::hash::Hash + fmt::Display>(
        &mut self,
        values: impl IntoIterator<Item = K>,
        path: impl Fn(usize) -> String,
        what: &str,
    ) {
        let mut seen: HashMap<K, usize> = HashMap::new();
        for (i, key) in values.into_iter().enumerate() {
            if let Some(&first) = seen.get(&key) {
                let message = format!("{what} {key} is already used by {}", path(first));
                self.err(path(i), message, format!("give each {what} a value of its own"));
            } else {
                seen.insert(key, i);
            }
        }
    }

    fn user_ref(&mut self, path: impl fmt::Display, name: &str) {
        if !self.user_names.contains(name) {
            self.err(
                path.to_string(),
                format!("no user is named {name:?}"),
                "add the user to `users` or name an existing one",
            );
        }
    }

    fn version(&mut self) {
        if self.c.version != CURRENT_VERSION {
            self.err(
                "version",
                format!("config version {} is not supported", self.c.version),
                format!("this PIC reads versions 1 to {CURRENT_VERSION} (version 1 is migrated when read)"),
            );
        }
    }

    fn identity(&mut self) {
        let id = &self.c.cell;
        self.label("cell.name", &id.name);
        match &id.domain {
            Domain::Local => {}
            Domain::Public { name, acme_email, acme_ca, acme_ca_root }
            | Domain::Ddns { name, acme_email, acme_ca, acme_ca_root, .. } => {
                if let Some(url) = acme_ca {
                    self.url("cell.domain.acme_ca", url);
                }
                if let Some(pem) = acme_ca_root
                    && !syntax::is_pem_certificate(pem)
                {
                    self.err(
                        "cell.domain.acme_ca_root",
                        "is not a PEM certificate",
                        "paste the root's certificate, from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----",
                    );
                }
                self.hostname("cell.domain.name", name);
                if !name.contains('.') && syntax::is_hostname(name) {
                    self.err(
                        "cell.domain.name",
                        format!("{name:?} is not a fully qualified domain"),
                        "use a domain you own, e.g. cell.example.org",
                    );
                }
                self.email("cell.domain.acme_email", acme_email);
            }
        }
        if let Domain::Ddns { .. } = &id.domain {
            self.ddns(&id.domain);
        }
        if !syntax::is_timezone(&id.timezone) {
            self.err(
                "cell.timezone",
                format!("{:?} is not a known time zone", id.timezone),
                "use an IANA zone such as Europe/Berlin, or UTC",
            );
        }
    }

    /// The dynamic DNS provider's settings: what each provider needs, names inside the
    /// provider's domain, URLs a client may call.
    fn ddns(&mut self, domain: &Domain) {
        let Domain::Ddns { provider, name, server, username, zone, address, interval_seconds, .. } = domain else {
            return;
        };
        let name = name.to_ascii_lowercase();
        let suffix = match provider {
            DdnsProvider::Duckdns => Some(".duckdns.org"),
            DdnsProvider::PicNgo => Some(".pic.ngo"),
            _ => None,
        };
        if let Some(suffix) = suffix
            && !name.ends_with(suffix)
        {
            self.err(
                "cell.domain.name",
                format!("{name:?} is not a name under {}", &suffix[1..]),
                format!("this provider publishes names like <yours>{suffix} only"),
            );
        }
        if let Some(server) = server {
            self.url("cell.domain.server", server);
        } else if *provider == DdnsProvider::Dyndns2 {
            self.err(
                "cell.domain.server",
                "dyndns2 needs the provider's server",
                "set server, e.g. https://members.example.net",
            );
        }
        match username {
            Some(user) if !syntax::is_account_name(user) => self.err(
                "cell.domain.username",
                format!("{user:?} is not a valid account name"),
                "use letters, digits and . _ @ + - (at most 128)",
            ),
            None if matches!(provider, DdnsProvider::Noip | DdnsProvider::Dyndns2) => self.err(
                "cell.domain.username",
                "this provider needs the account's name",
                "set username: No-IP's DDNS key name, or the dyndns2 account",
            ),
            _ => {}
        }
        if let Some(zone) = zone {
            if *provider != DdnsProvider::Cloudflare {
                self.err("cell.domain.zone", "only cloudflare takes a zone", "remove zone");
            } else if !syntax::is_hostname(zone) {
                self.hostname("cell.domain.zone", zone);
            } else if name != zone.to_ascii_lowercase() && !name.ends_with(&format!(".{}", zone.to_ascii_lowercase())) {
                self.err(
                    "cell.domain.name",
                    format!("{name:?} is not inside the zone {zone:?}"),
                    "use a name in the zone, or the zone that holds the name",
                );
            }
        }
        match address {
            AddressSource::Web { urls, urls_v6 } => {
                if urls.is_empty() {
                    self.err(
                        "cell.domain.address.urls",
                        "no service to ask for the public address",
                        "list at least one URL",
                    );
                }
                for (i, url) in urls.iter().enumerate() {
                    self.url(format!("cell.domain.address.urls[{i}]"), url);
                }
                for (i, url) in urls_v6.iter().enumerate() {
                    self.url(format!("cell.domain.address.urls_v6[{i}]"), url);
                }
            }
            AddressSource::Interface { name } if !syntax::is_interface_name(name) => self.err(
                "cell.domain.address.name",
                format!("{name:?} is not an interface name"),
                "use the host's interface, e.g. eth0 (1 to 15 letters, digits, . _ -)",
            ),
            AddressSource::Interface { .. } => {}
        }
        if !(60..=86_400).contains(interval_seconds) {
            self.err(
                "cell.domain.interval_seconds",
                format!("{interval_seconds} s is outside 60 to 86400"),
                "use 300 (five minutes) unless the provider asks otherwise",
            );
        }
    }

    /// The store's index is an absolute folder or `.tar.zst`, or an HTTP(S) URL of a `.tar.zst`;
    /// every trusted key is a minisign public key.
    fn store(&mut self) {
        let store = &self.c.store;
        if let Some(index) = &store.index {
            let web = index.starts_with("http://") || index.starts_with("https://");
            if web {
                self.url("store.index", index);
            }
            let fine = match web {
                true => index.ends_with(".tar.zst"),
                false => index.starts_with('/') && !index.split('/').any(|p| p == "..") && syntax::is_safe_text(index),
            };
            if !fine {
                self.err(
                    "store.index",
                    format!("{index:?} is not an index the cell can read"),
                    "an absolute folder or .tar.zst on the cell, or an http(s) URL of a .tar.zst",
                );
            }
        }
        for (i, key) in store.trusted_keys.iter().enumerate() {
            if minisign_verify::PublicKey::from_base64(key.trim()).is_err() {
                self.err(
                    format!("store.trusted_keys[{i}]"),
                    "is not a minisign public key",
                    "paste the second line of the publisher's minisign.pub, the one starting with RW",
                );
            }
        }
    }

    fn apps(&mut self) {
        let net = self.c.network.subnet;
        let services: Vec<(&str, Ipv4Addr)> =
            CATALOG.iter().filter(|s| s.offset.is_some()).map(|s| (s.name, self.c.service_address(s))).collect();
        for (i, app) in self.c.apps.iter().enumerate() {
            let m = &app.manifest;
            for problem in m.problems() {
                self.err(format!("apps[{i}].manifest.{}", problem.path), problem.message, problem.hint);
            }
            if app.name != m.name || app.version != m.version {
                self.err(
                    format!("apps[{i}].version"),
                    format!("the entry is {} {}, its manifest {} {}", app.name, app.version, m.name, m.version),
                    "install or update the app with `pic store`, which keeps the two equal",
                );
            }
            for problem in m.settings_problems(&app.settings, &format!("apps[{i}].settings")) {
                self.errors.push(problem);
            }
            let path = format!("apps[{i}].address");
            self.host_in(&path, app.address, &net, "network.subnet");
            if app.address == self.c.gateway() {
                self.err(
                    &path,
                    format!("{} is the cell network's gateway (the host)", app.address),
                    "choose another address",
                );
            }
            if let Some((service, _)) = services.iter().find(|(_, a)| *a == app.address) {
                self.err(
                    &path,
                    format!("{} is the address of the {service} service", app.address),
                    "choose a free address in network.subnet",
                );
            }
            if services::get(&m.site.host).is_some() || m.site.host == WEBUI_HOST {
                self.err(
                    format!("apps[{i}].manifest.site.host"),
                    format!("{:?} is the name of a service of the cell", m.site.host),
                    "an app needs a host name of its own",
                );
            }
        }
        let apps = &self.c.apps;
        if !apps.is_empty() && !self.c.services.proxy.enabled {
            self.err(
                "services.proxy.enabled",
                "is false, but apps are installed: they are served through the proxy",
                "enable the proxy, or remove the apps",
            );
        }
        self.unique(apps.iter().map(|a| &a.name), |i| format!("apps[{i}].name"), "app name");
        self.unique(apps.iter().map(|a| a.address), |i| format!("apps[{i}].address"), "address");
        self.unique(
            apps.iter().map(|a| &a.manifest.site.host),
            |i| format!("apps[{i}].manifest.site.host"),
            "host name",
        );
    }

    fn links(&mut self) {
        let links = &self.c.links;
        if links.is_empty() {
            return;
        }
        if !self.c.wireguard.enabled {
            self.err(
                "wireguard.enabled",
                "is false, but the cell is linked with other cells: links are WireGuard peers",
                "enable WireGuard, or remove the links",
            );
        }
        let domain = self.c.domain();
        let own = [("network.subnet", self.c.network.subnet), ("wireguard.subnet", self.c.wireguard.subnet)];
        // Every network routed somewhere: ours, then each link's, in order; a later one that
        // overlaps an earlier one is the error.
        let mut routed: Vec<(String, Ipv4Net)> = own.iter().map(|(f, n)| ((*f).to_owned(), *n)).collect();
        for (i, link) in links.iter().enumerate() {
            let at = |field: &str| format!("links[{i}].{field}");
            self.label(at("name"), &link.name);
            if link.name == self.c.cell.name {
                self.err(at("name"), format!("{:?} is this cell's own name", link.name), "a link names the other cell");
            }
            self.hostname(at("domain"), &link.domain);
            let nested = |a: &str, b: &str| a == b || a.ends_with(&format!(".{b}"));
            if nested(&link.domain, &domain) || nested(&domain, &link.domain) {
                self.err(
                    at("domain"),
                    format!("{} clashes with this cell's domain {domain}", link.domain),
                    "two linked cells need domains of their own, neither inside the other",
                );
            }
            if !syntax::is_wireguard_key(&link.public_key) {
                self.err(at("public_key"), "not a WireGuard public key", "give the 44-character base64 key");
            }
            if self.c.wireguard.peers.iter().any(|p| p.public_key == link.public_key) {
                self.err(at("public_key"), "is the key of a device of this cell", "a link has the other cell's key");
            }
            if !syntax::is_wireguard_key(&link.signing_key) {
                self.err(at("signing_key"), "not an Ed25519 public key", "give the 44-character base64 key");
            }
            if let Some(endpoint) = &link.endpoint
                && !syntax::is_endpoint(endpoint)
            {
                self.err(
                    at("endpoint"),
                    format!("{endpoint:?} is not host:port"),
                    "write it like cell.example.org:51820",
                );
            }
            for (field, net) in [("vpn_subnet", link.vpn_subnet), ("cell_subnet", link.cell_subnet)] {
                if net.addr() != net.network() {
                    self.err(
                        at(field),
                        format!("{net} has host bits set"),
                        format!("write the network address: {}", net.trunc()),
                    );
                }
                let overlaps = |other: &Ipv4Net| other.contains(&net.network()) || net.contains(&other.network());
                if let Some((other_field, other)) = routed.iter().find(|(_, other)| overlaps(other)) {
                    let message = format!("{net} overlaps {other_field} {other}");
                    self.err(at(field), message, "linked cells need networks that do not overlap: renumber one side");
                }
                routed.push((at(field), net));
            }
            self.host_in(at("tunnel_address"), link.tunnel_address, &link.vpn_subnet, &at("vpn_subnet"));
            for (field, addr) in [("dns", link.dns), ("mail", link.mail)] {
                if let Some(addr) = addr {
                    self.host_in(at(field), addr, &link.cell_subnet, &at("cell_subnet"));
                }
            }
            for (j, grant) in link.grants.iter().enumerate() {
                let grantable = |s: &ServiceDef| !["proxy", "dhcp"].contains(&s.name) && !s.listens.is_empty();
                if !services::get(grant).is_some_and(grantable) {
                    let known: Vec<&str> = CATALOG.iter().filter(|s| grantable(s)).map(|s| s.name).collect();
                    self.err(
                        format!("links[{i}].grants[{j}]"),
                        format!("{grant:?} is not a service another cell can be given"),
                        format!("use some of: {}", known.join(", ")),
                    );
                }
            }
            self.unique(link.grants.iter(), |j| format!("links[{i}].grants[{j}]"), "grant");
        }
        self.unique(links.iter().map(|l| &l.name), |i| format!("links[{i}].name"), "link name");
        self.unique(links.iter().map(|l| &l.domain), |i| format!("links[{i}].domain"), "domain");
        self.unique(links.iter().map(|l| &l.public_key), |i| format!("links[{i}].public_key"), "public key");
    }

    fn exits(&mut self) {
        let exits = &self.c.connectivity.exits;
        // Networks an exit's own address must stay out of: its devices reach these locally.
        let mut local: Vec<(String, Ipv4Net)> = vec![
            ("network.subnet".into(), self.c.network.subnet),
            ("wireguard.subnet".into(), self.c.wireguard.subnet),
        ];
        for (i, link) in self.c.links.iter().enumerate() {
            local.push((format!("links[{i}].vpn_subnet"), link.vpn_subnet));
            local.push((format!("links[{i}].cell_subnet"), link.cell_subnet));
        }
        for (i, exit) in exits.iter().enumerate() {
            let at = |field: &str| format!("connectivity.exits[{i}].{field}");
            self.label(at("name"), &exit.name);
            if exit.name.len() > MAX_EXIT_NAME {
                self.err(
                    at("name"),
                    format!("{:?} is longer than {MAX_EXIT_NAME} characters", exit.name),
                    format!("use a shorter name: its interface x-{} must fit in 15 characters", exit.name),
                );
            }
            let kinds = [exit.wireguard.is_some(), exit.openvpn.is_some(), exit.tor.is_some()];
            if kinds.iter().filter(|k| **k).count() > 1 {
                self.err(
                    format!("connectivity.exits[{i}]"),
                    "is more than one kind of exit",
                    "keep one of `wireguard`, `openvpn` and `tor`: an exit is one way out",
                );
                continue;
            }
            if let Some(ovpn) = &exit.openvpn {
                self.container_exit(i, "openvpn", ovpn.address);
                if ovpn.remotes.is_empty() {
                    self.err(
                        format!("connectivity.exits[{i}].openvpn.remotes"),
                        "names no server",
                        "add the exit again from the provider's file (`pic exit add NAME --openvpn FILE`)",
                    );
                }
                continue;
            }
            if let Some(tor) = &exit.tor {
                self.container_exit(i, "tor", tor.address);
                continue;
            }
            let Some(wg) = &exit.wireguard else {
                self.err(
                    format!("connectivity.exits[{i}]"),
                    "says no kind of exit",
                    "give `wireguard`, `openvpn` or `tor` (`pic exit add NAME --wireguard FILE`, `--openvpn FILE` or `--tor`)",
                );
                continue;
            };
            if !syntax::is_wireguard_key(&wg.public_key) {
                self.err(
                    at("wireguard.public_key"),
                    "not a WireGuard public key",
                    "give the provider's 44-character base64 key",
                );
            }
            if !syntax::is_endpoint(&wg.endpoint) {
                self.err(
                    at("wireguard.endpoint"),
                    format!("{:?} is not host:port", wg.endpoint),
                    "write it like vpn.example.net:51820",
                );
            }
            let net = wg.address;
            let overlaps = |other: &Ipv4Net| other.contains(&net.network()) || net.contains(&other.network());
            if let Some((field, other)) = local.iter().find(|(_, other)| overlaps(other)) {
                self.err(
                    at("wireguard.address"),
                    format!("{net} overlaps {field} {other}"),
                    "the provider's tunnel address must lie outside the cell's own and linked networks",
                );
            }
            if let Some(mtu) = wg.mtu
                && !(1280..=1500).contains(&mtu)
            {
                self.err(
                    at("wireguard.mtu"),
                    format!("{mtu} is out of range"),
                    "use 1280 to 1500, or leave it out (1420)",
                );
            }
        }
        self.unique(exits.iter().map(|e| &e.name), |i| format!("connectivity.exits[{i}].name"), "exit name");
        let known: HashSet<&str> = exits.iter().map(|e| e.name.as_str()).collect();
        let hint = if known.is_empty() {
            "add the exit to connectivity.exits first (`pic exit add`)".to_owned()
        } else {
            let mut names: Vec<&str> = known.iter().copied().collect();
            names.sort_unstable();
            format!("use one of: {}", names.join(", "))
        };
        for (i, peer) in self.c.wireguard.peers.iter().enumerate() {
            let Some(exit) = &peer.exit else { continue };
            if !known.contains(exit.as_str()) {
                self.err(format!("wireguard.peers[{i}].exit"), format!("no exit is named {exit:?}"), hint.clone());
            }
            if peer.routing != super::Routing::Full {
                self.err(
                    format!("wireguard.peers[{i}].exit"),
                    format!(
                        "{} sends only the cell's networks through the tunnel, so no internet traffic reaches the exit",
                        peer.name
                    ),
                    "set its routing to full, or leave the exit out",
                );
            }
        }
        for (i, user) in self.c.users.iter().enumerate() {
            if let Some(exit) = &user.exit
                && !known.contains(exit.as_str())
            {
                self.err(format!("users[{i}].exit"), format!("no exit is named {exit:?}"), hint.clone());
            }
        }
    }

    /// An exit container's address: a free host of the cell network.
    fn container_exit(&mut self, i: usize, kind: &str, address: Ipv4Addr) {
        let path = format!("connectivity.exits[{i}].{kind}.address");
        let net = self.c.network.subnet;
        self.host_in(&path, address, &net, "network.subnet");
        let taken = CATALOG
            .iter()
            .filter(|s| s.offset.is_some())
            .map(|s| (format!("the {} service", s.name), self.c.service_address(s)))
            .chain([("the cell network's gateway (the host)".to_owned(), self.c.gateway())])
            .chain(self.c.apps.iter().map(|a| (format!("the app {}", a.name), a.address)))
            .chain(
                self.c.connectivity.exits[..i]
                    .iter()
                    .filter_map(|e| Some((format!("the exit {}", e.name), e.container_address()?))),
            )
            .find(|(_, a)| *a == address);
        if let Some((what, _)) = taken {
            self.err(&path, format!("{address} is the address of {what}"), "choose a free address in network.subnet");
        }
    }

    fn url(&mut self, path: impl fmt::Display, value: &str) {
        let parsed = url::Url::parse(value);
        let fine = syntax::is_url_text(value)
            && parsed.as_ref().is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
        if !fine {
            self.err(path.to_string(), format!("{value:?} is not an http(s) URL"), "use e.g. https://api.example.net/");
        }
    }

    fn network(&mut self) {
        let net = self.c.network.subnet;
        if net.addr() != net.network() {
            self.err(
                "network.subnet",
                format!("{net} has host bits set"),
                format!("write the network address: {}", net.trunc()),
            );
        }
        if net.prefix_len() > 27 {
            self.err(
                "network.subnet",
                format!("{net} is too small for the services"),
                "use a /27 or larger subnet, e.g. 172.20.0.0/24",
            );
            // Without room for the default addresses, checking them would only repeat this error.
            return;
        }
        if !net.network().is_private() {
            self.err(
                "network.subnet",
                format!("{net} is not a private range"),
                "use a subnet of 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
            );
        }
        for (name, addr) in &self.c.network.addresses {
            let path = format!("network.addresses.{name}");
            let Some(service) = services::get(name) else {
                let known: Vec<&str> = CATALOG.iter().filter(|s| s.offset.is_some()).map(|s| s.name).collect();
                self.err(
                    path,
                    format!("there is no service named {name:?}"),
                    format!("use one of: {}", known.join(", ")),
                );
                continue;
            };
            if service.offset.is_none() {
                self.err(path, format!("{name} runs on the host, at the gateway"), "remove this entry");
                continue;
            }
            self.host_in(&path, *addr, &net, "network.subnet");
            if *addr == self.c.gateway() {
                self.err(
                    path,
                    format!("{addr} is the cell network's gateway (the host)"),
                    "choose another address in network.subnet",
                );
            }
        }
        let containers: Vec<&ServiceDef> = CATALOG.iter().filter(|s| s.offset.is_some()).collect();
        let addresses = containers.iter().map(|s| self.c.service_address(s));
        self.unique(addresses, |i| format!("network.addresses.{}", containers[i].name), "address");
    }

    /// `addr` must be a usable host address inside `net`.
    fn host_in(&mut self, path: impl fmt::Display, addr: Ipv4Addr, net: &Ipv4Net, net_field: &str) {
        if !net.contains(&addr) {
            self.err(
                path.to_string(),
                format!("{addr} is outside {net_field} {net}"),
                format!("choose an address inside {net}"),
            );
        } else if is_reserved(net, addr) {
            self.err(
                path.to_string(),
                format!("{addr} is the network or broadcast address of {net}"),
                format!("choose a host address inside {net}"),
            );
        }
    }

    fn wireguard(&mut self) {
        let wg = &self.c.wireguard;
        let net = wg.subnet;
        if net.addr() != net.network() {
            self.err(
                "wireguard.subnet",
                format!("{net} has host bits set"),
                format!("write the network address: {}", net.trunc()),
            );
        }
        if net.prefix_len() > 30 {
            self.err(
                "wireguard.subnet",
                format!("{net} has no room for peers"),
                "use a /30 or larger subnet, e.g. 10.8.0.0/24",
            );
        }
        if net.contains(&self.c.network.subnet.network()) || self.c.network.subnet.contains(&net.network()) {
            self.err(
                "wireguard.subnet",
                format!("{net} overlaps network.subnet {}", self.c.network.subnet),
                "use separate subnets for the VPN and the cell network",
            );
        }
        if let Some(addr) = wg.address {
            self.host_in("wireguard.address", addr, &net, "wireguard.subnet");
        } else if nth_host(&net, 1).is_none() {
            self.err(
                "wireguard.address",
                "the VPN subnet has no first host address",
                "set wireguard.address or use a larger subnet",
            );
        }
        if let Some(endpoint) = &wg.endpoint
            && !syntax::is_endpoint(endpoint)
        {
            self.err(
                "wireguard.endpoint",
                format!("{endpoint:?} is not host:port"),
                "write it like vpn.example.org:51820 or [2001:db8::1]:51820",
            );
        }
        let server = self.c.wireguard_address();
        for (i, peer) in wg.peers.iter().enumerate() {
            self.label(format_args!("wireguard.peers[{i}].name"), &peer.name);
            if !syntax::is_wireguard_key(&peer.public_key) {
                self.err(
                    format!("wireguard.peers[{i}].public_key"),
                    "not a WireGuard public key",
                    "give the 44-character base64 key that `wg pubkey` prints",
                );
            }
            self.host_in(format_args!("wireguard.peers[{i}].address"), peer.address, &net, "wireguard.subnet");
            if peer.address == server {
                self.err(
                    format!("wireguard.peers[{i}].address"),
                    format!("{server} is the server's own VPN address"),
                    "choose another address in wireguard.subnet",
                );
            }
            for (j, service) in peer.access.iter().flatten().enumerate() {
                if services::get(service).is_none() && !self.c.apps.iter().any(|a| a.name == *service) {
                    let known: Vec<&str> =
                        CATALOG.iter().map(|s| s.name).chain(self.c.apps.iter().map(|a| a.name.as_str())).collect();
                    self.err(
                        format!("wireguard.peers[{i}].access[{j}]"),
                        format!("there is no service named {service:?}"),
                        format!("use some of: {}", known.join(", ")),
                    );
                }
            }
            if let Some(user) = &peer.user {
                self.user_ref(format_args!("wireguard.peers[{i}].user"), user);
            }
        }
        self.unique(wg.peers.iter().map(|p| &p.name), |i| format!("wireguard.peers[{i}].name"), "peer name");
        self.unique(
            wg.peers.iter().map(|p| &p.public_key),
            |i| format!("wireguard.peers[{i}].public_key"),
            "public key",
        );
        self.unique(wg.peers.iter().map(|p| p.address), |i| format!("wireguard.peers[{i}].address"), "address");
    }

    fn dns(&mut self) {
        let dns = &self.c.services.dns;
        for (i, up) in dns.upstreams.iter().enumerate() {
            if up.is_unspecified() || up.is_multicast() {
                self.err(
                    format!("services.dns.upstreams[{i}]"),
                    format!("{up} cannot answer queries"),
                    "give the address of a resolver, e.g. 9.9.9.9",
                );
            }
        }
        self.unique(dns.upstreams.iter(), |i| format!("services.dns.upstreams[{i}]"), "upstream");
        for (i, net) in dns.allowed_networks.iter().enumerate() {
            if net.prefix_len() < 8 {
                self.err(
                    format!("services.dns.allowed_networks[{i}]"),
                    format!("{net} would make the cell's DNS a resolver for a large part of the internet"),
                    "give your LAN's network, e.g. 192.168.1.0/24",
                );
            }
        }
        self.unique(dns.allowed_networks.iter(), |i| format!("services.dns.allowed_networks[{i}]"), "network");
        let mut kinds: BTreeMap<&str, Vec<(usize, RecordType)>> = BTreeMap::new();
        for (i, r) in dns.records.iter().enumerate() {
            self.hostname(format_args!("services.dns.records[{i}].name"), &r.name);
            let value_ok = match r.kind {
                RecordType::A => r.value.parse::<std::net::Ipv4Addr>().is_ok(),
                RecordType::AAAA => r.value.parse::<std::net::Ipv6Addr>().is_ok(),
                RecordType::CNAME | RecordType::MX => syntax::is_hostname(&r.value),
                RecordType::TXT => syntax::is_safe_text(&r.value),
            };
            if !value_ok {
                let hint = match r.kind {
                    RecordType::A => "give an IPv4 address such as 192.168.1.10",
                    RecordType::AAAA => "give an IPv6 address such as 2001:db8::10",
                    RecordType::CNAME | RecordType::MX => HOSTNAME_HINT,
                    RecordType::TXT => {
                        "use at most 255 printable characters without quotes, backslashes, braces, ; # ` or $"
                    }
                };
                self.err(
                    format!("services.dns.records[{i}].value"),
                    format!("{:?} is not a valid {:?} value", r.value, r.kind),
                    hint,
                );
            }
            kinds.entry(r.name.as_str()).or_default().push((i, r.kind));
        }
        for entries in kinds.values() {
            let has_cname = entries.iter().any(|(_, k)| *k == RecordType::CNAME);
            if has_cname && entries.len() > 1 {
                for (i, _) in entries.iter().skip(1) {
                    let name = &dns.records[*i].name;
                    self.err(
                        format!("services.dns.records[{i}].name"),
                        format!("{name:?} has a CNAME record and other records"),
                        "a CNAME must be the only record of its name; remove one",
                    );
                }
            }
        }
        let records = dns.records.iter().map(|r| format!("{} {:?} {}", r.name, r.kind, r.value));
        self.unique(records, |i| format!("services.dns.records[{i}]"), "record");
    }

    fn dhcp(&mut self) {
        let dhcp = &self.c.services.dhcp;
        let net = self.c.network.subnet;
        let range = match &dhcp.range {
            Some(range) => {
                self.host_in("services.dhcp.range.start", range.start, &net, "network.subnet");
                self.host_in("services.dhcp.range.end", range.end, &net, "network.subnet");
                if range.start > range.end {
                    self.err(
                        "services.dhcp.range",
                        format!("start {} is after end {}", range.start, range.end),
                        "swap start and end",
                    );
                }
                for s in CATALOG.iter().filter(|s| s.offset.is_some()) {
                    let addr = self.c.service_address(s);
                    if range.start <= addr && addr <= range.end {
                        self.err(
                            "services.dhcp.range",
                            format!("the range includes {addr}, the address of service {}", s.name),
                            "move the range past the service addresses, e.g. .100 to .200",
                        );
                    }
                }
                Some((range.start, range.end))
            }
            None => {
                if dhcp.enabled {
                    self.err(
                        "services.dhcp.range",
                        "DHCP is enabled but has no range",
                        "add a range such as {\"start\": \"172.20.0.100\", \"end\": \"172.20.0.200\"}",
                    );
                }
                None
            }
        };
        for (i, r) in dhcp.reservations.iter().enumerate() {
            let p = format!("services.dhcp.reservations[{i}]");
            self.label(format_args!("{p}.name"), &r.name);
            if !syntax::is_mac(&r.mac) {
                self.err(
                    format!("{p}.mac"),
                    format!("{:?} is not a MAC address", r.mac),
                    "write six hex pairs separated by colons, e.g. 52:54:00:12:34:56",
                );
            }
            if let Some((start, end)) = range
                && !(start <= r.address && r.address <= end)
            {
                self.err(
                    format!("{p}.address"),
                    format!("{} is outside the DHCP range {start} to {end}", r.address),
                    "choose an address inside services.dhcp.range",
                );
            }
        }
        self.unique(
            dhcp.reservations.iter().map(|r| &r.name),
            |i| format!("services.dhcp.reservations[{i}].name"),
            "name",
        );
        let macs = dhcp.reservations.iter().map(|r| r.mac.to_ascii_lowercase());
        self.unique(macs, |i| format!("services.dhcp.reservations[{i}].mac"), "MAC address");
        let addresses = dhcp.reservations.iter().map(|r| r.address);
        self.unique(addresses, |i| format!("services.dhcp.reservations[{i}].address"), "address");
    }

    fn ntp(&mut self) {
        let ntp = &self.c.services.ntp;
        for (i, s) in ntp.servers.iter().enumerate() {
            if s.parse::<IpAddr>().is_err() && !syntax::is_hostname(s) {
                self.err(
                    format!("services.ntp.servers[{i}]"),
                    format!("{s:?} is not a host name or address"),
                    "give a server or pool such as 0.debian.pool.ntp.org",
                );
            }
        }
        if ntp.enabled && ntp.servers.is_empty() {
            self.err(
                "services.ntp.servers",
                "NTP is enabled but has no upstream server",
                "add a pool such as 0.debian.pool.ntp.org",
            );
        }
    }

    fn mail(&mut self) {
        let mail = &self.c.services.mail;
        for (i, d) in mail.domains.iter().enumerate() {
            self.hostname(format_args!("services.mail.domains[{i}]"), d);
        }
        self.unique(mail.domains.iter(), |i| format!("services.mail.domains[{i}]"), "domain");
        if mail.enabled && mail.domains.is_empty() {
            self.err(
                "services.mail.domains",
                "mail is enabled but receives for no domain",
                format!("add a domain, e.g. {}", self.c.domain()),
            );
        }
        for (i, m) in mail.mailboxes.iter().enumerate() {
            let p = format!("services.mail.mailboxes[{i}]");
            match m.address.split_once('@') {
                Some((_, domain)) if syntax::is_mail_address(&m.address) => {
                    if !mail.domains.iter().any(|d| d == domain) {
                        self.err(
                            format!("{p}.address"),
                            format!("{domain:?} is not one of services.mail.domains"),
                            "add the domain to services.mail.domains or use one listed there",
                        );
                    }
                }
                _ => self.err(
                    format!("{p}.address"),
                    format!("{:?} is not a valid mail address", m.address),
                    "use lowercase local@domain, e.g. alice@home.cell",
                ),
            }
            self.user_ref(format_args!("{p}.user"), &m.user);
        }
        self.unique(
            mail.mailboxes.iter().map(|m| &m.address),
            |i| format!("services.mail.mailboxes[{i}].address"),
            "mailbox",
        );
        for (i, a) in mail.aliases.iter().enumerate() {
            let p = format!("services.mail.aliases[{i}]");
            match a.address.split_once('@') {
                Some((_, domain)) if syntax::is_mail_address(&a.address) => {
                    if !mail.domains.iter().any(|d| d == domain) {
                        self.err(
                            format!("{p}.address"),
                            format!("{domain:?} is not one of services.mail.domains"),
                            "add the domain to services.mail.domains or use one listed there",
                        );
                    } else if mail.mailboxes.iter().any(|m| m.address == a.address) {
                        self.err(
                            format!("{p}.address"),
                            format!("{} is a mailbox already", a.address),
                            "an alias is another address for a mailbox: choose an address no mailbox has",
                        );
                    }
                }
                _ => self.err(
                    format!("{p}.address"),
                    format!("{:?} is not a valid mail address", a.address),
                    "use lowercase local@domain, e.g. info@home.cell",
                ),
            }
            if !mail.mailboxes.iter().any(|m| m.address == a.to) {
                self.err(
                    format!("{p}.to"),
                    format!("{:?} is not one of the cell's mailboxes", a.to),
                    "name a mailbox from services.mail.mailboxes",
                );
            }
        }
        self.unique(
            mail.aliases.iter().map(|a| &a.address),
            |i| format!("services.mail.aliases[{i}].address"),
            "alias",
        );
    }

    fn user_services(&mut self) {
        for (service, users) in [("calendar", &self.c.services.calendar.users), ("files", &self.c.services.files.users)]
        {
            for (i, u) in users.iter().enumerate() {
                self.user_ref(format_args!("services.{service}.users[{i}]"), u);
            }
            self.unique(users.iter(), |i| format!("services.{service}.users[{i}]"), "user");
        }
    }

    fn users(&mut self) {
        for (i, u) in self.c.users.iter().enumerate() {
            self.label(format_args!("users[{i}].name"), &u.name);
        }
        self.unique(self.c.users.iter().map(|u| &u.name), |i| format!("users[{i}].name"), "user name");
        if !self.c.users.is_empty() && !self.c.users.iter().any(|u| u.role == Role::Admin) {
            self.err(
                "users",
                "no user has the role admin",
                "give at least one user \"role\": \"admin\" so someone can manage the cell",
            );
        }
    }

    /// Published host ports must be valid and must not collide between enabled services.
    fn ports(&mut self) {
        let mut seen: BTreeMap<(services::Protocol, u16), &'static str> = BTreeMap::new();
        for service in services::enabled(self.c) {
            for p in (service.ports)(self.c) {
                if p.port == 0 {
                    self.err(p.field, "port 0 is not a port", "use a port from 1 to 65535");
                    continue;
                }
                match seen.get(&(p.protocol, p.port)).copied() {
                    Some(first) if first != p.field => {
                        // Blame the field the user can change: fixed ports are named after their service.
                        let (blamed, other) =
                            if p.field.ends_with("_port") { (p.field, first) } else { (first, p.field) };
                        self.err(
                            blamed,
                            format!("{}/{} is also published by {other}", p.port, p.protocol),
                            "choose a port no other service publishes",
                        );
                    }
                    _ => {
                        seen.insert((p.protocol, p.port), p.field);
                    }
                }
            }
        }
    }

    fn backups(&mut self) {
        let b = &self.c.backups;
        if let Some(schedule) = &b.schedule {
            if super::backup_time(&schedule.at).is_none() {
                self.err(
                    "backups.schedule.at",
                    format!("{:?} is not a time of day", schedule.at),
                    "write it as HH:MM on a 24-hour clock, e.g. \"03:30\"",
                );
            }
            if schedule.on.is_some() && schedule.every == super::Every::Day {
                self.err(
                    "backups.schedule.on",
                    "a daily schedule has no day",
                    "remove `on`, or set `every` to \"week\"",
                );
            }
        }
        if b.keep.daily == 0 && b.keep.weekly == 0 {
            self.err(
                "backups.keep",
                "keeping no archive would remove each one as soon as it is made",
                "keep at least one: set `daily` or `weekly` above 0",
            );
        }
        if let Some(destination) = &b.destination {
            let path = std::path::Path::new(destination);
            let plain = path.is_absolute()
                && path.components().skip(1).all(|c| matches!(c, std::path::Component::Normal(_)))
                && destination.len() <= 255
                && destination.bytes().all(|c| c.is_ascii_alphanumeric() || b"/._-".contains(&c));
            if !plain || destination == "/" {
                self.err(
                    "backups.destination",
                    format!("{destination:?} is not a plain absolute path of a folder"),
                    "name the mounted folder from the root, with letters, digits, `.`, `_`, `-`, e.g. /mnt/usb/pic-backups",
                );
            }
        }
    }

    fn logging(&mut self) {
        for name in self.c.logging.levels.keys() {
            if name != API_SERVICE && services::get(name).is_none() {
                let known: Vec<&str> = std::iter::once(API_SERVICE).chain(CATALOG.iter().map(|s| s.name)).collect();
                self.err(
                    format!("logging.levels.{name}"),
                    format!("there is no service named {name:?}"),
                    format!("use some of: {}", known.join(", ")),
                );
            }
        }
    }

    /// Names under the cell domain: services, the web UI, peers, DHCP reservations and extra
    /// records must not claim the same name for different things.
    fn names(&mut self) {
        let c = self.c;
        let mut owners: HashMap<&str, NameOwner> = HashMap::new();
        owners.insert(WEBUI_HOST, NameOwner::WebUi);
        for s in CATALOG {
            owners.insert(s.host, NameOwner::Service(s.name));
        }
        let mut claim = |v: &mut Self, name: &'a str, owner: NameOwner| match owners.get(name) {
            // Repeats within one kind (two peers, two records) are reported by that kind's own rule.
            Some(first) if first.same_kind(&owner) => {}
            Some(first) => v.err(
                owner.to_string(),
                format!("the name {name:?} is already taken by {first}"),
                "choose another name",
            ),
            None => {
                owners.insert(name, owner);
            }
        };
        for (i, p) in c.wireguard.peers.iter().enumerate() {
            if syntax::is_label(&p.name) {
                claim(self, &p.name, NameOwner::Peer(i));
            }
        }
        for (i, r) in c.services.dhcp.reservations.iter().enumerate() {
            if syntax::is_label(&r.name) {
                claim(self, &r.name, NameOwner::Reservation(i));
            }
        }
        for (i, r) in c.services.dns.records.iter().enumerate() {
            if syntax::is_hostname(&r.name) {
                claim(self, &r.name, NameOwner::Record(i));
            }
        }
    }
}

/// What claimed a name under the cell domain; shown as the field that claimed it.
#[derive(Debug, Clone, Copy)]
enum NameOwner {
    WebUi,
    Service(&'static str),
    Peer(usize),
    Reservation(usize),
    Record(usize),
}

impl NameOwner {
    fn same_kind(&self, other: &NameOwner) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

impl fmt::Display for NameOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameOwner::WebUi => f.write_str("the web UI"),
            NameOwner::Service(name) => write!(f, "service {name}"),
            NameOwner::Peer(i) => write!(f, "wireguard.peers[{i}].name"),
            NameOwner::Reservation(i) => write!(f, "services.dhcp.reservations[{i}].name"),
            NameOwner::Record(i) => write!(f, "services.dns.records[{i}].name"),
        }
    }
}
