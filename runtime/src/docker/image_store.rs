//! Docker's image store for the disk image, prepared when the image is built: a private `dockerd`
//! on a directory of its own loads the service images' archive, and what it wrote (`image/` and
//! `overlay2/`) becomes `/var/lib/docker` on the data partition. The appliance then boots with
//! its images in place and never imports them; every image stays there, so a rollback to a
//! generation that uses one the current generation does not finds it after any reboot.
//!
//! The store is cached beside the disk image's root, under the archive's hash.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pic_builder::{command, fsutil, hashing};

use super::{Engine, Publish};

/// The cached stores' names: this prefix and their archive's hash.
const STORE_PREFIX: &str = "image-store-";

/// What a private `dockerd` writes that is the image store; the rest it makes again on the device.
const STORE_PARTS: &[&str] = &["image", "overlay2"];

/// How long a private `dockerd` may take to answer: it starts its own containerd (about a second
/// here, more on a busy machine).
const DAEMON_START: Duration = Duration::from_secs(60);

/// The image store holding every image of `archive`, made under `cache` unless it is there.
pub async fn prepare(archive: &Path, cache: &Path) -> Result<PathBuf> {
    let hash = hashing::sha256_file(archive).with_context(|| format!("hashing {}", archive.display()))?;
    let store = cache.join(format!("{STORE_PREFIX}{}", &hash[..16]));
    if STORE_PARTS.iter().all(|part| store.join(part).is_dir()) {
        pic_builder::images::rootfs::remove_superseded(&store, STORE_PREFIX)?;
        return Ok(store);
    }
    let work = cache.join(format!("{}image-store", fsutil::TMP_PREFIX));
    pic_builder::images::rootfs::remove_tree(&work)?;
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let work = work.canonicalize()?;
    let daemon = Daemon::start(&work)?;
    let loaded = async {
        let engine = daemon.engine().await?;
        engine.load_archive(archive).await
    }
    .await;
    daemon.stop()?;
    loaded?;
    let tmp = cache.join(format!("{}image-store-done", fsutil::TMP_PREFIX));
    pic_builder::images::rootfs::remove_tree(&tmp)?;
    std::fs::create_dir_all(&tmp)?;
    for part in STORE_PARTS {
        std::fs::rename(work.join("data").join(part), tmp.join(part))
            .with_context(|| format!("moving the image store's {part}"))?;
    }
    pic_builder::images::rootfs::remove_tree(&work)?;
    pic_builder::images::rootfs::remove_tree(&store)?;
    std::fs::rename(&tmp, &store).with_context(|| format!("placing {}", store.display()))?;
    pic_builder::images::rootfs::remove_superseded(&store, STORE_PREFIX)?;
    Ok(store)
}

/// A `dockerd` that owns nothing of the machine's: its own data and exec roots, socket, pid file
/// and network namespace, no bridge and no firewall rules.
struct Daemon {
    child: Child,
    socket: String,
}

impl Daemon {
    fn start(work: &Path) -> Result<Daemon> {
        let path = |name: &str| work.join(name).to_string_lossy().into_owned();
        let socket = path("docker.sock");
        let log = std::fs::File::create(work.join("dockerd.log"))?;
        let child = command::spawn(
            // In a network namespace of its own: a dockerd with `--bridge=none` deletes any
            // `docker0` it sees, and the machine's own Docker needs its bridge.
            Command::new("unshare")
                .args(["--net", "--", "dockerd"])
                .args(["--data-root", &path("data"), "--exec-root", &path("exec"), "--pidfile", &path("dockerd.pid")])
                .args(["--host", &format!("unix://{socket}")])
                .args(["--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false"])
                .args(["--storage-driver=overlay2", "--log-level=warn"])
                .stdout(Stdio::null())
                .stderr(log),
        )?;
        Ok(Daemon { child, socket })
    }

    async fn engine(&self) -> Result<Engine> {
        let started = Instant::now();
        loop {
            match Engine::connect(&self.socket, Publish::None).await {
                Ok(engine) => return Ok(engine),
                Err(error) if started.elapsed() > DAEMON_START => {
                    bail!("the private dockerd did not answer within {DAEMON_START:?}: {error:#}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Stops it as its service manager would (SIGTERM: it stops its containerd and unmounts).
    fn stop(mut self) -> Result<()> {
        command::run("kill", &["-TERM", &self.child.id().to_string()])?;
        let status = self.child.wait().context("waiting for the private dockerd")?;
        tracing::info!(%status, "private dockerd stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tmpfs mounted for a test, unmounted when it ends.
    struct Tmpfs(PathBuf);

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }

    /// Docker's store on a small tmpfs: an archive that would not fit is refused before a byte
    /// is sent, naming what it needs, and the store takes no more room than before.
    #[tokio::test]
    async fn a_load_that_does_not_fit_is_refused_before_it_starts() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().canonicalize().unwrap();
        let data = work.join("data");
        std::fs::create_dir(&data).unwrap();
        let mounted =
            Command::new("mount").args(["-t", "tmpfs", "-o", "size=128m", "tmpfs"]).arg(&data).status().unwrap();
        assert!(mounted.success(), "mounting a tmpfs (the test runs as root, as `make test` does)");
        let _tmpfs = Tmpfs(data.clone());
        let daemon = Daemon::start(&work).unwrap();
        let refused = async {
            let engine = daemon.engine().await?;
            let free = fsutil::free_bytes(&data)?;
            // Larger than half the room: Docker keeps the archive while it unpacks it.
            let archive = work.join("images.tar");
            std::fs::File::create(&archive)?.set_len(free / 2 + (1 << 20))?;
            let used = fsutil::tree_size(&data)?;
            let error = engine.load_archive(&archive).await.expect_err("a load that does not fit was started");
            anyhow::Ok((error, used, fsutil::tree_size(&data)?))
        }
        .await;
        daemon.stop().unwrap();
        let (error, before, after) = refused.unwrap();
        let message = format!("{error:#}");
        assert!(message.contains("loading the images into Docker") && message.contains("MB needed"), "{message}");
        assert!(matches!(error.downcast_ref(), Some(pic_builder::Error::NoSpace { .. })), "{message}");
        assert_eq!(before, after, "the refused load took room in Docker's store");
    }
}
