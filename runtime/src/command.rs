//! The one way the runtime runs external programs: logged, and an error that names the command
//! and carries what it printed.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// Runs `program args…`, logging it; fails unless it exits 0. Returns its standard output.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    tracing::info!(command = %format!("{program} {}", args.join(" ")), "running");
    let output = Command::new(program).args(args).output().with_context(|| format!("starting {program}"))?;
    if !output.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
