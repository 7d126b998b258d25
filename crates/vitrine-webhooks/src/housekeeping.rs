//! Webhook housekeeping: the dispatch queue's depth as a metric, and retention (messages and
//! their attempt history are kept for [`RETENTION`], then deleted unless a delivery still
//! waits on them).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::store::WebhookStore;

/// How long a message and its attempts stay listed (and resendable).
pub const RETENTION: chrono::Duration = chrono::Duration::days(30);
/// How often the pending gauge is refreshed.
const GAUGE_EVERY: Duration = Duration::from_secs(15);
/// How often old messages are pruned, and how many per statement.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const PRUNE_BATCH: u32 = 1000;

/// Refreshes `vitrine_webhook_pending_deliveries` and prunes old messages until `stop`.
pub async fn run(store: Arc<dyn WebhookStore>, stop: CancellationToken) {
    let mut gauge = tokio::time::interval(GAUGE_EVERY);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    gauge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = gauge.tick() => match store.pending().await {
                #[allow(clippy::cast_precision_loss)] // a gauge: f64 is its type
                Ok(pending) => metrics::gauge!("vitrine_webhook_pending_deliveries").set(pending as f64),
                Err(error) => tracing::warn!(%error, "counting pending webhook deliveries failed"),
            },
            _ = prune.tick() => prune_all(store.as_ref()).await,
        }
    }
}

async fn prune_all(store: &dyn WebhookStore) {
    let before = Utc::now() - RETENTION;
    let mut total = 0;
    loop {
        match store.prune(before, PRUNE_BATCH).await {
            Ok(pruned) => {
                total += pruned;
                if pruned < u64::from(PRUNE_BATCH) {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "pruning webhook messages failed; next round tries again");
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(pruned = total, "old webhook messages deleted");
    }
}
