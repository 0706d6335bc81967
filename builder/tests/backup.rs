//! Backups and restores through the library: a round trip onto a fresh state directory gives the
//! same generations byte for byte; a restore keeps a newer local history; and every damaged,
//! hostile or unreadable archive is refused with the member named and nothing changed.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;
use pic_builder::backup::{self, BackupInfo, BackupOptions, RestoreOptions, SecretsOutcome};
use pic_builder::{Error, State, config};

/// Fast scrypt for tests: the format is the same, only the work factor differs.
const WORK_FACTOR: u8 = 4;

fn passphrase() -> SecretString {
    SecretString::from("a long backup passphrase".to_owned())
}

fn example() -> config::ValidConfig {
    config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cell.json")).unwrap()
}

/// A cell with three generations (the third current), a failure record and some service data.
fn cell(root: &Path) -> State {
    let state = State::new(root);
    let config = example();
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
    writer.mark_failed(2, "a test failure").unwrap();
    drop(writer);
    let mail = root.join("data/mail/alice/Maildir/cur");
    fs::create_dir_all(&mail).unwrap();
    fs::write(mail.join("1.eml"), "Subject: hello\n\nbody\n").unwrap();
    std::os::unix::fs::symlink("cur/1.eml", root.join("data/mail/alice/Maildir/latest")).unwrap();
    std::os::unix::fs::chown(mail.join("1.eml"), Some(5000), Some(5000)).unwrap();
    fs::set_permissions(mail.join("1.eml"), fs::Permissions::from_mode(0o640)).unwrap();
    state
}

fn back_up(state: &State, out: &Path, passphrase: Option<SecretString>, include_data: bool) -> BackupInfo {
    let options = BackupOptions { passphrase, include_data, work_factor: Some(WORK_FACTOR) };
    backup::create(&state.writer().unwrap(), Some(out), &options, &mut |_| {}).unwrap()
}

fn restore(state: &State, archive: &Path, options: RestoreOptions) -> Result<backup::RestoreReport, Error> {
    backup::restore(state, archive, &options, &mut |_| {})
}

fn with_passphrase() -> RestoreOptions {
    RestoreOptions { passphrase: Some(passphrase()), include_data: false, dry_run: false }
}

/// Every entry under `root` (but the lock file) with its kind, mode and content or target.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut entries = BTreeMap::new();
    if !root.exists() {
        return entries;
    }
    for entry in walkdir::WalkDir::new(root).min_depth(1) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if rel == "lock" {
            continue;
        }
        let meta = entry.path().symlink_metadata().unwrap();
        let what = if meta.is_symlink() {
            format!("link {}", fs::read_link(entry.path()).unwrap().display())
        } else if meta.is_dir() {
            "dir".to_owned()
        } else {
            pic_builder_sha(&fs::read(entry.path()).unwrap())
        };
        entries.insert(rel, format!("{:o} {}:{} {what}", meta.mode() & 0o7777, meta.uid(), meta.gid()));
    }
    entries
}

fn pic_builder_sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Only what a restore onto a fresh machine must reproduce byte for byte.
fn generations_and_store(root: &Path) -> BTreeMap<String, String> {
    tree(root).into_iter().filter(|(path, _)| path.starts_with("generations/") || path.starts_with("store/")).collect()
}

