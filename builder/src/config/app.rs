//! Apps from the service store: the manifest a store index signs (what the app is, the image it is
//! built from, how its container runs, where Caddy serves it, who may reach it, its data folders,
//! its health probe, its settings) and the config's entry of an installed app, which carries the
//! manifest it was installed from, so that every generation holds what it needs to run the app
//! and a rollback needs no index.
//!
//! The rules refuse anything that would give an app more than a service of the cell has:
//! privileged mode, the host's network, paths outside its data folder, capabilities off the
//! allow-list. Every problem names its field.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::syntax;
use super::validate::FieldError;

/// The capabilities an app may ask for: what the cell's own daemons use to drop privileges and
/// own their files. Anything that reaches the kernel's or the network's configuration is not.
pub const ALLOWED_CAPABILITIES: &[&str] =
    &["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETGID", "SETUID", "SYS_CHROOT"];

/// The prefix of an app's service name in generations, containers and `data/`.
pub const SERVICE_PREFIX: &str = "app-";

/// An installed app: the manifest it was installed from and the admin's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// The app's name in the store (equal to its manifest's).
    pub name: String,
    /// The installed version (equal to its manifest's).
    pub version: String,
    /// Its address on the cell network, chosen at install.
    pub address: Ipv4Addr,
    /// Values of the manifest's settings, by name; a setting left out takes its default. Secret
    /// settings are never here: the cell makes them and keeps them in `secrets/`.
    #[serde(default)]
    pub settings: BTreeMap<String, serde_json::Value>,
    /// The manifest, as the store's signed index had it when the app was installed or updated.
    pub manifest: Manifest,
}

impl App {
    /// The app's service name: `app-<name>`.
    pub fn service(&self) -> String {
        format!("{SERVICE_PREFIX}{}", self.name)
    }

    /// The value of a non-secret setting: the config's, else the manifest's default.
    pub fn setting(&self, name: &str) -> Option<&serde_json::Value> {
        self.settings.get(name).or_else(|| self.manifest.settings.get(name)?.default.as_ref())
    }

    /// The Docker tag of the app's image: its service name and a hash of what the image is made
    /// of, so that the images of the versions retained generations use are kept side by side.
    pub fn image_tag(&self) -> String {
        use sha2::Digest;
        let image = serde_json::to_vec(&(&self.manifest.image, &self.manifest.container.user))
            .expect("an image section serializes");
        let key = hex::encode(sha2::Sha256::digest(&image));
        format!("pic/{}:{}", self.service(), &key[..16])
    }

    /// The name of the credential file (under `secrets/credentials/`) of a secret setting.
    pub fn secret_file(&self, setting: &str) -> String {
        format!("{}.{setting}", self.service())
    }
}

/// An app's manifest (`manifest.toml` in a store index).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub description: String,
    /// A file beside the manifest (SVG or PNG).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    pub image: Image,
    pub container: Container,
    pub site: Site,
    #[serde(default)]
    pub access: Access,
    /// Folders of the app's data (`data/app-<name>/<folder>`), kept across updates and removal.
    #[serde(default)]
    pub data: Vec<String>,
    pub health: Health,
    /// Whether the app's data goes into backups made with `--include-data`.
    #[serde(default = "yes")]
    pub backup: bool,
    /// The settings an admin gives at install, by name.
    #[serde(default)]
    pub settings: BTreeMap<String, Setting>,
}

fn yes() -> bool {
    true
}

/// What the app's image is made of: Debian packages of the cell's suite over the shared base
/// layer, and files (an entrypoint, a config) written over them. No registry, no build script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub packages: Vec<String>,
    #[serde(default)]
    pub files: Vec<ImageFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageFile {
    /// Where in the image (absolute).
    pub path: String,
    pub content: String,
    /// Permission bits, e.g. 0o755 for a script.
    #[serde(default = "file_mode")]
    pub mode: u32,
}

fn file_mode() -> u32 {
    0o644
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Container {
    pub command: Vec<String>,
    /// The user the image's packages create; it owns the app's data.
    pub user: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The port the app listens on inside its container (Caddy forwards to it).
    pub port: u16,
    /// Present only to be refused with a reason: an app never runs privileged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// `cell` (the cell network, the only one allowed).
    #[serde(default = "cell_network")]
    pub network: String,
    /// Where the data folders appear in the container: only folders of the app's own data.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Further writable folders in memory (the root is read-only; `/run` and `/tmp` always are).
    #[serde(default)]
    pub tmpfs: Vec<String>,
}

fn cell_network() -> String {
    "cell".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// A folder of `data` (relative).
    pub source: String,
    pub target: String,
}

/// Where Caddy serves the app: `<host>.<cell domain>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub host: String,
}

