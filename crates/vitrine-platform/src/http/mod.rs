//! HTTP conventions shared by every service (API.md "common rules").

pub mod auth;
pub mod deadline;
pub mod error;
pub mod etag;
pub mod health;
pub mod idempotency;
pub mod json;
pub mod metrics;
pub mod openapi;
pub mod path;
pub mod query;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use auth::{Authenticator, Principal, Role};
pub use error::{ApiError, FieldError, Fields, Problem};
pub use etag::{IfMatch, etag};
pub use health::{Health, ReadinessCheck};
pub use json::{AppJson, parse_json};
pub use path::AppPath;
pub use query::AppQuery;

/// The header carrying each request's id (set when the client sends none, echoed back).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps a service router with what every Vitrine endpoint gets: request ids, a request span,
/// metrics, a body limit, deadlines ([`deadline`]), panics and bare errors turned into problem+json, and a
/// problem+json 404 for unknown paths.
pub fn with_common_layers(
    router: Router,
    max_body_bytes: usize,
    deadlines: deadline::Deadlines,
) -> Router {
    router
        .fallback(|| async { ApiError::NotFound })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        // Applied per route (Router::layer), so it sees which route matched.
        .layer(middleware::from_fn_with_state(deadlines, deadline::enforce))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        // Outside the timeout and panic layers, so their bare responses get a problem body too.
        .layer(middleware::from_fn(problem_for_bare_errors))
        .layer(middleware::from_fn(crate::trace_context::propagate))
        .layer(middleware::from_fn(metrics::track))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let id = request
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                let span = tracing::info_span!(
                    "request",
                    otel.kind = "server",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id = %id,
                    trace_id = tracing::field::Empty,
                );
                // Before the span is entered: an exported span's parent is fixed when it starts.
                crate::trace_context::adopt(&span, crate::trace_context::incoming(request));
                span
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(middleware::from_fn(drop_malformed_request_id))
}

/// A caller's (or the gateway's) `X-Request-Id` is kept for correlation when it looks like an
/// id: 1 to 128 characters of letters, digits and `-._:`. Anything else is dropped, so a fresh
/// one is generated: the id goes into every log line and into audit records, where a caller
/// must not be able to write arbitrary text.
async fn drop_malformed_request_id(mut request: Request, next: Next) -> Response {
    let well_formed = |value: &HeaderValue| {
        let bytes = value.as_bytes();
        (1..=128).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(b))
    };
    let mut ids = request.headers().get_all(REQUEST_ID).iter();
    let keep = match (ids.next(), ids.next()) {
        (None, _) => true,
        (Some(id), None) => well_formed(id),
        (Some(_), Some(_)) => false,
    };
    if !keep {
        request.headers_mut().remove(REQUEST_ID);
    }
    next.run(request).await
}

/// Gives error responses produced outside our handlers (405, timeouts) a problem+json body.
async fn problem_for_bare_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let (parts, _) = response.into_parts();
    let error = match status {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::NOT_FOUND => ApiError::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => ApiError::Unavailable {
            what: "the service",
            retry_after: Duration::from_secs(1),
        },
        _ => ApiError::BadRequest("the request could not be processed".to_owned()),
    };
    let mut problem = error.into_response();
    // Keep headers such as `Allow` on a 405.
    for (name, value) in &parts.headers {
        problem.headers_mut().entry(name).or_insert(value.clone());
    }
    *problem.status_mut() = status;
    problem
}