#[test]
fn fresh_machine_gets_the_same_generations_config_secrets_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let original = cell(&dir.path().join("original"));
    let archive = dir.path().join("cell.tar.zst");
    let info = back_up(&original, &archive, Some(passphrase()), true);
    let header = info.header.as_ref().unwrap();
    assert_eq!(
        (header.cell.as_str(), header.current_generation, header.generations.as_slice()),
        ("home", Some(3), &[1, 2, 3][..])
    );
    // The passphrase-encrypted secrets are not readable in the archive.
    let plain = zstd::decode_all(fs::File::open(&archive).unwrap()).unwrap();
    let key = fs::read(original.secrets().dir().join("ca/ca.key")).unwrap();
    assert!(!plain.windows(40).any(|w| w == &key[40..80]), "the CA key is in the clear");

    let fresh = State::new(dir.path().join("fresh"));
    let report = restore(&fresh, &archive, RestoreOptions { include_data: true, ..with_passphrase() }).unwrap();
    assert_eq!(report.restored_generations, [1, 2, 3]);
    assert_eq!((report.new_generation, report.previous_generation), (Some(4), None));
    assert_eq!(report.secrets, SecretsOutcome::Restored);
    assert_eq!(report.data, ["mail"]);

    // Generations 1-3 and their store paths are byte for byte the same; 4 is the restore.
    let mut restored = generations_and_store(fresh.root());
    restored.retain(|path, _| !path.starts_with("generations/4"));
    assert_eq!(restored, generations_and_store(original.root()));
    assert_eq!(fresh.current().unwrap(), Some(4));
    let four = fresh.manifest(4).unwrap();
    assert!(four.same_content(&original.manifest(3).unwrap()), "generation 4 is generation 3's content");
    assert_eq!(fresh.generation_config(4).unwrap(), original.generation_config(3).unwrap());
    assert_eq!(fs::read(fresh.desired_config_path()).unwrap(), fs::read(original.desired_config_path()).unwrap());
    let subtree = |state: &State, sub: &str| -> BTreeMap<String, String> { tree(&state.root().join(sub)) };
    assert_eq!(subtree(&fresh, "secrets"), subtree(&original, "secrets"));
    assert_eq!(subtree(&fresh, "data"), subtree(&original, "data"), "data with owners, modes and links");
    assert_eq!(fresh.failures().unwrap().keys().collect::<Vec<_>>(), [&2]);
    assert!(fresh.verify().unwrap().problems.is_empty());

    // The restore is a generation like any other: rolling back goes to the one before it.
    fresh.writer().unwrap().rollback().unwrap();
    assert_eq!(fresh.current().unwrap(), Some(3));
}

#[test]
fn a_newer_local_history_is_kept_and_the_restore_can_be_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let original = cell(&dir.path().join("cell"));
    let archive = dir.path().join("old.tar.zst");
    back_up(&original, &archive, Some(passphrase()), false);
    // The cell moves on: generation 4, and its CA key is replaced.
    let writer = original.writer().unwrap();
    let changed = writer
        .desired_with(|c| {
            c.services.dns.upstreams = vec!["9.9.9.10".parse().unwrap()];
            Ok(())
        })
        .unwrap();
    writer.build_and_switch(&changed, "newer").unwrap();
    drop(writer);
    let before = tree(original.root());

    let report = restore(&original, &archive, with_passphrase()).unwrap();
    assert_eq!(report.present_generations, [1, 2, 3]);
    assert!(report.restored_generations.is_empty() && report.kept_local_generations.is_empty());
    assert_eq!((report.previous_generation, report.new_generation), (Some(4), Some(5)));
    assert_eq!(report.changed_services, ["dns"]);
    assert!(
        report.config_diff.contains("-        \"9.9.9.10\"") && report.config_diff.contains("+        \"8.8.8.8\""),
        "{}",
        report.config_diff
    );
    // Nothing of the local history was removed or changed.
    let after = tree(original.root());
    for (path, what) in before.iter().filter(|(p, _)| p.starts_with("generations/") || p.starts_with("store/")) {
        assert_eq!(after.get(path), Some(what), "{path} changed");
    }
    // The state before the restore was itself backed up.
    let safety = report.safety_backup.as_ref().expect("a safety backup");
    assert!(safety.starts_with(original.root().join("backups")) && safety.exists());
    // Rolling back undoes the restore.
    original.writer().unwrap().rollback().unwrap();
    assert_eq!(original.current().unwrap(), Some(4));
    assert!(original.generation_config(4).unwrap().contains("9.9.9.10"));
}

