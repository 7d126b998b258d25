//! `vitrine gateway kong` and `vitrine gateway kong-ingress`: the Kong 3 gateway configuration
//! generated from the services' OpenAPI documents, so the gateway routes exactly what the code
//! serves. Two forms of the same routes and plugins: declarative configuration for decK (a Kong
//! the platform team runs), and Ingress + KongPlugin objects for the Kong Ingress Controller.
//!
//! One Kong service per Vitrine service (its Kubernetes Service as upstream), one route per
//! public operation named by its `operationId` (a `~` regex path anchored at both ends, the
//! operation's method plus `OPTIONS` for CORS preflights); `/internal/*` is never routed. The
//! plugins are what a gateway team puts in front of an API: JWT validation at the edge (a first
//! line: the services verify every token again), rate limiting per consumer, a request size
//! limit (larger on streamed bulk uploads), a correlation id that is the services'
//! `X-Request-Id`, CORS and Prometheus metrics.

use serde_json::{Map, Value, json};
use vitrine_platform::http::deadline::takes_stream;
use vitrine_service::Service;

/// What the generated configuration depends on outside the code.
#[derive(Debug, Clone)]
pub struct KongOptions {
    /// The Kubernetes namespace the services run in.
    pub namespace: String,
    /// The identity provider's token issuer (`iss`), the consumer's JWT key.
    pub jwt_issuer: String,
    /// Its RS256 public key (PEM).
    pub jwt_public_key: String,
    /// Browser origins allowed by CORS.
    pub cors_origins: Vec<String>,
    /// Requests per minute per client address.
    pub requests_per_minute: u32,
    /// Largest body of an ordinary request, in megabytes (VITRINE_MAX_BODY_BYTES).
    pub max_body_megabytes: u32,
    /// Largest body of a streamed bulk upload, in megabytes (VITRINE_IMPORT_MAX_BYTES).
    pub max_upload_megabytes: u32,
}

impl Default for KongOptions {
    fn default() -> Self {
        Self {
            namespace: "vitrine".to_owned(),
            jwt_issuer: "https://identity.example.com/".to_owned(),
            jwt_public_key: "-----BEGIN PUBLIC KEY-----\nREPLACE-WITH-THE-IDENTITY-PROVIDER-RS256-KEY\n-----END PUBLIC KEY-----\n".to_owned(),
            cors_origins: vec!["https://app.example.com".to_owned()],
            requests_per_minute: 600,
            // The services' defaults: VITRINE_MAX_BODY_BYTES 1 MiB, VITRINE_IMPORT_MAX_BYTES 50 MB.
            max_body_megabytes: megabytes(1024 * 1024),
            max_upload_megabytes: megabytes(50_000_000),
        }
    }
}

/// Kong's `megabytes` (MiB) that hold `bytes`, rounded up so the gateway never refuses what
/// the service accepts.
pub fn megabytes(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024 * 1024)).unwrap_or(u32::MAX)
}

/// Tag on everything generated, so decK's `select_tags` leaves other teams' objects alone.
const TAG: &str = "vitrine";
/// The port every service listens on in the cluster.
const SERVICE_PORT: u16 = 8080;
/// Methods an OpenAPI path item may hold, in document order.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The decK document for `services`.
pub fn kong(services: &[&dyn Service], options: &KongOptions) -> Value {
    let services: Vec<Value> = services
        .iter()
        .map(|service| kong_service(*service, options))
        .collect();
    json!({
        "_format_version": "3.0",
        "_info": {"select_tags": [TAG]},
        "services": services,
        "consumers": [{
            "username": "identity-provider",
            "tags": [TAG],
            "jwt_secrets": [{
                "key": options.jwt_issuer,
                "algorithm": "RS256",
                "rsa_public_key": options.jwt_public_key,
                // Required by decK's schema; RS256 verifies with the public key only.
                "secret": "unused-with-rs256",
            }],
        }],
        "plugins": edge_plugins(options)
            .into_iter()
            .map(|(name, config)| json!({"name": name, "tags": [TAG], "config": config}))
            .collect::<Vec<_>>(),
    })
}

