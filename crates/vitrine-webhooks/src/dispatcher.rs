//! The dispatcher: claims due deliveries, sends each once, and records what happened. Any
//! number of dispatchers may run (one per replica); the store's leases keep them from sending
//! the same delivery at once, and its per-endpoint limit keeps one slow receiver from taking
//! every slot. A delivery whose dispatcher died is claimed again when its lease ends, so
//! nothing is lost in memory.
//!
//! What an attempt leads to:
//! - delivered: done; the endpoint's failure run ends;
//! - failed: tried again on the [`RetrySchedule`] (later if the receiver's `Retry-After` asks);
//!   when the schedule is exhausted the delivery fails for good and [`Notices`] is told; an
//!   endpoint failing without a single success for [`DispatcherOptions::disable_after`] is
//!   disabled (and [`Notices`] told);
//! - 410 Gone: the endpoint is disabled at once;
//! - `webhook-delivery: abort-message`: this message is not tried again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::attempt::{Attempt, Outgoing, Sender, Verdict};
use crate::schedule::RetrySchedule;
use crate::secret::WebhookSecret;
use crate::store::{AttemptRecord, DeliveryState, Due, WebhookStore};

/// Where endpoints' signing secrets come from (the service's secret store).
#[async_trait]
pub trait EndpointSecrets: Send + Sync + std::fmt::Debug {
    /// The endpoint's current secret, then its previous one when `with_previous` (a rotation
    /// less than a day old) and it still exists.
    async fn secrets(
        &self,
        endpoint: Uuid,
        with_previous: bool,
    ) -> anyhow::Result<Vec<WebhookSecret>>;
}

/// Told what operators and the endpoint's owner should hear about (the service publishes
/// these as events: `webhook.attempts-exhausted`, `webhook.endpoint-disabled`).
#[async_trait]
pub trait Notices: Send + Sync + std::fmt::Debug {
    async fn attempts_exhausted(&self, endpoint: Uuid, message: Uuid);
    async fn endpoint_disabled(&self, endpoint: Uuid, reason: &str);
}

/// How long fetching an endpoint's secrets may take before the attempt waits for a later round.
const SECRET_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct DispatcherOptions {
    pub schedule: RetrySchedule,
    /// How long a claimed delivery is ours: longer than an attempt can take (the secret fetch
    /// and the send are both bounded, 10 s and 15 s).
    pub lease: Duration,
    /// Deliveries claimed (and sent concurrently) per round.
    pub batch: u32,
    /// Deliveries in flight to one endpoint at a time, across dispatchers.
    pub per_endpoint: u32,
    /// An endpoint failing for this long without a success is disabled (Svix: 5 days).
    pub disable_after: chrono::Duration,
    /// How long to wait after a round that found nothing due.
    pub idle: Duration,
}

