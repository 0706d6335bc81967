//! How `pic` speaks: text for people, JSON (`--json`) for programs, errors on stderr.

use pic_builder::Error;
use pic_builder::config::ValidationErrors;
use serde::Serialize;

pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints a result: its JSON form with `--json`, else the text `human` makes.
    pub fn emit<T: Serialize>(&self, value: &T, human: impl FnOnce(&T) -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value).expect("results serialize"));
        } else {
            let text = human(value);
            if !text.is_empty() {
                println!("{}", text.trim_end());
            }
        }
    }

    /// Prints an error on stderr; with `--json`, as `{"error": {"code", "message", "details"}}`.
    pub fn error(&self, error: &anyhow::Error) {
        if self.json {
            let details = validation_errors(error).map(|v| v.0.clone()).unwrap_or_default();
            let code = if validation_errors(error).is_some() {
                "invalid_config"
            } else if is_invalid_input(error) {
                "invalid_input"
            } else {
                "failed"
            };
            let body = serde_json::json!({"error": {"code": code, "message": message(error), "details": details}});
            eprintln!("{body}");
        } else {
            eprintln!("error: {}", message(error));
        }
    }
}

/// The error and its causes in one line, each said once: a cause whose words its error already
/// says (an I/O error under the path it happened at) is not said again.
pub fn message(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let said = cause.to_string();
        if text.contains(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    text
}

fn validation_errors(error: &anyhow::Error) -> Option<&ValidationErrors> {
    error.chain().find_map(|e| {
        e.downcast_ref::<ValidationErrors>().or_else(|| match e.downcast_ref::<Error>() {
            Some(Error::Invalid(v)) => Some(v),
            _ => None,
        })
    })
}

/// True when the error is the user's to fix (exit code 2).
pub fn is_invalid_input(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<ValidationErrors>().is_some() || e.downcast_ref::<Error>().is_some_and(Error::is_invalid_input)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::from_raw_os_error(28);
        let error = anyhow::Error::new(pic_builder::Error::Io { path: "/var/lib/pic/store/x".into(), source: io })
            .context("building generation 2");
        assert_eq!(
            super::message(&error),
            "building generation 2: /var/lib/pic/store/x: No space left on device (os error 28)"
        );
    }
}
