//! `pic link`: invitations given and accepted, grants, removal, and the links as this cell
//! knows them (a running `pic serve` keeps them in step and applies what changed).

use std::time::Duration;

use anyhow::{Context, Result};
use pic_builder::State;
use serde::Serialize;

use crate::cli::LinkCommand;
use crate::links::{self, status};
use crate::output::Output;

/// One link as `pic link list` shows it.
#[derive(Serialize)]
struct Listed {
    name: String,
    domain: String,
    /// What this cell grants it.
    grants: Vec<String>,
    /// What it grants this cell, as it last said.
    offered: Vec<String>,
    last_sync: Option<String>,
    error: Option<String>,
    /// The tunnel's last handshake (RFC 3339) and traffic, when this machine runs the interface.
    last_handshake: Option<String>,
    rx_bytes: u64,
    tx_bytes: u64,
}

/// The interface `pic serve` manages on the appliance.
const DEFAULT_INTERFACE: &str = "wg0";

/// "42 s ago" for an RFC 3339 time, or "never".
fn ago(time: Option<&str>) -> String {
    match time.and_then(|t| t.parse::<jiff::Timestamp>().ok()) {
        Some(t) => format!("{} s ago", jiff::Timestamp::now().duration_since(t).as_secs().max(0)),
        None => "never".to_owned(),
    }
}

fn block_on<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Runtime::new().context("starting the async runtime")?.block_on(work)
}

/// `--grant ''` means none.
fn grants(list: &[String]) -> Vec<String> {
    list.iter().map(|g| g.trim().to_owned()).filter(|g| !g.is_empty()).collect()
}

pub fn run(state: &State, command: &LinkCommand, out: &Output) -> Result<()> {
    match command {
        LinkCommand::Invite { grant, expires_hours, url } => {
            let valid = Duration::from_secs(u64::from(*expires_hours) * 3600);
            let (token, invitation) = links::invite(state, grants(grant), valid, url.clone())?;
            out.emit(
                &serde_json::json!({"token": token, "expires": invitation.expires, "grants": invitation.grants}),
                |_| format!("{token}\n"),
            );
        }
        LinkCommand::Accept { token, grant } => {
            let (link, switched) = block_on(links::accept(state, token, grants(grant)))?;
            out.emit(&serde_json::json!({"link": link, "generation": switched.to}), |_| {
                format!("linked with {} ({}); generation {}\n", link.name, link.domain, switched.to)
            });
        }
        LinkCommand::List => {
            let config = state.desired_config()?.context("no desired config yet: set up the cell first")?;
            let mut known = status::read(state)?;
            let live = crate::wireguard::live_status(DEFAULT_INTERFACE);
            let listed: Vec<Listed> = config
                .links
                .iter()
                .map(|l| {
                    let s = known.links.remove(&l.name).unwrap_or_default();
                    let tunnel = live.iter().find(|p| p.public_key == l.public_key);
                    Listed {
                        name: l.name.clone(),
                        domain: l.domain.clone(),
                        grants: l.grants.clone(),
                        offered: s.offered,
                        last_sync: s.last_sync.map(|t| t.to_string()),
                        error: s.error,
                        last_handshake: tunnel.and_then(|t| t.last_handshake.clone()),
                        rx_bytes: tunnel.map_or(0, |t| t.rx_bytes),
                        tx_bytes: tunnel.map_or(0, |t| t.tx_bytes),
                    }
                })
                .collect();
            out.emit(&listed, |links| {
                if links.is_empty() {
                    return "no linked cell; `pic link invite` makes an invitation\n".into();
                }
                let none = |v: &[String]| if v.is_empty() { "nothing".to_owned() } else { v.join(",") };
                links
                    .iter()
                    .map(|l| {
                        format!(
                            "{:<16} {:<24} gives: {:<20} gets: {:<20} synced: {}  handshake: {}  received {} B, sent {} B\n",
                            l.name,
                            l.domain,
                            none(&l.grants),
                            none(&l.offered),
                            ago(l.last_sync.as_deref()),
                            ago(l.last_handshake.as_deref()),
                            l.rx_bytes,
                            l.tx_bytes,
                        )
                    })
                    .collect()
            });
        }
        LinkCommand::Grant { name, grant } => {
            let switched = links::set_grants(state, name, grants(grant))?;
            out.emit(&serde_json::json!({"generation": switched.to}), |_| {
                format!("grants of {name} set; generation {}\n", switched.to)
            });
        }
        LinkCommand::Remove { name } => {
            let (switched, error) = block_on(links::remove(state, name))?;
            out.emit(
                &serde_json::json!({"generation": switched.to, "told_other_cell": error.is_none(), "error": error}),
                |_| match &error {
                    None => format!("link with {name} removed here and on {name}; generation {}\n", switched.to),
                    Some(e) => format!("link with {name} removed here only ({e}); generation {}\n", switched.to),
                },
            );
        }
    }
    Ok(())
}
