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

/// The format version a config text says it is in (only the `version` field is read).
pub fn version_of(text: &str) -> Result<u32, ValidationErrors> {
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
    if version == 0 {
        return Err(ValidationErrors::single(
            "version",
            "config version 0 does not exist",
            format!("the first version is 1; this PIC reads versions 1 to {CURRENT_VERSION}"),
        ));
    }
    let mut value = value;
    for step in version..CURRENT_VERSION {
        value = match step {
            1 => v1_to_v2(value),
            _ => unreachable!("a step from every version below the current one"),
        };
    }
    Ok(value)
}

/// Version 2 adds `backups` (schedules, retention, destination). A version 1 file has none,
/// so its cell keeps making archives only on request; nothing else changed its meaning.
fn v1_to_v2(mut value: serde_json::Value) -> serde_json::Value {
    if let Some(object) = value.as_object_mut() {
        object.insert("version".into(), 2.into());
    }
    value
}

/// The config text in the current format, as JSON: an older version is migrated and read
/// through the model (so that defaults it left out are filled in as a build fills them), a newer
/// one refused. What generations built by an earlier PIC are shown and compared as.
pub fn to_current_json(text: &str) -> Result<serde_json::Value, ValidationErrors> {
    let version = version_of(text)?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(syntax_error)?;
    if version == CURRENT_VERSION {
        return Ok(value);
    }
    let config: CellConfig = serde_path_to_error::deserialize(migrate(version, value)?).map_err(shape_error)?;
    Ok(serde_json::to_value(&config).expect("a config serializes"))
}

/// The config text in the current format's canonical JSON: a file of the current version as it
/// is, an older one migrated (its shape checked, its rules not: they may have grown since).
pub fn to_current_text(text: &str) -> Result<String, ValidationErrors> {
    if version_of(text)? == CURRENT_VERSION {
        return Ok(text.to_owned());
    }
    let config: CellConfig = serde_json::from_value(to_current_json(text)?).expect("read through the model");
    Ok(to_canonical_json(&config))
}

/// `HH:MM` on a 24-hour clock as (hour, minute).
pub fn backup_time(at: &str) -> Option<(i8, i8)> {
    let (h, m) = at.split_once(':')?;
    let ok = |s: &str| s.len() == 2 && s.bytes().all(|c| c.is_ascii_digit());
    if !ok(h) || !ok(m) {
        return None;
    }
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some((h, m))
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
