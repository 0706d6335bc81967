//! The host's nftables ruleset: the current generation's `firewall/ruleset.nft`, loaded with one
//! `nft -f` (a single transaction: the `inet pic` table is replaced whole or not at all). It
//! filters and, on the appliance, publishes the services' ports.

use anyhow::{Context, Result};
use pic_builder::State;

use pic_builder::command;

const TABLE: &[&str] = &["inet", "pic"];
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

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
