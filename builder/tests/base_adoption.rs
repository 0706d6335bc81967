//! The shared base layer taken from a docker archive of a service image instead of bootstrapped
//! (what a device does before it builds an app's image): cached under the definitions' key,
//! unpacked as the tree app layers are compared against, its packages recorded in the lock.

use std::fs;
use std::path::Path;

use pic_builder::images::{BuiltImage, ImageBuild, archive, layer};

/// A tiny "base" tree: a dpkg database with two packages and a file.
fn base_tree(root: &Path) {
    fs::create_dir_all(root.join("var/lib/dpkg/info")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/os-release"), "ID=debian\n").unwrap();
    let status = "Package: base-files\nStatus: install ok installed\nVersion: 13.8\nArchitecture: amd64\n\n\
                  Package: ca-certificates\nStatus: install ok installed\nVersion: 20250419\nArchitecture: all\n";
    fs::write(root.join("var/lib/dpkg/status"), status).unwrap();
}

#[test]
fn the_base_layer_is_adopted_from_a_service_image_and_served_from_the_cache_after() {
    let dir = tempfile::tempdir().unwrap();
    let definitions = dir.path().join("images");
    fs::create_dir_all(definitions.join("base")).unwrap();
    fs::write(
        definitions.join("base/image.toml"),
        "suite = \"trixie\"\nmirror = \"http://deb.debian.org/debian\"\npackages = [\"ca-certificates\"]\n",
    )
    .unwrap();
    let build = ImageBuild {
        definitions,
        lock: dir.path().join("cache/packages.lock.json"),
        cache: dir.path().join("cache"),
        update_lock: true,
    };
    assert!(!build.has_base().unwrap(), "an empty cache has no base");

    // A service image's archive, as Docker exports it: the base layer, then the service's.
    let layers = dir.path().join("layers");
    fs::create_dir_all(&layers).unwrap();
    base_tree(&dir.path().join("tree"));
    let base = layer::write(&dir.path().join("tree"), None, &layers.join("base.tar")).unwrap();
    fs::rename(layers.join("base.tar"), layers.join(format!("{}.tar", base.sha256))).unwrap();
    fs::create_dir_all(dir.path().join("ntp/etc")).unwrap();
    fs::write(dir.path().join("ntp/etc/chrony.conf"), "pool ntp\n").unwrap();
    let own = layer::write(&dir.path().join("ntp"), None, &layers.join("own.tar")).unwrap();
    fs::rename(layers.join("own.tar"), layers.join(format!("{}.tar", own.sha256))).unwrap();
    let service = BuiltImage {
        name: "ntp".into(),
        key: "k".into(),
        labels: Default::default(),
        layers: vec![base.clone(), own],
        packages: Default::default(),
        tag: None,
        cached: false,
        seconds: 0.0,
    };
    let exported = dir.path().join("ntp.tar");
    archive::write(&[service], &layers, fs::File::create(&exported).unwrap()).unwrap();

    let adopted = build.adopt_base(&exported).unwrap();
    assert_eq!(adopted.layers[0].sha256, base.sha256, "the service image's bottom layer");
    assert_eq!(adopted.packages.get("ca-certificates").map(String::as_str), Some("20250419"));
    assert!(build.cache.join(format!("layers/{}.tar", base.sha256)).exists());
    let tree = build.cache.join("rootfs").join(format!("base-{}", adopted.key));
    assert_eq!(
        fs::read_to_string(tree.join("etc/os-release")).unwrap(),
        "ID=debian\n",
        "the tree apps are compared against"
    );
    let lock: serde_json::Value = serde_json::from_slice(&fs::read(&build.lock).unwrap()).unwrap();
    assert_eq!(lock["images"]["base"]["base-files"], "13.8", "{lock}");

    // From now on the cache has it: a second adoption takes nothing from the archive. An app's
    // image is still to be built (from the archive).
    assert!(build.has_base().unwrap());
    let manifest =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../store/syncthing/manifest.toml")).unwrap();
    let manifest: pic_builder::config::app::Manifest = toml::from_str(&manifest).unwrap();
    let app = pic_builder::config::app::App {
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        address: "10.0.0.40".parse().unwrap(),
        settings: Default::default(),
        manifest,
    };
    assert!(!build.app_built(&app).unwrap(), "nothing of the app is built yet");
    assert_eq!(build.archive().unwrap(), ("trixie".into(), "http://deb.debian.org/debian".into()));
    fs::remove_file(&exported).unwrap();
    assert_eq!(build.adopt_base(&exported).unwrap().key, adopted.key);
}
