//! What installing, updating and removing an app does to the cell config. The config is the
//! whole truth: an app's entry carries the verified manifest, so each change is a generation and a
//! rollback brings the previous app set back. Data and secrets are not touched here.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::config::app::App;
use crate::config::services::CATALOG;
use crate::config::{CellConfig, nth_host};
use crate::error::Error;

use super::App as IndexApp;

/// Adds `app` from the index with `settings`, at a free address of the cell network.
pub fn install(
    config: &mut CellConfig,
    app: &IndexApp,
    settings: BTreeMap<String, serde_json::Value>,
) -> Result<(), Error> {
    let name = &app.manifest.name;
    if config.apps.iter().any(|a| a.name == *name) {
        return Err(Error::AppInstalled(name.clone()));
    }
    let address = free_address(config).ok_or(Error::NoAppAddress)?;
    config.apps.push(App {
        name: name.clone(),
        version: app.manifest.version.clone(),
        address,
        settings,
        manifest: app.manifest.clone(),
    });
    Ok(())
}

/// Replaces the manifest of the installed app with the index's, keeping its address and the
/// settings the new manifest still has; `settings` are set on top. Returns the settings dropped.
pub fn update(
    config: &mut CellConfig,
    app: &IndexApp,
    settings: BTreeMap<String, serde_json::Value>,
) -> Result<Vec<String>, Error> {
    let name = &app.manifest.name;
    let entry = config.apps.iter_mut().find(|a| a.name == *name).ok_or_else(|| Error::NoSuchApp(name.clone()))?;
    let mut dropped = Vec::new();
    entry.settings.retain(|key, _| {
        let kept = app.manifest.settings.contains_key(key);
        if !kept {
            dropped.push(key.clone());
        }
        kept
    });
    entry.settings.extend(settings);
    entry.version = app.manifest.version.clone();
    entry.manifest = app.manifest.clone();
    Ok(dropped)
}

/// Removes the app's entry (its data and secrets stay).
pub fn remove(config: &mut CellConfig, name: &str) -> Result<App, Error> {
    let at = config.apps.iter().position(|a| a.name == name).ok_or_else(|| Error::NoSuchApp(name.into()))?;
    Ok(config.apps.remove(at))
}

/// The first host address of the cell network from its 32nd on (the services' defaults are
/// below) that no service, no app, no exit's container and not the gateway has.
pub fn free_address(config: &CellConfig) -> Option<Ipv4Addr> {
    let net = config.network.subnet;
    let used: Vec<Ipv4Addr> = CATALOG
        .iter()
        .filter(|s| s.offset.is_some())
        .map(|s| config.service_address(s))
        .chain(config.apps.iter().map(|a| a.address))
        .chain(config.connectivity.exits.iter().filter_map(|e| e.container_address()))
        .chain([config.gateway()])
        .collect();
    let first = if net.prefix_len() <= 26 { 32 } else { 16 };
    (first..).map_while(|n| nth_host(&net, n)).take_while(|a| *a != net.broadcast()).find(|a| !used.contains(a))
}
