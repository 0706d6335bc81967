//! Root filesystems from Debian packages: `mmdebstrap --variant=minbase` with the merged-usr hook
//! (without it usrmerge pulls in perl), documentation and translations left out.

use std::cmp::Reverse;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::command;
use crate::error::{Error, IoContext};

use super::lock::Packages;

/// Fixed timestamps, so that equal packages give equal files.
pub const SOURCE_DATE_EPOCH: u64 = 1_700_000_000;

/// What one mmdebstrap run makes.
pub struct Bootstrap<'a> {
    pub suite: &'a str,
    pub mirror: &'a str,
    /// Package names, or `name=version` pins.
    pub packages: Vec<String>,
    /// Shell commands run inside the tree afterwards.
    pub setup: &'a [String],
    /// A tree copied over the result.
    pub overlay: Option<&'a Path>,
    /// Downloaded packages, kept between runs.
    pub apt_cache: &'a Path,
}

impl Bootstrap<'_> {
    /// Bootstraps into `target` (which must not exist); on failure nothing of it is left.
    pub fn run(&self, target: &Path) -> Result<(), Error> {
        fs::create_dir_all(self.apt_cache.join("partial")).at(self.apt_cache)?;
        let cache = self.apt_cache.canonicalize().at(self.apt_cache)?;
        let mut cmd = Command::new("mmdebstrap");
        cmd.env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH.to_string())
            // Not `--quiet`: at the default verbosity mmdebstrap prints apt's output when apt
            // fails, which is the only place the reason is.
            .args(["--variant=minbase", "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr"])
            // A mirror that drops a connection mid-download costs a retry, not the build.
            .arg("--aptopt=Acquire::Retries \"5\"")
            .args([
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            ])
            // The packages are downloaded once into the cache, bind-mounted for each run.
            .arg("--skip=download/empty")
            .arg(format!(
                "--setup-hook=mkdir -p \"$1/var/cache/apt/archives\" && mount --bind {} \"$1/var/cache/apt/archives\"",
                cache.display()
            ))
            .arg("--customize-hook=umount \"$1/var/cache/apt/archives\"");
        if !self.packages.is_empty() {
            cmd.arg(format!("--include={}", self.packages.join(",")));
        }
        if let Some(overlay) = self.overlay {
            let overlay = overlay.canonicalize().at(overlay)?;
            cmd.arg(format!("--customize-hook=sync-in {} /", overlay.display()));
        }
        for line in self.setup {
            cmd.arg(format!("--customize-hook=chroot \"$1\" sh -ec '{}'", line.replace('\'', r"'\''")));
        }
        // Left by apt and the bootstrap; nothing in an image needs them.
        cmd.arg("--customize-hook=rm -rf \"$1/var/lib/apt/lists\"/* \"$1/var/cache/apt\"/*.bin && find \"$1/var/log\" -type f -delete");
        cmd.arg(self.suite).arg(target).arg(self.mirror);
        command::run_command(&mut cmd).map(drop).inspect_err(|_| {
            // What apt said is in the error; a half-made tree (with the cache mounted) is not kept.
            let _ = remove_tree(target);
        })
    }
}

/// Removes a tree that a bootstrap made or left behind, if it is there. A bootstrap that failed
/// or was killed leaves the package cache bind-mounted inside its tree: that is unmounted first, so
/// that removing the tree neither fails on it nor empties the cache (`--one-file-system` makes
/// sure of the latter for any mount this misses).
pub fn remove_tree(path: &Path) -> Result<(), Error> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let root = path.canonicalize().at(path)?;
    let mountinfo = Path::new("/proc/self/mountinfo");
    let mounts = fs::read_to_string(mountinfo).at(mountinfo)?;
    // The fifth field is the mount point (our cache paths hold no characters it would escape).
    let mut below: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(&root))
        .collect();
    below.sort_by_key(|m| Reverse(m.components().count()));
    for mount in below {
        command::run("umount", &[&mount.to_string_lossy()])?;
    }
    command::run("rm", &["-rf", "--one-file-system", &path.to_string_lossy()]).map(drop)
}

/// Removes the trees beside `keep` whose names start with `prefix`: the caches of earlier
/// inputs, which would otherwise pile up (hundreds of MB each) in a cache kept across runs.
pub fn remove_superseded(keep: &Path, prefix: &str) -> Result<(), Error> {
    let (Some(dir), Some(kept)) = (keep.parent(), keep.file_name()) else { return Ok(()) };
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        if name != kept && name.to_string_lossy().starts_with(prefix) {
            remove_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// The packages installed in the tree at `root`.
pub fn installed_packages(root: &Path) -> Result<Packages, Error> {
    let admindir = root.join("var/lib/dpkg");
    let out = command::run(
        "dpkg-query",
        &[&format!("--admindir={}", admindir.display()), "--show", "--showformat=${Package}\t${Version}\n"],
    )?;
    Ok(out.lines().filter_map(|l| l.split_once('\t')).map(|(p, v)| (p.to_owned(), v.to_owned())).collect())
}

/// The uid and gid of `user` in the tree at `root`.
pub fn user_ids(root: &Path, user: &str) -> Result<(u32, u32), Error> {
    let passwd = root.join("etc/passwd");
    let text = fs::read_to_string(&passwd).at(&passwd)?;
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == user)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .ok_or_else(|| Error::Image(format!("the image has no user {user:?} (data_user)")))
}

/// The gid of `group` in the tree at `root`.
pub fn group_id(root: &Path, group: &str) -> Result<u32, Error> {
    let path = root.join("etc/group");
    let text = fs::read_to_string(&path).at(&path)?;
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[0] == group)
        .and_then(|f| f[2].parse().ok())
        .ok_or_else(|| Error::Image(format!("the image has no group {group:?} (secrets_group)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a failed bootstrap leaves: the package cache still bind-mounted inside the tree.
    #[test]
    fn a_left_over_tree_is_removed_and_the_cache_mounted_in_it_survives() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("apt");
        fs::create_dir_all(&cache).unwrap();
        fs::write(cache.join("less.deb"), b"package").unwrap();
        let tree = dir.path().join(".tmp-rootfs");
        let archives = tree.join("var/cache/apt/archives");
        fs::create_dir_all(&archives).unwrap();
        fs::write(tree.join("var/file"), b"x").unwrap();
        command::run("mount", &["--bind", &cache.to_string_lossy(), &archives.to_string_lossy()]).unwrap();

        let removed = remove_tree(&tree);
        if archives.join("less.deb").exists() {
            let _ = command::run("umount", &[&archives.to_string_lossy()]);
        }
        removed.unwrap();
        assert!(!tree.exists());
        assert_eq!(fs::read(cache.join("less.deb")).unwrap(), b"package");
        remove_tree(&tree).unwrap();
    }

    #[test]
    fn only_the_current_cache_of_a_kind_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["rootfs-old1", "rootfs-old2", "rootfs-new", "image-store-a", "apt"] {
            fs::create_dir_all(dir.path().join(name).join("etc")).unwrap();
        }
        remove_superseded(&dir.path().join("rootfs-new"), "rootfs-").unwrap();
        let mut left: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["apt", "image-store-a", "rootfs-new"]);
    }
}