#[test]
fn a_diverged_history_keeps_its_own_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let original = cell(&dir.path().join("a"));
    let archive = dir.path().join("a.tar.zst");
    back_up(&original, &archive, None, false);
    // Another cell whose generation 1 is something else.
    let other = State::new(dir.path().join("b"));
    let mut config = example().into_inner();
    config.services.dns.upstreams = vec!["4.4.4.4".parse().unwrap()];
    let config = config::validate(config).unwrap();
    other.init(Some(&config)).unwrap();
    other.writer().unwrap().build_and_switch(&config, "own").unwrap();
    let own = fs::read(other.root().join("generations/1/manifest.json")).unwrap();

    let report =
        restore(&other, &archive, RestoreOptions { passphrase: None, include_data: false, dry_run: false }).unwrap();
    assert_eq!(report.kept_local_generations, [1]);
    assert_eq!(report.restored_generations, [2, 3]);
    assert_eq!(report.new_generation, Some(4));
    assert_eq!(report.secrets, SecretsOutcome::NotInArchive);
    assert_eq!(fs::read(other.root().join("generations/1/manifest.json")).unwrap(), own);
    assert!(other.verify().unwrap().problems.is_empty());
}

#[test]
fn a_dry_run_reports_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let original = cell(&dir.path().join("cell"));
    let archive = dir.path().join("c.tar.zst");
    back_up(&original, &archive, Some(passphrase()), true);
    let fresh = dir.path().join("fresh");
    let report = restore(
        &State::new(&fresh),
        &archive,
        RestoreOptions { dry_run: true, include_data: true, ..with_passphrase() },
    )
    .unwrap();
    assert!(report.dry_run);
    assert_eq!((report.restored_generations.len(), report.new_generation), (3, Some(4)));
    assert!(!fresh.exists(), "a dry run created the state directory");
    let before = tree(original.root());
    restore(&original, &archive, RestoreOptions { dry_run: true, include_data: true, ..with_passphrase() }).unwrap();
    assert_eq!(tree(original.root()), before);
}

// ---- refusals: each leaves the target exactly as it was ----

/// A cell to restore onto, its tree, and a good archive of another cell (with data).
struct Refusal {
    _dir: tempfile::TempDir,
    target: State,
    archive: PathBuf,
    before: BTreeMap<String, String>,
}

impl Refusal {
    fn new() -> Refusal {
        let dir = tempfile::tempdir().unwrap();
        let source = cell(&dir.path().join("source"));
        let archive = dir.path().join("good.tar.zst");
        back_up(&source, &archive, Some(passphrase()), true);
        let target = State::new(dir.path().join("target"));
        target.init(Some(&example())).unwrap();
        target.writer().unwrap().build_and_switch(&example(), "target").unwrap();
        let before = tree(target.root());
        Refusal { _dir: dir, target, archive, before }
    }

    /// Restores `archive` (with data, with the right passphrase unless given another), expects
    /// a refusal whose message contains every one of `expected`, and checks nothing changed.
    fn refused(&self, archive: &Path, options: RestoreOptions, expected: &[&str]) -> String {
        let error = restore(&self.target, archive, options).expect_err("the archive was restored");
        let message = error.to_string();
        for part in expected {
            assert!(message.contains(part), "{message:?} does not contain {part:?}");
        }
        assert_eq!(tree(self.target.root()), self.before, "the refused restore changed something");
        message
    }

    /// The archive's tar, member by member (raw headers and contents), rewritten by `edit`.
    fn rewrite(&self, name: &str, edit: impl FnOnce(&mut Vec<(tar::Header, Vec<u8>)>)) -> PathBuf {
        let plain = zstd::decode_all(fs::File::open(&self.archive).unwrap()).unwrap();
        let mut members = Vec::new();
        let mut tar = tar::Archive::new(plain.as_slice());
        for entry in tar.entries().unwrap().raw(true) {
            let mut entry = entry.unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            members.push((entry.header().clone(), data));
        }
        edit(&mut members);
        let mut out = tar::Builder::new(Vec::new());
        for (header, data) in &members {
            out.append(header, data.as_slice()).unwrap();
        }
        let path = self.archive.with_file_name(name);
        let compressed = zstd::encode_all(out.into_inner().unwrap().as_slice(), 3).unwrap();
        fs::File::create(&path).unwrap().write_all(&compressed).unwrap();
        path
    }
}

