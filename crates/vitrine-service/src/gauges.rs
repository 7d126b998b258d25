//! Messaging gauges for dashboards and alerts (deploy/monitoring): a service's outbox backlog
//! and the depth of the queues it consumes and of their dead-letter queues, refreshed every
//! 15 s. Every replica reports the same queues; dashboards take the maximum per queue.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vitrine_messaging::outbox::OutboxStore;
use vitrine_messaging::transport::{Transport, dead_letter_queue};

use crate::supervisor::Task;

const EVERY: Duration = Duration::from_secs(15);

/// `vitrine_outbox_unsent{service}`, and per queue `vitrine_queue_ready`,
/// `vitrine_queue_not_visible` and `vitrine_queue_dead_letters` (`{queue}`).
pub fn messaging_gauges(
    service: &'static str,
    outbox: Arc<dyn OutboxStore>,
    transport: Arc<dyn Transport>,
    queues: Vec<&'static str>,
) -> Task {
    Task::new("messaging-gauges", move |stop| {
        refresh(
            service,
            Arc::clone(&outbox),
            Arc::clone(&transport),
            queues.clone(),
            stop,
        )
    })
}

#[allow(clippy::cast_precision_loss)] // gauges are f64; counts far below 2^52
async fn refresh(
    service: &'static str,
    outbox: Arc<dyn OutboxStore>,
    transport: Arc<dyn Transport>,
    queues: Vec<&'static str>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match outbox.unsent().await {
            Ok(unsent) => {
                metrics::gauge!("vitrine_outbox_unsent", "service" => service).set(unsent as f64);
            }
            Err(error) => tracing::debug!(%error, "counting the outbox backlog failed"),
        }
        for queue in &queues {
            match transport.depth(queue).await {
                Ok(depth) => {
                    metrics::gauge!("vitrine_queue_ready", "queue" => *queue)
                        .set(depth.ready as f64);
                    metrics::gauge!("vitrine_queue_not_visible", "queue" => *queue)
                        .set(depth.not_visible as f64);
                }
                Err(error) => tracing::debug!(queue, %error, "reading a queue's depth failed"),
            }
            match transport.depth(&dead_letter_queue(queue)).await {
                Ok(depth) => metrics::gauge!("vitrine_queue_dead_letters", "queue" => *queue)
                    .set((depth.ready + depth.not_visible) as f64),
                Err(error) => tracing::debug!(queue, %error, "reading a dead-letter queue failed"),
            }
        }
    }
}