impl Default for DispatcherOptions {
    fn default() -> Self {
        Self {
            schedule: RetrySchedule::default(),
            lease: crate::attempt::TIMEOUT * 4,
            batch: 32,
            per_endpoint: 4,
            disable_after: chrono::Duration::days(5),
            idle: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Dispatcher {
    store: Arc<dyn WebhookStore>,
    sender: Sender,
    secrets: Arc<dyn EndpointSecrets>,
    notices: Arc<dyn Notices>,
    options: DispatcherOptions,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn WebhookStore>,
        sender: Sender,
        secrets: Arc<dyn EndpointSecrets>,
        notices: Arc<dyn Notices>,
        options: DispatcherOptions,
    ) -> Self {
        Self {
            store,
            sender,
            secrets,
            notices,
            options,
        }
    }

    /// Dispatches until `stop`; a failing store is logged and retried after the idle wait.
    pub async fn run(self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            let sent = match self.round().await {
                Ok(sent) => sent,
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "webhook dispatch round failed"
                    );
                    0
                }
            };
            if sent == 0 {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(self.options.idle) => {}
                }
            }
        }
    }

    /// Claims what is due, sends it concurrently, and records the round's attempts in one
    /// transaction; how many attempts were made.
    pub async fn round(&self) -> anyhow::Result<usize> {
        let now = Utc::now();
        let lease = chrono::Duration::from_std(self.options.lease)?;
        let due = self
            .store
            .claim(
                now,
                now + lease,
                self.options.batch,
                self.options.per_endpoint,
            )
            .await?;
        let made: Vec<(AttemptRecord, bool)> =
            futures::future::join_all(due.into_iter().map(|due| self.attempt(due)))
                .await
                .into_iter()
                .flatten()
                .collect();
        if made.is_empty() {
            return Ok(0);
        }
        let records: Vec<AttemptRecord> = made.iter().map(|(record, _)| record.clone()).collect();
        let runs = self.store.record_all(&records).await?;
        for ((record, gone), failing_since) in made.into_iter().zip(runs) {
            // One endpoint's failed disable must not skip the others' notices.
            if let Err(error) = self.after(&record, gone, failing_since).await {
                tracing::warn!(endpoint_id = %record.endpoint_id, error = format!("{error:#}"), "acting on a webhook attempt failed");
            }
        }
        Ok(records.len())
    }

    /// One attempt of one delivery: its record, and whether the receiver answered 410; none
    /// when it could not be made (its secret unavailable: the lease runs out and it is claimed
    /// again, without counting against the receiver).
    async fn attempt(&self, due: Due) -> Option<(AttemptRecord, bool)> {
        let with_previous = due
            .previous_secret_until
            .is_some_and(|until| until > Utc::now());
        // Bounded, so an attempt always ends well inside its lease (a stalled secret store
        // would otherwise let the lease run out and another dispatcher send it too).
        let secrets = tokio::time::timeout(
            SECRET_TIMEOUT,
            self.secrets.secrets(due.endpoint_id, with_previous),
        )
        .await;
        let started = Instant::now();
        let attempt = match secrets {
            Ok(Ok(secrets)) if !secrets.is_empty() => {
                let signing: Vec<&WebhookSecret> = secrets.iter().collect();
                let id = due.message_id.to_string();
                self.sender
                    .send(
                        Outgoing {
                            id: &id,
                            body: &due.body,
                            url: &due.url,
                        },
                        &signing,
                    )
                    .await
            }
            // No secret at all: nothing can ever be signed, so the attempt fails and runs out
            // its schedule like any other, instead of waiting forever.
            Ok(Ok(_)) => Attempt {
                status: None,
                duration: started.elapsed(),
                error: Some("the endpoint has no signing secret".to_owned()),
                verdict: Verdict::Failed { retry_after: None },
            },
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(endpoint_id = %due.endpoint_id, "an endpoint's signing secret is unavailable; its delivery waits");
                return None;
            }
        };
        metrics::histogram!("vitrine_webhook_attempt_seconds")
            .record(started.elapsed().as_secs_f64());
        let attempted_at = Utc::now();
        let (state, next) = match attempt.verdict {
            Verdict::Delivered => (DeliveryState::Delivered, None),
            Verdict::Aborted => (DeliveryState::Aborted, None),
            Verdict::Gone => (DeliveryState::Failed, None),
            Verdict::Failed { retry_after } => {
                let next = usize::try_from(due.attempts + 1)
                    .ok()
                    .and_then(|n| self.options.schedule.delay_before(n, retry_after));
                match next.and_then(|delay| chrono::Duration::from_std(delay).ok()) {
                    Some(delay) => (DeliveryState::Pending, Some(attempted_at + delay)),
                    None => (DeliveryState::Failed, None),
                }
            }
        };
        metrics::counter!("vitrine_webhook_attempts_total", "result" => state.as_str())
            .increment(1);
        let record = AttemptRecord {
            id: Uuid::now_v7(),
            message_id: due.message_id,
            endpoint_id: due.endpoint_id,
            attempted_at,
            status_code: attempt.status,
            duration_ms: u64::try_from(attempt.duration.as_millis()).unwrap_or(u64::MAX),
            error: attempt.error,
            state,
            next_attempt_at: next,
        };
        Some((record, attempt.verdict == Verdict::Gone))
    }

    /// What follows a recorded attempt: a 410 disables the endpoint, an exhausted schedule is
    /// announced, and a failure run as long as `disable_after` disables the endpoint.
    async fn after(
        &self,
        record: &AttemptRecord,
        gone: bool,
        failing_since: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        if gone {
            self.disable(record.endpoint_id, "the receiver answered 410 Gone")
                .await?;
        } else if record.state == DeliveryState::Failed {
            self.notices
                .attempts_exhausted(record.endpoint_id, record.message_id)
                .await;
        }
        if let Some(since) = failing_since
            && record.attempted_at - since >= self.options.disable_after
        {
            let reason = format!(
                "every attempt failed since {}",
                since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            self.disable(record.endpoint_id, &reason).await?;
        }
        Ok(())
    }

    async fn disable(&self, endpoint: Uuid, reason: &str) -> anyhow::Result<()> {
        if self
            .store
            .disable_endpoint(endpoint, reason, Utc::now())
            .await?
        {
            tracing::warn!(endpoint_id = %endpoint, reason, "webhook endpoint disabled");
            self.notices.endpoint_disabled(endpoint, reason).await;
        }
        Ok(())
    }
}
