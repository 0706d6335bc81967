//! `pic`: the command line of the Personal Internet Cell.
//!
//! Exit codes: 0 success, 2 invalid input (usage or validation), 1 any other failure.

mod cli;
mod command;
mod commands;
mod output;
mod peers;
mod serve;
mod users;
mod wireguard;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::output::Output;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("PIC_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let out = Output { json: cli.json };
    match commands::run(&cli, &out) {
        Ok(code) => code,
        Err(error) => {
            out.error(&error);
            if output::is_invalid_input(&error) { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}
