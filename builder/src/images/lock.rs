//! The package lock (`images/packages.lock.json`): the exact Debian package versions each image
//! got, so that a rebuild installs the same ones or says which the archive no longer has.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::fsutil;

/// Package name → version.
pub type Packages = BTreeMap<String, String>;

/// Image name → the packages of its layer (for the base: every package; for a service image: the
/// packages it adds or changes over the base).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageLock {
    pub images: BTreeMap<String, Packages>,
}

impl PackageLock {
    pub fn read(path: &Path) -> Result<PackageLock, Error> {
        fsutil::read_json_or_default(path)
    }

    pub fn write(&self, path: &Path) -> Result<(), Error> {
        fsutil::write_json(path, self, 0o644)
    }

    /// `pkg=version` pins for a build of `image`.
    pub fn pins(&self, image: &str) -> Vec<String> {
        self.images.get(image).into_iter().flatten().map(|(p, v)| format!("{p}={v}")).collect()
    }
}

/// The packages of `layer` that `lower` does not have at the same version.
pub fn added(layer: &Packages, lower: &Packages) -> Packages {
    layer.iter().filter(|(p, v)| lower.get(*p) != Some(v)).map(|(p, v)| (p.clone(), v.clone())).collect()
}

/// Compares what `image` got with the lock: records it when the lock has no entry for it (or
/// `update` is set), refuses a difference otherwise.
pub fn check(lock: &mut PackageLock, image: &str, installed: &Packages, update: bool) -> Result<(), Error> {
    match lock.images.get(image) {
        Some(locked) if !update => mismatch(image, locked, installed).map_or(Ok(()), |m| Err(Error::Image(m))),
        _ => {
            lock.images.insert(image.to_owned(), installed.clone());
            Ok(())
        }
    }
}

/// Whether a cached build of `image` with `installed` may be used: it has the locked packages, or
/// the lock has no say (no entry, or `update`).
pub fn allows(lock: &PackageLock, image: &str, installed: &Packages, update: bool) -> bool {
    match lock.images.get(image) {
        Some(locked) if !update => mismatch(image, locked, installed).is_none(),
        _ => true,
    }
}

/// A bootstrap that asked for the locked versions and failed: apt's reason is in `err`; the usual
/// one is that Debian's archive no longer has a locked version, which `--update-lock` resolves.
pub fn explain_pinned_failure(err: Error) -> Error {
    Error::Image(format!(
        "{err}\nthe bootstrap asked for the locked package versions: if apt says a version was not \
         found, Debian's archive has moved on; rebuild with `--update-lock` to take the new ones"
    ))
}

/// Describes how `built` differs from `locked`, or `None` when they agree.
pub fn mismatch(image: &str, locked: &Packages, built: &Packages) -> Option<String> {
    let mut lines = Vec::new();
    for (package, version) in locked {
        match built.get(package) {
            Some(got) if got == version => {}
            Some(got) => lines.push(format!("{package}: locked {version}, got {got}")),
            None => lines.push(format!("{package}: locked {version}, not installed")),
        }
    }
    for (package, got) in built {
        if !locked.contains_key(package) {
            lines.push(format!("{package}: not locked, got {got}"));
        }
    }
    (!lines.is_empty()).then(|| {
        format!(
            "image {image} did not get the locked packages ({}); the archive has moved on: rebuild with \
             `--update-lock` to accept the new versions",
            lines.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packages(list: &[(&str, &str)]) -> Packages {
        list.iter().map(|(p, v)| ((*p).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn a_build_that_differs_from_the_lock_is_named_package_by_package() {
        let locked = packages(&[("caddy", "2.6.2-1"), ("libc6", "2.41-12")]);
        assert_eq!(mismatch("proxy", &locked, &locked), None);
        let built = packages(&[("caddy", "2.6.2-2"), ("extra", "1")]);
        let message = mismatch("proxy", &locked, &built).unwrap();
        assert!(message.contains("caddy: locked 2.6.2-1, got 2.6.2-2"), "{message}");
        assert!(message.contains("libc6: locked 2.41-12, not installed"), "{message}");
        assert!(message.contains("extra: not locked, got 1"), "{message}");
        assert!(message.contains("--update-lock"), "{message}");
    }

    #[test]
    fn the_lock_records_a_new_entry_refuses_a_moved_one_and_takes_it_when_told() {
        let mut lock = PackageLock::default();
        let first = packages(&[("linux-image-amd64", "6.12.1-1")]);
        let moved = packages(&[("linux-image-amd64", "6.12.2-1")]);
        assert!(allows(&lock, "appliance", &moved, false), "no entry: anything goes");
        check(&mut lock, "appliance", &first, false).unwrap();
        assert_eq!(lock.pins("appliance"), ["linux-image-amd64=6.12.1-1"]);

        assert!(!allows(&lock, "appliance", &moved, false));
        let Err(Error::Image(message)) = check(&mut lock, "appliance", &moved, false) else { panic!("accepted") };
        assert!(message.contains("linux-image-amd64: locked 6.12.1-1, got 6.12.2-1"), "{message}");
        assert_eq!(lock.images["appliance"], first, "a refused build changes nothing");

        assert!(allows(&lock, "appliance", &moved, true));
        check(&mut lock, "appliance", &moved, true).unwrap();
        assert_eq!(lock.images["appliance"], moved);
    }

    #[test]
    fn a_layer_records_what_it_adds_over_the_base() {
        let base = packages(&[("libc6", "2.41-12"), ("dpkg", "1.22")]);
        let image = packages(&[("libc6", "2.41-12"), ("dpkg", "1.23"), ("caddy", "2.6.2-1")]);
        assert_eq!(added(&image, &base), packages(&[("caddy", "2.6.2-1"), ("dpkg", "1.23")]));
    }
}