/// The plugins every route gets, by Kong plugin name, with their configuration.
fn edge_plugins(options: &KongOptions) -> Vec<(&'static str, Value)> {
    vec![
        (
            "jwt",
            json!({
                "key_claim_name": "iss",
                "claims_to_verify": ["exp"],
                "header_names": ["authorization"],
                "run_on_preflight": false,
            }),
        ),
        // Per client address: Kong OSS's jwt plugin maps every token of one issuer to the one
        // consumer, so `limit_by: consumer` would be a single bucket for everyone.
        (
            "rate-limiting",
            json!({
                "minute": options.requests_per_minute,
                "limit_by": "ip",
                "policy": "local",
                "fault_tolerant": true,
            }),
        ),
        (
            "request-size-limiting",
            size_limit(options.max_body_megabytes),
        ),
        (
            "correlation-id",
            json!({
                "header_name": "X-Request-Id",
                "generator": "uuid",
                "echo_downstream": true,
            }),
        ),
        (
            "cors",
            json!({
                "origins": options.cors_origins,
                "methods": ["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
                "headers": ["Authorization", "Content-Type", "Idempotency-Key", "If-Match",
                            "Consistency-Token", "X-Request-Id"],
                "exposed_headers": ["ETag", "Location", "Consistency-Token", "X-Request-Id",
                                    "Retry-After", "Idempotent-Replayed"],
                "credentials": false,
                "max_age": 3600,
            }),
        ),
        (
            "prometheus",
            json!({
                "status_code_metrics": true,
                "latency_metrics": true,
                "bandwidth_metrics": true,
                "upstream_health_metrics": true,
            }),
        ),
    ]
}

fn size_limit(megabytes: u32) -> Value {
    json!({
        "allowed_payload_size": megabytes,
        "size_unit": "megabytes",
        "require_content_length": false,
    })
}

/// How Kong talks to each service: timeouts above the services' 30 s request deadline, and no
/// retries (a retried POST could run twice; clients retry with their `Idempotency-Key`).
pub const UPSTREAM: [(&str, u32); 4] = [
    ("connect_timeout", 5000),
    ("read_timeout", 35000),
    ("write_timeout", 35000),
    ("retries", 0),
];

/// One public operation of a service, as the gateway routes it.
struct Route {
    /// The `operationId`.
    name: String,
    method: String,
    /// The Kong 3 regex path ([`route_path`]).
    path: String,
    /// Takes a streamed body (NDJSON import): unbuffered, with the upload size limit.
    streamed: bool,
}

/// The service's public operations in document order; `/internal/*` is never routed.
fn routes(service: &dyn Service) -> Vec<Route> {
    let document = serde_json::to_value(service.openapi()).expect("an OpenAPI document serialises");
    let mut routes = Vec::new();
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        if path.starts_with("/internal/") {
            continue;
        }
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            routes.push(Route {
                name: operation["operationId"]
                    .as_str()
                    .expect("every operation has an operationId")
                    .to_owned(),
                method: method.to_ascii_uppercase(),
                path: route_path(path),
                streamed: takes_stream(operation),
            });
        }
    }
    routes
}

fn kong_service(service: &dyn Service, options: &KongOptions) -> Value {
    let name = service.name();
    let routes: Vec<Value> = routes(service)
        .into_iter()
        .map(|route| {
            let mut value = json!({
                "name": route.name,
                "methods": [route.method, "OPTIONS"],
                "paths": [route.path],
                "strip_path": false,
                "preserve_host": false,
                "tags": [TAG],
            });
            if route.streamed {
                // Stream the upload through instead of spooling it whole first.
                value["request_buffering"] = json!(false);
                value["plugins"] = json!([{
                    "name": "request-size-limiting",
                    "tags": [TAG],
                    "config": size_limit(options.max_upload_megabytes),
                }]);
            }
            value
        })
        .collect();
    let mut value = json!({
        "name": name,
        "url": format!("http://{name}.{}.svc.cluster.local:{SERVICE_PORT}", options.namespace),
    });
    for (key, setting) in UPSTREAM {
        value[key] = json!(setting);
    }
    value["tags"] = json!([TAG]);
    value["routes"] = json!(routes);
    value
}

