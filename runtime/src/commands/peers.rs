//! `pic peer`: the VPN peers, from the command line (the changes themselves are `crate::peers`).

use std::fmt::Write as _;

use anyhow::{Context, Result};
use pic_builder::State;
use serde::Serialize;

use crate::cli::{PeerCommand, RoutingArg};
use crate::output::Output;

pub fn run(state: &State, command: &PeerCommand, out: &Output) -> Result<()> {
    match command {
        PeerCommand::List => {
            let config = state.desired_config()?.context("no desired config yet")?;
            out.emit(&config.wireguard.peers, |peers| {
                let mut s = String::from("NAME                 ADDRESS          ROUTING  ENABLED  USER         ACCESS");
                for p in peers {
                    let routing = if p.routing == pic_builder::config::Routing::Full { "full" } else { "split" };
                    let user = p.user.as_deref().unwrap_or("-");
                    let access = p.access.as_ref().map_or("all".to_owned(), |a| a.join(","));
                    let _ = write!(
                        s,
                        "\n{:<20} {:<16} {routing:<8} {:<8} {user:<12} {access}",
                        p.name, p.address, p.enabled
                    );
                }
                s
            });
        }
        PeerCommand::Routes => {
            let config = state.desired_config()?.context("no desired config yet")?;
            #[derive(Serialize)]
            struct Route {
                peer: String,
                address: String,
                enabled: bool,
                through_cell: String,
            }
            let routes: Vec<Route> = config
                .wireguard
                .peers
                .iter()
                .map(|p| Route {
                    peer: p.name.clone(),
                    address: format!("{}/32", p.address),
                    enabled: p.enabled,
                    through_cell: pic_builder::peers::routed_through_cell(&config, p.routing),
                })
                .collect();
            out.emit(&routes, |routes| {
                let mut s = format!("VPN {} via the cell at {}", config.wireguard.subnet, config.wireguard_address());
                for r in routes {
                    let off = if r.enabled { "" } else { " (disabled)" };
                    let _ = write!(s, "\n{:<20} {:<18} sends {}{off}", r.peer, r.address, r.through_cell);
                }
                s
            });
        }
        PeerCommand::Add { name, public_key, address, routing, user, access, exit } => {
            let new = crate::peers::NewPeer {
                name: name.clone(),
                public_key: public_key.clone(),
                address: *address,
                routing: routing.map(|r| match r {
                    RoutingArg::Split => pic_builder::config::Routing::Split,
                    RoutingArg::Full => pic_builder::config::Routing::Full,
                }),
                user: user.clone(),
                access: access.clone(),
                exit: exit.clone(),
                ..Default::default()
            };
            let (peer, switched) = crate::peers::add(state, new, &format!("pic peer add {name}"))?;
            #[derive(Serialize)]
            struct Added {
                peer: pic_builder::config::Peer,
                generation: u64,
            }
            out.emit(&Added { peer, generation: switched.to }, |a| {
                format!("added {} at {}; generation {} is current", a.peer.name, a.peer.address, a.generation)
            });
        }
        PeerCommand::Access { name, services, all } => {
            let access = (!all).then(|| services.clone());
            let patch = crate::peers::PeerPatch { access: Some(access), ..Default::default() };
            let changed = change(state, name, patch, &format!("pic peer access {name}"))?;
            out.emit(&changed, |c| {
                let access = c.peer.access.as_ref().map_or("every service".to_owned(), |a| {
                    if a.is_empty() { "only the web UI".to_owned() } else { a.join(", ") }
                });
                format!("{} may reach {access}; generation {} is current", c.peer.name, c.generation)
            });
        }
        PeerCommand::Exit { name, exit, none: _ } => {
            let patch = crate::peers::PeerPatch { exit: Some(exit.clone()), ..Default::default() };
            let changed = change(state, name, patch, &format!("pic peer exit {name}"))?;
            out.emit(&changed, |c| {
                let way = c.peer.exit.as_ref().map_or("the cell's uplink".to_owned(), |exit| format!("exit {exit}"));
                format!("{} goes out through {way}; generation {} is current", c.peer.name, c.generation)
            });
        }
        PeerCommand::Remove { name } => {
            let switched = crate::peers::remove(state, name, &format!("pic peer remove {name}"))?;
            out.emit(&switched, |s| format!("removed {name}; generation {} is current", s.to));
        }
        PeerCommand::Config { name, qr } => {
            let text = crate::peers::client_config(state, name)?;
            if *qr {
                let code = qrcode::QrCode::new(text.as_bytes()).context("encoding the config as a QR code")?;
                print!("{}", code.render::<qrcode::render::unicode::Dense1x2>().quiet_zone(true).build());
                println!();
            } else {
                print!("{text}");
            }
        }
    }
    Ok(())
}

/// A peer as a change left it, and the generation it is in.
#[derive(Serialize)]
struct Changed {
    peer: pic_builder::config::Peer,
    generation: u64,
}

/// An admin's change of a peer, as a new generation.
fn change(state: &State, name: &str, patch: crate::peers::PeerPatch, reason: &str) -> Result<Changed> {
    let (peer, switched) =
        crate::peers::update(state, name, patch, reason, crate::peers::ChangedBy::Admin).map_err(|e| match e {
            // The builder's error as it is, so that an invalid change exits 2.
            crate::peers::UpdateError::Builder(e) => anyhow::Error::from(e),
            other => other.into(),
        })?;
    Ok(Changed { peer, generation: switched.to })
}
