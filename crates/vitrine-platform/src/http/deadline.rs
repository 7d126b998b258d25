//! How long a request may take. A JSON request gets one deadline for the whole exchange; a
//! streamed bulk upload (NDJSON, up to tens of megabytes over a client's uplink) cannot be held
//! to it, so its body must instead keep arriving: a pause longer than the idle limit ends it
//! as a cut-off upload, however long the upload as a whole takes. Kong's timeouts are idle
//! timeouts between reads and writes as well, so the two agree. An upload still has a ceiling
//! of its own, so a client trickling a byte at a time cannot hold a connection for ever.
//!
//! Which operations stream is read from the OpenAPI document (those whose request body is an
//! NDJSON media type, as the gateway configuration reads it), and matched against the route
//! the request was routed to: a client cannot lift the deadline of any other route by sending
//! an NDJSON `Content-Type`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

/// Media types of streamed bulk uploads: their bodies are read as they arrive, never whole.
pub const STREAMED_MEDIA_TYPES: [&str; 2] = ["application/x-ndjson", "application/jsonl"];

/// The limits a request is held to.
#[derive(Debug, Clone)]
pub struct Deadlines {
    /// The whole exchange of an ordinary request (answered 503 past it, as is an upload past
    /// its own ceiling).
    pub request: Duration,
    /// The longest pause in a streamed upload's body.
    pub body_idle: Duration,
    /// The whole exchange of a streamed upload.
    pub upload: Duration,
    /// The operations that take streamed uploads: route path to methods (looked up by the
    /// matched path as it is, with no allocation per request).
    pub streamed: Arc<HashMap<String, Vec<Method>>>,
}

impl Deadlines {
    /// The default limits, with the streamed operations of `openapi`.
    pub fn for_api(openapi: &utoipa::openapi::OpenApi) -> Self {
        let document = serde_json::to_value(openapi).expect("an OpenAPI document serialises");
        let mut streamed: HashMap<String, Vec<Method>> = HashMap::new();
        for (path, item) in document["paths"].as_object().into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                if let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                    && takes_stream(operation)
                {
                    streamed.entry(path.clone()).or_default().push(method);
                }
            }
        }
        Self {
            request: Duration::from_secs(30),
            body_idle: Duration::from_secs(30),
            // 50 MB (the default import limit) at 1 Mbit/s takes under 7 minutes.
            upload: Duration::from_secs(15 * 60),
            streamed: Arc::new(streamed),
        }
    }

    fn streams(&self, request: &Request) -> bool {
        request
            .extensions()
            .get::<MatchedPath>()
            .and_then(|path| self.streamed.get(path.as_str()))
            .is_some_and(|methods| methods.contains(request.method()))
    }
}

/// Whether an OpenAPI operation (as JSON) takes a streamed upload: a request body of an NDJSON
/// media type.
pub fn takes_stream(operation: &serde_json::Value) -> bool {
    operation["requestBody"]["content"]
        .as_object()
        .is_some_and(|content| {
            content
                .keys()
                .any(|media| STREAMED_MEDIA_TYPES.contains(&media.as_str()))
        })
}

/// Whether a request's `Content-Type` is one of the streamed media types.
pub fn is_streamed_media_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| {
            STREAMED_MEDIA_TYPES.contains(&media.trim().to_ascii_lowercase().as_str())
        })
}

/// The middleware (a route layer: it needs the matched route): a deadline on ordinary requests,
/// an idle limit and a ceiling on streamed uploads.
pub async fn enforce(State(deadlines): State<Deadlines>, request: Request, next: Next) -> Response {
    if !deadlines.streams(&request) {
        return match tokio::time::timeout(deadlines.request, next.run(request)).await {
            Ok(response) => response,
            // Bare: the problem layer outside gives it its problem+json body.
            Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        };
    }
    let (parts, body) = request.into_parts();
    let idle = deadlines.body_idle;
    let frames = futures::stream::unfold(Some(body.into_data_stream()), move |stream| async move {
        let mut stream = stream?;
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(stream))),
            Ok(Some(Err(error))) => Some((Err(BodyError::Read(error.to_string())), None)),
            Ok(None) => None,
            Err(_) => Some((Err(BodyError::Idle(idle)), None)),
        }
    });
    let request = Request::from_parts(parts, Body::from_stream(frames));
    match tokio::time::timeout(deadlines.upload, next.run(request)).await {
        Ok(response) => response,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// Why a streamed body ended early.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("{0}")]
    Read(String),
    #[error("no data for {0:?}")]
    Idle(Duration),
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::post;
    use tower::ServiceExt;

    use super::*;

    fn short() -> Deadlines {
        Deadlines {
            request: Duration::from_millis(200),
            body_idle: Duration::from_millis(200),
            upload: Duration::from_secs(5),
            streamed: Arc::new(HashMap::from([("/uploads".to_owned(), vec![Method::POST])])),
        }
    }

    /// Reads the body slowly, then says how many bytes came or why they stopped.
    async fn slow_reader(body: Body) -> String {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut stream = body.into_data_stream();
        let mut read = 0;
        while let Some(frame) = stream.next().await {
            match frame {
                Ok(bytes) => read += bytes.len(),
                Err(error) => return format!("cut: {error}"),
            }
        }
        format!("read {read}")
    }

    fn app() -> Router {
        Router::new()
            .route("/uploads", post(slow_reader))
            .route("/documents", post(slow_reader))
            .layer(axum::middleware::from_fn_with_state(short(), enforce))
    }

    fn upload(media: &str, body: Body) -> Request {
        sent_to("/uploads", media, body)
    }

    fn sent_to(path: &str, media: &str, body: Body) -> Request {
        Request::post(path)
            .header(header::CONTENT_TYPE, media)
            .body(body)
            .unwrap()
    }

    async fn text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn an_ordinary_request_past_its_deadline_is_503() {
        let response = app()
            .oneshot(sent_to("/documents", "application/json", Body::from("{}")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn an_ndjson_content_type_does_not_lift_another_routes_deadline() {
        let response = app()
            .oneshot(sent_to(
                "/documents",
                "application/x-ndjson",
                Body::from("{}\n"),
            ))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn streamed_operations_are_read_from_the_openapi_document() {
        let document: utoipa::openapi::OpenApi = serde_json::from_value(serde_json::json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {
                "/v1/imports": {"post": {"requestBody": {"content": {"application/x-ndjson": {}}},
                                         "responses": {}}},
                "/v1/things": {"post": {"requestBody": {"content": {"application/json": {}}},
                                        "responses": {}},
                               "get": {"responses": {}}},
            }
        }))
        .unwrap();
        let deadlines = Deadlines::for_api(&document);
        assert_eq!(
            *deadlines.streamed,
            HashMap::from([("/v1/imports".to_owned(), vec![Method::POST])])
        );
    }

    #[tokio::test]
    async fn a_streamed_upload_that_keeps_coming_outlives_the_request_deadline() {
        // Four parts 100 ms apart: 400 ms in all, twice the request deadline, never idle long.
        let parts = futures::stream::iter(0..4).then(|_| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{}\n"))
        });
        let response = app()
            .oneshot(upload(
                "application/x-ndjson; charset=utf-8",
                Body::from_stream(parts),
            ))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(text(response).await, "read 12");
    }

    #[tokio::test]
    async fn a_streamed_upload_that_stalls_is_cut_off() {
        let stalled =
            futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{}\n"))])
                .chain(futures::stream::pending());
        let response = app()
            .oneshot(upload("application/jsonl", Body::from_stream(stalled)))
            .await
            .unwrap();
        assert_eq!(text(response).await, "cut: no data for 200ms");
    }
}
