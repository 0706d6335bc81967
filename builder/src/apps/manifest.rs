//! An app's manifest (`manifest.toml` in a store index): what the app is, the image it is built
//! from (Debian packages, like `images/`), how its container runs, where Caddy serves it, who
//! may reach it, its data folders and its health probe. Validation refuses anything that would
//! give an app more than a service of the cell has: privileged mode, the host's network, paths
//! outside its data folder, capabilities off the allow-list. Every problem names its field.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::syntax;
use crate::error::FieldError;

/// The capabilities an app may ask for: what the cell's own daemons use to drop privileges and
/// own their files. Anything that reaches the kernel's or the network's configuration is not.
pub const ALLOWED_CAPABILITIES: &[&str] =
    &["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETGID", "SETUID", "SYS_CHROOT"];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub description: String,
    /// A file beside the manifest (SVG or PNG).
    #[serde(default)]
    pub icon: Option<String>,
    pub image: Image,
    pub container: Container,
    pub site: Site,
    #[serde(default)]
    pub access: Access,
    /// Folders under the app's data folder, kept across updates and removal.
    #[serde(default)]
    pub data: Vec<String>,
    pub health: Health,
    /// Whether the app's data goes into backups made with `--include-data`.
    #[serde(default = "yes")]
    pub backup: bool,
    /// The settings a user gives at install, by name.
    #[serde(default)]
    pub settings: BTreeMap<String, Setting>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// Debian packages of the cell's suite, installed over the shared base layer.
    pub packages: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    pub command: Vec<String>,
    pub user: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The port the app listens on inside its container (Caddy forwards to it).
    pub port: u16,
    /// Present only to be refused with a reason: an app never runs privileged.
    #[serde(default)]
    pub privileged: bool,
    /// `cell` (the cell network, the only one allowed).
    #[serde(default = "cell_network")]
    pub network: String,
    /// Further mounts: only folders of the app's own data (relative paths) may be named.
    #[serde(default)]
    pub mounts: Vec<Mount>,
}

fn cell_network() -> String {
    "cell".into()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    pub source: String,
    pub target: String,
}

/// Where Caddy serves the app: `<host>.<cell domain>`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub host: String,
}

/// Who may reach the app: devices of the VPN (those whose access list names it), the LAN, the
/// internet (through the published HTTPS port).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    #[serde(default = "yes")]
    pub peers: bool,
    #[serde(default)]
    pub lan: bool,
    #[serde(default)]
    pub public: bool,
}

impl Default for Access {
    fn default() -> Self {
        Access { peers: true, lan: false, public: false }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Health {
    Tcp { port: u16 },
    Http { port: u16, path: String },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setting {
    #[serde(rename = "type")]
    pub kind: SettingKind,
    pub description: String,
    #[serde(default)]
    pub default: Option<toml::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingKind {
    String,
    Integer,
    Boolean,
}

/// Host names the cell's own services use: an app may not take them.
const RESERVED_HOSTS: &[&str] = &["pic", "calendar", "files", "webmail", "mail", "dns", "ntp", "dhcp", "vpn", "proxy"];

impl Manifest {
    /// Every problem of the manifest, each naming its field.
    pub fn problems(&self) -> Vec<FieldError> {
        let mut problems = Vec::new();
        let mut err = |path: &str, message: String, hint: &str| {
            problems.push(FieldError { path: path.into(), message, hint: hint.into() })
        };
        if !syntax::is_label(&self.name) {
            err(
                "name",
                format!("{:?} is not a valid app name", self.name),
                "use lowercase letters, digits and hyphens",
            );
        }
        let printable = |s: &str| !s.is_empty() && s.len() <= 200 && syntax::is_safe_text(s);
        if !printable(&self.version) || self.version.contains(' ') {
            err("version", format!("{:?} is not a version", self.version), "use e.g. 1.2.3 or 2024.02.06-1");
        }
        if !printable(&self.description) {
            err("description", "is empty, too long or has quoting characters".into(), "one plain sentence");
        }
        if let Some(icon) = &self.icon
            && !relative_path(icon)
        {
            err("icon", format!("{icon:?} is not a file beside the manifest"), "name a file in the app's folder");
        }
        for (i, package) in self.image.packages.iter().enumerate() {
            if !package.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+-.".contains(&c)) {
                err(
                    &format!("image.packages[{i}]"),
                    format!("{package:?} is not a Debian package name"),
                    "e.g. dokuwiki",
                );
            }
        }
        if self.image.packages.is_empty() {
            err("image.packages", "names no package".into(), "list the Debian packages the app needs");
        }
        let c = &self.container;
        if c.privileged {
            err(
                "container.privileged",
                "an app may not run privileged".into(),
                "remove it; ask for capabilities instead",
            );
        }
        if c.network != "cell" {
            err(
                "container.network",
                format!("{:?}: an app runs on the cell network only", c.network),
                "remove it: the host's network is not given to apps",
            );
        }
        for (i, cap) in c.capabilities.iter().enumerate() {
            if !ALLOWED_CAPABILITIES.contains(&cap.as_str()) {
                err(
                    &format!("container.capabilities[{i}]"),
                    format!("{cap} is not given to apps"),
                    &format!("apps may ask for {}", ALLOWED_CAPABILITIES.join(", ")),
                );
            }
        }
        for (i, m) in c.mounts.iter().enumerate() {
            if !relative_path(&m.source)
                || !self.data.iter().any(|d| m.source == *d || m.source.starts_with(&format!("{d}/")))
            {
                err(
                    &format!("container.mounts[{i}].source"),
                    format!("{:?} is not one of the app's data folders", m.source),
                    "mount only folders listed in `data`: the host's paths are not given to apps",
                );
            }
            if !m.target.starts_with('/') || m.target.split('/').any(|p| p == "..") {
                err(
                    &format!("container.mounts[{i}].target"),
                    format!("{:?} is not an absolute path", m.target),
                    "e.g. /var/lib/app",
                );
            }
        }
        if c.command.is_empty() {
            err("container.command", "is empty".into(), "the program and its arguments");
        }
        if !syntax::is_account_name(&c.user) {
            err("container.user", format!("{:?} is not a user name", c.user), "the user the image's packages create");
        }
        if !syntax::is_label(&self.site.host) || RESERVED_HOSTS.contains(&self.site.host.as_str()) {
            err(
                "site.host",
                format!("{:?} is not a free host name of the cell", self.site.host),
                "e.g. the app's name",
            );
        }
        for (i, d) in self.data.iter().enumerate() {
            if !relative_path(d) {
                err(
                    &format!("data[{i}]"),
                    format!("{d:?} is not a folder inside the app's data"),
                    "a relative path, e.g. pages",
                );
            }
        }
        for (name, setting) in &self.settings {
            if !syntax::is_label(&name.replace('_', "-")) {
                err(&format!("settings.{name}"), "is not a valid setting name".into(), "lowercase letters, digits, _");
            }
            if !printable(&setting.description) {
                err(
                    &format!("settings.{name}.description"),
                    "is empty or has quoting characters".into(),
                    "one sentence",
                );
            }
        }
        problems
    }
}

/// A relative path that stays where it is put: no leading `/`, no `..`, no empty parts.
fn relative_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
        && path.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-/".contains(&c))
}
