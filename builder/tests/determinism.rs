//! Random valid configs render identically twice, with separate renderers, and independently
//! of the order peers are listed in.

use base64::Engine;
use pic_builder::config;
use pic_builder::render::{PublicKeys, Renderer};
use proptest::prelude::*;
use serde_json::{Value, json};

fn config_from(name: &str, keys: &[[u8; 32]], flags: [bool; 5], records: usize, routing_full: bool) -> Value {
    let peers: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            json!({
                "name": format!("peer{i}"),
                "public_key": base64::engine::general_purpose::STANDARD.encode(key),
                "address": format!("10.8.{}.{}", (i + 2) / 256, (i + 2) % 256),
                "routing": if routing_full && i % 2 == 0 { "full" } else { "split" },
                "enabled": i % 7 != 3,
            })
        })
        .collect();
    let records: Vec<Value> = (0..records)
        .map(|i| json!({"name": format!("host{i}"), "type": "A", "value": format!("172.20.0.{}", 20 + i)}))
        .collect();
    json!({
        "version": 2,
        "cell": {"name": name, "timezone": "Europe/Paris"},
        "network": {"subnet": "172.20.0.0/24"},
        "wireguard": {"enabled": flags[0], "subnet": "10.8.0.0/22", "peers": peers},
        "services": {
            "proxy": {"enabled": flags[1]},
            "dns": {"enabled": flags[2], "upstreams": ["9.9.9.9"], "records": records},
            "calendar": {"enabled": flags[3]},
            "files": {"enabled": flags[4]}
        },
        "users": [{"name": "admin", "role": "admin"}]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn rendering_is_deterministic(
        name in "[a-z][a-z0-9]{0,12}",
        keys in prop::collection::hash_set(any::<[u8; 32]>(), 0..60),
        flags in any::<[bool; 5]>(),
        records in 0usize..20,
        routing_full in any::<bool>(),
    ) {
        let keys: Vec<[u8; 32]> = keys.into_iter().collect();
        let value = config_from(&name, &keys, flags, records, routing_full);
        let config = config::parse(&value.to_string()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let public = PublicKeys { wireguard: "c2C9I3d9maFf+uWSNqTiPnN8jR0gmMAtJ6rITkc+GRA=".into() };

        let first = Renderer::new().render(&config, &public).unwrap();
        let second = Renderer::new().render(&config, &public).unwrap();
        prop_assert_eq!(&first, &second);

        let mut reversed = value.clone();
        reversed["wireguard"]["peers"].as_array_mut().unwrap().reverse();
        let reordered = config::parse(&reversed.to_string()).unwrap();
        prop_assert_eq!(&first, &Renderer::new().render(&reordered, &public).unwrap());

        for (service, bundle) in &first {
            prop_assert_eq!(bundle.sha256(service), second[service].sha256(service));
        }
    }
}
