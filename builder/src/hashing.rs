//! SHA-256 as PIC uses it everywhere: the hex digest of bytes or of a file, and a reader or writer
//! that hashes and counts what passes through it, so that big files are hashed as they stream.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext};

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The lowercase hex SHA-256 of the file at `path`, read in one pass.
pub fn sha256_file(path: &Path) -> Result<String, Error> {
    let mut reader = Hashing::new(File::open(path).at(path)?);
    io::copy(&mut reader, &mut io::sink()).at(path)?;
    Ok(reader.finalize_hex())
}

/// Wraps a reader or a writer; every byte read from or written to it is hashed and counted.
pub struct Hashing<T> {
    inner: T,
    hasher: Sha256,
    bytes: u64,
}

impl<T> Hashing<T> {
    pub fn new(inner: T) -> Self {
        Hashing { inner, hasher: Sha256::new(), bytes: 0 }
    }

    /// How many bytes went through.
    pub fn byte_count(&self) -> u64 {
        self.bytes
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// For flushing or syncing what is underneath; bytes written here directly are not hashed.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// The hex SHA-256 of everything that went through.
    pub fn finalize_hex(self) -> String {
        hex::encode(self.hasher.finalize())
    }

    fn took(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.took(&buf[..n]);
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.took(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn bytes_a_file_a_reader_and_a_writer_hash_alike() {
        assert_eq!(sha256_hex(b"abc"), ABC);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(sha256_file(&path).unwrap(), ABC);

        let mut writer = Hashing::new(Vec::new());
        writer.write_all(b"ab").unwrap();
        writer.write_all(b"c").unwrap();
        assert_eq!((writer.byte_count(), writer.get_ref().as_slice()), (3, &b"abc"[..]));
        assert_eq!(writer.finalize_hex(), ABC);

        let mut reader = Hashing::new(&b"abc"[..]);
        io::copy(&mut reader, &mut io::sink()).unwrap();
        assert_eq!(reader.byte_count(), 3);
        assert_eq!(reader.finalize_hex(), ABC);
    }

    #[test]
    fn a_missing_file_is_an_error_that_names_it() {
        let err = sha256_file(Path::new("/nonexistent/pic-file")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/pic-file"), "{err}");
    }
}
