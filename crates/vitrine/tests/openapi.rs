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
