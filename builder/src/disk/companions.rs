//! The files that go with a built image: its sha256, a zstd-compressed copy (what people
//! download) with its own sha256, and a block map for `bmaptool copy`, which writes only the
//! blocks that hold data.

use std::fs;
use std::path::{Path, PathBuf};

use crate::command;
use crate::error::{Error, IoContext};
use crate::fsutil;
use crate::hashing::sha256_file;

/// zstd's level for the download, chosen by measuring the image on two cores: level 3 gave
/// 376 MB in 2.3 s, 9 gave 355 MB in 8 s, 12 and 15 hardly less (354, 353 MB) in 20 and 72 s,
/// and 19 gave 328 MB in 4 minutes, longer than the rest of a build. Most of the image is the
/// root, already lz4-compressed; level 9 is where more time stops buying size.
const LEVEL: i32 = 9;

/// Where each companion file went, and the compressed size.
pub struct Companions {
    pub sha256: String,
    pub compressed: PathBuf,
    pub compressed_size: u64,
    pub bmap: PathBuf,
}

/// Writes `<image>.sha256`, `<image>.zst`, `<image>.zst.sha256` and `<image>.bmap`.
pub fn write(image: &Path) -> Result<Companions, Error> {
    let sha256 = sha256_file(image)?;
    write_sum(image, &sha256)?;

    let compressed = sibling(image, ".zst");
    let tmp = sibling(image, &format!(".zst.{}", fsutil::TMP_PREFIX));
    {
        let mut input = fs::File::open(image).at(image)?;
        let mut encoder = zstd::Encoder::new(fs::File::create(&tmp).at(&tmp)?, LEVEL).at(&tmp)?;
        encoder.include_checksum(true).at(&tmp)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        encoder.multithread(threads).at(&tmp)?;
        std::io::copy(&mut input, &mut encoder).at(&tmp)?;
        encoder.finish().at(&tmp)?.sync_all().at(&tmp)?;
    }
    fsutil::rename_durable(&tmp, &compressed)?;
    write_sum(&compressed, &sha256_file(&compressed)?)?;
    let compressed_size = fs::metadata(&compressed).at(&compressed)?.len();

    let bmap = sibling(image, ".bmap");
    command::run("bmaptool", &["create", "--output", &bmap.to_string_lossy(), &image.to_string_lossy()])?;
    Ok(Companions { sha256, compressed, compressed_size, bmap })
}

/// `<path>.sha256` in `sha256sum -c`'s format.
fn write_sum(path: &Path, sha256: &str) -> Result<(), Error> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    fsutil::write_atomic(&sibling(path, ".sha256"), format!("{sha256}  {name}\n").as_bytes(), 0o644)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn the_compressed_copy_decompresses_to_the_image_and_the_sums_check() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("pic.img");
        let mut file = fs::File::create(&image).unwrap();
        file.write_all(&[7u8; 70_000]).unwrap();
        file.set_len(1 << 20).unwrap();
        drop(file);
        let companions = write(&image).unwrap();
        let back = zstd::decode_all(fs::File::open(&companions.compressed).unwrap()).unwrap();
        assert_eq!(back, fs::read(&image).unwrap());
        for sum in ["pic.img.sha256", "pic.img.zst.sha256"] {
            let status = std::process::Command::new("sha256sum")
                .args(["--check", "--quiet", sum])
                .current_dir(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "{sum} does not check");
        }
        assert!(fs::read_to_string(&companions.bmap).unwrap().contains("<bmap"));
    }
}