fn data_options() -> RestoreOptions {
    RestoreOptions { include_data: true, ..with_passphrase() }
}

fn path_of(header: &tar::Header) -> String {
    String::from_utf8(header.path_bytes().into_owned()).unwrap()
}

/// Sets a raw member name, bypassing the tar crate's own refusal of `..` and absolute names.
fn set_raw_name(header: &mut tar::Header, name: &str) {
    let field = &mut header.as_old_mut().name;
    field.fill(0);
    field[..name.len()].copy_from_slice(name.as_bytes());
    header.set_cksum();
}

#[test]
fn a_truncated_archive_is_refused() {
    let r = Refusal::new();
    let bytes = fs::read(&r.archive).unwrap();
    let cut = r.archive.with_file_name("cut.tar.zst");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    r.refused(&cut, data_options(), &["truncated", "nothing was changed"]);
    fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    r.refused(&cut, data_options(), &["truncated"]);
}

#[test]
fn one_flipped_byte_in_any_member_is_refused_naming_it() {
    let r = Refusal::new();
    let members = [
        "pic-backup/header.json",
        "cell_config.json",
        "generations/2/manifest.json",
        "store/",
        "secrets.tar.age",
        "data/mail/alice/Maildir/cur/1.eml",
        "pic-backup/manifest.json",
    ];
    for (i, wanted) in members.into_iter().enumerate() {
        let mut named = String::new();
        let flipped = r.rewrite(&format!("flip{i}.tar.zst"), |members| {
            let (header, data) =
                members.iter_mut().find(|(h, d)| path_of(h).starts_with(wanted) && !d.is_empty()).unwrap();
            named = path_of(header);
            let middle = data.len() / 2;
            data[middle] ^= 0x01;
        });
        r.refused(&flipped, data_options(), &[&format!("member {named:?}"), "damaged"]);
    }
    // A flipped byte of the compressed file itself: each member is its own zstd frame with a
    // checksum, so damage is caught at the member it is in. A few bits of a frame's header
    // change nothing that is decoded (a larger window size, say): such a flip leaves the archive
    // what it was, and is not damage.
    let good = fs::read(&r.archive).unwrap();
    let decoded = zstd::decode_all(good.as_slice()).unwrap();
    let mut refused = 0;
    for eighth in 1..8 {
        let mut bytes = good.clone();
        bytes[good.len() * eighth / 8] ^= 0x01;
        if zstd::decode_all(bytes.as_slice()).is_ok_and(|same| same == decoded) {
            continue;
        }
        let flipped = r.archive.with_file_name(format!("flip-zstd-{eighth}.tar.zst"));
        fs::write(&flipped, &bytes).unwrap();
        r.refused(&flipped, data_options(), &["member \""]);
        refused += 1;
    }
    assert!(refused >= 5, "only {refused} of 7 flips changed what the archive decodes to");
}

#[test]
fn members_outside_the_state_directory_are_refused() {
    let r = Refusal::new();
    for (i, name) in
        ["../../etc/cron.d/evil", "/etc/cron.d/evil", "data/../../../etc/evil", "run/dns/x"].into_iter().enumerate()
    {
        let hostile = r.rewrite(&format!("path{i}.tar.zst"), |members| {
            let (header, _) = members.iter_mut().find(|(h, _)| path_of(h) == "cell_config.json").unwrap();
            set_raw_name(header, name);
        });
        r.refused(&hostile, data_options(), &[&format!("member {name:?}")]);
    }
}

