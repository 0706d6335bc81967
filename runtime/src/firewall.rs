//! The host's nftables ruleset: the current generation's `firewall/ruleset.nft`, loaded with one
//! `nft -f` (a single transaction: the `inet pic` table is replaced whole or not at all). It
//! filters and, on the appliance, publishes the services' ports.

use anyhow::{Context, Result};
use pic_builder::State;

use pic_builder::command;

const TABLE: &[&str] = &["inet", "pic"];
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Loads the ruleset of the current generation but publishes no port yet (its `published` map
/// emptied in the same transaction): while the containers start after a boot or setup, the
/// host's own port 80 (`pic serve`'s front door) answers instead of a container that does not run
/// yet. The next `apply` publishes them.
pub fn apply_unpublished(state: &State) -> Result<bool> {
    let Some(current) = state.current()? else { return Ok(false) };
    let manifest = state.manifest(current)?;
    let Some(entry) = manifest.services.get("firewall") else { return apply(state) };
    let folder = state.root().join(&entry.store_path);
    // `unpublish.nft` deletes the map's elements (empty when nothing is published; missing in a
    // generation built before it existed, which is loaded with its ports).
    let unpublish_path = folder.join("unpublish.nft");
    let unpublish = match std::fs::read_to_string(&unpublish_path) {
        Ok(text) if !text.trim().is_empty() => text,
        Ok(_) => return apply(state),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return apply(state),
        Err(e) => return Err(e).with_context(|| format!("reading {}", unpublish_path.display())),
    };
    // One file, one `nft -f`, one transaction: the ruleset, then its published ports taken out.
    // Never a moment with the ports sent to containers that do not run.
    let run = state.root().join("run");
    pic_builder::fsutil::ensure_dir(&run, 0o755)?;
    let held = run.join("firewall-unpublished.nft");
    let text = format!("include \"{}\"\n{unpublish}", folder.join("ruleset.nft").display());
    pic_builder::fsutil::write_atomic(&held, text.as_bytes(), 0o644)?;
    command::run("nft", &["-f", held.to_str().context("the state directory's path is not UTF-8")?])?;
    std::fs::write(IP_FORWARD, "1").with_context(|| format!("writing {IP_FORWARD}"))?;
    tracing::info!(generation = current, "firewall loaded; its ports are published once the proxy runs");
    Ok(true)
}

/// Loads the ruleset of the current generation, or removes the table when the firewall is off.
pub fn apply(state: &State) -> Result<bool> {
    let Some(current) = state.current()? else { return Ok(false) };
    let manifest = state.manifest(current)?;
    match manifest.services.get("firewall") {
        Some(entry) => {
            let path = state.root().join(&entry.store_path).join("ruleset.nft");
            let path = path.to_str().context("the state directory's path is not UTF-8")?;
            command::run("nft", &["-f", path])?;
            // The ruleset forwards the published ports to the containers (Docker, run without
            // its own rules, may not have switched forwarding on). A /proc file: written in place.
            std::fs::write(IP_FORWARD, "1").with_context(|| format!("writing {IP_FORWARD}"))?;
            tracing::info!(generation = current, "firewall loaded");
            Ok(true)
        }
        None => {
            let listed = command::run("nft", &["list", "tables"])?;
            if listed.lines().any(|l| l.trim() == "table inet pic") {
                command::run("nft", &[&["delete", "table"][..], TABLE].concat())?;
            }
            Ok(false)
        }
    }
}
