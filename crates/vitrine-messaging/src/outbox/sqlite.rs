//! Outbox on SQLite (embedded): one writer at a time, so a claim is a plain `BEGIN IMMEDIATE`
//! transaction doing, statement by statement, what the PostgreSQL claim does in one. The writer and the relay share a process, so writers [`SqliteOutbox::wake`] the
//! relay after committing; a slow poll covers writes from other processes (admin commands).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::Notify;

use super::{
    Claim, Failure, OutboxMessage, OutboxStore, Quarantined, Round, Row, in_rounds, readable,
    report_quarantined, until,
};

/// A due message read into the claim window.
#[derive(Debug, sqlx::FromRow)]
struct Windowed {
    seq: i64,
    aggregate: String,
    next_attempt_at: DateTime<Utc>,
    destination: String,
    envelope: String,
    attempts: i32,
}

impl From<Windowed> for Row {
    fn from(row: Windowed) -> Row {
        Row {
            seq: row.seq,
            destination: row.destination,
            envelope: row.envelope,
            attempts: row.attempts,
        }
    }
}

/// One of an aggregate's first unsent messages.
#[derive(Debug, sqlx::FromRow)]
struct Head {
    seq: i64,
    next_attempt_at: DateTime<Utc>,
    lease_until: Option<DateTime<Utc>>,
}

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

    /// One claim over one window; also returns how many window messages it deferred.
    async fn claim_round(
        &self,
        max: usize,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<Round> {
        // One writer at a time: nothing changes between these statements.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let window: Vec<Windowed> = sqlx::query_as(
            "SELECT seq, aggregate, next_attempt_at, destination, envelope, attempts FROM outbox \
             WHERE sent_at IS NULL AND next_attempt_at <= ?1 \
               AND (lease_until IS NULL OR lease_until <= ?1) \
             ORDER BY next_attempt_at, seq LIMIT ?2",
        )
        .bind(now)
        .bind(i64::try_from(max)?)
        .fetch_all(&mut *tx)
        .await?;
        let window_full = window.len() >= max;
        let mut by_aggregate: BTreeMap<&str, Vec<&Windowed>> = BTreeMap::new();
        for row in &window {
            by_aggregate.entry(&row.aggregate).or_default().push(row);
        }
        let mut claimed = BTreeSet::new();
        let mut deferred: Vec<(i64, DateTime<Utc>)> = Vec::new();
        for (aggregate, mut rows) in by_aggregate {
            rows.sort_by_key(|r| r.seq);
            // The aggregate's first unsent messages, as many as the window holds for it: the
            // window's run goes out only as far as the two agree.
            let firsts: Vec<Head> = sqlx::query_as(
                "SELECT seq, next_attempt_at, lease_until FROM outbox \
                 WHERE aggregate = ? AND sent_at IS NULL ORDER BY seq LIMIT ?",
            )
            .bind(aggregate)
            .bind(i64::try_from(rows.len())?)
            .fetch_all(&mut *tx)
            .await?;
            let run = rows
                .iter()
                .zip(&firsts)
                .take_while(|(row, first)| row.seq == first.seq)
                .count();
            claimed.extend(rows[..run].iter().map(|r| r.seq));
            // The rest cannot go out before the aggregate's first unsent message: those due
            // before it would keep it out of a full window, so they move behind it.
            if let Some(head) = firsts.first()
                && head.lease_until.is_none_or(|lease| lease <= now)
            {
                deferred.extend(
                    rows[run..]
                        .iter()
                        .filter(|r| r.next_attempt_at < head.next_attempt_at)
                        .map(|r| (r.seq, head.next_attempt_at)),
                );
            }
        }
        let deferred_count = deferred.len();
        for (seq, due) in deferred {
            sqlx::query("UPDATE outbox SET next_attempt_at = ? WHERE seq = ?")
                .bind(due)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        let (pending, poison) = readable(
            window
                .into_iter()
                .filter(|row| claimed.contains(&row.seq))
                .map(Row::from)
                .collect(),
        );
        let lease_until = until(now, lease);
        for message in &pending {
            sqlx::query("UPDATE outbox SET lease_until = ? WHERE seq = ?")
                .bind(lease_until)
                .bind(message.seq)
                .execute(&mut *tx)
                .await?;
        }
        for (seq, error) in &poison {
            sqlx::query(
                "INSERT INTO outbox_quarantine \
                   (seq, id, destination, aggregate, envelope, created_at, error, quarantined_at) \
                 SELECT seq, id, destination, aggregate, envelope, created_at, ?, ? \
                 FROM outbox WHERE seq = ?",
            )
            .bind(error)
            .bind(now)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM outbox WHERE seq = ?")
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        report_quarantined(&poison);
        Ok(Round {
            claim: Claim {
                messages: pending,
                window_full,
            },
            deferred: deferred_count,
        })
    }
}

#[async_trait]
impl OutboxStore for SqliteOutbox {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn claim(
        &self,
        max: usize,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<Claim> {
        in_rounds(|| self.claim_round(max, now, lease)).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn mark_sent(&self, seqs: &[i64], now: DateTime<Utc>) -> anyhow::Result<()> {
        let mut tx = vitrine_runtime::db::begin(&self.pool).await?;
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

    #[tracing::instrument(level = "debug", skip_all)]
    async fn mark_failed(&self, failures: &[Failure]) -> anyhow::Result<()> {
        let mut tx = vitrine_runtime::db::begin(&self.pool).await?;
        for failure in failures {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, \
                   lease_until = NULL WHERE seq = ?",
            )
            .bind(&failure.error)
            .bind(failure.retry_at)
            .bind(failure.seq)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn release(&self, seqs: &[i64], due: DateTime<Utc>) -> anyhow::Result<()> {
        let mut tx = vitrine_runtime::db::begin(&self.pool).await?;
        for seq in seqs {
            sqlx::query(
                "UPDATE outbox SET next_attempt_at = ?, lease_until = NULL \
                 WHERE seq = ? AND sent_at IS NULL",
            )
            .bind(due)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn prune(&self, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        let deleted = sqlx::query("DELETE FROM outbox WHERE sent_at < ?")
            .bind(cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn quarantined(&self, max: usize) -> anyhow::Result<Vec<Quarantined>> {
        Ok(sqlx::query_as(
            "SELECT seq, destination, aggregate, envelope, error, quarantined_at \
             FROM outbox_quarantine ORDER BY seq LIMIT ?",
        )
        .bind(i64::try_from(max)?)
        .fetch_all(&self.pool)
        .await?)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn unsent(&self) -> anyhow::Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    fn parallel_claims(&self) -> bool {
        false
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn wait_for_work(&self, max_wait: Duration) {
        let _ = tokio::time::timeout(max_wait.min(POLL), self.committed.notified()).await;
    }
}
