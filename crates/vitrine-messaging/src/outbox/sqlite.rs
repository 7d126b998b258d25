//! Outbox on SQLite (embedded): one writer at a time, so a claim is a plain `BEGIN IMMEDIATE`
//! transaction. The writer and the relay share a process, so writers [`SqliteOutbox::wake`] the
//! relay after committing; a slow poll covers writes from other processes (admin commands).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::Notify;

use super::{OutboxMessage, OutboxStore, Pending, Row, until};

/// How often the relay looks for messages nobody woke it for.
const POLL: Duration = Duration::from_millis(250);

/// Writes `messages` in the caller's transaction.
pub async fn enqueue(conn: &mut SqliteConnection, messages: &[OutboxMessage]) -> sqlx::Result<()> {
    for message in messages {
        sqlx::query(
            "INSERT INTO outbox (id, destination, aggregate, envelope, created_at, next_attempt_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(message.envelope.id)
        .bind(message.destination.encode())
        .bind(message.aggregate())
        .bind(message.envelope.to_json())
        .bind(message.envelope.time)
        .bind(message.envelope.time)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Clones share the wake-up signal: clone one outbox for the writers and the relay.
#[derive(Debug, Clone)]
pub struct SqliteOutbox {
    pool: SqlitePool,
    committed: Arc<Notify>,
}

impl SqliteOutbox {
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            committed: Arc::new(Notify::new()),
        }
    }

    /// Tells the relay that messages were just committed.
    pub fn wake(&self) {
        // `notify_one` stores a permit when the relay is busy, so the wake-up is not lost.
        self.committed.notify_one();
    }
}

#[async_trait]
impl OutboxStore for SqliteOutbox {
    async fn claim(
        &self,
        max: usize,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<Vec<Pending>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT o.seq, o.destination, o.envelope, o.attempts FROM outbox o \
             WHERE o.sent_at IS NULL AND o.next_attempt_at <= ?1 \
               AND (o.lease_until IS NULL OR o.lease_until <= ?1) \
               AND NOT EXISTS (SELECT 1 FROM outbox p \
                               WHERE p.aggregate = o.aggregate AND p.sent_at IS NULL AND p.seq < o.seq) \
             ORDER BY o.seq LIMIT ?2",
        )
        .bind(now)
        .bind(i64::try_from(max)?)
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            sqlx::query("UPDATE outbox SET lease_until = ? WHERE seq = ?")
                .bind(until(now, lease))
                .bind(row.seq)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        rows.into_iter().map(Pending::try_from).collect()
    }

    async fn mark_sent(&self, seqs: &[i64], now: DateTime<Utc>) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        for seq in seqs {
            sqlx::query("UPDATE outbox SET sent_at = ?, lease_until = NULL WHERE seq = ?")
                .bind(now)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn mark_failed(
        &self,
        seq: i64,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, \
               lease_until = NULL WHERE seq = ?",
        )
        .bind(error)
        .bind(retry_at)
        .bind(seq)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn prune(&self, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        let deleted = sqlx::query("DELETE FROM outbox WHERE sent_at < ?")
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
        let _ = tokio::time::timeout(max_wait.min(POLL), self.committed.notified()).await;
    }
}
