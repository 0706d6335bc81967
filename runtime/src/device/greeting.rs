//! The console's greeting: what the device is doing, written where the login prompts (agetty,
//! on the screen and the serial console) read their greeting (`/run/issue` on the appliance, which
//! has no `/etc/issue`), and every prompt asked to print it again when it changes.

use std::fmt::Write as _;
use std::path::Path;

use super::{Phase, Status, StepState};

/// The greeting for `status`, as plain lines.
pub fn text(status: &Status) -> String {
    let mut text = String::from("PIC, the Personal Internet Cell\n");
    match status.phase {
        Phase::Blocked => text.push_str("PIC cannot start:\n"),
        Phase::Starting => {
            let done = status.steps.iter().filter(|s| s.state == StepState::Done).count();
            let _ = writeln!(text, "Starting: {done} of {} steps done", status.steps.len());
        }
        Phase::Ready => {}
    }
    for step in &status.steps {
        let mark = match step.state {
            StepState::Pending => "[    ]",
            StepState::Active => "[ .. ]",
            StepState::Done => "[ ok ]",
            StepState::Failed => "[FAIL]",
        };
        let _ = write!(text, "  {mark} {}", step.title);
        if !step.detail.is_empty() {
            let _ = write!(text, ": {}", step.detail);
        }
        text.push('\n');
    }
    if let Some(message) = &status.network.message {
        let _ = writeln!(text, "{message}");
    }
    let urls = status.urls();
    if !urls.is_empty() {
        let purpose = match (status.phase, status.setup_complete) {
            (Phase::Blocked, _) => "to read this message",
            (Phase::Starting, _) => "to follow the start",
            (Phase::Ready, false) => "to set up this cell",
            (Phase::Ready, true) => "to manage this cell",
        };
        let _ = writeln!(text, "Open {} in a browser {purpose}.", urls.join(" or "));
        if !status.setup_complete {
            text.push_str("The setup wizard uses plain HTTP; once the cell is set up, it answers over HTTPS.\n");
        }
    }
    if let Some(warning) = &status.space_warning {
        let _ = writeln!(text, "{warning}");
    }
    if let Some(fingerprint) = &status.ca_fingerprint {
        let _ =
            writeln!(text, "The browser asks to trust the cell's certificate authority: its SHA-256 fingerprint is");
        let _ = writeln!(text, "  {fingerprint}");
    }
    text.push('\n');
    // agetty reads backslashes as escapes (\4, \n); nothing here means one.
    text.replace('\\', "\\\\")
}

/// Writes the greeting to `path` and asks every login prompt to print it again.
pub fn show(path: &Path, text: &str) -> anyhow::Result<()> {
    pic_builder::fsutil::write_atomic(path, text.as_bytes(), 0o644)?;
    // Prompts that already took input keep it; without agetty (a development machine) the file
    // is all there is.
    if let Err(error) = pic_builder::command::run("agetty", &["--reload"]) {
        tracing::debug!(%error, "the login prompts were not asked to reload their greeting");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::moments;
    use super::*;

    #[test]
    fn the_greeting_at_each_moment() {
        let all: Vec<String> =
            moments().iter().map(|(what, seen)| format!("--- {what}\n{}", text(&Status::from(seen)))).collect();
        insta::assert_snapshot!(all.join(""));
    }
}
