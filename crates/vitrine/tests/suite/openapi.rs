//! The committed OpenAPI document (`openapi.json` at the repository root) must be exactly what
//! the handlers generate, so clients and the gateway config never drift from the code; and it
//! must be usable by the tools API consumers run (a validator, a client generator, a fuzzer):
//! schemathesis drives every operation with each role's token and finds no response the
//! document does not describe.

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

/// API.md: every `POST` accepts `Idempotency-Key`; the document says so on each public one.
#[test]
fn every_public_post_declares_idempotency_key() {
    let document: serde_json::Value =
        serde_json::from_str(&vitrine::openapi().to_json().unwrap()).unwrap();
    let mut posts = 0;
    for (path, operations) in document["paths"].as_object().unwrap() {
        let Some(post) = operations.get("post") else {
            continue;
        };
        if path.starts_with("/internal/") {
            continue;
        }
        posts += 1;
        let declared = post["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| {
                p["name"] == "Idempotency-Key" && p["in"] == "header" && p["required"] == false
            });
        assert!(declared, "POST {path} does not declare Idempotency-Key");
        assert!(
            post["responses"].get("409").is_some(),
            "POST {path}: a key still in flight is 409"
        );
    }
    assert!(posts >= 12, "{posts} public POSTs");
}

/// The variable `scripts/test.sh` sets to the Python that has openapi-spec-validator and
/// openapi-python-client.
const PYTHON_VAR: &str = "VITRINE_TEST_PYTHON";

fn committed_document() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi.json")
}

/// Runs `python args...` (off the async runtime, which serves the API meanwhile).
async fn python(args: Vec<String>, env: Vec<(&'static str, String)>) -> std::process::Output {
    let python = std::env::var(PYTHON_VAR)
        .unwrap_or_else(|_| panic!("{PYTHON_VAR} is not set: run the tests with scripts/test.sh"));
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args(args)
            .envs(env)
            .output()
            .expect("python runs")
    })
    .await
    .unwrap()
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// openapi-spec-validator accepts the document, and rejects a copy with one response stripped
/// of its description (so the check can fail).
#[tokio::test]
async fn the_document_is_valid_openapi() {
    let validate = |path: &std::path::Path| {
        python(
            vec![
                "-m".into(),
                "openapi_spec_validator".into(),
                path.display().to_string(),
            ],
            vec![],
        )
    };
    let document = committed_document();
    let valid = validate(&document).await;
    assert!(valid.status.success(), "{}", text(&valid));

    let mut broken: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&document).unwrap()).unwrap();
    let response = &mut broken["paths"]["/v1/customers"]["post"]["responses"]["201"];
    response.as_object_mut().unwrap().remove("description");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("broken.json");
    std::fs::write(&copy, broken.to_string()).unwrap();
    let invalid = validate(&copy).await;
    assert!(!invalid.status.success(), "{}", text(&invalid));
}

/// A client generated from the document by openapi-python-client drives the embedded server
/// through a short scenario (`generated_client/scenario.py`): customer, card, product,
/// reservation, each answer parsed into its documented model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_python_client_drives_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("generator.yaml");
    // No post-generation formatting: the generated code is used, not committed. The import's
    // NDJSON body is a byte stream to the generator (it has no model for line-delimited JSON).
    std::fs::write(
        &config,
        "post_hooks: []\ncontent_type_overrides:\n  application/x-ndjson: application/octet-stream\n",
    )
    .unwrap();
    let generated = python(
        vec![
            "-m".into(),
            "openapi_python_client".into(),
            "generate".into(),
            "--path".into(),
            committed_document().display().to_string(),
            "--output-path".into(),
            dir.path().join("vitrine_client").display().to_string(),
            "--meta".into(),
            "none".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        vec![],
    )
    .await;
    let log = text(&generated);
    assert!(generated.status.success(), "{log}");
    assert!(
        !log.contains("Warning"),
        "the generator skipped parts: {log}"
    );

    let app = crate::common::spawn_app(crate::common::Database::Sqlite).await;
    let scenario =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/generated_client/scenario.py");
    let run = python(
        vec![scenario.display().to_string(), app.base.clone()],
        vec![
            ("PYTHONPATH", dir.path().display().to_string()),
            ("VITRINE_TOKEN", app.admin()),
        ],
    )
    .await;
    let log = text(&run);
    assert!(run.status.success(), "{log}");
    assert!(log.contains("scenario passed"), "{log}");
}

