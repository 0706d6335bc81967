//! The service templates compiled into the builder: `templates/<service>/<file>`.
//!
//! A file ending in `.j2` is a minijinja template rendered to `<file>` without the suffix; any
//! other file is copied into the bundle as it is.

use sha2::{Digest, Sha256};

include!(concat!(env!("OUT_DIR"), "/templates.rs"));

/// The suffix that marks a file as a template.
pub const TEMPLATE_SUFFIX: &str = ".j2";

/// The template files of one service: (path inside the service folder, contents).
pub fn of_service(service: &str) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
    EMBEDDED.iter().filter_map(move |(path, text)| {
        let rest = path.strip_prefix(service)?.strip_prefix('/')?;
        Some((rest, *text))
    })
}

/// True when the service has a template folder, i.e. the builder knows how to render it.
pub fn has_service(service: &str) -> bool {
    of_service(service).next().is_some()
}

/// A hash over every embedded template, recorded in each generation's manifest.
pub fn sha256() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(compute_sha256)
}

fn compute_sha256() -> String {
    let mut h = Sha256::new();
    for (path, text) in EMBEDDED {
        h.update((path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    hex::encode(h.finalize())
}
