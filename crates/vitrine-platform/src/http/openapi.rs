//! What every Vitrine operation's OpenAPI description shares, written into a service's document
//! once ([`conventions`]) instead of repeated on every handler, so the document states what the
//! common layers really do and stays valid OpenAPI 3.1 for client generators and fuzzers.

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{OpenApi, PathItem, Ref, RefOr};

use super::Problem;

/// Marks an operation other services call, never routed by the public gateway.
pub const INTERNAL_EXTENSION: &str = "x-internal";

/// The content type of every error (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Applies the shared conventions to a service's document:
///
/// - the `bearer` (JWT) security scheme the operations' `security` refers to;
/// - every operation that requires a bearer token can answer 401 (a missing, invalid or expired
///   token) as problem+json;
/// - every response has a description (OpenAPI requires one): the handler's own, else the
///   standard meaning of its status in this API;
/// - service-to-service operations (under `/internal/`) carry `x-internal: true`, which the
///   gateway configuration reads to never route them;
/// - every public `POST` takes `Idempotency-Key` (the shared middleware honours it on all of
///   them); an operation that declares the header itself (an upload that honours it its own
///   way) keeps its description;
/// - the headers every service validates the same way (`If-Match`, `Idempotency-Key`,
///   `Consistency-Token`) are described with the constraints the code enforces, and an
///   operation that takes them, or query parameters, can answer 422;
/// - an operation with a JSON body can answer 400 (not JSON), 413 (too large), 415 (not
///   `application/json`) and 422 (a field is invalid), as the shared extractor does;
/// - a create (`201` to a `POST` on a collection) links to every operation on what it created
///   (`{collection}/{id}...`, the new `id` taken from its body), so clients and stateful
///   testers can follow a resource's life.
pub fn conventions(openapi: &mut OpenApi) {
    declare_bearer(openapi);
    link_creations(openapi);
    for (path, item) in openapi.paths.paths.iter_mut() {
        let internal = path.starts_with(super::auth::INTERNAL_PREFIX);
        if let Some(post) = item.post.as_mut()
            && !internal
        {
            declare_idempotency_key(post);
        }
        for operation in operations(item) {
            if internal {
                operation
                    .extensions
                    .get_or_insert_with(Default::default)
                    .insert(INTERNAL_EXTENSION.to_owned(), serde_json::Value::Bool(true));
            }
            let secured = operation
                .security
                .as_ref()
                .is_some_and(|requirements| !requirements.is_empty());
            let idempotent =
                operation.parameters.iter().flatten().any(
                    |parameter| matches!(parameter, RefOr::T(p) if p.name == "Idempotency-Key"),
                );
            let validated = describe_shared_headers(operation.parameters.as_deref_mut());
            let body = operation.request_body.is_some();
            let responses = &mut operation.responses.responses;
            let mut statuses = Vec::new();
            if secured {
                statuses.push("401");
            }
            if validated {
                statuses.push("422");
            }
            if body {
                statuses.extend(["400", "413", "415", "422"]);
            }
            if idempotent {
                // The same key while its first request still runs (with `Retry-After`).
                statuses.push("409");
            }
            for status in statuses {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::T(problem_response("")));
            }
            for (status, response) in responses.iter_mut() {
                if let RefOr::T(response) = response
                    && response.description.is_empty()
                {
                    response.description = meaning(status).to_owned();
                }
            }
        }
    }
}

