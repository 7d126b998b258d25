//! The Kong configuration generated from the OpenAPI documents (`vitrine gateway kong`):
//! committed as `deploy/kong/kong.yaml` and kept in step with the code, accepted by decK (no
//! Kong runs here: decK's offline validation is the strongest check available), and held to
//! what decK does not check: one route per public operation, nothing internal routed, unique
//! route names, and plugin settings Kong knows. A broken copy must fail each check.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_vitrine");

fn committed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kong/kong.yaml")
}

/// `vitrine gateway kong` with no configuration at all, as the committed file was made.
fn generated() -> String {
    let output = Command::new(BIN)
        .env_clear()
        .args(["gateway", "kong"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn deck_validate(file: &Path) -> std::process::Output {
    let deck = std::env::var("VITRINE_TEST_DECK").expect(
        "VITRINE_TEST_DECK is not set: run the tests with scripts/test.sh (it installs decK)",
    );
    Command::new(deck)
        .args(["validate", "--state"])
        .arg(file)
        .output()
        .unwrap()
}

/// The settings each plugin may carry (Kong 3's schemas for the fields used here): a
/// misspelt one would be ignored by decK and refused by Kong at load time.
fn known_plugin_fields() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let known: [(&str, &[&str]); 6] = [
        (
            "jwt",
            &[
                "key_claim_name",
                "claims_to_verify",
                "header_names",
                "run_on_preflight",
                "uri_param_names",
                "cookie_names",
                "secret_is_base64",
                "anonymous",
                "maximum_expiration",
            ],
        ),
        (
            "rate-limiting",
            &[
                "second",
                "minute",
                "hour",
                "day",
                "month",
                "year",
                "limit_by",
                "policy",
                "fault_tolerant",
                "hide_client_headers",
                "header_name",
                "path",
                "redis",
            ],
        ),
        (
            "request-size-limiting",
            &[
                "allowed_payload_size",
                "size_unit",
                "require_content_length",
            ],
        ),
        (
            "correlation-id",
            &["header_name", "generator", "echo_downstream"],
        ),
        (
            "cors",
            &[
                "origins",
                "methods",
                "headers",
                "exposed_headers",
                "credentials",
                "max_age",
                "preflight_continue",
                "private_network",
            ],
        ),
        (
            "prometheus",
            &[
                "per_consumer",
                "status_code_metrics",
                "latency_metrics",
                "bandwidth_metrics",
                "upstream_health_metrics",
            ],
        ),
    ];
    known
        .into_iter()
        .map(|(name, fields)| (name, fields.iter().copied().collect()))
        .collect()
}

/// Every public operation of the OpenAPI document: operationId -> (method, Kong regex path).
fn public_operations() -> BTreeMap<String, (String, String)> {
    let document: Value = serde_json::to_value(vitrine::openapi()).unwrap();
    let mut operations = BTreeMap::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if let Some(id) = operation["operationId"].as_str()
                && !path.starts_with("/internal/")
            {
                operations.insert(
                    id.to_owned(),
                    (
                        method.to_ascii_uppercase(),
                        vitrine::gateway::route_path(path),
                    ),
                );
            }
        }
    }
    operations
}

/// What is wrong with plugins' settings (name, config), by Kong's plugin schemas.
fn plugin_problems<'a>(plugins: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Vec<String> {
    let known = known_plugin_fields();
    let mut found = Vec::new();
    for (name, config) in plugins {
        match known.get(name) {
            None => found.push(format!("unknown plugin {name}")),
            Some(fields) => {
                for field in config.as_object().into_iter().flatten().map(|(k, _)| k) {
                    if !fields.contains(field.as_str()) {
                        found.push(format!("plugin {name} has no setting {field}"));
                    }
                }
            }
        }
    }
    found
}

