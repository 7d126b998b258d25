//! Outbox on PostgreSQL: claims with `FOR UPDATE SKIP LOCKED` so any number of relays can run,
//! woken by `LISTEN vitrine_outbox` (a trigger notifies on insert, delivered at commit).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Mutex;

use super::{OutboxMessage, OutboxStore, Pending, Row, until};

/// The channel the outbox trigger notifies.
pub const CHANNEL: &str = "vitrine_outbox";

/// Writes `messages` in the caller's transaction.
pub async fn enqueue(conn: &mut PgConnection, messages: &[OutboxMessage]) -> sqlx::Result<()> {
    for message in messages {
        sqlx::query(
            "INSERT INTO outbox (id, destination, aggregate, envelope, created_at, next_attempt_at) \
             VALUES ($1, $2, $3, $4::jsonb, $5, $5)",
        )
        .bind(message.envelope.id)
        .bind(message.destination.encode())
        .bind(message.aggregate())
        .bind(message.envelope.to_json())
        .bind(message.envelope.time)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[derive(Debug)]
pub struct PgOutbox {
    pool: PgPool,
    listener: Mutex<Option<PgListener>>,
}

impl PgOutbox {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            listener: Mutex::new(None),
        }
    }
}

#[async_trait]
impl OutboxStore for PgOutbox {
    async fn claim(
        &self,
        max: usize,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<Vec<Pending>> {
        let rows: Vec<Row> = sqlx::query_as(
            "UPDATE outbox SET lease_until = $2 \
             WHERE seq IN ( \
               SELECT o.seq FROM outbox o \
               WHERE o.sent_at IS NULL AND o.next_attempt_at <= $1 \
                 AND (o.lease_until IS NULL OR o.lease_until <= $1) \
                 AND NOT EXISTS (SELECT 1 FROM outbox p \
                                 WHERE p.aggregate = o.aggregate AND p.sent_at IS NULL AND p.seq < o.seq) \
               ORDER BY o.seq LIMIT $3 \
               FOR UPDATE SKIP LOCKED) \
             RETURNING seq, destination, envelope::text AS envelope, attempts",
        )
        .bind(now)
        .bind(until(now, lease))
        .bind(i64::try_from(max)?)
        .fetch_all(&self.pool)
        .await?;
        let mut pending = rows
            .into_iter()
            .map(Pending::try_from)
            .collect::<anyhow::Result<Vec<_>>>()?;
        pending.sort_by_key(|p| p.seq);
        Ok(pending)
    }

    async fn mark_sent(&self, seqs: &[i64], now: DateTime<Utc>) -> anyhow::Result<()> {
        sqlx::query("UPDATE outbox SET sent_at = $2, lease_until = NULL WHERE seq = ANY($1)")
            .bind(seqs)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn mark_failed(
        &self,
        seq: i64,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3, \
               lease_until = NULL WHERE seq = $1",
        )
        .bind(seq)
        .bind(error)
        .bind(retry_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn prune(&self, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        let deleted = sqlx::query("DELETE FROM outbox WHERE sent_at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted)
    }

    async fn unsent(&self) -> anyhow::Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn wait_for_work(&self, max_wait: Duration) {
        let mut guard = self.listener.lock().await;
        if guard.is_none() {
            match PgListener::connect_with(&self.pool).await {
                Ok(mut listener) => match listener.listen(CHANNEL).await {
                    Ok(()) => *guard = Some(listener),
                    Err(error) => tracing::warn!(%error, "LISTEN failed; polling the outbox"),
                },
                Err(error) => tracing::warn!(%error, "no LISTEN connection; polling the outbox"),
            }
        }
        match guard.as_mut() {
            Some(listener) => {
                if let Ok(Err(error)) = tokio::time::timeout(max_wait, listener.recv()).await {
                    tracing::warn!(%error, "outbox LISTEN connection lost; reconnecting");
                    *guard = None;
                }
            }
            None => tokio::time::sleep(max_wait).await,
        }
    }
}
