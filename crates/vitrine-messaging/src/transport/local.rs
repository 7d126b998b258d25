//! The embedded transport: topics, queues, visibility timeouts and dead-letter queues in one
//! SQLite file, with the semantics of SNS+SQS. A message is a row until it is acked, so whatever
//! was in flight when the process stopped is delivered after it starts again.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sqlx::SqlitePool;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{
    Delivery, Provisioned, Publisher, QuarantinedMessage, QueueDepth, Topology, Transport,
    TransportError, dead_letter_queue,
};
use crate::envelope::Envelope;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/local");

/// Upper bound between two looks at an empty queue while waiting (wake-ups normally come sooner,
/// from sends in this process).
const POLL: Duration = Duration::from_millis(50);
/// Dead-letter queues keep their messages until redriven; they never dead-letter themselves.
const DLQ_MAX_RECEIVES: i64 = i64::MAX;

#[derive(Debug, Clone)]
pub struct LocalTransport {
    pool: SqlitePool,
    arrivals: Arc<Notify>,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    seq: i64,
    envelope: String,
    receive_count: i64,
}

impl LocalTransport {
    /// Opens (creating and migrating) the transport database at `path`.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        let pool = vitrine_runtime::db::sqlite(path).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            arrivals: Arc::new(Notify::new()),
        })
    }

    /// Enqueues each envelope into its queues, all in one transaction.
    async fn enqueue(&self, deliveries: &[(&[String], &Envelope)]) -> Result<(), TransportError> {
        let now = now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for (queues, envelope) in deliveries {
            let body = envelope.to_json();
            for queue in *queues {
                sqlx::query("INSERT INTO messages (queue, envelope, visible_at, enqueued_at) VALUES (?, ?, ?, ?)")
                    .bind(queue)
                    .bind(&body)
                    .bind(now)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        self.arrivals.notify_waiters();
        Ok(())
    }

    /// The queues subscribed to `topic`, with the event types each accepts (empty: all).
    async fn subscribers(&self, topic: &str) -> Result<Vec<(String, Vec<String>)>, TransportError> {
        let known: Option<String> = sqlx::query_scalar("SELECT name FROM topics WHERE name = ?")
            .bind(topic)
            .fetch_optional(&self.pool)
            .await?;
        if known.is_none() {
            return Err(TransportError::Unknown(topic.to_owned()));
        }
        let subscriptions: Vec<(String, String)> = sqlx::query_as(
            "SELECT queue, event_types FROM subscriptions WHERE topic = ? ORDER BY queue",
        )
        .bind(topic)
        .fetch_all(&self.pool)
        .await?;
        Ok(subscriptions
            .into_iter()
            .map(|(queue, filter)| (queue, serde_json::from_str(&filter).unwrap_or_default()))
            .collect())
    }

    async fn require_queue(&self, queue: &str) -> Result<(), TransportError> {
        let known: Option<String> = sqlx::query_scalar("SELECT name FROM queues WHERE name = ?")
            .bind(queue)
            .fetch_optional(&self.pool)
            .await?;
        known
            .map(|_| ())
            .ok_or_else(|| TransportError::Unknown(queue.to_owned()))
    }

    /// One attempt at receiving: dead-letters exhausted messages, then leases visible ones.
    async fn receive_now(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, TransportError> {
        let now = now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "UPDATE messages SET queue = q.dead_letter, receive_count = 0, receipt = NULL, visible_at = ?1 \
             FROM queues q \
             WHERE q.name = messages.queue AND messages.queue = ?2 AND q.dead_letter IS NOT NULL \
               AND messages.visible_at <= ?1 AND messages.receive_count >= q.max_receives",
        )
        .bind(now)
        .bind(queue)
        .execute(&mut *tx)
        .await?;
        let rows: Vec<MessageRow> = sqlx::query_as(
            "SELECT seq, envelope, receive_count FROM messages \
             WHERE queue = ? AND visible_at <= ? ORDER BY seq LIMIT ?",
        )
        .bind(queue)
        .bind(now)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?;
        let mut deliveries = Vec::with_capacity(rows.len());
        let mut quarantined = 0u64;
        for row in rows {
            let envelope = match Envelope::from_json(&row.envelope) {
                Ok(envelope) => envelope,
                Err(error) => {
                    // Unreadable now means unreadable on every receive: set it aside, so the
                    // queue moves on instead of failing every receive.
                    self.quarantine(&mut tx, row.seq, &error.to_string(), now)
                        .await?;
                    quarantined += 1;
                    continue;
                }
            };
            let receipt = uuid::Uuid::now_v7().to_string();
            sqlx::query(
                "UPDATE messages SET visible_at = ?, receive_count = receive_count + 1, receipt = ? \
                 WHERE seq = ?",
            )
            .bind(now + millis(visibility))
            .bind(&receipt)
            .bind(row.seq)
            .execute(&mut *tx)
            .await?;
            deliveries.push(Delivery {
                envelope,
                receipt,
                receive_count: u32::try_from(row.receive_count + 1).unwrap_or(u32::MAX),
            });
        }
        tx.commit().await?;
        if quarantined > 0 {
            metrics::counter!("vitrine_messages_quarantined_total", "queue" => queue.to_owned())
                .increment(quarantined);
            tracing::error!(
                queue,
                quarantined,
                "unreadable messages quarantined (see `vitrine messages quarantine`)"
            );
        }
        Ok(deliveries)
    }

    async fn quarantine(
        &self,
        tx: &mut sqlx::SqliteConnection,
        seq: i64,
        error: &str,
        now: i64,
    ) -> Result<(), TransportError> {
        sqlx::query(
            "INSERT INTO quarantine (seq, queue, envelope, error, enqueued_at, quarantined_at) \
             SELECT seq, queue, envelope, ?, enqueued_at, ? FROM messages WHERE seq = ?",
        )
        .bind(error)
        .bind(now)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM messages WHERE seq = ?")
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Publisher for LocalTransport {
    /// A batch is one transaction, its rows numbered in the order given, and queues deliver in
    /// that order: all of it lands, in order, or none of it does.
    fn keeps_batch_order(&self) -> bool {
        true
    }

    async fn publish(&self, topic: &str, envelope: &Envelope) -> Result<(), TransportError> {
        let mut results = self.publish_batch(topic, &[envelope]).await;
        results.pop().unwrap_or(Ok(()))
    }

    async fn send(&self, queue: &str, envelope: &Envelope) -> Result<(), TransportError> {
        self.require_queue(queue).await?;
        self.enqueue(&[(&[queue.to_owned()], envelope)]).await
    }

    /// One transaction for the whole batch: it all lands or none of it does.
    async fn publish_batch(
        &self,
        topic: &str,
        envelopes: &[&Envelope],
    ) -> Vec<Result<(), TransportError>> {
        let subscribers = match self.subscribers(topic).await {
            Ok(subscribers) => subscribers,
            Err(error) => return error.for_each(envelopes.len()),
        };
        let targets: Vec<Vec<String>> = envelopes
            .iter()
            .map(|envelope| {
                subscribers
                    .iter()
                    .filter(|(_, types)| types.is_empty() || types.contains(&envelope.kind))
                    .map(|(queue, _)| queue.clone())
                    .collect()
            })
            .collect();
        let deliveries: Vec<(&[String], &Envelope)> = targets
            .iter()
            .map(Vec::as_slice)
            .zip(envelopes.iter().copied())
            .collect();
        match self.enqueue(&deliveries).await {
            Ok(()) => envelopes.iter().map(|_| Ok(())).collect(),
            Err(error) => error.for_each(envelopes.len()),
        }
    }

    async fn send_batch(
        &self,
        queue: &str,
        envelopes: &[&Envelope],
    ) -> Vec<Result<(), TransportError>> {
        if let Err(error) = self.require_queue(queue).await {
            return error.for_each(envelopes.len());
        }
        let target = [queue.to_owned()];
        let deliveries: Vec<(&[String], &Envelope)> = envelopes
            .iter()
            .map(|envelope| (&target[..], *envelope))
            .collect();
        match self.enqueue(&deliveries).await {
            Ok(()) => envelopes.iter().map(|_| Ok(())).collect(),
            Err(error) => error.for_each(envelopes.len()),
        }
    }
}

#[async_trait]
impl Transport for LocalTransport {
    async fn provision(&self, topology: &Topology) -> Result<Provisioned, TransportError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut report = Provisioned::default();
        for topic in topology.all_topics() {
            let created =
                sqlx::query("INSERT INTO topics (name) VALUES (?) ON CONFLICT DO NOTHING")
                    .bind(&topic)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    > 0;
            report.record(created, format!("topic {topic}"));
        }
        for queue in &topology.queues {
            let dlq = dead_letter_queue(&queue.name);
            let created = sqlx::query("INSERT INTO queues (name, dead_letter, max_receives) VALUES (?, NULL, ?) ON CONFLICT DO NOTHING")
                .bind(&dlq)
                .bind(DLQ_MAX_RECEIVES)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            report.record(created, format!("dead-letter queue {dlq}"));
            let existed: Option<i64> = sqlx::query_scalar("SELECT 1 FROM queues WHERE name = ?")
                .bind(&queue.name)
                .fetch_optional(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO queues (name, dead_letter, max_receives) VALUES (?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET dead_letter = excluded.dead_letter, \
                   max_receives = excluded.max_receives",
            )
            .bind(&queue.name)
            .bind(&dlq)
            .bind(i64::from(queue.max_receives))
            .execute(&mut *tx)
            .await?;
            report.record(existed.is_none(), format!("queue {}", queue.name));
            for subscription in &queue.subscriptions {
                let existed: Option<i64> =
                    sqlx::query_scalar("SELECT 1 FROM subscriptions WHERE topic = ? AND queue = ?")
                        .bind(&subscription.topic)
                        .bind(&queue.name)
                        .fetch_optional(&mut *tx)
                        .await?;
                sqlx::query(
                    "INSERT INTO subscriptions (topic, queue, event_types) VALUES (?, ?, ?) \
                     ON CONFLICT (topic, queue) DO UPDATE SET event_types = excluded.event_types",
                )
                .bind(&subscription.topic)
                .bind(&queue.name)
                .bind(serde_json::to_string(&subscription.event_types).expect("strings serialise"))
                .execute(&mut *tx)
                .await?;
                report.record(
                    existed.is_none(),
                    format!("subscription {} -> {}", subscription.topic, queue.name),
                );
            }
        }
        tx.commit().await?;
        Ok(report)
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, TransportError> {
        self.require_queue(queue).await?;
        let (ready, not_visible): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(visible_at <= ?1), 0), COALESCE(SUM(visible_at > ?1), 0) \
             FROM messages WHERE queue = ?2",
        )
        .bind(now_ms())
        .bind(queue)
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueDepth {
            ready: u64::try_from(ready).unwrap_or_default(),
            not_visible: u64::try_from(not_visible).unwrap_or_default(),
        })
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, TransportError> {
        self.require_queue(queue).await?;
        let deadline = Instant::now() + wait;
        loop {
            // Registered before looking, so a send between the look and the wait is not missed.
            let arrival = self.arrivals.notified();
            let deliveries = self.receive_now(queue, max, visibility).await?;
            let now = Instant::now();
            if !deliveries.is_empty() || now >= deadline {
                return Ok(deliveries);
            }
            let _ = tokio::time::timeout((deadline - now).min(POLL), arrival).await;
        }
    }

    async fn ack(&self, _queue: &str, delivery: &Delivery) -> Result<(), TransportError> {
        sqlx::query("DELETE FROM messages WHERE receipt = ?")
            .bind(&delivery.receipt)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn retry_later(
        &self,
        _queue: &str,
        delivery: &Delivery,
        delay: Duration,
    ) -> Result<(), TransportError> {
        sqlx::query("UPDATE messages SET visible_at = ? WHERE receipt = ?")
            .bind(now_ms() + millis(delay))
            .bind(&delivery.receipt)
            .execute(&self.pool)
            .await?;
        if delay.is_zero() {
            self.arrivals.notify_waiters();
        }
        Ok(())
    }

    async fn dead_letters(&self, queue: &str, max: usize) -> Result<Vec<Envelope>, TransportError> {
        self.require_queue(queue).await?;
        let bodies: Vec<String> = sqlx::query_scalar(
            "SELECT envelope FROM messages WHERE queue = ? ORDER BY seq LIMIT ?",
        )
        .bind(dead_letter_queue(queue))
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        bodies
            .iter()
            .map(|body| {
                Envelope::from_json(body).map_err(|error| TransportError::Unavailable(error.into()))
            })
            .collect()
    }

    async fn quarantined(&self, max: usize) -> Result<Vec<QuarantinedMessage>, TransportError> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT queue, envelope, error, quarantined_at FROM quarantine ORDER BY seq LIMIT ?",
        )
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(queue, body, error, at)| QuarantinedMessage {
                queue,
                body,
                error,
                quarantined_at: chrono::DateTime::from_timestamp_millis(at).unwrap_or_default(),
            })
            .collect())
    }

    async fn create_temporary_queue(
        &self,
        name: &str,
        ttl: Duration,
    ) -> Result<(), TransportError> {
        sqlx::query(
            "INSERT INTO queues (name, dead_letter, max_receives, expires_at) VALUES (?, NULL, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET expires_at = excluded.expires_at",
        )
        .bind(name)
        .bind(DLQ_MAX_RECEIVES)
        .bind(now_ms() + millis(ttl))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn renew_queue(&self, name: &str, ttl: Duration) -> Result<(), TransportError> {
        let renewed = sqlx::query(
            "UPDATE queues SET expires_at = ? WHERE name = ? AND expires_at IS NOT NULL",
        )
        .bind(now_ms() + millis(ttl))
        .bind(name)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if renewed == 0 {
            return Err(TransportError::Unknown(name.to_owned()));
        }
        Ok(())
    }

    async fn delete_queue(&self, name: &str) -> Result<(), TransportError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("DELETE FROM messages WHERE queue = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM subscriptions WHERE queue = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM queues WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_expired_queues(&self) -> Result<Vec<String>, TransportError> {
        let now = now_ms();
        let expired: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM queues WHERE expires_at IS NOT NULL AND expires_at < ?",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut deleted = Vec::new();
        for name in expired {
            // Re-checked in the deleting transaction: a queue renewed since the look is kept.
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let still_expired: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM queues WHERE name = ? AND expires_at IS NOT NULL AND expires_at < ?",
            )
            .bind(&name)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if still_expired.is_some() {
                // Messages and subscriptions first: they reference the queue.
                sqlx::query("DELETE FROM messages WHERE queue = ?")
                    .bind(&name)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM subscriptions WHERE queue = ?")
                    .bind(&name)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM queues WHERE name = ?")
                    .bind(&name)
                    .execute(&mut *tx)
                    .await?;
                deleted.push(name);
            }
            tx.commit().await?;
        }
        Ok(deleted)
    }

    async fn list_queues(&self, prefix: &str) -> Result<Vec<String>, TransportError> {
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM queues ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        Ok(names
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect())
    }

    async fn redrive(&self, queue: &str) -> Result<usize, TransportError> {
        self.require_queue(queue).await?;
        let moved = sqlx::query(
            "UPDATE messages SET queue = ?, receive_count = 0, receipt = NULL, visible_at = ? WHERE queue = ?",
        )
        .bind(queue)
        .bind(now_ms())
        .bind(dead_letter_queue(queue))
        .execute(&self.pool)
        .await?
        .rows_affected();
        self.arrivals.notify_waiters();
        Ok(usize::try_from(moved).unwrap_or(usize::MAX))
    }
}