/// Everything wrong with a parsed configuration, measured against the OpenAPI document.
fn problems(config: &Value) -> Vec<String> {
    let mut found = Vec::new();
    if config["_format_version"] != "3.0" {
        found.push(format!("_format_version is {}", config["_format_version"]));
    }
    let mut expected = public_operations();
    let mut names = BTreeSet::new();
    let mut plugins: Vec<&Value> = config["plugins"].as_array().into_iter().flatten().collect();
    for service in config["services"].as_array().into_iter().flatten() {
        for route in service["routes"].as_array().into_iter().flatten() {
            let name = route["name"].as_str().unwrap_or_default().to_owned();
            if !names.insert(name.clone()) {
                found.push(format!("route {name} appears twice"));
            }
            let paths: Vec<&str> = route["paths"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if paths.iter().any(|p| p.contains("internal")) {
                found.push(format!("route {name} exposes an internal path"));
            }
            if paths.iter().any(|p| !p.starts_with('~')) {
                found.push(format!(
                    "route {name} has a path that is not a Kong 3 regex"
                ));
            }
            match expected.remove(&name) {
                Some((method, path)) => {
                    let methods = &route["methods"];
                    if !methods
                        .as_array()
                        .is_some_and(|m| m.contains(&Value::String(method.clone())))
                        || paths != [path.as_str()]
                    {
                        found.push(format!("route {name} does not route {method} {path}"));
                    }
                }
                None => found.push(format!("route {name} matches no public operation")),
            }
            plugins.extend(route["plugins"].as_array().into_iter().flatten());
        }
    }
    found.extend(
        expected
            .keys()
            .map(|id| format!("operation {id} has no route")),
    );
    found.extend(plugin_problems(plugins.into_iter().map(|plugin| {
        (
            plugin["name"].as_str().unwrap_or_default(),
            &plugin["config"],
        )
    })));
    found
}

/// Everything wrong with the Kong Ingress Controller objects, measured against the OpenAPI
/// document: one Ingress per public operation with its method and path, none internal, unique
/// names, and plugin settings Kong knows.
fn ingress_problems(objects: &[Value]) -> Vec<String> {
    let mut expected = public_operations();
    let mut found = Vec::new();
    let mut names = BTreeSet::new();
    for object in objects {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        if !names.insert((object["kind"].to_string(), name.to_owned())) {
            found.push(format!("{} {name} appears twice", object["kind"]));
        }
    }
    let plugins = objects.iter().filter(|o| o["kind"] == "KongPlugin");
    found.extend(plugin_problems(plugins.map(|plugin| {
        (
            plugin["plugin"].as_str().unwrap_or_default(),
            &plugin["config"],
        )
    })));
    for ingress in objects.iter().filter(|o| o["kind"] == "Ingress") {
        let name = ingress["metadata"]["name"].as_str().unwrap_or_default();
        let path = ingress["spec"]["rules"][0]["http"]["paths"][0]["path"]
            .as_str()
            .unwrap_or_default();
        if path.contains("internal") {
            found.push(format!("ingress {name} exposes an internal path"));
        }
        let methods = ingress["metadata"]["annotations"]["konghq.com/methods"]
            .as_str()
            .unwrap_or_default();
        let plugins = ingress["metadata"]["annotations"]["konghq.com/plugins"]
            .as_str()
            .unwrap_or_default();
        if !plugins.split(',').any(|p| p == "vitrine-jwt") {
            found.push(format!("ingress {name} does not check tokens at the edge"));
        }
        match expected.remove(&name.replace('-', "_")) {
            Some((method, route)) => {
                if path != format!("/{route}") || !methods.split(',').any(|m| m == method) {
                    found.push(format!("ingress {name} does not route {method} {route}"));
                }
            }
            None => found.push(format!("ingress {name} matches no public operation")),
        }
    }
    found.extend(
        expected
            .keys()
            .map(|id| format!("operation {id} has no ingress")),
    );
    found
}

/// The configuration as the code builds it; the committed file is its YAML (first test).
fn config() -> Value {
    vitrine::gateway::kong(vitrine::SERVICES, &vitrine::gateway::KongOptions::default())
}

#[test]
fn the_committed_kong_configuration_matches_the_code() {
    let committed = std::fs::read_to_string(committed()).unwrap_or_default();
    let generated = generated();
    assert_eq!(
        generated,
        vitrine::gateway::to_yaml(&config()),
        "the command prints the defaults' configuration"
    );
    assert!(
        committed == generated,
        "deploy/kong/kong.yaml is stale: run `cargo run -q -p vitrine -- gateway kong > deploy/kong/kong.yaml`"
    );
}

fn ingress_objects() -> Vec<Value> {
    vitrine::gateway::kong_ingress(vitrine::SERVICES, &vitrine::gateway::KongOptions::default())
}

fn deploy_file(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy")
            .join(path),
    )
    .unwrap_or_default()
}

