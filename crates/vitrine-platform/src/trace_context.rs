//! The HTTP side of the W3C trace context: a middleware that continues the caller's trace. The
//! context itself (current, scope, ids) is `vitrine_runtime::trace_context`, re-exported here.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

pub use vitrine_runtime::trace_context::*;

/// The caller's `traceparent` header, if it sent one.
pub fn incoming<B>(request: &axum::http::Request<B>) -> Option<&str> {
    request.headers().get(HEADER).and_then(|v| v.to_str().ok())
}

/// HTTP middleware, run inside the request span: continues the caller's trace (or starts one),
/// makes it current for the request, records its trace id on the request span and returns it in
/// the response.
pub async fn propagate(request: Request, next: Next) -> Response {
    let traceparent = of_span(&tracing::Span::current(), incoming(&request));
    if let Some(trace) = trace_id(&traceparent) {
        tracing::Span::current().record("trace_id", trace);
    }
    let header = HeaderValue::from_str(&traceparent).ok();
    let mut response = scope(traceparent, next.run(request)).await;
    if let Some(header) = header {
        response.headers_mut().insert(HEADER, header);
    }
    response
}