/// The Kong Ingress Controller form of [`kong`]: a KongPlugin per plugin, a KongConsumer for
/// the identity provider (its JWT credential is a Secret the platform creates, like every
/// other secret), and an Ingress per public operation, whose annotations carry the method, the
/// plugins and, on streamed uploads, unbuffered requests with the upload size limit. The
/// upstream timeouts ([`UPSTREAM`]) are annotations on the services' own Service objects.
pub fn kong_ingress(services: &[&dyn Service], options: &KongOptions) -> Vec<Value> {
    let mut objects: Vec<Value> = edge_plugins(options)
        .into_iter()
        .map(|(name, config)| kong_plugin(&format!("{TAG}-{name}"), name, config))
        .collect();
    let upload_limit = format!("{TAG}-request-size-limiting-upload");
    objects.push(kong_plugin(
        &upload_limit,
        "request-size-limiting",
        size_limit(options.max_upload_megabytes),
    ));
    objects.push(json!({
        "apiVersion": "configuration.konghq.com/v1",
        "kind": "KongConsumer",
        "metadata": {
            "name": "identity-provider",
            "annotations": {"kubernetes.io/ingress.class": INGRESS_CLASS},
        },
        "username": "identity-provider",
        "credentials": [JWT_CREDENTIAL],
    }));
    for service in services {
        for route in routes(*service) {
            let plugins: Vec<String> = edge_plugins(options)
                .into_iter()
                .filter(|(name, _)| *name != SERVICE_PLUGIN)
                .map(|(name, _)| match name {
                    "request-size-limiting" if route.streamed => upload_limit.clone(),
                    name => format!("{TAG}-{name}"),
                })
                .collect();
            let mut annotations = json!({
                "konghq.com/methods": format!("{},OPTIONS", route.method),
                "konghq.com/strip-path": "false",
                "konghq.com/preserve-host": "false",
                "konghq.com/plugins": plugins.join(","),
            });
            if route.streamed {
                annotations["konghq.com/request-buffering"] = json!("false");
            }
            objects.push(json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {
                    // Kubernetes names are DNS labels: no underscores.
                    "name": route.name.replace('_', "-"),
                    "annotations": annotations,
                },
                "spec": {
                    "ingressClassName": INGRESS_CLASS,
                    "rules": [{"http": {"paths": [{
                        // The controller's regex marker is `/~`; Kong receives `~...`.
                        "path": format!("/{}", route.path),
                        "pathType": "ImplementationSpecific",
                        "backend": {"service": {
                            "name": service.name(),
                            "port": {"number": SERVICE_PORT},
                        }},
                    }]}}],
                },
            }));
        }
    }
    objects
}

/// The plugin the Kong Ingress Controller form attaches to each Service rather than to each
/// Ingress: rate limiting counts per plugin instance, so per route it would allow the limit on
/// every route; per Service it is one count per client address and service (decK's global
/// plugin is one count per client address).
const SERVICE_PLUGIN: &str = "rate-limiting";

/// The IngressClass the Kong Ingress Controller watches by default.
const INGRESS_CLASS: &str = "kong";
/// The Secret holding the identity provider's JWT credential (labelled
/// `konghq.com/credential: jwt`, keys `key` = the issuer, `algorithm` = RS256,
/// `rsa_public_key`), created outside the repository.
pub const JWT_CREDENTIAL: &str = "vitrine-identity-provider-jwt";