#[test]
fn links_pointing_outside_are_refused() {
    let r = Refusal::new();
    let cases: [(&str, tar::EntryType, &str, &str); 3] = [
        (
            "data/mail/alice/evil",
            tar::EntryType::Symlink,
            "../../../secrets/ca/ca.key",
            "outside its service's data folder",
        ),
        ("data/mail/alice/abs", tar::EntryType::Symlink, "/etc/shadow", "outside its service's data folder"),
        ("data/mail/alice/hard", tar::EntryType::Link, "/etc/shadow", "hard link"),
    ];
    for (i, (name, kind, target, why)) in cases.into_iter().enumerate() {
        let hostile = r.rewrite(&format!("link{i}.tar.zst"), |members| {
            let at =
                members.iter().position(|(h, _)| path_of(h).starts_with("data/mail/alice/Maildir/cur/1.eml")).unwrap();
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(0);
            header.set_mode(0o777);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            set_raw_name(&mut header, name);
            header.set_link_name(target).unwrap();
            header.set_cksum();
            members.insert(at, (header, Vec::new()));
        });
        r.refused(&hostile, data_options(), &[&format!("member {name:?}"), why]);
    }
}

#[test]
fn an_archive_of_a_newer_format_is_refused() {
    let r = Refusal::new();
    let newer = r.rewrite("newer.tar.zst", |members| {
        let (header, data) = &mut members[0];
        let mut value: serde_json::Value = serde_json::from_slice(data).unwrap();
        value["format_version"] = 3.into();
        *data = serde_json::to_vec(&value).unwrap();
        header.set_size(data.len() as u64);
        header.set_cksum();
    });
    r.refused(&newer, data_options(), &["newer PIC", "format 3", "upgrade PIC"]);
}

#[test]
fn a_wrong_or_missing_passphrase_is_refused() {
    let r = Refusal::new();
    let wrong =
        RestoreOptions { passphrase: Some(SecretString::from("not the passphrase".to_owned())), ..data_options() };
    r.refused(&r.archive, wrong, &["passphrase", "not the one the backup was made with"]);
    let none = RestoreOptions { passphrase: None, ..data_options() };
    r.refused(&r.archive, none, &["encrypted secrets", "--passphrase-file"]);
}

#[test]
fn a_disk_that_fills_up_during_the_restore_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = cell(&dir.path().join("source"));
    // 8 MB of incompressible mail: more than the small disk below holds.
    let mut noise = vec![0u8; 8 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    fs::write(source.root().join("data/mail/alice/big"), &noise).unwrap();
    let archive = dir.path().join("big.tar.zst");
    back_up(&source, &archive, Some(passphrase()), true);

    let disk = dir.path().join("disk");
    fs::create_dir(&disk).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "pic-test-small-disk"])
        .arg(&disk)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a 4 MB tmpfs (needs root)");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(disk.clone());
    let target = State::new(disk.join("state"));
    target.init(Some(&example())).unwrap();
    target.writer().unwrap().build_and_switch(&example(), "small").unwrap();
    let before = tree(target.root());

    let error = restore(&target, &archive, data_options()).expect_err("restored onto a full disk");
    assert!(matches!(error, Error::NoSpace { .. }), "{error}");
    assert!(error.to_string().contains("nothing was changed"), "{error}");
    assert_eq!(tree(target.root()), before);
}

/// An app whose manifest says `backup = false` (Transmission's downloads) stays out of a backup
/// with data; the other apps' data is in it.
#[test]
fn an_apps_data_is_left_out_when_its_manifest_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cell");
    let state = State::new(&root);
    let config = config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/apps.json")).unwrap();
    state.init(Some(&config)).unwrap();
    state.writer().unwrap().build_and_switch(&config, "apps").unwrap();
    for app in ["app-dokuwiki/wiki/pages", "app-transmission/transmission/downloads"] {
        fs::create_dir_all(root.join("data").join(app)).unwrap();
        fs::write(root.join("data").join(app).join("file"), "content").unwrap();
    }
    let archive = tmp.path().join("backup.tar.zst");
    back_up(&state, &archive, None, true);
    let fresh = tmp.path().join("fresh");
    let restored = State::new(&fresh);
    let options = RestoreOptions { passphrase: None, include_data: true, dry_run: false };
    restore(&restored, &archive, options).unwrap();
    assert!(fresh.join("data/app-dokuwiki/wiki/pages/file").exists());
    assert!(!fresh.join("data/app-transmission").exists(), "Transmission's data is not in the backup");
}

