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