/// The variable `scripts/test.sh` sets to schemathesis's `st`.
const SCHEMATHESIS_VAR: &str = "VITRINE_TEST_SCHEMATHESIS";

/// Runs `st run` against `base` with `document` and `token`; (passed, output).
async fn schemathesis(
    document: &std::path::Path,
    base: &str,
    token: &str,
    extra: &[&str],
) -> (bool, String) {
    let st = std::env::var(SCHEMATHESIS_VAR).unwrap_or_else(|_| {
        panic!("{SCHEMATHESIS_VAR} is not set: run the tests with scripts/test.sh")
    });
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let config = fuzz.join("schemathesis.toml");
    let mut args: Vec<String> = vec![
        "--config-file".into(),
        config.display().to_string(),
        "run".into(),
        document.display().to_string(),
        "--url".into(),
        base.to_owned(),
        "-H".into(),
        format!("Authorization: Bearer {token}"),
        "--phases".into(),
        "examples,coverage,fuzzing,stateful".into(),
        "--checks".into(),
        "all".into(),
        // Why these two are off: tests/fuzz/schemathesis.toml.
        "--exclude-checks".into(),
        "positive_data_acceptance,negative_data_rejection".into(),
        "--workers".into(),
        "1".into(),
        "--seed".into(),
        "20261201".into(),
        "--no-color".into(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    // Schemathesis keeps caches in its working directory: a scratch one, not the repository.
    let scratch = tempfile::tempdir().unwrap();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(st)
            .args(args)
            .current_dir(scratch.path())
            // NDJSON bodies (tests/fuzz/ndjson_hooks.py).
            .env("SCHEMATHESIS_HOOKS", "ndjson_hooks")
            .env("PYTHONPATH", fuzz)
            .output()
            .expect("schemathesis runs")
    })
    .await
    .unwrap();
    (output.status.success(), text(&output))
}

/// The lines of schemathesis's summary worth keeping in the test log.
fn totals(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains("generated") || l.contains("Selected") || l.contains("API Links"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every operation, with the tokens of an admin, a customer and a payments operator: no 5xx,
/// no undocumented status, content type or header, no body that violates its schema, through
/// the examples, coverage, fuzzing and stateful (OpenAPI links) phases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_undocumented() {
    use vitrine_platform::http::auth::Role;

    let app = crate::common::spawn_app(crate::common::Database::Sqlite).await;
    let customer = app
        .create_customer(&crate::common::customer_body(crate::common::CNPJ))
        .await;
    let document = committed_document();
    for (who, token) in [
        ("admin", app.admin()),
        ("customer", app.token(Role::Customer, Some(&customer))),
        ("payments", app.token(Role::Payments, None)),
    ] {
        let (passed, log) = schemathesis(&document, &app.base, &token, &[]).await;
        eprintln!("schemathesis as {who}:\n{}", totals(&log));
        assert!(passed, "schemathesis as {who} found problems:\n{log}");
    }
}

/// The run above can fail: against a copy of the document that leaves out a status the API
/// answers (404 of `GET /v1/customers/{id}`), schemathesis reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_catches_an_undocumented_status() {
    let app = crate::common::spawn_app(crate::common::Database::Sqlite).await;
    let mut broken: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(committed_document()).unwrap()).unwrap();
    broken["paths"]["/v1/customers/{id}"]["get"]["responses"]
        .as_object_mut()
        .unwrap()
        .remove("404");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("broken.json");
    std::fs::write(&copy, broken.to_string()).unwrap();
    let (passed, log) = schemathesis(
        &copy,
        &app.base,
        &app.admin(),
        &["--include-operation-id", "customers_get"],
    )
    .await;
    assert!(!passed, "the broken document passed:\n{log}");
    assert!(log.contains("Undocumented status code"), "{log}");
}
