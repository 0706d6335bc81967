//! Config migrations: every version 1 file in `migrations/v1/` read as the current format
//! (golden files: the migrated canonical JSON, snapshotted), valid and the same config whether
//! read from the old text or the migrated one; a newer version refused naming both; generations
//! an earlier PIC built from version 1 still listed, summarized and diffed.

use std::fs;
use std::path::Path;

use pic_builder::{State, config};

fn v1_files() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/migrations/v1");
    let mut files: Vec<(String, String)> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), fs::read_to_string(&p).unwrap()))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "the golden inputs are missing");
    files
}

#[test]
fn every_version_1_file_migrates_to_the_current_format() {
    for (name, text) in v1_files() {
        assert!(text.contains("\"version\": 1"), "{name} is not a version 1 file");
        let migrated = config::to_current_text(&text).unwrap();
        insta::assert_snapshot!(format!("v1_{name}"), migrated);
        let from_old = config::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let from_new = config::parse(&migrated).unwrap_or_else(|e| panic!("{name} migrated: {e}"));
        assert_eq!(from_old.into_inner(), from_new.into_inner(), "{name}");
        assert_eq!(config::to_current_text(&migrated).unwrap(), migrated, "{name}: migrating twice changes it");
    }
}

#[test]
fn a_config_of_a_newer_version_is_refused_naming_both() {
    let (_, text) = &v1_files()[0];
    let newer = text.replacen("\"version\": 1", &format!("\"version\": {}", config::CURRENT_VERSION + 1), 1);
    let error = config::parse(&newer).unwrap_err();
    insta::assert_snapshot!(error.to_string());
    assert!(config::to_current_text(&newer).is_err());
}

#[test]
fn generations_built_from_version_1_are_listed_and_diffed() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::new(dir.path());
    let (_, text) = v1_files().into_iter().find(|(name, _)| name == "cell").unwrap();
    let config = config::parse(&text).unwrap();
    state.init(Some(&config)).unwrap();
    let writer = state.writer().unwrap();
    writer.build_and_switch(&config, "built by an earlier PIC").unwrap();
    // What an earlier PIC wrote: the generation's config in version 1.
    let path = state.root().join("generations/1/config.json");
    let mut perms = fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(&path, perms).unwrap();
    fs::write(&path, &text).unwrap();
    assert!(state.generation_config(1).unwrap().contains("\"version\": 1"));

    let changed = writer
        .desired_with(|c| {
            c.services.dns.upstreams = vec!["9.9.9.9".parse().unwrap()];
            Ok(())
        })
        .unwrap();
    writer.build_and_switch(&changed, "a version 2 generation").unwrap();
    let generations = state.generations().unwrap();
    assert_eq!(generations.len(), 2);
    // The example forwards to 9.9.9.9 and 149.112.112.112: only the removal is a change.
    assert_eq!(generations[1].summary, ["DNS: removed the upstream server 149.112.112.112"]);
    let diff = state.diff(1, 2).unwrap();
    assert_eq!(diff.summary, generations[1].summary);
    // The old generation is compared in today's format: only the real change shows.
    let changed_lines: Vec<&str> = diff
        .config
        .lines()
        .filter(|l| (l.starts_with('+') || l.starts_with('-')) && !l.starts_with("+++") && !l.starts_with("---"))
        .collect();
    assert!(changed_lines.iter().all(|l| !l.contains("\"version\"")), "{}", diff.config);
    assert!(changed_lines.iter().any(|l| l.contains("149.112.112.112")), "{}", diff.config);
    // A rollback to it works: its config becomes the desired one, read through the migration.
    writer.rollback().unwrap();
    assert_eq!(state.current().unwrap(), Some(1));
    assert_eq!(state.desired_config().unwrap().unwrap().services.dns.upstreams, config.services.dns.upstreams);
}
