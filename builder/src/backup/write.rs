//! Writing an archive: members go into a tar over zstd as they are read, each hashed on the way,
//! and the manifest of them all is written last. Every member is its own zstd frame (with its
//! checksum), so that damage to the compressed file is caught at, and named by, the member it is in.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::Meter;
use super::format::{self, Header, Kind, Manifest, Member};
use crate::error::{Error, IoContext};
use crate::hashing::{Hashing, sha256_hex};

/// zstd's default level: most of the ratio of the higher levels at a fraction of their time.
const ZSTD_LEVEL: i32 = 3;

pub struct ArchiveWriter<'p, W: Write> {
    tar: tar::Builder<FrameWriter<W>>,
    members: Vec<Member>,
    meter: Meter<'p>,
    /// Where the archive goes, for error messages.
    target: std::path::PathBuf,
}

impl<'p, W: Write> ArchiveWriter<'p, W> {
    pub fn new(output: W, target: &Path, header: &Header, meter: Meter<'p>) -> Result<Self, Error> {
        let frames = FrameWriter::new(output).at(target)?;
        let mut writer =
            ArchiveWriter { tar: tar::Builder::new(frames), members: Vec::new(), meter, target: target.to_owned() };
        writer.bytes(format::HEADER, &json(header), 0o644)?;
        Ok(writer)
    }

    /// A member from memory.
    pub fn bytes(&mut self, path: &str, contents: &[u8], mode: u32) -> Result<(), Error> {
        let mut header = tar_header(tar::EntryType::Regular, mode, contents.len() as u64);
        self.tar.append_data(&mut header, path, contents).at(&self.target)?;
        self.record(path, Kind::File, contents.len() as u64, sha256_hex(contents))?;
        Ok(())
    }

    /// A member from a file of the state directory, with its mode (times and owners are not kept).
    pub fn file(&mut self, path: &str, source: &Path) -> Result<(), Error> {
        let meta = fs::symlink_metadata(source).at(source)?;
        let mut header = tar_header(tar::EntryType::Regular, meta.mode() & 0o7777, meta.len());
        self.stream(path, source, &mut header, meta.len())
    }

    /// A tree of the services' data, as it is: modes, owners, times and links inside it.
    /// Adds the tree at `root` under `prefix`, leaving out the top-level folders named in `skip`.
    pub fn data_tree(&mut self, prefix: &str, root: &Path, skip: &[String]) -> Result<(), Error> {
        let walk =
            walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name().into_iter().filter_entry(|e| {
                e.depth() != 1 || !skip.iter().any(|s| e.file_name().to_string_lossy() == s.as_str())
            });
        for entry in walk {
            let entry = entry.map_err(|e| Error::Io {
                path: e.path().unwrap_or(root).to_owned(),
                source: e.into_io_error().unwrap_or_else(|| io::Error::other("walking the data")),
            })?;
            let rel = entry.path().strip_prefix(root).expect("walked from root").to_string_lossy();
            let path = format!("{prefix}/{rel}");
            let meta = entry.path().symlink_metadata().at(entry.path())?;
            let kind = meta.file_type();
            let entry_type = if kind.is_dir() {
                tar::EntryType::Directory
            } else if kind.is_symlink() {
                tar::EntryType::Symlink
            } else if kind.is_file() {
                tar::EntryType::Regular
            } else {
                // Sockets and fifos are made afresh by the daemons that use them.
                tracing::debug!(path = %entry.path().display(), "not a file, folder or link: left out of the backup");
                continue;
            };
            let mut header = tar_header(entry_type, meta.mode() & 0o7777, 0);
            header.set_uid(meta.uid().into());
            header.set_gid(meta.gid().into());
            header.set_mtime(meta.mtime().max(0) as u64);
            if kind.is_dir() {
                self.tar.append_data(&mut header, &path, io::empty()).at(&self.target)?;
                self.record(&path, Kind::Dir, 0, sha256_hex(b""))?;
            } else if kind.is_symlink() {
                let target = fs::read_link(entry.path()).at(entry.path())?;
                let target_bytes = target.as_os_str().as_encoded_bytes();
                self.tar.append_link(&mut header, &path, &target).at(&self.target)?;
                self.record(&path, Kind::Symlink, target_bytes.len() as u64, sha256_hex(target_bytes))?;
            } else {
                header.set_size(meta.len());
                self.stream(&path, entry.path(), &mut header, meta.len())?;
            }
        }
        Ok(())
    }

