//! Every rendered file of every example config, as an insta snapshot.

use pic_builder::config;
use pic_builder::render::{PublicKeys, Renderer};

/// A fixed public key, so that snapshots do not depend on a generated one.
pub const TEST_KEY: &str = "c2C9I3d9maFf+uWSNqTiPnN8jR0gmMAtJ6rITkc+GRA=";

#[test]
fn every_example_renders_as_snapshotted() {
    let renderer = Renderer::new();
    insta::glob!("../../examples", "*.json", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let config = config::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let bundles = renderer
            .render(
                &config,
                &PublicKeys {
                    wireguard: TEST_KEY.into(),
                },
            )
            .unwrap();
        assert!(!bundles.is_empty(), "{} renders nothing", path.display());
        for (service, bundle) in &bundles {
            for (file, contents) in &bundle.files {
                let name = format!("{service}__{file}");
                insta::assert_snapshot!(name, String::from_utf8(contents.clone()).unwrap());
            }
        }
    });
}

#[test]
fn disabled_services_render_nothing() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/cell.json"
    ))
    .unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["services"]["dns"]["enabled"] = false.into();
    value["wireguard"]["enabled"] = false.into();
    let config = config::parse(&value.to_string()).unwrap();
    let bundles = Renderer::new()
        .render(
            &config,
            &PublicKeys {
                wireguard: TEST_KEY.into(),
            },
        )
        .unwrap();
    assert_eq!(bundles.keys().collect::<Vec<_>>(), ["proxy"]);
}
