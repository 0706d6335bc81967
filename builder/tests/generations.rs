//! Switching between generations through the library: what a rollback picks.

use std::path::Path;

use pic_builder::{Error, State, config};

/// A rollback does not land on a generation the health gate marked failed (an app that never
/// became healthy): it goes to the newest earlier one that was not.
#[test]
fn a_rollback_skips_generations_the_health_gate_rolled_back() {
    let tmp = tempfile::tempdir().unwrap();
    let state = State::new(tmp.path());
    let config = config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cell.json")).unwrap();
    state.init(Some(&config)).unwrap();
    let writer = state.writer().unwrap();
    writer.build_and_switch(&config, "first").unwrap();
    for upstream in ["1.1.1.1", "8.8.8.8"] {
        let changed = writer
            .desired_with(|c| {
                c.services.dns.upstreams = vec![upstream.parse().unwrap()];
                Ok(())
            })
            .unwrap();
        writer.build_and_switch(&changed, upstream).unwrap();
    }
    writer.mark_failed(2, "never became healthy").unwrap();
    assert_eq!(writer.rollback().unwrap().to, 1, "generation 2 failed its health check");
    assert!(matches!(writer.rollback(), Err(Error::NothingToRollBackTo(1))));
}

/// The desired config is read once per change of its file, whoever changes it: through the
/// library, or by hand (another process, an editor writing in place).
#[test]
fn the_desired_config_is_read_again_only_when_its_file_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let state = State::new(tmp.path());
    let config = config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cell.json")).unwrap();
    state.init(Some(&config)).unwrap();
    assert_eq!(state.desired_config().unwrap().unwrap(), config);
    let writer = state.writer().unwrap();
    let changed = writer
        .desired_with(|c| {
            c.cell.timezone = "Europe/Berlin".into();
            Ok(())
        })
        .unwrap();
    writer.build_and_switch(&changed, "time zone").unwrap();
    assert_eq!(state.desired_config().unwrap().unwrap().cell.timezone, "Europe/Berlin");
    // Edited in place, keeping the inode: the size or the time tells.
    let path = state.desired_config_path();
    let text = std::fs::read_to_string(&path).unwrap().replace("Europe/Berlin", "Europe/Lisbon");
    std::fs::OpenOptions::new().write(true).truncate(true).open(&path).unwrap();
    std::fs::write(&path, text).unwrap();
    assert_eq!(state.desired_config().unwrap().unwrap().cell.timezone, "Europe/Lisbon");
    std::fs::remove_file(&path).unwrap();
    assert_eq!(state.desired_config().unwrap(), None);
}

/// `gc` by size removes the oldest generations first, but never the current one, the one before
/// it or the last that passed the health gate: a rollback always has somewhere to go.
#[test]
fn gc_by_size_keeps_what_a_rollback_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let state = State::new(tmp.path());
    let config = config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cell.json")).unwrap();
    state.init(Some(&config)).unwrap();
    let writer = state.writer().unwrap();
    writer.build_and_switch(&config, "first").unwrap();
    for upstream in ["1.1.1.1", "8.8.8.8", "9.9.9.10", "149.112.112.112"] {
        let changed = writer
            .desired_with(|c| {
                c.services.dns.upstreams = vec![upstream.parse().unwrap()];
                Ok(())
            })
            .unwrap();
        writer.build_and_switch(&changed, upstream).unwrap();
    }
    writer.mark_passed(2).unwrap();
    assert_eq!(state.last_passed().unwrap(), Some(2));

    // A limit nothing can meet: everything but the three that must stay goes.
    let report = writer.gc(pic_builder::GcLimits { keep: None, max_store_bytes: Some(1) }).unwrap();
    assert_eq!(report.removed_generations, [1, 3]);
    assert!(report.over_limit && report.store_bytes > 1, "{report:?}");
    assert!(!report.removed_store_paths.is_empty());
    for n in [2, 4, 5] {
        state.manifest(n).unwrap();
    }
    assert!(state.verify().unwrap().problems.is_empty());
    let on_disk = std::fs::read_dir(state.store().dir()).unwrap().count();
    assert_eq!(report.store_bytes, {
        let mut total = 0;
        for entry in std::fs::read_dir(state.store().dir()).unwrap() {
            total += pic_builder::fsutil::tree_size(&entry.unwrap().path()).unwrap();
        }
        total
    });
    assert!(on_disk > 0);
    // A limit already met removes nothing.
    let report = writer.gc(pic_builder::GcLimits { keep: None, max_store_bytes: Some(1 << 30) }).unwrap();
    assert!(report.removed_generations.is_empty() && !report.over_limit, "{report:?}");
    assert!(matches!(writer.gc(pic_builder::GcLimits { keep: Some(0), max_store_bytes: None }), Err(Error::KeepZero)));
}
