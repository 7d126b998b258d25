//! Serving a router until a shutdown signal, then draining in-flight requests within a deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
        // Cancel first: nothing after this (a log line to a closed pipe) may stand in the way.
        token.cancel();
        tracing::info!("shutdown signal received");
    });
}

/// Serves `router` on `listener` until `shutdown` is cancelled; in-flight requests then get
/// `grace` to finish (axum's graceful shutdown alone would wait for them forever). Returns how
/// many requests the deadline cut off.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> anyhow::Result<usize> {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&in_flight);
    let router = router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let _running = InFlight::enter(&counted);
            async move {
                let _running = _running;
                next.run(request).await
            }
        },
    ));
    let signal = shutdown.clone();
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(async move { signal.cancelled().await });
    let server = tokio::spawn(async move { server.await });
    shutdown.cancelled().await;
    match tokio::time::timeout(grace, server).await {
        Ok(joined) => {
            joined??;
            Ok(0)
        }
        Err(_) => {
            let cut_off = in_flight.load(Ordering::SeqCst);
            tracing::warn!(
                grace_secs = grace.as_secs(),
                cut_off,
                "requests still running after the grace period were cut off"
            );
            Ok(cut_off)
        }
    }
}

/// Counts a request as running until it is dropped (answered, or abandoned).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(counter))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
