//! How long a request may take. A JSON request gets one deadline for the whole exchange; a
//! streamed bulk upload (NDJSON, up to tens of megabytes over a client's uplink) cannot be held
//! to it, so its body must instead keep arriving: a pause longer than the idle limit ends it
//! as a cut-off upload, however long the upload as a whole takes. Kong's timeouts are idle
//! timeouts between reads and writes as well, so the two agree. An upload still has a ceiling
//! of its own, so a client trickling a byte at a time cannot hold a connection for ever.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

/// Media types of streamed bulk uploads: their bodies are read as they arrive, never whole.
pub const STREAMED_MEDIA_TYPES: [&str; 2] = ["application/x-ndjson", "application/jsonl"];

/// The limits a request is held to.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// The whole exchange of an ordinary request (answered 503 past it, as is an upload past
    /// its own ceiling).
    pub request: Duration,
    /// The longest pause in a streamed upload's body.
    pub body_idle: Duration,
    /// The whole exchange of a streamed upload.
    pub upload: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            request: Duration::from_secs(30),
            body_idle: Duration::from_secs(30),
            // 50 MB (the default import limit) at 1 Mbit/s takes under 7 minutes.
            upload: Duration::from_secs(15 * 60),
        }
    }
}

/// Whether a request's body is a streamed bulk upload, by its `Content-Type`.
pub fn is_streamed(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| {
            STREAMED_MEDIA_TYPES.contains(&media.trim().to_ascii_lowercase().as_str())
        })
}

/// The middleware: a deadline on ordinary requests, an idle limit on streamed bodies.
pub async fn enforce(State(deadlines): State<Deadlines>, request: Request, next: Next) -> Response {
    if !is_streamed(request.headers()) {
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

    const SHORT: Deadlines = Deadlines {
        request: Duration::from_millis(200),
        body_idle: Duration::from_millis(200),
        upload: Duration::from_secs(5),
    };

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
            .route("/", post(slow_reader))
            .layer(axum::middleware::from_fn_with_state(SHORT, enforce))
    }

    fn upload(media: &str, body: Body) -> Request {
        Request::post("/")
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
            .oneshot(upload("application/json", Body::from("{}")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
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
