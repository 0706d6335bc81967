//! The cell config: its model, how it is read (with migration of older versions) and validated.

pub mod access;
pub mod app;
mod derived;
mod model;
pub mod services;
pub(crate) mod syntax;
mod validate;

use std::path::Path;

pub use derived::{is_reserved, nth_host};
pub use model::*;
pub use syntax::{is_hostname, is_label, is_wireguard_key, timezones};
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
    let config = match version_of(text)? {
        // The common case reads the text once, straight into the typed model.
        CURRENT_VERSION => {
            let mut de = serde_json::Deserializer::from_str(text);
            let config = serde_path_to_error::deserialize(&mut de).map_err(shape_error)?;
            de.end().map_err(syntax_error)?;
            config
        }
        version => {
            let value: serde_json::Value = serde_json::from_str(text).map_err(syntax_error)?;
            serde_path_to_error::deserialize(migrate(version, value)?).map_err(shape_error)?
        }
    };
    validate(config)
}

/// Reads only the `version` field (the rest is skipped without being stored).
fn version_of(text: &str) -> Result<u32, ValidationErrors> {
    #[derive(serde::Deserialize)]
    struct Versioned {
        version: Option<serde::de::IgnoredAny>,
    }
    #[derive(serde::Deserialize)]
    struct Version {
        version: u32,
    }
    let missing = || {
        ValidationErrors::single("version", "missing or not a number", format!("add \"version\": {CURRENT_VERSION}"))
    };
    let versioned = serde_json::from_str::<Versioned>(text).map_err(|e| {
        if e.is_data() {
            ValidationErrors::single(
                "(root)",
                "the file does not hold a JSON object",
                "a cell config is one JSON object; see `pic schema`",
            )
        } else {
            syntax_error(e)
        }
    })?;
    match versioned.version {
        None => Err(missing()),
        Some(_) => serde_json::from_str::<Version>(text).map(|v| v.version).map_err(|_| missing()),
    }
}

/// Brings a config of an older format version up to [`CURRENT_VERSION`].
fn migrate(version: u32, value: serde_json::Value) -> Result<serde_json::Value, ValidationErrors> {
    if version > CURRENT_VERSION {
        return Err(ValidationErrors::single(
            "version",
            format!("config version {version} was written by a newer PIC"),
            format!("this PIC reads versions up to {CURRENT_VERSION}; upgrade PIC"),
        ));
    }
    // Version 1 is the first format: there is nothing older to migrate yet (version 0 is refused
    // by validation). A later format adds its step here, from the version before it.
    Ok(value)
}

fn syntax_error(e: serde_json::Error) -> ValidationErrors {
    ValidationErrors::single(
        "(file)",
        format!("not valid JSON: {e}"),
        "fix the JSON syntax at the line and column named",
    )
}

fn shape_error(e: serde_path_to_error::Error<serde_json::Error>) -> ValidationErrors {
    let path = e.path().to_string();
    ValidationErrors::single(
        if path == "." { "(root)".to_string() } else { path },
        e.inner().to_string(),
        "compare the field with `pic schema`",
    )
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
