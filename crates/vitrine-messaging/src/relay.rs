//! The relay: moves committed outbox messages to the transport, at least once, in order per
//! aggregate. It is safe to run several (each claims different rows) and to kill at any point: a
//! message published but not yet marked sent is published again after its lease, and consumers'
//! inboxes drop the duplicate.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::backoff;
use crate::outbox::{Destination, LEASE, OutboxStore, Pending};
use crate::transport::Publisher;

/// How long sent messages stay in the outbox (for inspection) before pruning.
pub const SENT_RETENTION: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct Relay {
    outbox: Arc<dyn OutboxStore>,
    transport: Arc<dyn Publisher>,
    batch: usize,
    idle_wait: Duration,
    lease: Duration,
}

impl Relay {
    pub fn new(outbox: Arc<dyn OutboxStore>, transport: Arc<dyn Publisher>) -> Self {
        Self {
            outbox,
            transport,
            batch: 100,
            idle_wait: Duration::from_secs(1),
            lease: LEASE,
        }
    }

    /// How long a claimed batch stays reserved for this relay (default [`LEASE`]).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long to wait for new messages when the outbox is empty (default 1 s); PostgreSQL
    /// wakes the relay sooner through LISTEN/NOTIFY.
    pub fn with_idle_wait(mut self, idle_wait: Duration) -> Self {
        self.idle_wait = idle_wait;
        self
    }

    /// Relays until `shutdown`, then returns after finishing the batch in hand.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut last_prune = tokio::time::Instant::now();
        while !shutdown.is_cancelled() {
            match self.relay_once().await {
                Ok(0) => {
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = self.outbox.wait_for_work(self.idle_wait) => {}
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "outbox relay failed; retrying"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(self.idle_wait) => {}
                    }
                }
            }
            if last_prune.elapsed() > Duration::from_secs(600) {
                last_prune = tokio::time::Instant::now();
                let cutoff = Utc::now() - chrono::Duration::from_std(SENT_RETENTION).expect("fits");
                if let Err(error) = self.outbox.prune(cutoff).await {
                    tracing::warn!(error = format!("{error:#}"), "outbox pruning failed");
                }
            }
        }
    }

    /// Claims one batch and publishes it; returns how many messages were claimed.
    pub async fn relay_once(&self) -> anyhow::Result<usize> {
        let batch = self
            .outbox
            .claim(self.batch, Utc::now(), self.lease)
            .await?;
        let mut sent = Vec::with_capacity(batch.len());
        for pending in &batch {
            match self.publish(pending).await {
                Ok(()) => sent.push(pending.seq),
                Err(error) => {
                    let attempt = u32::try_from(pending.attempts + 1).unwrap_or(u32::MAX);
                    let delay = backoff::delay(
                        attempt,
                        Duration::from_millis(200),
                        Duration::from_secs(60),
                    );
                    tracing::warn!(
                        message_id = %pending.message.envelope.id,
                        attempt,
                        error = format!("{error:#}"),
                        "publishing failed; will retry"
                    );
                    let retry_at = Utc::now() + chrono::Duration::from_std(delay).expect("fits");
                    self.outbox
                        .mark_failed(pending.seq, &format!("{error:#}"), retry_at)
                        .await?;
                }
            }
        }
        if !sent.is_empty() {
            self.outbox.mark_sent(&sent, Utc::now()).await?;
        }
        Ok(batch.len())
    }

    async fn publish(&self, pending: &Pending) -> anyhow::Result<()> {
        let envelope = &pending.message.envelope;
        match &pending.message.destination {
            Destination::Topic(topic) => self.transport.publish(topic, envelope).await?,
            Destination::Queue(queue) => self.transport.send(queue, envelope).await?,
        }
        Ok(())
    }
}