fn kong_plugin(name: &str, plugin: &str, config: Value) -> Value {
    json!({
        "apiVersion": "configuration.konghq.com/v1",
        "kind": "KongPlugin",
        "metadata": {"name": name},
        "plugin": plugin,
        "config": config,
    })
}

/// The annotations each service's Service carries for the Kong Ingress Controller: the
/// upstream settings decK sets on its services ([`UPSTREAM`]), and the rate limit.
pub fn service_annotations() -> Vec<(String, String)> {
    UPSTREAM
        .iter()
        .map(|(key, value)| {
            (
                format!("konghq.com/{}", key.replace('_', "-")),
                value.to_string(),
            )
        })
        .chain([(
            "konghq.com/plugins".to_owned(),
            format!("{TAG}-{SERVICE_PLUGIN}"),
        )])
        .collect()
}

/// Kubernetes objects as one multi-document YAML stream.
pub fn to_yaml_documents(objects: &[Value]) -> String {
    objects
        .iter()
        .map(to_yaml)
        .collect::<Vec<_>>()
        .join("---\n")
}

/// A Kong 3 regex path for an OpenAPI path: `~`, the path with each `{parameter}` as one
/// segment, anchored at the end (Kong anchors the start).
pub fn route_path(path: &str) -> String {
    let mut regex = String::from("~");
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        regex.push_str(&escape(&rest[..open]));
        regex.push_str("[^/]+");
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        rest = &rest[close..];
    }
    regex.push_str(&escape(rest));
    regex.push('$');
    regex
}

fn escape(literal: &str) -> String {
    literal
        .chars()
        .flat_map(|c| {
            let special = ".+*?()|[]{}^$\\".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

/// `value` as block-style YAML: maps and lists indented, every string double-quoted with JSON's
/// escapes (valid YAML), so no value is ever read back as another type.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    block(value, 0, &mut out);
    out
}

fn block(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => mapping(map, indent, out),
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&" ".repeat(indent));
                out.push_str("- ");
                match item {
                    Value::Object(map) if !map.is_empty() => {
                        // The first key on the dash's line, the rest aligned under it.
                        let mut first = String::new();
                        mapping(map, indent + 2, &mut first);
                        out.push_str(first.trim_start());
                    }
                    Value::Array(inner) if !inner.is_empty() => {
                        out.push('\n');
                        block(item, indent + 2, out);
                    }
                    scalar => {
                        out.push_str(&inline(scalar));
                        out.push('\n');
                    }
                }
            }
        }
        scalar => {
            out.push_str(&" ".repeat(indent));
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

fn mapping(map: &Map<String, Value>, indent: usize, out: &mut String) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if plain {
            out.push_str(key);
        } else {
            out.push_str(&Value::String(key.clone()).to_string());
        }
        out.push(':');
        match value {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                mapping(inner, indent + 2, out);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                block(value, indent, out);
            }
            scalar => {
                out.push(' ');
                out.push_str(&inline(scalar));
                out.push('\n');
            }
        }
    }
}

fn inline(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_one_segment_and_literals_are_escaped() {
        assert_eq!(route_path("/v1/products"), "~/v1/products$");
        assert_eq!(
            route_path("/v1/products/{id}/stock-movements"),
            "~/v1/products/[^/]+/stock-movements$"
        );
        assert_eq!(route_path("/v1/a.b/{x}"), "~/v1/a\\.b/[^/]+$");
    }

    #[test]
    fn yaml_keeps_every_type() {
        let value = json!({"a": [{"b": 1, "c": ["x", true]}, "y"], "d": {}, "e": null, "f": "1"});
        assert_eq!(
            to_yaml(&value),
            "a:\n- b: 1\n  c:\n  - \"x\"\n  - true\n- \"y\"\nd: {}\ne: null\nf: \"1\"\n"
        );
    }
}
