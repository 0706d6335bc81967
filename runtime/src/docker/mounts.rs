//! What a container mounts, prepared on the host under `run/<service>/` of the state directory:
//! a copy of its bundle (so that a reload sees new files in the same mount) and copies of the
//! secrets it needs, owned by the service's user. The store and `secrets/` stay as they are.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use pic_builder::State;
use pic_builder::fsutil;
use pic_builder::render::Bundle;

use super::spec::ContainerSpec;

/// The host side of a container's mounts.
pub struct Prepared {
    /// Mount source (as the spec names it) → host path.
    pub paths: BTreeMap<String, PathBuf>,
    /// True when a file of the bundle or a secret changed.
    pub changed: bool,
    /// True when only certificates changed.
    pub only_certificates: bool,
}

/// Writes the bundle and the secrets `spec` mounts; `owner` is the uid and gid of the service's
/// user (from its image), who gets the data directory; the secret copies are root's, readable by
/// the group `secrets_gid` (root without CAP_DAC_OVERRIDE reads them as their owner).
pub fn prepare(
    state: &State,
    spec: &ContainerSpec,
    bundle: &Bundle,
    owner: (u32, u32),
    secrets_gid: u32,
) -> Result<Prepared> {
    let secrets_owner = Some((0, secrets_gid));
    let run = state.root().join("run").join(&spec.service);
    let mut paths = BTreeMap::new();
    let mut changed = sync_dir(&run.join("bundle"), &bundle.files, 0o444, None)?;
    let mut certificates = false;
    paths.insert("bundle".to_owned(), run.join("bundle"));
    for mount in &spec.mounts {
        let source = mount.source.as_str();
        let host = match source.split_once('/') {
            None if source == "bundle" => continue,
            None if source == "data" => ensure_data(state, spec, owner)?,
            Some(("data", folder)) => {
                // An app's data folder: made by `data_dirs` (the spec lists each one it mounts).
                let path = ensure_data(state, spec, owner)?.join(folder);
                if !spec.data_dirs.iter().any(|d| d == folder) || !path.is_dir() {
                    bail!("{}: mount {source:?} is not one of its data folders", spec.service);
                }
                path
            }
            None if source == "tls" => {
                let dir = run.join("tls");
                for site in &spec.tls_sites {
                    certificates |= sync_dir(&dir.join(site), &tls_files(state, site)?, 0o440, secrets_owner)?;
                }
                // Certificates of sites the service no longer serves leave with them.
                certificates |= remove_others(&dir, &spec.tls_sites)?;
                dir
            }
            None if source == "ca" => {
                let ca = state.ca().certificate_pem()?;
                let files = BTreeMap::from([("ca.crt".to_owned(), ca.into_bytes())]);
                changed |= sync_dir(&run.join("ca"), &files, 0o444, None)?;
                run.join("ca")
            }
            None if source == "credentials" => {
                // The daemons read these files afresh (per login or on a change of the file): a
                // new password needs no reload, so it does not count as a change.
                let names: Vec<&str> = spec.credentials.iter().map(String::as_str).collect();
                let files = read_files(&state.credentials().dir(), &names)?;
                let dir = run.join("credentials");
                sync_dir(&dir, &files, 0o440, secrets_owner)?;
                remove_others(&dir, &spec.credentials)?;
                dir
            }
            None if source == "exit" => {
                // An exit's container: its provider's file and credentials, read-only, straight
                // from secrets/ (the container runs as root until OpenVPN drops to nobody).
                let name = spec.service.strip_prefix("exit-").ok_or_else(|| {
                    anyhow::anyhow!("{}: only an exit's container mounts an exit's secrets", spec.service)
                })?;
                pic_builder::exits::ExitSecrets::new(state.secrets().dir()).folder_of(name)?
            }
            _ => bail!("{}: unknown mount source {source:?}", spec.service),
        };
        paths.insert(source.to_owned(), host);
    }
    Ok(Prepared { paths, changed: changed || certificates, only_certificates: certificates && !changed })
}

/// The service's `data/<service>` folder and its `data_dirs`, made and handed to `owner` (the
/// service's user) when they are not.
fn ensure_data(state: &State, spec: &ContainerSpec, owner: (u32, u32)) -> Result<PathBuf> {
    let data = state.root().join("data").join(&spec.service);
    fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let meta = fs::metadata(&data)?;
    if (meta.uid(), meta.gid()) != owner {
        std::os::unix::fs::chown(&data, Some(owner.0), Some(owner.1))
            .with_context(|| format!("handing {} to {}:{}", data.display(), owner.0, owner.1))?;
    }
    for dir in &spec.data_dirs {
        let path = data.join(dir);
        if !path.exists() {
            fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
            std::os::unix::fs::chown(&path, Some(owner.0), Some(owner.1))?;
        }
    }
    Ok(data)
}

