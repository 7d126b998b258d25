//! Housekeeping that runs on a timer until shutdown (pruning idempotency keys, inbox records,
//! sent outbox messages).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Runs `prune` every `period` until `shutdown`; it returns how many records it removed.
/// Failures are logged and retried at the next tick: housekeeping never stops the service.
pub async fn prune_every<F, Fut>(
    what: &'static str,
    period: Duration,
    shutdown: CancellationToken,
    prune: F,
) where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<u64>> + Send,
{
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => match prune().await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(what, removed, "pruned"),
                Err(error) => tracing::warn!(what, error = format!("{error:#}"), "pruning failed"),
            },
        }
    }
}
