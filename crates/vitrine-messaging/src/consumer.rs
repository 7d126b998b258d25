//! The consumer runtime: receives from one queue, hands each message to a [`Handler`], acks what
//! was handled and schedules retries (exponential backoff with jitter) for what failed. After the
//! queue's maximum receives the transport moves a message to the dead-letter queue, where
//! `vitrine messages dlq` can inspect and redrive it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backoff;
use crate::envelope::Envelope;
use crate::transport::{Delivery, Transport};

/// Handles one message type family for one consumer.
///
/// Implementations record the message in their inbox (see [`crate::inbox`]) in the same
/// transaction as their effect, so a redelivered message changes nothing.
#[async_trait]
pub trait Handler: Send + Sync {
    async fn handle(&self, envelope: &Envelope) -> anyhow::Result<()>;
}

#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Messages fetched per receive.
    pub batch: usize,
    /// How long a received message stays invisible to others while being handled.
    pub visibility: Duration,
    /// First retry delay; doubles per attempt up to `max_retry_delay`.
    pub retry_delay: Duration,
    pub max_retry_delay: Duration,
    /// Long-poll duration of one receive.
    pub wait: Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            batch: 10,
            visibility: Duration::from_secs(30),
            retry_delay: Duration::from_millis(500),
            max_retry_delay: Duration::from_secs(300),
            wait: Duration::from_secs(1),
        }
    }
}

pub struct Consumer {
    queue: String,
    transport: Arc<dyn Transport>,
    handler: Arc<dyn Handler>,
    options: ConsumerOptions,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    pub fn new(
        queue: impl Into<String>,
        transport: Arc<dyn Transport>,
        handler: Arc<dyn Handler>,
        options: ConsumerOptions,
    ) -> Self {
        Self {
            queue: queue.into(),
            transport,
            handler,
            options,
        }
    }

    /// Consumes until `shutdown`; the message in hand is finished (or left to redelivery).
    pub async fn run(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let received = tokio::select! {
                () = shutdown.cancelled() => return,
                received = self.transport.receive(&self.queue, self.options.batch, self.options.wait, self.options.visibility) => received,
            };
            match received {
                Ok(deliveries) => {
                    for delivery in deliveries {
                        self.process(&delivery).await;
                    }
                }
                Err(error) => {
                    tracing::warn!(queue = %self.queue, %error, "receive failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(self.options.retry_delay) => {}
                    }
                }
            }
        }
    }

    /// Handles one delivery: ack on success, delayed retry on failure.
    pub async fn process(&self, delivery: &Delivery) {
        let envelope = &delivery.envelope;
        let span = tracing::info_span!(
            "message",
            otel.kind = "consumer",
            queue = %self.queue,
            message_id = %envelope.id,
            message_type = %envelope.kind,
            traceparent = envelope.traceparent.as_deref().unwrap_or("-"),
            attempt = delivery.receive_count,
        );
        // The handler continues the producer's trace: messages it writes carry it on. Set
        // before the span is entered, since an exported span's parent is fixed when it starts.
        let context =
            vitrine_runtime::trace_context::continue_in(&span, envelope.traceparent.as_deref());
        async move {
        let handled = vitrine_runtime::trace_context::scope(context, self.handler.handle(envelope));
        match handled.await {
            Ok(()) => {
                if let Err(error) = self.transport.ack(&self.queue, delivery).await {
                    // Redelivered after the visibility timeout; the inbox makes that harmless.
                    tracing::warn!(%error, "ack failed");
                }
            }
            Err(error) => {
                let delay = backoff::delay(
                    delivery.receive_count,
                    self.options.retry_delay,
                    self.options.max_retry_delay,
                );
                tracing::warn!(error = format!("{error:#}"), retry_in_ms = delay.as_millis() as u64, "handling failed");
                if let Err(error) = self.transport.retry_later(&self.queue, delivery, delay).await {
                    tracing::warn!(%error, "scheduling the retry failed; the visibility timeout will");
                }
            }
        }
        }
        .instrument(span)
        .await;
    }
}