/// Removes what `dir` holds besides `keep`; true when something was removed.
fn remove_others(dir: &Path, keep: &[String]) -> Result<bool> {
    let mut removed = false;
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) && !name.starts_with(fsutil::TMP_PREFIX) {
            if entry.file_type()?.is_dir() {
                fs::remove_dir_all(entry.path())?;
            } else {
                fs::remove_file(entry.path())?;
            }
            removed = true;
        }
    }
    Ok(removed)
}

/// Brings the copies of the credential files of a running service up to date with `secrets/`,
/// keeping each copy's owner and mode; touches no container (the daemons read them afresh).
/// Files the service does not have yet are left to its activation. True when one changed.
pub fn refresh_credentials(state: &State, spec: &ContainerSpec) -> Result<bool> {
    let dir = state.root().join("run").join(&spec.service).join("credentials");
    let mut changed = false;
    for name in &spec.credentials {
        let copy = dir.join(name);
        let Ok(meta) = fs::metadata(&copy) else { continue };
        let files = read_files(&state.credentials().dir(), &[name])?;
        let owner = Some((meta.uid(), meta.gid()));
        changed |= sync_dir(&dir, &files, meta.permissions().mode() & 0o777, owner)?;
    }
    Ok(changed)
}

/// The certificate chain and key a service is handed for `site`: a public certificate that covers
/// the name (one `pic serve` or Caddy got from the ACME CA), else the cell CA's.
fn tls_files(state: &State, site: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    match crate::acme::certificates::covering(state, site, jiff::Timestamp::now()) {
        Some(found) => Ok(BTreeMap::from([
            (
                "cert.pem".to_owned(),
                fs::read(&found.chain).with_context(|| format!("reading {}", found.chain.display()))?,
            ),
            ("key.pem".to_owned(), fs::read(&found.key).with_context(|| format!("reading {}", found.key.display()))?),
        ])),
        None => read_files(&state.ca().leaf_dir(site), &["cert.pem", "key.pem"]),
    }
}

/// Whether the certificates a running service has differ from the ones it would be handed now
/// (a public certificate arrived, was renewed, or expired).
pub fn tls_outdated(state: &State, spec: &ContainerSpec) -> Result<bool> {
    let dir = state.root().join("run").join(&spec.service).join("tls");
    if !dir.exists() {
        return Ok(false);
    }
    for site in &spec.tls_sites {
        for (name, contents) in tls_files(state, site)? {
            if fs::read(dir.join(site).join(&name)).ok().as_ref() != Some(&contents) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn read_files(dir: &Path, names: &[&str]) -> Result<BTreeMap<String, Vec<u8>>> {
    names
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            Ok(((*name).to_owned(), bytes))
        })
        .collect()
}

/// Makes `dir` hold `files` (other files are kept: several mounts share a directory); writes only
/// what differs. Returns whether anything was written.
fn sync_dir(dir: &Path, files: &BTreeMap<String, Vec<u8>>, mode: u32, owner: Option<(u32, u32)>) -> Result<bool> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut changed = false;
    for (name, contents) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let same = fs::read(&path).is_ok_and(|old| &old == contents)
            && fs::metadata(&path).is_ok_and(|m| {
                m.permissions().mode() & 0o777 == mode && owner.is_none_or(|(u, g)| (m.uid(), m.gid()) == (u, g))
            });
        if same {
            continue;
        }
        // Written under a temporary name, handed over, then renamed into place: the service
        // never sees a file it may not read.
        let tmp = dir.join(format!("{}{}", fsutil::TMP_PREFIX, name.replace('/', "_")));
        let _ = fs::remove_file(&tmp);
        fsutil::write_new(&tmp, contents, mode)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))?;
        }
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
        fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
        changed = true;
    }
    Ok(changed)
}

/// Removes files of the bundle copy that the new bundle no longer has.
pub fn prune_bundle(state: &State, service: &str, bundle: &Bundle) -> Result<()> {
    let dir = state.root().join("run").join(service).join("bundle");
    let Ok(entries) = fs::read_dir(&dir) else { return Ok(()) };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_file() && !bundle.files.contains_key(&name) {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}
