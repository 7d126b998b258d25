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
pub mod page;
pub mod path;
pub mod query;
pub mod state;

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use rand::Rng;
use tracing::Instrument;

pub use auth::{Authenticator, Principal, Role};
pub use error::{ApiError, FieldError, Fields, Problem};
pub use etag::{IfMatch, etag};
pub use health::{Health, ReadinessCheck};
pub use json::{AppJson, parse_json};
pub use page::{Listed, PageOut, PageQuery, PageRequest};
pub use path::AppPath;
pub use query::AppQuery;
pub use state::{Authenticates, Shared};

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
        .layer(middleware::from_fn(edge))
}

/// What surrounds every request, in one middleware rather than a stack of eight (each layer of
/// a router is cloned, boxed and awaited on every request): from the outside in,
///
/// 1. its request id: the caller's when well-formed ([`request_id`]), else a fresh one, echoed
///    in the response;
/// 2. its span, whose parent is the caller's `traceparent`; a 5xx is logged as an error;
/// 3. its metrics, by route template, method and status;
/// 4. the trace context, current for the handler and returned in `traceparent`;
/// 5. problem+json for bare errors (405, timeouts), and a 500 for a handler that panicked.
async fn edge(mut request: Request, next: Next) -> Response {
    let id = request_id(&mut request);
    let span = tracing::info_span!(
        "request",
        otel.kind = "server",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %id.to_str().unwrap_or("-"),
        trace_id = tracing::field::Empty,
    );
    // Before the span is entered: an exported span's parent is fixed when it starts.
    crate::trace_context::adopt(&span, crate::trace_context::incoming(&request));
    let started = Instant::now();
    let method = request.method().clone();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let mut response = async move {
        let traceparent = crate::trace_context::of_span(
            &tracing::Span::current(),
            crate::trace_context::incoming(&request),
        );
        if let Some(trace) = crate::trace_context::trace_id(&traceparent) {
            tracing::Span::current().record("trace_id", trace);
        }
        let header = HeaderValue::from_str(&traceparent).ok();
        let handled = crate::trace_context::scope(
            traceparent,
            AssertUnwindSafe(next.run(request)).catch_unwind(),
        )
        .await;
        let mut response = match handled {
            Ok(response) => problem_for_bare_errors(response),
            Err(_) => ApiError::internal(anyhow::anyhow!("handler panicked")).into_response(),
        };
        if let Some(header) = header {
            response
                .headers_mut()
                .insert(crate::trace_context::HEADER, header);
        }
        if response.status().is_server_error() {
            tracing::error!(
                status = response.status().as_u16(),
                latency_ms = started.elapsed().as_millis() as u64,
                "request failed"
            );
        }
        response
    }
    .instrument(span)
    .await;
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    metrics::record(
        route,
        &method,
        response.status(),
        started.elapsed().as_secs_f64(),
    );
    response.headers_mut().entry(REQUEST_ID).or_insert(id);
    response
}

/// The request's id, set on it: the caller's (or the gateway's) `X-Request-Id` when it looks like
/// an id (1 to 128 characters of letters, digits and `-._:`), else a fresh random one. Anything
/// else is replaced: the id goes into every log line and into audit records, where a caller
/// must not be able to write arbitrary text.
fn request_id(request: &mut Request) -> HeaderValue {
    let well_formed = |value: &HeaderValue| {
        let bytes = value.as_bytes();
        (1..=128).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(b))
    };
    let mut ids = request.headers().get_all(REQUEST_ID).iter();
    if let (Some(id), None) = (ids.next(), ids.next())
        && well_formed(id)
    {
        return id.clone();
    }
    let id = fresh_request_id();
    request.headers_mut().insert(REQUEST_ID, id.clone());
    id
}

/// A random (v4) UUID from the thread's user-space generator: the `uuid` crate's own asks the
/// kernel for every id, a system call on the hottest path.
fn fresh_request_id() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(rand::rng().random()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut text))
        .expect("a UUID is a valid header value")
}

/// Gives error responses produced outside our handlers (405, timeouts) a problem+json body.
fn problem_for_bare_errors(response: Response) -> Response {
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
