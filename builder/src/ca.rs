//! The cell's certificate authority (rcgen): a P-384 CA whose key never leaves `secrets/ca/`,
//! P-256 leaf certificates for the cell's names, revocation and a CRL.
//!
//! Layout under `secrets/`: `ca/ca.key` (0600), `ca/ca.crt`, `ca/index.json` (every certificate
//! issued), `ca/crl.pem`, and per name `tls/<name>/cert.pem` + `key.pem` (0600) — the files the
//! rendered configs point at (`/run/pic/tls/<name>/…`, mounted read-only by the runtime).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    PKCS_ECDSA_P384_SHA384, RevocationReason, RevokedCertParams, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::config::is_hostname;
use crate::error::{Error, IoContext};
use crate::fsutil;

const CA_VALIDITY_DAYS: i64 = 3650;
/// Short enough for every client's limit on certificates from a user-installed root (825 days).
const LEAF_VALIDITY_DAYS: i64 = 397;
/// A leaf closer than this to expiry is replaced at the next build.
const RENEW_BEFORE_DAYS: i64 = 30;
const CRL_VALIDITY_DAYS: i64 = 30;

/// One certificate the CA issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCert {
    /// Hex serial number.
    pub serial: String,
    /// The name it was issued for (its folder under `tls/`).
    pub name: String,
    pub subject_alt_names: Vec<String>,
    pub not_before: String,
    pub not_after: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
}

/// The CA as a person identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaIdentity {
    pub subject: String,
    /// SHA-256 of the certificate, as browsers and `openssl x509 -fingerprint -sha256` show it.
    pub fingerprint_sha256: String,
    pub not_after: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    /// Next CRL number.
    crl_number: u64,
    certificates: BTreeMap<String, IssuedCert>,
}

pub struct CertificateAuthority {
    secrets: PathBuf,
}

impl CertificateAuthority {
    /// The CA kept in the state directory's `secrets/`.
    pub fn new(secrets: &Path) -> CertificateAuthority {
        CertificateAuthority { secrets: secrets.to_path_buf() }
    }

    fn dir(&self) -> PathBuf {
        self.secrets.join("ca")
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir().join("ca.crt")
    }

    pub fn crl_path(&self) -> PathBuf {
        self.dir().join("crl.pem")
    }

    /// Where the certificate and key for `name` live.
    pub fn leaf_dir(&self, name: &str) -> PathBuf {
        self.secrets.join("tls").join(name)
    }

