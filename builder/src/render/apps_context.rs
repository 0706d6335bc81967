//! The installed apps as templates see them: each app's container (from its manifest and
//! settings) and the proxy's site for it, with who may reach it. Apps have no port of their own
//! outside the cell network: the firewall admits devices of the VPN to the services' endpoints
//! only, so an app is reached through Caddy, whose rules below say who it serves.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::ValidConfig;
use crate::config::access::AccessPolicy;
use crate::config::app::{App, Health, SettingKind};

/// Private and local ranges: the sources an app's `access.lan` is about.
const PRIVATE_RANGES: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "127.0.0.0/8",
    "fc00::/7",
    "fe80::/10",
    "::1/128",
];

#[derive(Debug, Serialize)]
pub struct AppView {
    pub name: String,
    /// `app-<name>`: its store path, container and data folder are named so.
    pub service: String,
    pub version: String,
    pub fqdn: String,
    pub address: String,
    /// What Caddy forwards to: `address:port`.
    pub upstream: String,
    pub image: String,
    pub command: Vec<String>,
    pub user: String,
    pub capabilities: Vec<String>,
    pub tmpfs: Vec<String>,
    pub data_dirs: Vec<String>,
    pub mounts: Vec<MountView>,
    /// Credential files (secret settings) in the credentials mount.
    pub credentials: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub health: serde_json::Value,
    /// Requests the proxy refuses: each rule refuses sources in `from` that are not in `except`.
    pub refused: Vec<RefusalView>,
}

#[derive(Debug, Serialize)]
pub struct MountView {
    pub source: String,
    pub target: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct RefusalView {
    /// Who is refused, for the page a refused browser shows.
    pub who: &'static str,
    pub from: Vec<String>,
    pub except: Vec<String>,
}

pub fn apps(config: &ValidConfig, policy: &AccessPolicy<'_>, domain: &str) -> Vec<AppView> {
    config.apps.iter().map(|app| view(config, policy, domain, app)).collect()
}

fn view(config: &ValidConfig, policy: &AccessPolicy<'_>, domain: &str, app: &App) -> AppView {
    let m = &app.manifest;
    let fqdn = format!("{}.{domain}", m.site.host);
    let mut env = BTreeMap::from([
        ("PIC_APP_URL".to_owned(), format!("https://{fqdn}/")),
        ("PIC_CELL_DOMAIN".to_owned(), domain.to_owned()),
    ]);
    let mut credentials = Vec::new();
    for (name, setting) in &m.settings {
        if setting.kind == SettingKind::Secret {
            credentials.push(app.secret_file(name));
            continue;
        }
        let value = match app.setting(name) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => continue,
        };
        env.insert(format!("SETTING_{}", name.to_uppercase()), value);
    }
    let health = match &m.health {
        Health::Tcp { port } => serde_json::json!({"kind": "tcp", "port": port}),
        Health::Http { port, path } => serde_json::json!({"kind": "http", "port": port, "path": path}),
    };
    let mut tmpfs = vec!["/run".to_owned(), "/tmp".to_owned()];
    tmpfs.extend(m.container.tmpfs.iter().cloned());
    AppView {
        name: app.name.clone(),
        service: app.service(),
        version: app.version.clone(),
        fqdn,
        address: app.address.to_string(),
        upstream: format!("{}:{}", app.address, m.container.port),
        image: app.image_tag(),
        command: m.container.command.clone(),
        user: m.container.user.clone(),
        capabilities: m.container.capabilities.clone(),
        tmpfs,
        data_dirs: m.data.clone(),
        mounts: m
            .container
            .mounts
            .iter()
            .map(|mount| MountView { source: format!("data/{}", mount.source), target: mount.target.clone() })
            .collect(),
        credentials,
        env,
        health,
        refused: refusals(config, policy, app),
    }
}

/// Who the proxy refuses for `app`: devices of the VPN it does not admit, the LAN unless
/// `access.lan`, the internet unless `access.public`. The cell network (the host, and requests
/// the host itself makes through a published port) is always served.
fn refusals(config: &ValidConfig, policy: &AccessPolicy<'_>, app: &App) -> Vec<RefusalView> {
    let access = &app.manifest.access;
    let text = |nets: &[ipnet::Ipv4Net]| nets.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let restricted = text(&policy.restricted);
    let mut refused = Vec::new();
    if !restricted.is_empty() {
        let admitted: Vec<ipnet::Ipv4Net> = match access.peers {
            true => ipnet::Ipv4Net::aggregate(
                &policy
                    .devices
                    .iter()
                    .filter(|d| d.access.is_none_or(|names| names.contains(&app.name)))
                    .map(|d| ipnet::Ipv4Net::from(d.address))
                    .collect::<Vec<_>>(),
            ),
            false => Vec::new(),
        };
        refused.push(RefusalView { who: "this device of the VPN", from: restricted.clone(), except: text(&admitted) });
    }
    if !access.lan {
        let mut except = restricted.clone();
        except.push(config.network.subnet.trunc().to_string());
        refused.push(RefusalView {
            who: "the local network",
            from: PRIVATE_RANGES.iter().map(|s| (*s).to_owned()).collect(),
            except,
        });
    }
    if !access.public {
        refused.push(RefusalView {
            who: "the internet",
            from: vec!["0.0.0.0/0".into(), "::/0".into()],
            except: PRIVATE_RANGES.iter().map(|s| (*s).to_owned()).collect(),
        });
    }
    refused
}
