//! A service's `container.json` (rendered by its template) and how its symbolic mount sources map
//! onto the state directory.

use serde::Deserialize;

/// What the template says about running a service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    pub service: String,
    pub image: String,
    pub command: Vec<String>,
    pub user: String,
    pub cap_drop: Vec<String>,
    pub cap_add: Vec<String>,
    pub read_only_root: bool,
    pub tmpfs: Vec<String>,
    /// The certificates (by name) in the `tls` mount: `<name>/cert.pem` and `<name>/key.pem`.
    pub tls_sites: Vec<String>,
    /// Folders under the data mount to create (owned by the service's user) before it starts.
    pub data_dirs: Vec<String>,
    /// The daemon's credential files (from `secrets/credentials/`) in the `credentials` mount.
    pub credentials: Vec<String>,
    pub mounts: Vec<Mount>,
    /// The resolvers the container asks (an app asks the cell's DNS service); none: Docker's.
    #[serde(default)]
    pub dns: Vec<String>,
    /// The container's environment (an app's settings).
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Host devices it needs (an OpenVPN exit: `/dev/net/tun`).
    #[serde(default)]
    pub devices: Vec<String>,
    /// Kernel settings of its own network namespace (an exit forwards: `net.ipv4.ip_forward`).
    #[serde(default)]
    pub sysctls: std::collections::BTreeMap<String, String>,
    pub ports: Vec<Port>,
    pub network: Network,
    pub health: Health,
    pub reload: Option<Reload>,
    /// New certificates need a restart: the daemon's reload keeps the ones it loaded (Caddy
    /// 2.6 ignores a reload whose config text is unchanged).
    #[serde(default)]
    pub restart_for_certificates: bool,
}

impl ContainerSpec {
    /// The Docker reference of its image: the spec's own tag (an app's), else `:latest`.
    pub fn image_ref(&self) -> String {
        if self.image.contains(':') { self.image.clone() } else { format!("{}:latest", self.image) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// `bundle`, `data`, `data/<folder>` (an app's data folder), `tls`, `credentials` or `ca`.
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub host: u16,
    pub container: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub name: String,
    pub address: String,
}

/// How to tell the service works.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Health {
    /// A DNS query for `query` gets an answer.
    Dns { port: u16, query: String },
    /// A TCP connection is accepted.
    Tcp { port: u16 },
    /// `GET path` answers with a status below 500.
    Http { port: u16, path: String },
    /// An SNTP request gets a server reply.
    Ntp { port: u16 },
    /// The container runs (a DHCP server answers only broadcasts on its own network).
    Process { name: String },
}

/// How a running service takes new config files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Reload {
    Signal {
        signal: String,
    },
    Exec {
        command: Vec<String>,
    },
    /// The daemon reads its files afresh on every request.
    Files,
}

impl ContainerSpec {
    pub fn parse(text: &[u8]) -> Result<ContainerSpec, serde_json::Error> {
        serde_json::from_slice(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every container spec the examples render parses.
    #[test]
    fn every_rendered_spec_parses() {
        for example in ["cell.json", "public.json", "ddns.json"] {
            let path = format!("{}/../examples/{example}", env!("CARGO_MANIFEST_DIR"));
            let config = pic_builder::config::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let bundles = pic_builder::render::Renderer::new().render(&config, &test_keys()).unwrap();
            let mut specs = 0;
            for (service, bundle) in bundles {
                if let Some(text) = bundle.files.get("container.json") {
                    let spec = ContainerSpec::parse(text).unwrap_or_else(|e| panic!("{service}: {e}"));
                    assert_eq!(spec.service, service);
                    specs += 1;
                }
            }
            let expected = if example == "cell.json" { 8 } else { 3 };
            assert_eq!(specs, expected, "{example}: container specs");
        }
    }

    fn test_keys() -> pic_builder::render::PublicKeys {
        pic_builder::render::PublicKeys { wireguard: "YNqHwpcAmVj0lVzPATSQwP2yI7TsGO1vYjNeqVd7eFw=".into() }
    }
}