    /// Creates the CA unless it exists; true when it was created.
    pub fn ensure(&self) -> Result<bool, Error> {
        fsutil::ensure_dir(&self.dir(), 0o700)?;
        if self.cert_path().exists() {
            return Ok(false);
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(ca_error)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name("PIC cell CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.key_identifier_method = KeyIdMethod::Sha256;
        params.serial_number = Some(random_serial());
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
        let cert = params.self_signed(&key).map_err(ca_error)?;
        // The key first: a crash between the two leaves no certificate without its key.
        fsutil::write_atomic(&self.dir().join("ca.key"), key.serialize_pem().as_bytes(), 0o600)?;
        fsutil::write_atomic(&self.cert_path(), cert.pem().as_bytes(), 0o644)?;
        self.write_crl(&mut Index::default())?;
        Ok(true)
    }

    /// The CA certificate (PEM), for clients to trust.
    pub fn certificate_pem(&self) -> Result<String, Error> {
        fs::read_to_string(self.cert_path()).at(&self.cert_path())
    }

    /// What a person checks before trusting the CA: its fingerprint and how long it lasts.
    pub fn identity(&self) -> Result<CaIdentity, Error> {
        let path = self.cert_path();
        let pem = fs::read(&path).at(&path)?;
        let bad = |e: String| Error::Certificate(format!("{}: {e}", path.display()));
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).map_err(|e| bad(e.to_string()))?;
        let cert = pem.parse_x509().map_err(|e| bad(e.to_string()))?;
        let digest = <sha2::Sha256 as sha2::Digest>::digest(&pem.contents);
        let fingerprint = digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
        Ok(CaIdentity {
            subject: cert.subject().to_string(),
            fingerprint_sha256: fingerprint,
            not_after: cert
                .validity()
                .not_after
                .to_datetime()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        })
    }

    /// Every certificate issued, by serial.
    pub fn list(&self) -> Result<Vec<IssuedCert>, Error> {
        Ok(self.index()?.certificates.into_values().collect())
    }

    /// Issues a new leaf for `name` (and extra names, which may be wildcards `*.<name>`),
    /// replacing the files under `tls/<name>/`.
    pub fn issue(&self, name: &str, extra_names: &[String]) -> Result<IssuedCert, Error> {
        let extra = extra_names.iter().map(|n| n.strip_prefix("*.").unwrap_or(n));
        for n in std::iter::once(name).chain(extra) {
            if !is_hostname(n) {
                return Err(Error::InvalidName(n.to_string()));
            }
        }
        self.sign_leaf(name, name, wanted_names(name, extra_names))
    }

    /// Signs a leaf for `sans` (names or IP addresses) into `tls/<dir>/` and records it as `dir`.
    fn sign_leaf(&self, dir: &str, common_name: &str, sans: Vec<String>) -> Result<IssuedCert, Error> {
        let issuer = self.issuer()?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(ca_error)?;
        let mut params = CertificateParams::new(sans.clone()).map_err(ca_error)?;
        params.distinguished_name = self::name(common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let serial = random_serial();
        params.serial_number = Some(serial.clone());
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(LEAF_VALIDITY_DAYS);
        let cert = params.signed_by(&key, &issuer).map_err(ca_error)?;

        let leaf_dir = self.leaf_dir(dir);
        fsutil::ensure_dir(&self.secrets.join("tls"), 0o700)?;
        fsutil::ensure_dir(&leaf_dir, 0o700)?;
        fsutil::write_atomic(&leaf_dir.join("key.pem"), key.serialize_pem().as_bytes(), 0o600)?;
        fsutil::write_atomic(&leaf_dir.join("cert.pem"), cert.pem().as_bytes(), 0o644)?;
        let issued = IssuedCert {
            serial: hex::encode(serial.to_bytes()),
            name: dir.to_string(),
            subject_alt_names: sans,
            not_before: rfc3339(params.not_before),
            not_after: rfc3339(params.not_after),
            revoked: None,
        };
        let mut index = self.index()?;
        index.certificates.insert(issued.serial.clone(), issued.clone());
        self.write_index(&index)?;
        Ok(issued)
    }

    /// Makes sure the leaf `name` covers exactly `addresses` (the device's LAN addresses, which
    /// a browser opens the cell at before it uses the cell's names). With no address known, an
    /// existing leaf stays and a missing one is made for 127.0.0.1, so that the proxy can start.
    /// True when issued.
    pub fn ensure_address_leaf(&self, name: &str, addresses: &[std::net::IpAddr]) -> Result<bool, Error> {
        let index = self.index()?;
        let current = self.active(&index, name).filter(|_| self.leaf_dir(name).join("key.pem").exists());
        let wanted: Vec<String> = match current {
            _ if !addresses.is_empty() => addresses.iter().map(ToString::to_string).collect(),
            // Renewed or reissued after a revocation for the addresses it had.
            Some(c) => c.subject_alt_names.clone(),
            None => vec![std::net::Ipv4Addr::LOCALHOST.to_string()],
        };
        if current.is_some_and(|c| self.is_fresh(c, &wanted)) {
            return Ok(false);
        }
        self.sign_leaf(name, &wanted[0], wanted.clone())?;
        Ok(true)
    }

    /// Whether `cert` is unrevoked, for exactly `names`, and far from expiring.
    fn is_fresh(&self, cert: &IssuedCert, names: &[String]) -> bool {
        let renew_after = OffsetDateTime::now_utc() + Duration::days(RENEW_BEFORE_DAYS);
        cert.revoked.is_none()
            && cert.subject_alt_names == names
            && OffsetDateTime::parse(&cert.not_after, &time::format_description::well_known::Rfc3339)
                .is_ok_and(|t| t > renew_after)
    }

    /// Makes sure `name` has a current leaf covering `names`: issues one when there is none, when
    /// it was revoked, when it expires within 30 days or when its names differ. True when issued.
    pub fn ensure_leaf(&self, name: &str, names: &[String]) -> Result<bool, Error> {
        let index = self.index()?;
        let fresh = self.active(&index, name).is_some_and(|c| self.is_fresh(c, &wanted_names(name, names)));
        if fresh && self.leaf_dir(name).join("key.pem").exists() {
            return Ok(false);
        }
        self.issue(name, names)?;
        Ok(true)
    }

    /// Revokes a certificate by serial and rewrites the CRL.
    pub fn revoke(&self, serial: &str) -> Result<IssuedCert, Error> {
        let mut index = self.index()?;
        let serial = serial.trim_start_matches("0x").to_ascii_lowercase();
        let cert = index.certificates.get_mut(&serial).ok_or_else(|| Error::NoSuchCertificate(serial.clone()))?;
        if cert.revoked.is_none() {
            cert.revoked = Some(rfc3339(OffsetDateTime::now_utc()));
        }
        let revoked = cert.clone();
        self.write_crl(&mut index)?;
        Ok(revoked)
    }

    /// The certificate whose files are in `tls/<name>/` now, known by its serial (two issued
    /// within a second cannot be told apart by their times).
    fn active<'i>(&self, index: &'i Index, name: &str) -> Option<&'i IssuedCert> {
        let pem = fs::read(self.leaf_dir(name).join("cert.pem")).ok()?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
        let serial = hex::encode(pem.parse_x509().ok()?.raw_serial());
        index.certificates.get(&serial).filter(|c| c.name == name)
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, Error> {
        let key_path = self.dir().join("ca.key");
        let key = KeyPair::from_pem(&fs::read_to_string(&key_path).at(&key_path)?).map_err(ca_error)?;
        Issuer::from_ca_cert_pem(&self.certificate_pem()?, key).map_err(ca_error)
    }

    fn index(&self) -> Result<Index, Error> {
        fsutil::read_json_or_default(&self.dir().join("index.json"))
    }

    fn write_index(&self, index: &Index) -> Result<(), Error> {
        fsutil::write_json(&self.dir().join("index.json"), index, 0o600)
    }

    /// Signs a new CRL listing every revoked certificate, and saves the index with its number.
    fn write_crl(&self, index: &mut Index) -> Result<(), Error> {
        let issuer = self.issuer()?;
        let now = OffsetDateTime::now_utc();
        let revoked_certs = index
            .certificates
            .values()
            .filter_map(|c| {
                let when = c.revoked.as_deref()?;
                Some(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&hex::decode(&c.serial).ok()?),
                    revocation_time: OffsetDateTime::parse(when, &time::format_description::well_known::Rfc3339)
                        .unwrap_or(now),
                    reason_code: Some(RevocationReason::Unspecified),
                    invalidity_date: None,
                })
            })
            .collect();
        index.crl_number += 1;
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + Duration::days(CRL_VALIDITY_DAYS),
            crl_number: SerialNumber::from(index.crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&issuer).map_err(ca_error)?;
        fsutil::write_atomic(&self.crl_path(), crl.pem().map_err(ca_error)?.as_bytes(), 0o644)?;
        self.write_index(index)
    }
}

