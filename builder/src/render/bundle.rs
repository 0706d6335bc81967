//! A service's rendered files, and the content hash that names its store path.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The files of one service, keyed by their path inside the bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bundle {
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Tag hashed first, so that a future change of the hashing scheme cannot collide with this one.
const HASH_FORMAT: &[u8] = b"pic-bundle-v1\0";

impl Bundle {
    /// The bundle's content hash (hex sha256) over the service name and every file's path and
    /// contents, in path order, each length-prefixed so that no two bundles hash alike.
    pub fn sha256(&self, service: &str) -> String {
        let mut h = Sha256::new();
        h.update(HASH_FORMAT);
        field(&mut h, service.as_bytes());
        for (path, contents) in &self.files {
            field(&mut h, path.as_bytes());
            field(&mut h, contents);
        }
        hex::encode(h.finalize())
    }
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(files: &[(&str, &str)]) -> Bundle {
        Bundle { files: files.iter().map(|(p, c)| (p.to_string(), c.as_bytes().to_vec())).collect() }
    }

    #[test]
    fn hash_depends_on_service_paths_and_contents() {
        let a = bundle(&[("a", "1"), ("b", "2")]);
        assert_eq!(a.sha256("dns"), a.clone().sha256("dns"));
        assert_ne!(a.sha256("dns"), a.sha256("proxy"));
        assert_ne!(a.sha256("dns"), bundle(&[("a", "1"), ("b", "3")]).sha256("dns"));
        // Moving bytes between a path and its contents must change the hash.
        assert_ne!(bundle(&[("ab", "c")]).sha256("x"), bundle(&[("a", "bc")]).sha256("x"));
    }
}
