//! The HTTP side of the W3C trace context: the caller's `traceparent`, which the request
//! middleware (`http::edge`) continues. The context itself (current, scope, ids) is
//! `vitrine_runtime::trace_context`, re-exported here.

pub use vitrine_runtime::trace_context::*;

/// The caller's `traceparent` header, if it sent one.
pub fn incoming<B>(request: &axum::http::Request<B>) -> Option<&str> {
    request.headers().get(HEADER).and_then(|v| v.to_str().ok())
}