/// The Kong Ingress Controller form: the committed file is the command's output, every public
/// operation has exactly one Ingress (and a broken copy of each kind fails), and the Services
/// carry the upstream settings decK's services get.
#[test]
fn the_committed_ingress_form_matches_the_code_and_routes_every_operation() {
    let output = Command::new(BIN)
        .env_clear()
        .args(["gateway", "kong-ingress"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).unwrap();
    assert!(generated.ends_with(&vitrine::gateway::to_yaml_documents(&ingress_objects())));
    assert!(
        deploy_file("kubernetes/components/kong-ingress/gateway.yaml") == generated,
        "deploy/kubernetes/components/kong-ingress/gateway.yaml is stale: run `cargo run -q -p vitrine -- gateway kong-ingress > deploy/kubernetes/components/kong-ingress/gateway.yaml`"
    );

    let objects = ingress_objects();
    assert_eq!(ingress_problems(&objects), Vec::<String>::new());
    let ingresses = |objects: &[Value]| objects.iter().filter(|o| o["kind"] == "Ingress").count();
    assert_eq!(ingresses(&objects), public_operations().len());
    let (ingress, plugin) = (
        objects.iter().position(|o| o["kind"] == "Ingress").unwrap(),
        objects
            .iter()
            .position(|o| o["kind"] == "KongPlugin")
            .unwrap(),
    );

    let mut missing = objects.clone();
    missing.remove(ingress);
    assert!(
        ingress_problems(&missing)
            .iter()
            .any(|p| p.contains("has no ingress"))
    );
    let mut internal = objects.clone();
    internal[ingress]["spec"]["rules"][0]["http"]["paths"][0]["path"] =
        "/~/internal/v1/customers/[^/]+/lookup$".into();
    assert!(
        ingress_problems(&internal)
            .iter()
            .any(|p| p.contains("internal"))
    );
    let mut twice = objects.clone();
    twice.push(objects[ingress].clone());
    assert!(ingress_problems(&twice).iter().any(|p| p.contains("twice")));
    let mut wrong_method = objects.clone();
    wrong_method[ingress]["metadata"]["annotations"]["konghq.com/methods"] = "TRACE,OPTIONS".into();
    assert!(
        ingress_problems(&wrong_method)
            .iter()
            .any(|p| p.contains("does not route"))
    );
    let mut unguarded = objects.clone();
    unguarded[ingress]["metadata"]["annotations"]["konghq.com/plugins"] = "vitrine-cors".into();
    assert!(
        ingress_problems(&unguarded)
            .iter()
            .any(|p| p.contains("does not check tokens"))
    );
    let mut misspelt = objects;
    misspelt[plugin]["config"]["key_claim"] = "iss".into();
    assert!(
        ingress_problems(&misspelt)
            .iter()
            .any(|p| p.contains("no setting key_claim"))
    );

    for service in ["products", "user-information"] {
        let manifest = deploy_file(&format!("kubernetes/base/{service}.yaml"));
        for (key, value) in vitrine::gateway::service_annotations() {
            assert!(
                manifest.contains(&format!("{key}: \"{value}\"")),
                "the {service} Service lacks {key}: \"{value}\""
            );
        }
    }
}

#[test]
fn deck_accepts_the_configuration_and_refuses_a_broken_copy() {
    let valid = deck_validate(&committed());
    assert!(
        valid.status.success(),
        "{}{}",
        String::from_utf8_lossy(&valid.stdout),
        String::from_utf8_lossy(&valid.stderr)
    );
    let text = std::fs::read_to_string(committed()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (what, broken) in [
        (
            "a misspelt field",
            text.replacen("strip_path:", "strip_pth:", 1),
        ),
        (
            "a wrong type",
            text.replacen("retries: 0", "retries: \"none\"", 1),
        ),
    ] {
        assert_ne!(broken, text, "{what}: the copy must differ");
        let copy = dir.path().join("broken.yaml");
        std::fs::write(&copy, broken).unwrap();
        assert!(
            !deck_validate(&copy).status.success(),
            "decK accepted {what}"
        );
    }
}

#[test]
fn every_public_operation_has_one_route_and_plugins_use_known_settings() {
    let config = config();
    assert_eq!(problems(&config), Vec::<String>::new());
    let routes = |config: &Value| -> usize {
        config["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["routes"].as_array().unwrap().len())
            .sum()
    };
    assert!(routes(&config) > 30, "every operation is routed");

    let mut missing = config.clone();
    missing["services"][1]["routes"]
        .as_array_mut()
        .unwrap()
        .pop();
    assert!(
        problems(&missing)
            .iter()
            .any(|p| p.contains("has no route"))
    );
    let mut internal = config.clone();
    internal["services"][0]["routes"][0]["paths"] =
        serde_json::json!(["~/internal/v1/customers/[^/]+/lookup$"]);
    assert!(problems(&internal).iter().any(|p| p.contains("internal")));
    let mut twice = config.clone();
    let first = twice["services"][0]["routes"][0].clone();
    twice["services"][0]["routes"]
        .as_array_mut()
        .unwrap()
        .push(first);
    assert!(problems(&twice).iter().any(|p| p.contains("twice")));
    let mut misspelt = config.clone();
    misspelt["plugins"][0]["config"]["key_claim"] = "iss".into();
    assert!(
        problems(&misspelt)
            .iter()
            .any(|p| p.contains("no setting key_claim"))
    );
    let mut upload_limit = config;
    let streamed: Vec<&Value> = upload_limit["services"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["routes"].as_array().unwrap())
        .filter(|r| r.get("plugins").is_some())
        .collect();
    assert_eq!(
        streamed.len(),
        1,
        "only the NDJSON import route raises the size limit"
    );
    assert_eq!(streamed[0]["name"], "product_imports_create");
    upload_limit["_format_version"] = "1.1".into();
    assert!(
        problems(&upload_limit)
            .iter()
            .any(|p| p.contains("_format_version"))
    );
}

/// The binaries the Dockerfile builds and copies into the image: every `cp target/release/X`
/// of the build stage and every `/out/X` the runtime stage copies.
fn image_binaries(dockerfile: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let built = dockerfile
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("target/dist/"))
        .map(str::to_owned)
        .collect();
    let copied = dockerfile
        .lines()
        .filter(|line| line.starts_with("COPY --from=build"))
        .flat_map(|line| line.split_whitespace())
        .filter_map(|word| word.strip_prefix("/out/"))
        .map(str::to_owned)
        .collect();
    (built, copied)
}

/// The image holds exactly the binaries `cargo build --release -p vitrine --bins` produces
/// (their names are the ones Cargo gives this test), built and copied alike. No container
/// runtime is available here: building the image is not checked.
#[test]
fn the_image_copies_the_binaries_cargo_builds() {
    let binaries: BTreeSet<String> = [
        env!("CARGO_BIN_EXE_vitrine"),
        env!("CARGO_BIN_EXE_user-information"),
        env!("CARGO_BIN_EXE_products"),
    ]
    .iter()
    .map(|path| {
        Path::new(path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    })
    .collect();
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Dockerfile"))
            .unwrap();
    assert_eq!(
        image_binaries(&dockerfile),
        (binaries.clone(), binaries.clone())
    );
    assert!(dockerfile.contains("--locked"), "built from the lock file");
    assert!(dockerfile.contains("USER 65532"), "runs as non-root");
    let dropped = dockerfile.replacen(" /out/products", "", 1);
    assert_ne!(
        image_binaries(&dropped).1,
        binaries,
        "the check notices a missing binary"
    );
}

fn tool(var: &str, what: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: this test needs {what} (scripts/test.sh provides it)")
    })
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            // A developer's generated credentials stay where they are.
            if entry.file_name() != "secrets" {
                copy_tree(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `deploy/kubernetes` copied into `dir`, with the local overlay's credentials generated there
/// by its `secrets.sh`, as a developer runs it (the source tree is never written).
fn kubernetes_tree(dir: &Path) -> PathBuf {
    let copy = dir.join("kubernetes");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes"),
        &copy,
    );
    for run in ["first", "second"] {
        let output = Command::new("bash")
            .arg(copy.join("overlays/local/secrets.sh"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "secrets.sh ({run} run): {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    copy
}

/// `kubectl kustomize` of an overlay of `tree`, written to a file in `dir`.
fn render(tree: &Path, overlay: &str, dir: &Path) -> PathBuf {
    let kubectl = tool(
        "VITRINE_TEST_KUBECTL",
        "kubectl (1.27 or later) on the PATH",
    );
    let output = Command::new(kubectl)
        .arg("kustomize")
        .arg(tree.join(overlay))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{overlay}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let file = dir.join(format!("{}.yaml", overlay.replace('/', "-")));
    std::fs::write(&file, output.stdout).unwrap();
    file
}

/// kubernetes-validate --strict (built-in kinds; it only warns about CRDs).
fn strictly_valid(rendered: &Path) -> std::process::Output {
    Command::new(tool(
        "VITRINE_TEST_KUBERNETES_VALIDATE",
        "kubernetes-validate",
    ))
    .args(["--strict", "--quiet", "-k", "1.32.0"])
    .arg(rendered)
    .output()
    .unwrap()
}

/// Our checker: KEDA objects against closed schemas, and the deployment rules.
fn checked(rendered: &Path) -> std::process::Output {
    Command::new(tool("VITRINE_TEST_PYTHON", "the test tools' Python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/checks/check_kubernetes.py"))
        .arg(rendered)
        .output()
        .unwrap()
}

/// Every overlay (base, production, local) renders; its built-in objects pass
/// kubernetes-validate --strict, its KEDA and Kong objects our checks (all of them, counted),
/// and every Deployment the rules of the checker (probes, limits, security context, PDB,
/// ScaledObject with CPU and its queues); only the local overlay has Secrets, generated. Each
/// kind of breakage listed below, made in a copy of each overlay's rendering, fails.
#[test]
fn kubernetes_overlays_render_and_pass_strict_validation() {
    let dir = tempfile::tempdir().unwrap();
    let tree = kubernetes_tree(dir.path());
    for overlay in ["base", "overlays/production", "overlays/local"] {
        let rendered = render(&tree, overlay, dir.path());
        let valid = strictly_valid(&rendered);
        assert!(
            valid.status.success(),
            "{overlay}: {}",
            String::from_utf8_lossy(&valid.stderr)
        );
        let ours = checked(&rendered);
        let report = String::from_utf8_lossy(&ours.stdout).into_owned();
        assert!(
            ours.status.success(),
            "{overlay}: {report}{}",
            String::from_utf8_lossy(&ours.stderr)
        );
        assert!(
            report.contains("\"keda_checked\": 3"),
            "{overlay}: {report}"
        );
        // Only the local overlay runs the Kong Ingress Controller (the component); the others
        // are for a Kong managed with decK.
        let kong = overlay == "overlays/local";
        let expected = if kong { ingress_objects().len() } else { 0 };
        assert!(
            report.contains(&format!("\"kong_checked\": {expected}")),
            "{overlay}: every Ingress, KongPlugin and KongConsumer is checked: {report}"
        );

        let text = std::fs::read_to_string(&rendered).unwrap();
        // No secret value is committed: only the local overlay makes Secrets, from the values
        // its secrets.sh generates.
        let secrets = text.matches("\nkind: Secret\n").count();
        if overlay == "overlays/local" {
            assert_eq!(secrets, 8, "{overlay}: the generated Secrets");
            assert!(
                !text.contains("VITRINE_JWKS_URL"),
                "{overlay}: HS256 tokens"
            );
        } else {
            assert_eq!(secrets, 0, "{overlay} commits a Secret");
        }
        for (what, from, to, by_kubernetes_validate) in [
            (
                "a misspelt Deployment field",
                "terminationGracePeriodSeconds:",
                "terminationGracePeriodSecond:",
                true,
            ),
            (
                "a Deployment field of the wrong type",
                "revisionHistoryLimit: 5",
                "revisionHistoryLimit: five",
                true,
            ),
            (
                "a misspelt ScaledObject field",
                "pollingInterval:",
                "pollingIntervall:",
                false,
            ),
            (
                "a ScaledObject field of the wrong type",
                "minReplicaCount: 2",
                "minReplicaCount: two",
                false,
            ),
            (
                "an unknown aws-sqs-queue key",
                "queueLength:",
                "queueLen:",
                false,
            ),
            (
                "a readiness probe off /health/ready",
                "path: /health/ready",
                "path: /ready",
                false,
            ),
            (
                "analytics syncs that may overlap",
                "concurrencyPolicy: Forbid",
                "concurrencyPolicy: Allow",
                false,
            ),
            (
                "an analytics schedule off São Paulo's clock",
                "timeZone: America/Sao_Paulo",
                "timeZone: Etc/UTC",
                false,
            ),
            (
                "syncs every 6 hours with a daily cut-off",
                "schedule: 30 0 * * *",
                "schedule: 30 */6 * * *",
                false,
            ),
            (
                "a misspelt CronJob field",
                "startingDeadlineSeconds:",
                "startingDeadlineSecond:",
                true,
            ),
            (
                "Metabase on its embedded H2 file",
                "value: postgres",
                "value: h2",
                false,
            ),
            (
                "a Metabase probe off its health endpoint",
                "path: /api/health",
                "path: /",
                false,
            ),
            (
                "a misspelt KongPlugin field",
                "plugin: jwt",
                "plugn: jwt",
                false,
            ),
            (
                "a KongPlugin field of the wrong type",
                "disabled: true",
                "disabled: \"no\"",
                false,
            ),
            (
                "an unknown Kong plugin",
                "plugin: prometheus",
                "plugin: prometheu",
                false,
            ),
            (
                "an Ingress naming a KongPlugin that does not exist",
                "vitrine-cors,",
                "vitrine-corz,",
                false,
            ),
            (
                "an annotation the controller does not read",
                "konghq.com/strip-path:",
                "konghq.com/strip-paths:",
                false,
            ),
            (
                "a regex path without the controller's marker",
                "path: /~/v1/",
                "path: /v1/",
                false,
            ),
            (
                "a Service without Kong's upstream timeouts",
                "konghq.com/read-timeout:",
                "example.com/read-timeout:",
                false,
            ),
            (
                "a misspelt Ingress field",
                "ingressClassName: kong",
                "ingressClass: kong",
                true,
            ),
        ] {
            let about_kong = ["Kong", "Ingress", "regex path", "annotation the controller"]
                .iter()
                .any(|word| what.contains(word));
            if about_kong && !kong {
                continue;
            }
            let broken = dir.path().join("broken.yaml");
            assert!(text.contains(from), "{overlay}: {from}");
            std::fs::write(&broken, text.replacen(from, to, 1)).unwrap();
            let refused = if by_kubernetes_validate {
                !strictly_valid(&broken).status.success()
            } else {
                !checked(&broken).status.success()
            };
            assert!(refused, "{overlay}: {what} passed");
        }
    }
}

/// Metric names the code declares (`counter!`, `histogram!`, `gauge!` with a literal name in
/// any crate's sources), histograms with their exported series.
fn declared_metrics() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
        &mut files,
    );
    let mut names = BTreeSet::new();
    for file in files
        .iter()
        .filter(|f| f.components().any(|c| c.as_os_str() == "src"))
    {
        let text = std::fs::read_to_string(file).unwrap();
        for kind in ["counter!(", "gauge!(", "histogram!("] {
            for (at, _) in text.match_indices(kind) {
                let rest = text[at + kind.len()..].trim_start();
                if let Some(literal) = rest.strip_prefix('"')
                    && let Some(end) = literal.find('"')
                {
                    let name = literal[..end].to_owned();
                    if kind == "histogram!(" {
                        for suffix in ["_bucket", "_sum", "_count"] {
                            names.insert(format!("{name}{suffix}"));
                        }
                    }
                    names.insert(name);
                }
            }
        }
    }
    names
}

/// The metric names an alert rule or dashboard query uses: every identifier of ours
/// (`vitrine_*`) or of the HTTP layer (`http_*`).
fn referenced_metrics(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("vitrine_") || word.starts_with("http_request"))
        .map(str::to_owned)
        .collect()
}

/// The alert rules and the Grafana dashboard query only metrics the services export; a rule
/// naming one that does not exist is caught.
#[test]
fn alerts_and_dashboard_use_metrics_the_code_exports() {
    let monitoring = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/monitoring");
    let declared = declared_metrics();
    assert!(declared.contains("vitrine_outbox_unsent"), "{declared:?}");
    let alerts = std::fs::read_to_string(monitoring.join("alerts.yaml")).unwrap();
    let dashboard = std::fs::read_to_string(monitoring.join("grafana-dashboard.json")).unwrap();
    let parsed: Value = serde_json::from_str(&dashboard).unwrap();
    let queries: Vec<String> = parsed["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    for (what, text) in [
        ("alerts.yaml", alerts.clone()),
        ("dashboard", queries.join("\n")),
    ] {
        let used = referenced_metrics(&text);
        assert!(used.len() >= 5, "{what}: {used:?}");
        let unknown: Vec<_> = used.difference(&declared).collect();
        assert!(
            unknown.is_empty(),
            "{what} uses metrics nothing exports: {unknown:?}"
        );
    }
    let broken = alerts.replacen("vitrine_outbox_unsent", "vitrine_outbox_unsend", 1);
    assert!(
        !referenced_metrics(&broken).is_subset(&declared),
        "a misspelt metric is caught"
    );
}
