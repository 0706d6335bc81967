//! Differences between two generations: the config, then per service and per file, as unified diffs.

use serde::Serialize;
use similar::TextDiff;

use crate::render::Bundle;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GenerationDiff {
    pub from: u64,
    pub to: u64,
    /// What changed from `from`'s config to `to`'s, in words (`summary::summarize`).
    pub summary: Vec<String>,
    /// Unified diff of the two config snapshots; empty when they are the same.
    pub config: String,
    /// Services that differ, by name.
    pub services: Vec<ServiceDiff>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceDiff {
    pub service: String,
    pub change: Change,
    pub from_store_path: Option<String>,
    pub to_store_path: Option<String>,
    pub files: Vec<FileDiff>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Added,
    Removed,
    Changed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    pub path: String,
    pub change: Change,
    pub unified: String,
}

/// Unified diff of two texts, labelled `a/<label>` and `b/<label>`.
pub fn unified(old: &str, new: &str, label: &str) -> String {
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{label}"), &format!("b/{label}"))
        .to_string()
}

/// Per-file differences between two bundles of one service.
pub fn bundles(service: &str, old: Option<&Bundle>, new: Option<&Bundle>) -> Vec<FileDiff> {
    let empty = Bundle::default();
    let (old, new) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
    let mut paths: Vec<&String> = old.files.keys().chain(new.files.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|path| {
            let (a, b) = (old.files.get(path), new.files.get(path));
            if a == b {
                return None;
            }
            let change = match (a, b) {
                (None, _) => Change::Added,
                (_, None) => Change::Removed,
                _ => Change::Changed,
            };
            let text =
                |bytes: Option<&Vec<u8>>| bytes.map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            let unified = unified(&text(a), &text(b), &format!("{service}/{path}"));
            Some(FileDiff { path: path.clone(), change, unified })
        })
        .collect()
}
