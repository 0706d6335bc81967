//! `pic exit`: exits added from a provider's file, listed with their state, removed.

use anyhow::{Context, Result};
use pic_builder::State;

use crate::cli::ExitCommand;
use crate::exits::{Exits, manage};
use crate::output::Output;

pub fn run(state: &State, command: &ExitCommand, out: &Output) -> Result<()> {
    match command {
        ExitCommand::Add { name, wireguard, openvpn, dns, username, tor } => {
            let read = |path: &std::path::Path| {
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
            };
            let switched = match (wireguard, openvpn) {
                (Some(file), _) => manage::add_wireguard(state, name, &read(file)?)?,
                (None, Some(file)) => {
                    let password = match username {
                        Some(user) => {
                            Some(crate::commands::read_secret(&format!("password of {user} with the provider: "))?)
                        }
                        None => None,
                    };
                    let credentials = username.as_deref().zip(password.as_deref());
                    let dns = dns.context("--dns is required with --openvpn")?;
                    manage::add_openvpn(state, name, &read(file)?, manage::OpenVpnInputs { dns, credentials })?
                }
                (None, None) if *tor => manage::add_tor(state, name)?,
                (None, None) => anyhow::bail!("give --wireguard FILE, --openvpn FILE or --tor"),
            };
            out.emit(&serde_json::json!({"exit": name, "generation": switched.to}), |_| {
                format!(
                    "exit {name} added; generation {} is current. Send devices through it with `pic peer exit DEVICE {name}`\n",
                    switched.to
                )
            });
        }
        ExitCommand::List => {
            let statuses = Exits::here().status(state)?;
            out.emit(&statuses, |statuses| {
                if statuses.is_empty() {
                    return "no exit; `pic exit add NAME --wireguard FILE` adds one\n".into();
                }
                statuses
                    .iter()
                    .map(|s| {
                        let state = if s.up {
                            "up".to_owned()
                        } else {
                            format!("down ({})", s.problem.as_deref().unwrap_or("?"))
                        };
                        let devices: Vec<String> = s.devices.iter().map(|d| d.to_string()).collect();
                        format!(
                            "{:<14} {:<40} received {} B, sent {} B; devices: {}\n",
                            s.name,
                            state,
                            s.rx_bytes,
                            s.tx_bytes,
                            if devices.is_empty() { "none".to_owned() } else { devices.join(", ") }
                        )
                    })
                    .collect()
            });
        }
        ExitCommand::Remove { name } => {
            let switched = manage::remove(state, name)?;
            out.emit(&serde_json::json!({"generation": switched.to}), |_| {
                format!("exit {name} removed; generation {} is current\n", switched.to)
            });
        }
    }
    Ok(())
}
