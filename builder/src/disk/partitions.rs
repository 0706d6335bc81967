//! From a root tree to a GPT disk: the EFI system partition (vfat, made with mkfs.vfat and
//! mtools), the root (erofs), the data partition (ext4 made from the tree's `/var`), put together
//! by systemd-repart from those files (`CopyBlocks=`). No loop device, no mount.

use std::fs;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::command;
use crate::error::{Error, IoContext};
use crate::images::rootfs::SOURCE_DATE_EPOCH;

/// Room for two kernels with their initrds (about 35 MB a pair), as an update needs.
const ESP_MIB: u64 = 96;
/// Room in the data partition as built beyond what `/var` holds, for ext4's own structures (its
/// journal, inode tables, reserved blocks): the partition grows to fill the disk before anything
/// writes to it on first boot.
const DATA_SPARE_MIB: u64 = 32;
const DATA_SPARE_PERCENT: u64 = 3;

pub fn assemble(tree: &Path, cmdline: &str, work: &Path, output: &Path) -> Result<(), Error> {
    // /var lives on the data partition; the root keeps an empty folder to mount it on.
    let var = work.join("var");
    fs::rename(tree.join("var"), &var).at(&var)?;
    fs::create_dir(tree.join("var")).at(tree)?;

    let esp = work.join("esp.vfat");
    esp_image(tree, cmdline, work, &esp)?;
    let root = work.join("root.erofs");
    let epoch = SOURCE_DATE_EPOCH.to_string();
    // lz4hc in 64 KiB clusters: a root 15 % smaller than plain lz4's 4 KiB clusters, read as fast
    // (lz4 decompresses the same either way); the build takes about 30 s longer.
    command::run("mkfs.erofs", &["-T", &epoch, "-U", &uuid("pic-root"), "-zlz4hc,9", "-C65536", &s(&root), &s(tree)])?;
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
    for (file, kind, label, blocks) in [
        ("10-esp.conf", "esp", "pic-esp", &esp),
        ("20-root.conf", "root-x86-64", "pic-root", &root),
        ("30-data.conf", "linux-generic", "pic-data", &data),
    ] {
        let text = format!("[Partition]\nType={kind}\nLabel={label}\nCopyBlocks={}\n", blocks.display());
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

/// The EFI system partition: systemd-boot as the removable-media loader (no NVRAM entry needed),
/// one boot entry with the kernel, its initrd and the command line.
fn esp_image(tree: &Path, cmdline: &str, work: &Path, esp: &Path) -> Result<(), Error> {
    let boot = tree.join("boot");
    let newest = |prefix: &str| -> Result<std::path::PathBuf, Error> {
        let mut found: Vec<_> = fs::read_dir(&boot)
            .at(&boot)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
            .collect();
        found.sort();
        found.pop().ok_or_else(|| Error::Image(format!("no {prefix}* in {}", boot.display())))
    };
    let (kernel, initrd) = (newest("vmlinuz-")?, newest("initrd.img-")?);
    let files = work.join("esp");
    fs::create_dir_all(&files).at(&files)?;
    fs::write(files.join("loader.conf"), "timeout 0\ndefault pic.conf\nconsole-mode keep\n").at(&files)?;
    let entry = format!("title PIC\nlinux /pic/vmlinuz\ninitrd /pic/initrd.img\noptions {cmdline}\n");
    fs::write(files.join("pic.conf"), entry).at(&files)?;
    command::run(
        "touch",
        &["--date", &format!("@{SOURCE_DATE_EPOCH}"), &s(&files.join("loader.conf")), &s(&files.join("pic.conf"))],
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
    mtools(&["mmd", "::/EFI", "::/EFI/BOOT", "::/loader", "::/loader/entries", "::/pic"])?;
    let loader = tree.join("usr/lib/systemd/boot/efi/systemd-bootx64.efi");
    for (from, to) in [
        (loader.as_path(), "::/EFI/BOOT/BOOTX64.EFI"),
        (files.join("loader.conf").as_path(), "::/loader/loader.conf"),
        (files.join("pic.conf").as_path(), "::/loader/entries/pic.conf"),
        (kernel.as_path(), "::/pic/vmlinuz"),
        (initrd.as_path(), "::/pic/initrd.img"),
    ] {
        mtools(&["mcopy", "-m", &s(from), to])?;
    }
    // The firmware loads them from here; the root need not hold them a second time.
    fs::remove_file(&kernel).at(&kernel)?;
    fs::remove_file(&initrd).at(&initrd)?;
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
