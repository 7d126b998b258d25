//! `vitrine webhooks listen`: a receiver for trying webhooks out. It verifies each delivery as
//! a real receiver must (Standard Webhooks signature with the endpoint's secret, timestamp
//! within five minutes), prints one JSON line per delivery on stdout, and answers 204 when it
//! verified and 401 when it did not (so the sender records a failed attempt and retries).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio_util::sync::CancellationToken;
use vitrine_webhooks::secret::WebhookSecret;
use vitrine_webhooks::signature::verify;

/// Serves `POST /` (and any path) on `address` until SIGINT or SIGTERM.
pub async fn listen(address: SocketAddr, secret: WebhookSecret) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| anyhow::anyhow!("binding {address}: {error}"))?;
    let bound = listener.local_addr()?;
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "Listening for webhooks on http://{bound}/ (any path); register that URL with \
             POST /v1/webhook-endpoints. Deliveries print here, one JSON line each.\n"
        )
        .as_bytes(),
    );
    let app = axum::Router::new()
        .route("/", post(receive))
        .route("/{*path}", post(receive))
        .with_state(Arc::new(secret));
    let stop = CancellationToken::new();
    vitrine_platform::server::cancel_on_signal(stop.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await?;
    Ok(())
}

async fn receive(
    State(secret): State<Arc<WebhookSecret>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let id = header("webhook-id");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        });
    let verdict = verify(
        &secret,
        &id,
        &header("webhook-timestamp"),
        &header("webhook-signature"),
        &body,
        now,
    );
    let payload: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
    let line = serde_json::json!({
        "webhook_id": id,
        "verified": verdict.is_ok(),
        "error": verdict.as_ref().err().map(ToString::to_string),
        "body": payload,
    });
    // A reader that went away must not stop the receiver.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), format!("{line}\n").as_bytes());
    match verdict {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::UNAUTHORIZED,
    }
}