    /// Streams a file into the archive, hashing it on the way. A file that changes size while it
    /// is read is an error rather than a member that disagrees with its header.
    fn stream(&mut self, path: &str, source: &Path, header: &mut tar::Header, size: u64) -> Result<(), Error> {
        let file = File::open(source).at(source)?;
        let mut reader = Hashing::new(file.take(size));
        self.tar.append_data(header, path, &mut reader).at(&self.target)?;
        if reader.byte_count() != size {
            return Err(Error::Io {
                path: source.to_owned(),
                source: io::Error::other("the file shrank while it was backed up; try again"),
            });
        }
        self.record(path, Kind::File, size, reader.finalize_hex())?;
        Ok(())
    }

    fn record(&mut self, path: &str, kind: Kind, size: u64, sha256: String) -> Result<(), Error> {
        self.tar.get_mut().end_frame().at(&self.target)?;
        self.meter.advance(size);
        self.members.push(Member { path: path.to_owned(), kind, size, sha256 });
        Ok(())
    }

    /// Writes the manifest and its hash, ends the tar and the last frame; returns the output, the
    /// number of members and the meter.
    pub fn finish(mut self) -> Result<(W, usize, Meter<'p>), Error> {
        let manifest = Manifest { format_version: format::FORMAT_VERSION, members: std::mem::take(&mut self.members) };
        let count = manifest.members.len();
        let text = json(&manifest);
        let mut header = tar_header(tar::EntryType::Regular, 0o644, text.len() as u64);
        self.tar.append_data(&mut header, format::MANIFEST, text.as_slice()).at(&self.target)?;
        let sum = format!("{}\n", sha256_hex(&text));
        let mut header = tar_header(tar::EntryType::Regular, 0o644, sum.len() as u64);
        self.tar.append_data(&mut header, format::MANIFEST_SHA256, sum.as_bytes()).at(&self.target)?;
        let mut frames = self.tar.into_inner().at(&self.target)?;
        frames.end_frame().at(&self.target)?;
        Ok((frames.output, count, self.meter))
    }
}

fn tar_header(entry_type: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

pub(super) fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(value).expect("backup metadata serializes");
    text.push(b'\n');
    text
}

/// A writer that compresses into one zstd frame after another: [`FrameWriter::end_frame`] closes
/// the current frame (with its checksum) and the next write opens a new one. The frames together
/// are one zstd stream to any reader.
struct FrameWriter<W> {
    output: W,
    encoder: zstd::stream::raw::Encoder<'static>,
    buffer: Vec<u8>,
    /// Whether anything went into the current frame.
    open: bool,
}

impl<W: Write> FrameWriter<W> {
    fn new(output: W) -> io::Result<Self> {
        let mut encoder = zstd::stream::raw::Encoder::new(ZSTD_LEVEL)?;
        encoder.set_parameter(zstd::stream::raw::CParameter::ChecksumFlag(true))?;
        Ok(FrameWriter { output, encoder, buffer: vec![0; zstd::zstd_safe::CCtx::out_size()], open: false })
    }

    fn end_frame(&mut self) -> io::Result<()> {
        use zstd::stream::raw::{Operation, OutBuffer};
        if !self.open {
            return Ok(());
        }
        loop {
            let mut out = OutBuffer::around(self.buffer.as_mut_slice());
            let remaining = self.encoder.finish(&mut out, false)?;
            let written = out.pos();
            self.output.write_all(&self.buffer[..written])?;
            if remaining == 0 {
                break;
            }
        }
        self.encoder.reinit()?;
        self.open = false;
        Ok(())
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use zstd::stream::raw::Operation;
        self.open |= !buf.is_empty();
        let mut read = 0;
        while read < buf.len() {
            let status = self.encoder.run_on_buffers(&buf[read..], &mut self.buffer)?;
            self.output.write_all(&self.buffer[..status.bytes_written])?;
            read += status.bytes_read;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.output.flush()
    }
}