fn wanted_names(name: &str, extra: &[String]) -> Vec<String> {
    let mut names = vec![name.to_string()];
    names.extend(extra.iter().filter(|n| *n != name).cloned());
    names
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A positive 63-bit serial (a leading zero bit keeps the DER integer positive).
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    bytes[0] &= 0x7f;
    bytes[0] |= 0x40;
    SerialNumber::from_slice(&bytes)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC time formats as RFC 3339")
}

fn ca_error(e: rcgen::Error) -> Error {
    Error::Certificate(e.to_string())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn sans_of(ca: &CertificateAuthority, name: &str) -> Vec<String> {
        let pem = fs::read(ca.leaf_dir(name).join("cert.pem")).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let cert = pem.parse_x509().unwrap();
        let sans = cert.subject_alternative_name().unwrap().unwrap();
        sans.value
            .general_names
            .iter()
            .map(|n| match n {
                x509_parser::extensions::GeneralName::IPAddress(b) if b.len() == 4 => {
                    <[u8; 4]>::try_from(*b).map(IpAddr::from).unwrap().to_string()
                }
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    <[u8; 16]>::try_from(*b).map(IpAddr::from).unwrap().to_string()
                }
                other => format!("{other}"),
            })
            .collect()
    }

    #[test]
    fn the_lan_leaf_follows_the_devices_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::new(dir.path());
        ca.ensure().unwrap();
        // No address known yet: a leaf for the loopback, so that the proxy can start.
        assert!(ca.ensure_address_leaf("lan", &[]).unwrap());
        assert_eq!(sans_of(&ca, "lan"), ["127.0.0.1"]);
        let home: Vec<IpAddr> = vec!["192.168.1.20".parse().unwrap(), "fd00::20".parse().unwrap()];
        assert!(ca.ensure_address_leaf("lan", &home).unwrap());
        assert_eq!(sans_of(&ca, "lan"), ["192.168.1.20", "fd00::20"]);
        // The same addresses, or none seen for a moment: the leaf stays.
        assert!(!ca.ensure_address_leaf("lan", &home).unwrap());
        assert!(!ca.ensure_address_leaf("lan", &[]).unwrap());
        // A revoked leaf is issued again for the addresses it had.
        let serial = ca.list().unwrap().into_iter().find(|c| c.subject_alt_names[0] == "192.168.1.20").unwrap().serial;
        ca.revoke(&serial).unwrap();
        assert!(ca.ensure_address_leaf("lan", &[]).unwrap());
        assert_eq!(sans_of(&ca, "lan"), ["192.168.1.20", "fd00::20"]);
        let identity = ca.identity().unwrap();
        assert_eq!(identity.subject, "CN=PIC cell CA");
        assert_eq!(identity.fingerprint_sha256.len(), 32 * 3 - 1, "{identity:?}");
        // A new address: a new leaf.
        assert!(ca.ensure_address_leaf("lan", &["192.168.1.30".parse().unwrap()]).unwrap());
        assert_eq!(sans_of(&ca, "lan"), ["192.168.1.30"]);
    }
}
