//! Character-level rules for the strings of a cell config.
//!
//! Every string that reaches a rendered file passes one of these checks, and none of them admits
//! whitespace, quotes, backslashes, braces, semicolons, `#` or control characters — the characters
//! the target formats (WireGuard INI, unbound, Caddyfile, JSON) give a meaning to.

use base64::Engine;

/// A DNS label: 1 to 63 of `a-z`, `0-9`, `-`, not starting or ending with `-`.
pub fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS name of one or more labels separated by dots, at most 253 characters.
pub fn is_hostname(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}

/// The local part of a mail address: `a-z`, `0-9`, `.`, `_`, `-`, `+`, no dot at either end.
pub fn is_mail_local_part(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-+".contains(&c))
        && !s.starts_with('.')
        && !s.ends_with('.')
}

/// `local@domain` with a valid local part and host name.
pub fn is_mail_address(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => is_mail_local_part(local) && is_hostname(domain),
        None => false,
    }
}

/// A MAC address written as six pairs of hex digits separated by colons.
pub fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.bytes().all(|c| c.is_ascii_hexdigit()))
}

/// A time zone known to the bundled IANA database (`Europe/Berlin`, `UTC`).
pub fn is_timezone(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || b"_+-/".contains(&c))
        && jiff::tz::TimeZone::get(s).is_ok()
}

/// Every time zone `is_timezone` accepts, sorted: what a person picks from.
pub fn timezones() -> Vec<String> {
    let mut zones: Vec<String> =
        jiff::tz::db().available().map(|name| name.to_string()).filter(|name| is_timezone(name)).collect();
    zones.sort();
    zones
}

/// Text for a TXT record: printable ASCII without the characters that quote, escape or
/// delimit in a zone or config file, at most 255 characters.
pub fn is_safe_text(s: &str) -> bool {
    s.len() <= 255 && s.bytes().all(|c| (0x20..0x7f).contains(&c) && !b"\"'\\;{}#`$".contains(&c))
}

/// A WireGuard key: base64 of exactly 32 bytes.
pub fn is_wireguard_key(s: &str) -> bool {
    let mut key = [0u8; 33];
    s.len() == 44 && base64::engine::general_purpose::STANDARD.decode_slice(s, &mut key).is_ok_and(|len| len == 32)
}

/// `host:port` with a host name or IPv4 address, or `[ipv6]:port`; port 1 to 65535.
pub fn is_endpoint(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0) && !port.starts_with('0');
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        host.parse::<std::net::Ipv4Addr>().is_ok() || is_hostname(host)
    };
    port_ok && host_ok
}

/// An account name at a provider: 1 to 128 of letters, digits and `._@+-`.
pub fn is_account_name(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_alphanumeric() || b"._@+-".contains(&c))
}

/// A network interface's name as Linux allows it: 1 to 15 of letters, digits and `._-`.
pub fn is_interface_name(s: &str) -> bool {
    (1..=15).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
}

/// The text of a URL a client calls: printable ASCII without whitespace, quotes, backslashes,
/// braces, `;` or `#` (so that it may reach a rendered file), at most 2048 characters (the URL's
/// own syntax is checked by `url`).
pub fn is_url_text(s: &str) -> bool {
    s.len() <= 2048 && s.bytes().all(|c| (0x21..0x7f).contains(&c) && !b"\"'\\{};#`<>|^".contains(&c))
}

/// One or more PEM certificates and nothing else (the text is rendered into files a daemon
/// reads), the first of which parses as X.509.
pub fn is_pem_certificate(s: &str) -> bool {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut inside = false;
    let mut blocks = 0;
    for line in s.trim().lines().map(str::trim_end) {
        match line {
            BEGIN if !inside => inside = true,
            END if inside => {
                inside = false;
                blocks += 1;
            }
            _ if inside && !line.is_empty() => {
                if !line.bytes().all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c)) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    blocks > 0
        && !inside
        && x509_parser::pem::parse_x509_pem(s.trim().as_bytes()).is_ok_and(|(_, pem)| pem.parse_x509().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for good in ["a", "home", "laptop-2", "0day"] {
            assert!(is_label(good), "{good}");
        }
        for bad in ["", "-a", "a-", "Home", "a.b", "a b", "evil\n}", &"a".repeat(64)] {
            assert!(!is_label(bad), "{bad:?}");
        }
    }

    #[test]
    fn endpoints() {
        for good in ["vpn.example.org:51820", "203.0.113.7:1", "[2001:db8::1]:51820"] {
            assert!(is_endpoint(good), "{good}");
        }
        for bad in ["vpn.example.org", "vpn:0", "vpn:65536", "vpn:0123", "a b:1", "[::1:1"] {
            assert!(!is_endpoint(bad), "{bad}");
        }
    }

    #[test]
    fn text_and_keys() {
        assert!(is_safe_text("v=spf1 mx -all"));
        assert!(!is_safe_text("a\"b") && !is_safe_text("a\nb") && !is_safe_text("a;b"));
        assert!(is_wireguard_key("YNqHwpcAmVj0lVzPATSQwP2yI7TsGO1vYjNeqVd7eFw="));
        assert!(!is_wireguard_key("YNqHwpcAmVj0lVzPATSQwP2yI7TsGO1vYjNeqVd7eF=="));
        assert!(is_timezone("Europe/Berlin") && is_timezone("UTC") && !is_timezone("Mars/Base"));
        let zones = timezones();
        assert!(zones.len() > 300 && zones.contains(&"America/Argentina/Buenos_Aires".to_string()));
        assert!(zones.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn pem_certificates() {
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = rcgen::CertificateParams::new(vec!["root.test".into()]).unwrap().self_signed(&key).unwrap().pem();
        assert!(is_pem_certificate(&pem));
        assert!(is_pem_certificate(&format!("{pem}{pem}")), "a chain");
        assert!(!is_pem_certificate(&format!("{pem}\n}}")), "anything after it");
        assert!(!is_pem_certificate(&key.serialize_pem()), "a key");
        assert!(!is_pem_certificate(""));
    }
}
