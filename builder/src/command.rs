//! The one way PIC runs external programs: logged, and an error that names the command and
//! carries what it printed.

use std::process::{Child, Command};

use crate::error::Error;

/// Runs `program args…`, logging it; fails unless it exits 0. Returns its standard output.
pub fn run(program: &str, args: &[&str]) -> Result<String, Error> {
    run_command(Command::new(program).args(args))
}

/// Runs a prepared command (for environment variables or a working directory), logging it.
pub fn run_command(command: &mut Command) -> Result<String, Error> {
    let line = describe(command);
    tracing::info!(command = %line, "running");
    let output = command.output().map_err(|e| Error::Command { command: line.clone(), detail: e.to_string() })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // The end of the output says why; a long build log is cut to its last lines.
        let tail: Vec<&str> = stderr.trim().lines().rev().take(40).collect();
        let detail = format!("{}: {}", output.status, tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        return Err(Error::Command { command: line, detail });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Starts a long-running program (a daemon a build needs for a while), logging it; the caller
/// stops it.
pub fn spawn(command: &mut Command) -> Result<Child, Error> {
    let line = describe(command);
    tracing::info!(command = %line, "starting");
    command.spawn().map_err(|e| Error::Command { command: line, detail: e.to_string() })
}

fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}
