//! From a root tree to a GPT disk: the EFI system partition (vfat, made with mkfs.vfat and
//! mtools), root slot A (erofs) and the data partition (ext4 made from the tree's `/var`), put
//! together by systemd-repart from those files (`CopyBlocks=`). No loop device, no mount. Slot B,
//! of A's size, is not in the image: systemd-repart makes it at the end of the disk on first
//! boot, as the data partition grows (`device_slot_definitions`); after that the GPT is final,
//! and updates write slots.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::command;
use crate::error::{Error, IoContext};
use crate::images::rootfs::SOURCE_DATE_EPOCH;
use crate::update::Version;
use crate::update::slots::{KERNELS, Layout, SlotDef};

use super::ApplianceDef;

/// Room for two kernels with their initrds (about 35 MB a pair): the running version's and the
/// update's, with room for both to grow.
const ESP_MIB: u64 = 128;
/// The slots, by name: their partition label and the seed of their partition UUID.
const SLOTS: [&str; 2] = ["a", "b"];
/// Room in the data partition as built beyond what `/var` holds, for ext4's own structures (its
/// journal, inode tables, reserved blocks): the partition grows to fill the disk before anything
/// writes to it on first boot.
const DATA_SPARE_MIB: u64 = 32;
const DATA_SPARE_PERCENT: u64 = 3;

/// The slots as the device finds them (`/usr/lib/pic/slots.json`).
pub fn layout() -> Layout {
    Layout {
        esp: "/efi".into(),
        slots: SLOTS
            .iter()
            .map(|name| {
                let partuuid = slot_uuid(name);
                SlotDef { name: (*name).into(), device: format!("/dev/disk/by-partuuid/{partuuid}").into(), partuuid }
            })
            .collect(),
    }
}

fn slot_uuid(name: &str) -> String {
    uuid(&format!("pic-root-{name}"))
}

pub fn assemble(tree: &Path, def: &ApplianceDef, version: &Version, work: &Path, output: &Path) -> Result<(), Error> {
    // /var lives on the data partition; the root keeps an empty folder to mount it on.
    let var = work.join("var");
    fs::rename(tree.join("var"), &var).at(&var)?;
    fs::create_dir(tree.join("var")).at(tree)?;

    let (kernel, initrd) = take_boot_files(tree, work)?;
    let esp = work.join("esp.vfat");
    esp_image(tree, &kernel, &initrd, &def.cmdline, version, work, &esp)?;
    let root = work.join("root.erofs");
    root_image(tree, &root)?;
    let root_size = fs::metadata(&root).at(&root)?.len();
    if root_size > def.root_slot_mib << 20 {
        return Err(Error::Image(format!(
            "the root is {} MiB, more than a slot holds (appliance.toml: root_slot_mib = {}): give the slots more room",
            root_size.div_ceil(1 << 20),
            def.root_slot_mib
        )));
    }
    let epoch = SOURCE_DATE_EPOCH.to_string();
    let data = work.join("data.ext4");
    let var_mib = tree_bytes(&var)?.div_ceil(1 << 20);
    let data_mib = var_mib + var_mib * DATA_SPARE_PERCENT / 100 + DATA_SPARE_MIB;
    command::run_command(
        Command::new("mkfs.ext4")
            .env("E2FSPROGS_FAKE_TIME", &epoch)
            .env("SOURCE_DATE_EPOCH", &epoch)
            .args(["-q", "-L", "pic-data", "-U", &uuid("pic-data")])
            .arg("-E")
            .arg(format!("hash_seed={},root_owner=0:0", uuid("pic-data-hash")))
            .args(["-d", &s(&var), &s(&data), &format!("{data_mib}M")]),
    )?;

    let definitions = work.join("repart.d");
    fs::create_dir_all(&definitions).at(&definitions)?;
    for (file, text) in [
        ("10-esp.conf", format!("[Partition]\nType=esp\nLabel=pic-esp\nCopyBlocks={}\n", esp.display())),
        ("20-root-a.conf", format!("{}CopyBlocks={}\n", slot_definition("a", def.root_slot_mib), root.display())),
        ("30-data.conf", format!("[Partition]\nType=linux-generic\nLabel=pic-data\nCopyBlocks={}\n", data.display())),
    ] {
        fs::write(definitions.join(file), text).at(&definitions)?;
    }
    let tmp = work.join("disk.img");
    command::run(
        "systemd-repart",
        &[
            "--empty=create",
            "--size=auto",
            &format!("--seed={}", uuid("pic-disk")),
            &format!("--definitions={}", s(&definitions)),
            "--dry-run=no",
            &s(&tmp),
        ],
    )?;
    fs::rename(&tmp, output).at(output)
}

/// A root slot's partition: its label and UUID (what `layout` names), its fixed size.
fn slot_definition(name: &str, size_mib: u64) -> String {
    format!(
        "[Partition]\nType=root-x86-64\nLabel=pic-root-{name}\nUUID={}\nSizeMinBytes={size_mib}M\nSizeMaxBytes={size_mib}M\n",
        slot_uuid(name)
    )
}