#[test]
fn a_scheduled_archive_needs_only_the_passphrase_and_the_retention_keeps_manual_ones() {
    let dir = tempfile::tempdir().unwrap();
    let original = cell(&dir.path().join("original"));
    let destination = dir.path().join("usb");
    {
        let writer = original.writer().unwrap();
        let scheduled = writer
            .desired_with(|c| {
                c.backups.schedule =
                    Some(config::BackupSchedule { every: config::Every::Day, at: "03:00".into(), on: None });
                c.backups.keep = config::Retention { daily: 2, weekly: 0 };
                c.backups.destination = Some(destination.display().to_string());
                Ok(())
            })
            .unwrap();
        writer.build_and_switch(&scheduled, "scheduled backups").unwrap();
        // The destination is a disk that is not mounted yet: the run fails, says so, makes nothing.
        let now: jiff::Timestamp = "2026-12-01T03:00:00Z".parse().unwrap();
        let unmounted = backup::schedule::run(&writer, now, &mut |_| {}).unwrap_err().to_string();
        assert!(unmounted.contains("is its disk mounted?"), "{unmounted}");
        let status = backup::schedule::status(&original).unwrap();
        assert_eq!((status.last_attempt, status.last_success), (Some(now), None));
        assert!(status.problem.unwrap().contains("mounted"));
        fs::create_dir(&destination).unwrap();
        let manual = destination.join("manual.tar.zst");
        backup::create(&writer, Some(&manual), &BackupOptions::default(), &mut |_| {}).unwrap();
        // Without a backup key, the secrets stay out.
        let run = backup::schedule::run(&writer, now, &mut |_| {}).unwrap();
        assert!(!run.secrets_included);
        backup::key::set_up(&writer, &passphrase(), Some(WORK_FACTOR)).unwrap();
        for _ in 0..3 {
            let run = backup::schedule::run(&writer, now, &mut |_| {}).unwrap();
            assert!(run.secrets_included);
            assert_eq!(run.archive.header.as_ref().unwrap().secrets, backup::SecretsIncluded::EncryptedToKey);
            // Archives of one day: the newest of it is kept.
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
    }
    let mut names: Vec<String> =
        fs::read_dir(&destination).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names.len(), 2, "one scheduled archive of the day and the manual one: {names:?}");
    assert!(names.contains(&"manual.tar.zst".to_owned()));
    let scheduled = destination.join(names.iter().find(|n| *n != "manual.tar.zst").unwrap());
    // Listed and found with the cell's own backups, as the mounted destination holds them.
    let listed: Vec<String> = backup::list(&original).unwrap().into_iter().map(|b| b.id).collect();
    for name in &names {
        assert!(listed.contains(name), "{name} is not listed: {listed:?}");
        assert_eq!(backup::find(&original, name).unwrap(), destination.join(name));
    }
    let archive_bytes = fs::read(&scheduled).unwrap();
    let plain = zstd::decode_all(archive_bytes.as_slice()).unwrap();
    assert!(!plain.windows(14).any(|w| w == b"AGE-SECRET-KEY"), "the backup key is in the clear");

    // A fresh machine, the passphrase alone.
    let target = State::new(dir.path().join("fresh"));
    let report = restore(&target, &scheduled, with_passphrase()).unwrap();
    assert_eq!(report.secrets, SecretsOutcome::Restored);
    for secret in ["wireguard/server.key", "backup/identity.age"] {
        assert_eq!(
            fs::read(target.secrets().dir().join(secret)).unwrap(),
            fs::read(original.secrets().dir().join(secret)).unwrap(),
            "{secret}"
        );
    }
    let wrong =
        RestoreOptions { passphrase: Some(SecretString::from("not the passphrase".to_owned())), ..with_passphrase() };
    let refused = restore(&State::new(dir.path().join("other")), &scheduled, wrong).unwrap_err().to_string();
    assert!(refused.contains("not the one the backup was made with"), "{refused}");
}
