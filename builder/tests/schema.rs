//! The committed JSON Schema must be the one the types generate (`make schema` rewrites it).

#[test]
fn committed_schema_matches_the_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/cell-config.schema.json");
    let generated = serde_json::to_string_pretty(&pic_builder::config::json_schema()).unwrap() + "\n";
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "{path} is out of date with the config types; run `make schema` and commit the result"
    );
}
