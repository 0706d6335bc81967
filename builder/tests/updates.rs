//! Updates on a device made of files: the ESP a folder, each root slot a file, the command line
//! naming slot A. A bundle is applied into slot B with its entry on trial; every refusal (table
//! below, messages snapshotted) leaves the ESP and both slots byte for byte as they were; a version
//! out of tries is reported as rejected with the boot check's reason, and stays refused.

use std::fs;
use std::path::{Path, PathBuf};

use pic_builder::update::Version;
use pic_builder::update::apply::{self, Applied};
use pic_builder::update::bundle::{self, Manifest, Parts, SigningKey};
use pic_builder::update::slots::{Device, Layout, SlotDef, SlotState};
use tempfile::TempDir;

const SLOT_BYTES: u64 = 1 << 20;
const A: &str = "0a0a0a0a-0000-4000-8000-00000000000a";
const B: &str = "0b0b0b0b-0000-4000-8000-00000000000b";

struct Fixture {
    dir: TempDir,
    key: SigningKey,
    device: Device,
}

impl Fixture {
    /// A device running `running` from slot A, its entry confirmed (or as named).
    fn new(running: &str, entry: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let esp = dir.path().join("esp");
        fs::create_dir_all(esp.join("loader/entries")).unwrap();
        fs::create_dir_all(esp.join("pic").join(running)).unwrap();
        fs::write(esp.join("pic").join(running).join("vmlinuz"), b"old kernel").unwrap();
        fs::write(esp.join("pic").join(running).join("initrd.img"), b"old initrd").unwrap();
        fs::write(
            esp.join("loader/entries").join(entry),
            format!("title PIC {running}\nversion {running}\noptions root=PARTUUID={A} ro\n"),
        )
        .unwrap();
        let slot = |name: &str, uuid: &str| {
            let device = dir.path().join(format!("slot-{name}"));
            fs::write(&device, vec![if name == "a" { 0xaa } else { 0 }; SLOT_BYTES as usize]).unwrap();
            SlotDef { name: name.into(), partuuid: uuid.into(), device }
        };
        let layout = Layout { esp, slots: vec![slot("a", A), slot("b", B)] };
        let key = SigningKey::from_bytes(&[1u8; 32]);
        let device = Device {
            layout,
            cmdline: format!("root=PARTUUID={A} ro quiet"),
            trusted_key: bundle::public_key(&key),
            state: dir.path().join("state/updates"),
            image_version: None,
        };
        Fixture { dir, key, device }
    }

    /// A bundle of `version` with payloads of `root_bytes`, signed with `key` after `change`.
    fn bundle(&self, version: &str, root_bytes: usize, change: impl Fn(&mut Manifest)) -> PathBuf {
        let files = self.dir.path().join(format!("parts-{version}"));
        fs::create_dir_all(&files).unwrap();
        let (root, kernel, initrd) = (files.join("root"), files.join("vmlinuz"), files.join("initrd"));
        fs::write(&root, vec![0x5a; root_bytes]).unwrap();
        fs::write(&kernel, format!("kernel {version}")).unwrap();
        fs::write(&initrd, format!("initrd {version}")).unwrap();
        let manifest = Manifest {
            format: bundle::FORMAT,
            version: version.parse().unwrap(),
            architecture: bundle::ARCHITECTURE.into(),
            min_from_version: "0".parse().unwrap(),
            cmdline: "ro quiet panic=10".into(),
            payloads: Vec::new(),
        };
        let output = self.dir.path().join(format!("pic-{version}.picupd"));
        let manifest =
            bundle::write(&Parts { root: &root, kernel: &kernel, initrd: &initrd }, manifest, &self.key, &output)
                .unwrap();
        let mut changed = manifest.clone();
        change(&mut changed);
        if changed != manifest {
            let payloads: Vec<(String, PathBuf)> =
                [(bundle::ROOT, &root), (bundle::KERNEL, &kernel), (bundle::INITRD, &initrd)]
                    .map(|(n, p)| (n.to_owned(), p.clone()))
                    .into();
            bundle::write_members(&changed, &bundle::sign(&changed, &self.key), &payloads, &output).unwrap();
        }
        output
    }

