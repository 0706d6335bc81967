//! The cell config: its model, how it is read (with migration of older versions) and validated.

mod derived;
mod model;
mod syntax;
mod validate;

use std::path::Path;

pub use derived::{is_reserved, nth_host};
pub use syntax::is_wireguard_key;
pub use model::*;
pub use validate::{FieldError, ValidConfig, ValidationErrors, validate};

use crate::error::{Error, IoContext};

/// Reads and validates a cell config file.
pub fn load(path: &Path) -> Result<ValidConfig, Error> {
    let text = std::fs::read_to_string(path).at(path)?;
    Ok(parse(&text)?)
}

/// Parses JSON text into a validated config. A syntax or shape error stops parsing and is reported
/// alone (with its path); the semantic rules then report every problem at once.
pub fn parse(text: &str) -> Result<ValidConfig, ValidationErrors> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        ValidationErrors::single(
            "(file)",
            format!("not valid JSON: {e}"),
            "fix the JSON syntax at the line and column named",
        )
    })?;
    let value = migrate(value)?;
    let config: CellConfig = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ValidationErrors::single(
            if path == "." { "(root)".to_string() } else { path },
            e.inner().to_string(),
            "compare the field with `pic schema`",
        )
    })?;
    validate(config)
}

/// Brings a config of an older format version up to [`CURRENT_VERSION`].
fn migrate(value: serde_json::Value) -> Result<serde_json::Value, ValidationErrors> {
    let version = value.get("version").and_then(serde_json::Value::as_u64);
    match version {
        None => Err(ValidationErrors::single(
            "version",
            "missing or not a number",
            format!("add \"version\": {CURRENT_VERSION}"),
        )),
        Some(v) if v > u64::from(CURRENT_VERSION) => Err(ValidationErrors::single(
            "version",
            format!("config version {v} was written by a newer PIC"),
            format!("this PIC reads versions up to {CURRENT_VERSION}; upgrade PIC"),
        )),
        // Version 1 is the first format: there is nothing older to migrate yet. A later format
        // adds its step here, from the version before it.
        Some(_) => Ok(value),
    }
}

/// The JSON Schema of [`CellConfig`], generated from the types.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(CellConfig)).expect("a schema serializes")
}

/// The canonical JSON of a config: what the state directory stores and what its hash is of.
pub fn to_canonical_json(config: &CellConfig) -> String {
    let mut text = serde_json::to_string_pretty(config).expect("a config serializes");
    text.push('\n');
    text
}