/// Who may reach the app through Caddy: devices of the VPN (those whose access list names it),
/// the LAN (private addresses), the internet (through the published HTTPS port).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Health {
    Tcp { port: u16 },
    Http { port: u16, path: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Setting {
    #[serde(rename = "type")]
    pub kind: SettingKind,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SettingKind {
    /// In the container's environment as `SETTING_<NAME>`.
    String,
    Integer,
    Boolean,
    /// Made by the cell (random) and kept in `secrets/`: a file in the container's credentials
    /// folder (`/run/pic/credentials/app-<name>.<setting>`), never in the config.
    Secret,
}

impl SettingKind {
    fn admits(self, value: &serde_json::Value) -> bool {
        match self {
            SettingKind::String => value.as_str().is_some_and(is_setting_text),
            SettingKind::Integer => value.is_i64(),
            SettingKind::Boolean => value.is_boolean(),
            SettingKind::Secret => false,
        }
    }

    fn expected(self) -> &'static str {
        match self {
            SettingKind::String => "a line of text (no control characters, at most 1000 characters)",
            SettingKind::Integer => "a whole number",
            SettingKind::Boolean => "true or false",
            SettingKind::Secret => "a value of the config: a secret setting is kept in secrets/",
        }
    }
}

fn is_setting_text(s: &str) -> bool {
    s.len() <= 1000 && !s.chars().any(char::is_control)
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
        // Descriptions are shown, never rendered into a daemon's file: any printable text.
        let sentence = |s: &str| !s.trim().is_empty() && s.len() <= 300 && !s.chars().any(char::is_control);
        if !printable(&self.version) || self.version.contains(' ') {
            err("version", format!("{:?} is not a version", self.version), "use e.g. 1.2.3 or 2024.02.06-1");
        }
        if !sentence(&self.description) {
            err("description", "is empty, too long or has control characters".into(), "one plain sentence");
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
        for (i, file) in self.image.files.iter().enumerate() {
            if !absolute_path(&file.path) {
                err(
                    &format!("image.files[{i}].path"),
                    format!("{:?} is not an absolute path", file.path),
                    "e.g. /usr/local/bin/start",
                );
            }
            if file.mode & !0o777 != 0 {
                err(
                    &format!("image.files[{i}].mode"),
                    format!("{:o} has bits beyond the permissions", file.mode),
                    "use 0o644 or 0o755: no setuid, setgid or sticky bit",
                );
            }
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
            if !absolute_path(&m.target) {
                err(
                    &format!("container.mounts[{i}].target"),
                    format!("{:?} is not an absolute path", m.target),
                    "e.g. /var/lib/app",
                );
            }
        }
        for (i, path) in c.tmpfs.iter().enumerate() {
            if !absolute_path(path) {
                err(
                    &format!("container.tmpfs[{i}]"),
                    format!("{path:?} is not an absolute path"),
                    "e.g. /var/cache/app",
                );
            }
        }
        if c.command.is_empty() || c.command.iter().any(|a| a.is_empty() || a.chars().any(char::is_control)) {
            err(
                "container.command",
                "is empty or has an empty or unprintable argument".into(),
                "the program and its arguments",
            );
        }
        if !syntax::is_account_name(&c.user) {
            err("container.user", format!("{:?} is not a user name", c.user), "the user the image's packages create");
        }
        if c.port == 0 {
            err("container.port", "is 0".into(), "the port the app listens on inside its container");
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
        if let Health::Http { path, .. } = &self.health
            && (!path.starts_with('/') || !syntax::is_url_text(path))
        {
            err("health.path", format!("{path:?} is not a URL path"), "e.g. / or /health");
        }
        for (name, setting) in &self.settings {
            if !is_setting_name(name) {
                err(&format!("settings.{name}"), "is not a valid setting name".into(), "lowercase letters, digits, _");
            }
            if !sentence(&setting.description) {
                err(
                    &format!("settings.{name}.description"),
                    "is empty, too long or has control characters".into(),
                    "one sentence",
                );
            }
            if let Some(default) = &setting.default
                && !setting.kind.admits(default)
            {
                err(
                    &format!("settings.{name}.default"),
                    format!("{default} is not {}", setting.kind.expected()),
                    "give a default of the setting's type, or none",
                );
            }
        }
        problems
    }

    /// The problems of `settings` (an installed app's values) against the manifest's settings,
    /// with paths under `prefix`.
    pub fn settings_problems(&self, settings: &BTreeMap<String, serde_json::Value>, prefix: &str) -> Vec<FieldError> {
        let mut problems = Vec::new();
        for (name, value) in settings {
            let path = format!("{prefix}.{name}");
            match self.settings.get(name) {
                None => {
                    let known: Vec<&str> = self.settings.keys().map(String::as_str).collect();
                    problems.push(FieldError {
                        path,
                        message: format!("{} has no setting named {name:?}", self.name),
                        hint: if known.is_empty() {
                            "this app takes no settings".into()
                        } else {
                            format!("use some of: {}", known.join(", "))
                        },
                    });
                }
                Some(setting) if setting.kind == SettingKind::Secret => problems.push(FieldError {
                    path,
                    message: "is a secret setting: the cell keeps it in secrets/, never in the config".into(),
                    hint: "leave it out (the cell makes one), or give it with `pic store install --set`".into(),
                }),
                Some(setting) if !setting.kind.admits(value) => problems.push(FieldError {
                    path,
                    message: format!("{value} is not {}", setting.kind.expected()),
                    hint: setting.description.clone(),
                }),
                Some(_) => {}
            }
        }
        for (name, setting) in &self.settings {
            let given = settings.contains_key(name) || setting.default.is_some();
            if setting.kind != SettingKind::Secret && !given {
                problems.push(FieldError {
                    path: format!("{prefix}.{name}"),
                    message: "is required: the manifest gives no default".into(),
                    hint: setting.description.clone(),
                });
            }
        }
        problems
    }
}

fn is_setting_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        && name.as_bytes()[0].is_ascii_lowercase()
}

/// A relative path that stays where it is put: no leading `/`, no `..`, no empty parts.
fn relative_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
        && path.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-/".contains(&c))
}

/// An absolute path without `..` or characters a shell or a file format would read.
fn absolute_path(path: &str) -> bool {
    path.strip_prefix('/').is_some_and(relative_path)
}
