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
        let bundles = renderer.render(&config, &PublicKeys { wireguard: TEST_KEY.into() }).unwrap();
        assert!(!bundles.is_empty(), "{} renders nothing", path.display());
        // The example with apps differs from cell.json by its apps: their containers, and the
        // proxy's sites and the DNS names for them.
        let apps_only = path.ends_with("apps.json");
        // The linked example differs by its links: the rules, names, mail routes and peers.
        let links_only = path.ends_with("linked.json");
        // The exits example differs by its exits: the firewall's rules, the interface's file and
        // the OpenVPN exit's container.
        let exits_only = path.ends_with("exits.json");
        for (service, bundle) in &bundles {
            if exits_only && !(service == "firewall" || service == "wireguard" || service.starts_with("exit-")) {
                continue;
            }
            if apps_only && !(service.starts_with("app-") || service == "proxy" || service == "dns") {
                continue;
            }
            let linked = ["firewall", "dns", "mail", "wireguard", "proxy"];
            if links_only && !linked.contains(&service.as_str()) {
                continue;
            }
            for (file, contents) in &bundle.files {
                if (links_only || exits_only && !service.starts_with("exit-")) && file == "container.json" {
                    continue;
                }
                let name = format!("{service}__{file}");
                insta::assert_snapshot!(name, String::from_utf8(contents.clone()).unwrap());
            }
        }
    });
}

#[test]
fn disabled_services_render_nothing() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/cell.json")).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["services"]["dns"]["enabled"] = false.into();
    value["wireguard"]["enabled"] = false.into();
    let config = config::parse(&value.to_string()).unwrap();
    let bundles = Renderer::new().render(&config, &PublicKeys { wireguard: TEST_KEY.into() }).unwrap();
    assert!(!bundles.contains_key("dns") && !bundles.contains_key("wireguard"), "{:?}", bundles.keys());
    assert!(bundles.contains_key("proxy"));
}

#[test]
fn every_containerized_service_has_a_least_privilege_container_spec() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/cell.json")).unwrap();
    let config = config::parse(&text).unwrap();
    let bundles = Renderer::new().render(&config, &PublicKeys { wireguard: TEST_KEY.into() }).unwrap();
    for service in pic_builder::config::services::CATALOG {
        let Some(bundle) = bundles.get(service.name) else { panic!("{} is enabled in the example", service.name) };
        let spec = bundle.files.get("container.json");
        if service.offset.is_none() {
            assert!(spec.is_none(), "{} runs on the host, not in a container", service.name);
            continue;
        }
        let spec: serde_json::Value = serde_json::from_slice(spec.expect("container.json")).unwrap();
        assert_eq!(spec["cap_drop"], serde_json::json!(["ALL"]), "{}", service.name);
        assert_eq!(spec["read_only_root"], true, "{}", service.name);
        assert_eq!(spec["network"]["address"], config.service_address(service).to_string());
        let mounts = spec["mounts"].as_array().unwrap();
        assert!(mounts.iter().any(|m| m["source"] == "bundle" && m["read_only"] == true), "{}", service.name);
        // Only the data directory is writable.
        let writable: Vec<_> = mounts.iter().filter(|m| m["read_only"] == false).map(|m| m["source"].clone()).collect();
        assert_eq!(writable, vec![serde_json::json!("data")], "{}", service.name);
        assert!(spec["health"]["kind"].is_string(), "{}", service.name);
    }
}
