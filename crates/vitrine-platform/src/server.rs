//! Serving a router until a shutdown signal, then draining in-flight requests within a deadline.

use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Cancels `token` on SIGINT or SIGTERM (what Kubernetes sends before killing a pod).
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            () = terminate => {},
        }
        tracing::info!("shutdown signal received");
        token.cancel();
    });
}

/// Serves `router` on `listener` until `shutdown` is cancelled; in-flight requests then get
/// `grace` to finish (axum's graceful shutdown alone would wait for them forever).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    let signal = shutdown.clone();
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(async move { signal.cancelled().await });
    let server = tokio::spawn(async move { server.await });
    shutdown.cancelled().await;
    match tokio::time::timeout(grace, server).await {
        Ok(joined) => joined??,
        Err(_) => tracing::warn!(
            grace_secs = grace.as_secs(),
            "requests still running after the grace period were cut off"
        ),
    }
    Ok(())
}
