//! `pic cert` and `pic ca`: the certificates of the cell CA.

use std::fmt::Write as _;

use anyhow::Result;
use pic_builder::State;

use crate::cli::{CaCommand, CertCommand};
use crate::output::Output;

pub fn cert(state: &State, command: &CertCommand, out: &Output) -> Result<()> {
    match command {
        CertCommand::List => {
            let certs = state.ca().list()?;
            out.emit(&certs, |certs| {
                let mut s = String::from("SERIAL            NOT AFTER             STATE    NAME");
                for c in certs {
                    let state = if c.revoked.is_some() { "revoked" } else { "valid" };
                    let _ = write!(
                        s,
                        "\n{:<16}  {:<20}  {state:<7}  {}",
                        c.serial,
                        c.not_after,
                        c.subject_alt_names.join(", ")
                    );
                }
                s
            });
        }
        CertCommand::Issue { name, also } => {
            let _writer = state.writer()?;
            let cert = state.ca().issue(name, also)?;
            out.emit(&cert, |c| {
                format!("issued {} for {} (until {})", c.serial, c.subject_alt_names.join(", "), c.not_after)
            });
        }
        CertCommand::Revoke { serial } => {
            let _writer = state.writer()?;
            let cert = state.ca().revoke(serial)?;
            out.emit(&cert, |c| format!("revoked {} ({}); the CRL is updated", c.serial, c.name));
        }
    }
    Ok(())
}

pub fn ca(state: &State, command: &CaCommand) -> Result<()> {
    match command {
        CaCommand::Export => print!("{}", state.ca().certificate_pem()?),
    }
    Ok(())
}
