//! The committed OpenAPI document (`openapi.json` at the repository root) must be exactly what
//! the handlers generate, so clients and the gateway config never drift from the code.

#[test]
fn committed_openapi_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi.json");
    let generated = format!("{}\n", vitrine::openapi().to_pretty_json().unwrap());
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        generated == committed,
        "openapi.json is out of date; regenerate it with\n    cargo run -p vitrine -- openapi > openapi.json"
    );
}

/// Client generators and gateway converters name methods and routes after operation ids: each
/// operation has one, and no two share it.
#[test]
fn operation_ids_are_unique() {
    let document: serde_json::Value =
        serde_json::from_str(&vitrine::openapi().to_json().unwrap()).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            if let Some(other) = seen.insert(id.to_owned(), format!("{method} {path}")) {
                panic!("operationId {id} is used by {other} and {method} {path}");
            }
        }
    }
}