/// The device's definitions of its slots (`/usr/lib/repart.d`, beside the data partition's
/// `50-data.conf`): systemd-repart, which runs at every boot, finds slot A as the first root
/// partition and, on first boot, makes slot B empty after the data partition (which takes the
/// rest of the disk). A raw image without B is 640 MiB smaller; a device flashed before still
/// has its B, which these definitions then match.
pub fn device_slot_definitions(size_mib: u64) -> [(&'static str, String); 2] {
    let header = "# Written by the image build: the root slots (see pic's builder/src/disk/partitions.rs).\n";
    [
        ("20-root-a.conf", format!("{header}{}", slot_definition("a", size_mib))),
        ("30-root-b.conf", format!("{header}{}", slot_definition("b", size_mib))),
    ]
}

/// The root file system of a slot: erofs, lz4hc in 64 KiB clusters — a root 15 % smaller than
/// plain lz4's 4 KiB clusters, read as fast (lz4 decompresses the same either way); the build
/// takes about 30 s longer.
pub fn root_image(tree: &Path, root: &Path) -> Result<(), Error> {
    let epoch = SOURCE_DATE_EPOCH.to_string();
    command::run("mkfs.erofs", &["-T", &epoch, "-U", &uuid("pic-root"), "-zlz4hc,9", "-C65536", &s(root), &s(tree)])
        .map(drop)
}

/// The newest kernel and initrd, moved out of the tree's `/boot` into `work`: the firmware loads
/// them from the ESP; the root need not hold them a second time.
pub fn take_boot_files(tree: &Path, work: &Path) -> Result<(PathBuf, PathBuf), Error> {
    let boot = tree.join("boot");
    let newest = |prefix: &str| -> Result<PathBuf, Error> {
        let mut found: Vec<_> = fs::read_dir(&boot)
            .at(&boot)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
            .collect();
        found.sort();
        found.pop().ok_or_else(|| Error::Image(format!("no {prefix}* in {}", boot.display())))
    };
    let mut moved = Vec::new();
    for (prefix, name) in [("vmlinuz-", "vmlinuz"), ("initrd.img-", "initrd.img")] {
        let from = newest(prefix)?;
        let to = work.join(name);
        fs::copy(&from, &to).at(&to)?;
        fs::remove_file(&from).at(&from)?;
        moved.push(to);
    }
    let initrd = moved.pop().expect("two files");
    Ok((moved.pop().expect("two files"), initrd))
}

/// The EFI system partition: systemd-boot as the removable-media loader (no NVRAM entry needed)
/// and slot A's entry, confirmed good from the start (no counter: it is never tried away). No
/// `default` in loader.conf: systemd-boot picks the newest version that has tries left, so a new
/// version out of tries falls behind the old one by itself.
fn esp_image(
    tree: &Path,
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    version: &Version,
    work: &Path,
    esp: &Path,
) -> Result<(), Error> {
    let files = work.join("esp");
    fs::create_dir_all(&files).at(&files)?;
    fs::write(files.join("loader.conf"), "timeout 0\nconsole-mode keep\n").at(&files)?;
    let entry = format!(
        "title PIC {version}\nsort-key pic\nversion {version}\nlinux /{KERNELS}/{version}/vmlinuz\ninitrd /{KERNELS}/{version}/initrd.img\noptions root=PARTUUID={} {cmdline}\n",
        slot_uuid("a")
    );
    let entry_file = files.join("entry.conf");
    fs::write(&entry_file, entry).at(&files)?;
    command::run(
        "touch",
        &["--date", &format!("@{SOURCE_DATE_EPOCH}"), &s(&files.join("loader.conf")), &s(&entry_file)],
    )?;

    command::run(
        "mkfs.vfat",
        &[
            "-C",
            "--invariant",
            "-F",
            "32",
            "-n",
            "PIC-ESP",
            "-i",
            &uuid("pic-esp")[..8],
            &s(esp),
            &(ESP_MIB * 1024).to_string(),
        ],
    )?;
    let image = format!("-i{}", s(esp));
    let mtools = |args: &[&str]| {
        command::run_command(
            Command::new(args[0])
                .env("MTOOLS_SKIP_CHECK", "1")
                .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH.to_string())
                .arg(&image)
                .args(&args[1..]),
        )
        .map(drop)
    };
    let kernels = format!("::/{KERNELS}/{version}");
    mtools(&["mmd", "::/EFI", "::/EFI/BOOT", "::/loader", "::/loader/entries", &format!("::/{KERNELS}"), &kernels])?;
    let loader = tree.join("usr/lib/systemd/boot/efi/systemd-bootx64.efi");
    for (from, to) in [
        (loader.as_path(), "::/EFI/BOOT/BOOTX64.EFI".to_owned()),
        (files.join("loader.conf").as_path(), "::/loader/loader.conf".to_owned()),
        (entry_file.as_path(), format!("::/loader/entries/pic-{version}.conf")),
        (kernel, format!("{kernels}/vmlinuz")),
        (initrd, format!("{kernels}/initrd.img")),
    ] {
        mtools(&["mcopy", "-m", &s(from), &to])?;
    }
    Ok(())
}

/// The bytes the files of a tree take (what `du` counts, in 4 KiB blocks).
fn tree_bytes(tree: &Path) -> Result<u64, Error> {
    let mut total = 0;
    for entry in walkdir::WalkDir::new(tree) {
        let entry = entry.map_err(|e| Error::Image(e.to_string()))?;
        let meta = entry.metadata().map_err(|e| Error::Image(e.to_string()))?;
        total += meta.len().div_ceil(4096) * 4096;
    }
    Ok(total)
}

/// A UUID derived from a name: fixed for every build.
fn uuid(name: &str) -> String {
    let h = hex::encode(Sha256::digest(name.as_bytes()));
    format!("{}-{}-4{}-8{}-{}", &h[..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

fn s(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
