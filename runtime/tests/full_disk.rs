//! A change on a full data partition (a tmpfs with a size limit): refused before anything is
//! written, naming how much it needs, and nothing changes — not the current generation, not the
//! desired config, and no space stays taken; a backup likewise. With room again, the same change
//! goes through.

mod common;

use std::process::Command;

use common::{Cell, example_path};

/// A tmpfs mounted for the test, unmounted when it ends.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn free_bytes(path: &std::path::Path) -> u64 {
    let out = Command::new("df").args(["--output=avail", "-B1"]).arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
}

#[test]
fn a_change_that_does_not_fit_is_refused_and_changes_nothing() {
    let cell = Cell::new();
    let state = cell.state();
    std::fs::create_dir(&state).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"]).arg(&state).status().unwrap();
    assert!(mounted.success(), "mounting a tmpfs (the test runs as root, as `make test` does)");
    let _tmpfs = Tmpfs(state.clone());
    cell.ok(&["init", "--config", example_path().to_str().unwrap()]);
    cell.ok(&["switch"]);
    let desired = std::fs::read_to_string(state.join("cell_config.json")).unwrap();

    // The disk full but for a few kilobytes, too few for a generation of every service.
    let filler = state.join("data/filler");
    let room = free_bytes(&state).saturating_sub(16 * 1024);
    let filled = Command::new("fallocate").args(["-l", &room.to_string()]).arg(&filler).status().unwrap();
    assert!(filled.success());
    let before = free_bytes(&state);
    let renamed = desired.replace("\"name\": \"home\"", "\"name\": \"house\"");
    assert_ne!(renamed, desired, "the example names the cell home");
    let changed = cell.dir.path().join("renamed.json");
    std::fs::write(&changed, &renamed).unwrap();
    let refused = cell.pic(&["switch", "--config", changed.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(!refused.status.success(), "the switch went through on a full disk");
    assert!(
        said.contains("no space left")
            && said.contains("for the new generation")
            && said.contains("nothing was changed"),
        "{said}"
    );
    assert_eq!(said.matches("no space left").count(), 1, "said once: {said}");
    assert_eq!(cell.ok(&["--json", "generations"]).matches("\"number\"").count(), 1, "no new generation");
    assert_eq!(std::fs::read_to_string(state.join("cell_config.json")).unwrap(), desired, "the desired config");
    assert_eq!(std::fs::read_link(state.join("current")).unwrap(), std::path::Path::new("generations/1"));
    for dir in ["store", "generations"] {
        let left: Vec<_> = std::fs::read_dir(state.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "left in {dir}: {left:?}");
    }
    assert!(free_bytes(&state) >= before, "space stayed taken: {} < {before}", free_bytes(&state));

    // A backup that might not fit is refused the same way, before a byte is written.
    let backup = cell.pic(&["backup"]);
    let said = String::from_utf8_lossy(&backup.stderr).into_owned();
    assert!(!backup.status.success(), "a backup on a full disk");
    assert!(said.contains("for the backup") && said.contains("nothing was changed"), "{said}");
    let backups: Vec<_> = std::fs::read_dir(state.join("backups")).map(|d| d.collect()).unwrap_or_default();
    assert!(backups.is_empty(), "left in backups/: {backups:?}");

    std::fs::remove_file(&filler).unwrap();
    cell.ok(&["switch", "--config", changed.to_str().unwrap()]);
    assert_eq!(std::fs::read_link(state.join("current")).unwrap(), std::path::Path::new("generations/2"));
}
