//! `pic`: the command line of the Personal Internet Cell.
//!
//! Exit codes: 0 success, 2 invalid input (usage or validation), 1 any other failure.

mod acme;
mod apps;
mod cli;
mod commands;
mod ddns;
mod device;
mod docker;
mod exits;
#[cfg(test)]
mod fake_http;
mod firewall;
mod links;
mod logs;
mod output;
mod peers;
mod serve;
mod wireguard;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::output::Output;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output { json: cli.json };
    let log_file = matches!(cli.command, Command::Serve { .. }).then(|| logs::dir(&cli.state).join("api.log"));
    // A log file that cannot be made (a full data partition) leaves `pic serve` logging to
    // stderr: it must still start, to say what is wrong.
    let file_level = match logs::init(log_file.as_deref()) {
        Ok(level) => level,
        Err(error) if log_file.is_some() => {
            eprintln!("pic serve: no log file ({error:#}); logging to stderr only");
            logs::init(None).ok().flatten()
        }
        Err(error) => {
            out.error(&error);
            return ExitCode::FAILURE;
        }
    };
    match commands::run(&cli, &out, file_level) {
        Ok(code) => code,
        Err(error) => {
            out.error(&error);
            if output::is_invalid_input(&error) { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}
