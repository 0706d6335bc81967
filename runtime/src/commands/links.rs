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
            let listed: Vec<Listed> = config
                .links
                .iter()
                .map(|l| {
                    let s = known.links.remove(&l.name).unwrap_or_default();
                    Listed {
                        name: l.name.clone(),
                        domain: l.domain.clone(),
                        grants: l.grants.clone(),
                        offered: s.offered,
                        last_sync: s.last_sync.map(|t| t.to_string()),
                        error: s.error,
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
                            "{:<16} {:<24} gives: {:<20} gets: {:<20} synced: {}\n",
                            l.name,
                            l.domain,
                            none(&l.grants),
                            none(&l.offered),
                            l.last_sync.as_deref().unwrap_or("never")
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
