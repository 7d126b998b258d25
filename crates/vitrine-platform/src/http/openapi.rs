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
///   gateway configuration reads to never route them.
pub fn conventions(openapi: &mut OpenApi) {
    declare_bearer(openapi);
    for (path, item) in openapi.paths.paths.iter_mut() {
        let internal = path.starts_with(super::auth::INTERNAL_PREFIX);
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
            let responses = &mut operation.responses.responses;
            if secured && !responses.contains_key("401") {
                responses.insert("401".to_owned(), RefOr::T(problem_response("")));
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
