//! `pic ddns`: the dynamic DNS client's status, an update now, the provider's credential, and
//! the name's certificate by DNS-01 now.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, Result, bail};
use pic_builder::State;
use pic_builder::config::Domain;

use crate::acme::{self, Renewal};
use crate::cli::DdnsCommand;
use crate::ddns::{self, Cycle};
use crate::output::Output;

/// False when an update was asked for and did not succeed.
pub fn run(state: &State, command: &DdnsCommand, out: &Output) -> Result<bool> {
    match command {
        DdnsCommand::Status => {
            let status = ddns::status(state)?;
            out.emit(&status, |s| {
                let time = |t: &Option<jiff::Timestamp>| t.map(|t| t.to_string()).unwrap_or_else(|| "never".into());
                let address = |a: &ddns::Addresses| {
                    let list: Vec<String> =
                        a.ipv4.iter().map(ToString::to_string).chain(a.ipv6.iter().map(ToString::to_string)).collect();
                    if list.is_empty() { "nothing".into() } else { list.join(", ") }
                };
                let mut text = format!(
                    "provider:    {}\nname:        {}\npublished:   {}\nlast check:  {}\nlast update: {}\nupdates:     {}",
                    s.provider.map(|p| p.as_str()).unwrap_or("none yet"),
                    s.name.as_deref().unwrap_or("-"),
                    address(&s.published),
                    time(&s.last_check),
                    time(&s.last_update),
                    s.updates
                );
                if let Some(error) = &s.last_error {
                    text.push_str(&format!("\nlast error:  {} ({})", error.message, error.at));
                }
                if let Some(reason) = &s.stopped {
                    text.push_str(&format!("\nstopped:     {reason} (change the settings or the credential)"));
                }
                text
            });
            Ok(true)
        }
        DdnsCommand::Update => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let http = ddns::Http::new()?;
            let cycle = runtime.block_on(ddns::cycle(state, &http, jiff::Timestamp::now(), true))?;
            let ok = matches!(cycle, Cycle::Published { .. });
            out.emit(&cycle, |c| match c {
                Cycle::Off => "the domain mode is not ddns: nothing to publish".into(),
                Cycle::Current => "the published address is current".into(),
                Cycle::Published { addresses } => format!("published {addresses:?}"),
                Cycle::Held { reason } => format!("not sent: {reason}"),
                Cycle::Failed { reason } => format!("the update failed: {reason}"),
            });
            Ok(ok || matches!(cycle, Cycle::Off))
        }
        DdnsCommand::Certificate { dns_propagation } => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let http = ddns::Http::new()?;
            let propagation = dns_propagation.map(std::time::Duration::from_secs);
            let renewal = runtime.block_on(acme::renew(state, &http, jiff::Timestamp::now(), true, propagation))?;
            out.emit(&renewal, |r| match r {
                Renewal::Off => {
                    "the cell does not get its certificates itself in this domain mode (Caddy does, or the cell CA)"
                        .into()
                }
                Renewal::Current { not_after } => format!("the certificate is valid until {not_after}"),
                Renewal::Issued { names, not_after } => format!("issued for {} until {not_after}", names.join(", ")),
                Renewal::Held { reason } => format!("not asked: {reason}"),
                Renewal::Failed { reason } => format!("the order failed (the kept certificate stays): {reason}"),
            });
            Ok(!matches!(renewal, Renewal::Failed { .. } | Renewal::Held { .. }))
        }
        DdnsCommand::Credential { file } => {
            let config = state.desired_config()?.context("no desired config yet: set up the cell first")?;
            let Domain::Ddns { provider, .. } = config.cell.domain else {
                bail!(pic_builder::Error::Invalid(pic_builder::config::ValidationErrors::single(
                    "cell.domain.mode",
                    "the domain mode is not ddns",
                    "set cell.domain to mode ddns with a provider first",
                )));
            };
            let credential = match file {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned(),
                None if std::io::stdin().is_terminal() => {
                    rpassword::prompt_password(format!("{} token or password: ", provider.as_str()))?
                }
                None => {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line).context("reading the credential")?;
                    line.trim().to_owned()
                }
            };
            state.secrets().set_ddns_credential(provider, &credential)?;
            out.emit(&serde_json::json!({"provider": provider.as_str(), "kept": true}), |_| {
                format!("kept the {} credential in secrets/ddns/ (the next cycle uses it)", provider.as_str())
            });
            Ok(true)
        }
    }
}