    fn apply(&self, bundle: &Path) -> Result<Applied, pic_builder::Error> {
        apply::apply(&self.device, bundle, &mut |_, _| {})
    }

    /// Every file of the ESP and both slots, with its content.
    fn disk(&self) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(&self.device.layout.esp)
            .sort_by_file_name()
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| (e.path().display().to_string(), fs::read(e.path()).unwrap()))
            .collect();
        for slot in &self.device.layout.slots {
            files.push((slot.name.clone(), fs::read(&slot.device).unwrap()));
        }
        files
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.device.entries_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

#[test]
fn a_bundle_lands_in_the_inactive_slot_with_its_entry_on_trial_written_last() {
    let cell = Fixture::new("2026.1", "pic-2026.1.conf");
    let file = cell.bundle("2026.2", 300_000, |_| {});
    let applied = cell.apply(&file).unwrap();
    assert_eq!((applied.version.as_str(), applied.slot.as_str(), applied.reboot_required), ("2026.2", "b", true));

    let slot_b = fs::read(&cell.device.layout.slots[1].device).unwrap();
    assert!(slot_b[..300_000].iter().all(|b| *b == 0x5a) && slot_b[300_000..].iter().all(|b| *b == 0));
    assert!(fs::read(&cell.device.layout.slots[0].device).unwrap().iter().all(|b| *b == 0xaa), "slot A was touched");
    let esp = &cell.device.layout.esp;
    assert_eq!(fs::read_to_string(esp.join("pic/2026.2/vmlinuz")).unwrap(), "kernel 2026.2");
    assert_eq!(cell.entries(), ["pic-2026.1.conf", "pic-2026.2+3.conf"]);
    let entry = fs::read_to_string(cell.device.entries_dir().join("pic-2026.2+3.conf")).unwrap();
    insta::assert_snapshot!(entry.replace(B, "<slot b>"), @r"
    title PIC 2026.2
    sort-key pic
    version 2026.2
    linux /pic/2026.2/vmlinuz
    initrd /pic/2026.2/initrd.img
    options root=PARTUUID=<slot b> ro quiet panic=10
    ");

    let status = cell.device.status().unwrap();
    assert_eq!((status.booted_slot.as_deref(), status.boot, status.ready), (Some("a"), SlotState::Good, true));
    assert_eq!(status.version, Some("2026.1".parse().unwrap()));
    let b = &status.slots[1];
    assert_eq!(
        (b.state, b.tries_left, b.version.as_ref().map(Version::as_str)),
        (SlotState::Trying, Some(3), Some("2026.2"))
    );

    // The next update replaces what slot B held: its entry and kernel go, A's stay.
    let again = cell.bundle("2026.3", 1000, |_| {});
    cell.apply(&again).unwrap();
    assert_eq!(cell.entries(), ["pic-2026.1.conf", "pic-2026.3+3.conf"]);
    assert!(!esp.join("pic/2026.2").exists() && esp.join("pic/2026.1/vmlinuz").exists());
}

#[test]
fn refused_bundles_write_nothing_and_say_why() {
    struct Case {
        name: &'static str,
        /// The running version's entry.
        entry: &'static str,
        version: &'static str,
        root: usize,
        /// What is changed in the manifest before it is signed.
        change: fn(&mut Manifest),
        /// Signed by a key the device does not trust.
        stranger: bool,
    }
    let case = |name, entry, version, root, change: fn(&mut Manifest)| Case {
        name,
        entry,
        version,
        root,
        change,
        stranger: false,
    };
    let cases = [
        Case { stranger: true, ..case("another key", "pic-5.conf", "6", 10, |_| {}) },
        case("another architecture", "pic-5.conf", "6", 10, |m| m.architecture = "aarch64".into()),
        case("the running version", "pic-5.conf", "5", 10, |_| {}),
        case("an older version", "pic-5.conf", "4.9", 10, |_| {}),
        case("too new a step", "pic-5.conf", "7", 10, |m| m.min_from_version = "6".parse().unwrap()),
        case("a boot on trial", "pic-5+2-1.conf", "6", 10, |_| {}),
        case("a root larger than the slot", "pic-5.conf", "6", SLOT_BYTES as usize + 1, |_| {}),
        case("a payload not as its manifest says", "pic-5.conf", "6", 10, |m| m.payloads[1].sha256 = "0".repeat(64)),
    ];
    let mut messages = String::new();
    for Case { name, entry, version, root, change, stranger } in cases {
        let mut cell = Fixture::new("5", entry);
        if stranger {
            cell.key = SigningKey::from_bytes(&[2u8; 32]);
        }
        let file = cell.bundle(version, root, change);
        let before = cell.disk();
        let error = cell.apply(&file).expect_err(name);
        assert!(error.is_invalid_input(), "{name}: {error}");
        assert!(cell.disk() == before, "{name}: the refusal wrote to the ESP or a slot");
        messages += &format!("{name}: {error}\n");
    }
    let mut cell = Fixture::new("5", "pic-5.conf");
    cell.device.cmdline = "root=/dev/sda2 ro".into();
    let error = cell.apply(&cell.bundle("6", 10, |_| {})).unwrap_err();
    messages += &format!("not started from a slot: {error}\n");
    let cell = Fixture::new("5", "pic-5.conf");
    let file = cell.dir.path().join("not-a-bundle");
    fs::write(&file, b"hello").unwrap();
    messages += &format!("not a bundle: {}\n", cell.apply(&file).unwrap_err());
    insta::assert_snapshot!(messages);
}

#[test]
fn a_version_out_of_tries_is_rejected_with_the_boot_checks_reason_and_stays_refused() {
    let cell = Fixture::new("5", "pic-5.conf");
    cell.apply(&cell.bundle("6", 10, |_| {})).unwrap();
    // systemd-boot counted three tries; each boot check failed.
    fs::rename(cell.device.entries_dir().join("pic-6+3.conf"), cell.device.entries_dir().join("pic-6+0-3.conf"))
        .unwrap();
    fs::create_dir_all(&cell.device.state).unwrap();
    fs::write(
        cell.device.check_path(),
        r#"{"version": "6", "ok": false, "reason": "Docker cannot run (LoadState=masked)", "at": "2026-11-30T21:00:00Z"}"#,
    )
    .unwrap();
    let rejected = cell.device.note_rejections().unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].version.as_str(), "6");
    assert_eq!(
        rejected[0].reason,
        "it failed its health check 3 times; the last time: Docker cannot run (LoadState=masked)"
    );
    let status = cell.device.status().unwrap();
    assert_eq!((status.slots[1].state, status.boot), (SlotState::Bad, SlotState::Good));

    // Its slot is written again by a newer version; the rejection is remembered.
    cell.apply(&cell.bundle("7", 10, |_| {})).unwrap();
    assert_eq!(cell.device.status().unwrap().rejected.len(), 1);
    let error = cell.apply(&cell.bundle("6", 10, |_| {})).unwrap_err().to_string();
    assert!(error.contains("not newer") || error.contains("fell back"), "{error}");
}

#[test]
fn a_boot_from_the_new_slot_reads_its_own_entry_as_the_running_version() {
    let mut cell = Fixture::new("5", "pic-5.conf");
    cell.apply(&cell.bundle("6", 10, |_| {})).unwrap();
    // The firmware booted it: one try counted, slot B is this boot's root.
    fs::rename(cell.device.entries_dir().join("pic-6+3.conf"), cell.device.entries_dir().join("pic-6+2-1.conf"))
        .unwrap();
    cell.device.cmdline = format!("root=PARTUUID={B} ro");
    let status = cell.device.status().unwrap();
    assert_eq!(
        (status.version.as_ref().map(Version::as_str), status.boot, status.ready),
        (Some("6"), SlotState::Trying, false)
    );
    let error = cell.apply(&cell.bundle("7", 10, |_| {})).unwrap_err().to_string();
    assert!(error.contains("still on trial"), "{error}");
    // systemd-bless-boot confirmed it: updates are taken again, into slot A.
    fs::rename(cell.device.entries_dir().join("pic-6+2-1.conf"), cell.device.entries_dir().join("pic-6.conf")).unwrap();
    assert_eq!(cell.apply(&cell.bundle("7", 10, |_| {})).unwrap().slot, "a");
}