fn link_creations(openapi: &mut OpenApi) {
    use utoipa::openapi::link::LinkBuilder;
    // (path, operation id) of every operation, to link to.
    let targets: Vec<(String, String)> = openapi
        .paths
        .paths
        .iter_mut()
        .flat_map(|(path, item)| {
            operations(item)
                .filter_map(|operation| operation.operation_id.clone())
                .map(|id| (path.clone(), id))
                .collect::<Vec<_>>()
        })
        .collect();
    for (path, item) in openapi.paths.paths.iter_mut() {
        let Some(create) = item.post.as_mut() else {
            continue;
        };
        let Some(RefOr::T(created)) = create.responses.responses.get_mut("201") else {
            continue;
        };
        let prefix = format!("{path}/{{");
        for (target_path, operation_id) in &targets {
            let Some(rest) = target_path.strip_prefix(&prefix) else {
                continue;
            };
            // Only operations on the new resource itself: deeper ones (`{pm_id}`) are linked
            // from their own create.
            let Some((new_id, after)) = rest.split_once('}') else {
                continue;
            };
            if after.contains('{') {
                continue;
            }
            let mut link = LinkBuilder::new()
                .operation_id(operation_id.clone())
                .parameter(new_id, "$response.body#/id");
            for param in path_parameters(path) {
                link = link.parameter(param, format!("$request.path.{param}"));
            }
            created
                .links
                .insert(operation_id.clone(), RefOr::T(link.build()));
        }
    }
}

/// The `{names}` of a path template, in order.
fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

/// Adds the optional `Idempotency-Key` header to `operation`, unless it declares its own.
fn declare_idempotency_key(operation: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::Required;
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    let declared = parameters
        .iter()
        .any(|parameter| matches!(parameter, RefOr::T(p) if p.name == "Idempotency-Key"));
    if !declared {
        parameters.push(RefOr::T(
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "1-255 characters; replays the first response for 24 h (same key and \
                     body; a different body is 422, a first request still running is 409)",
                ))
                .build(),
        ));
    }
}

/// Gives the shared headers the schema of what the code accepts (a plain, non-null string with
/// its pattern); returns whether the operation takes any validated header or query parameter.
fn describe_shared_headers(
    parameters: Option<&mut [RefOr<utoipa::openapi::path::Parameter>]>,
) -> bool {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let mut validated = false;
    for parameter in parameters.into_iter().flatten() {
        let RefOr::T(parameter) = parameter else {
            continue;
        };
        let (pattern, min, max) = match (&parameter.parameter_in, parameter.name.as_str()) {
            (ParameterIn::Query, _) => {
                validated = true;
                continue;
            }
            (ParameterIn::Header, "If-Match") => (IF_MATCH_PATTERN, 1, 1024),
            (ParameterIn::Header, "Idempotency-Key") => (IDEMPOTENCY_KEY_PATTERN, 1, 255),
            (ParameterIn::Header, "Consistency-Token") => (CONSISTENCY_TOKEN_PATTERN, 19, 19),
            _ => continue,
        };
        validated = true;
        parameter.schema = Some(RefOr::T(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern))
                .min_length(Some(min))
                .max_length(Some(max))
                .into(),
        ));
    }
    validated
}

/// `*`, or one or more entity tags (`"3"`, `W/"3"`), comma-separated.
pub const IF_MATCH_PATTERN: &str = r#"^(\*|(W/)?"[!#-~]*"( *, *(W/)?"[!#-~]*")*)$"#;
/// 1-255 visible ASCII characters.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]+$";
/// `v1.` and 16 lower-case hex digits, as writes return it.
pub const CONSISTENCY_TOKEN_PATTERN: &str = r"^v1\.[0-9a-f]{16}$";

/// The `bearer` (JWT) security scheme the operations' `security(("bearer" = []))` refers to.
fn declare_bearer(openapi: &mut OpenApi) {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(
                    <Problem as utoipa::ToSchema>::name(),
                )))
                .build(),
        )
        .build()
}

/// What a status means in this API, where a handler says nothing more specific.
fn meaning(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "204" => "No content",
        "400" => "The body is not valid JSON",
        "401" => "The bearer token is missing, invalid or expired",
        "403" => "The token's role or customer may not do this",
        "404" => "Not found, or not visible to this token",
        "409" => "Conflicts with the current state",
        "412" => "If-Match does not match the current ETag",
        "413" => "The body is larger than the limit",
        "422" => "Invalid input: `errors` names each field",
        "503" => "A dependency is unavailable; retry after `Retry-After`",
        _ => "See the problem's `detail`",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_the_api_uses_has_a_meaning() {
        for status in [
            "200", "201", "204", "400", "401", "403", "404", "409", "412", "413", "422", "503",
        ] {
            assert_ne!(meaning(status), meaning("599"), "{status}");
        }
    }
}
