//! `IdempotencyStore` over a service's SQLite `idempotency_keys` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use super::{
    Begin, Fenced, IdempotencyStore, Owner, Record, StoredResponse, decide, fenced, until,
};

#[derive(Debug, Clone)]
pub struct SqliteIdempotencyStore {
    pool: SqlitePool,
}

impl SqliteIdempotencyStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl IdempotencyStore for SqliteIdempotencyStore {
    async fn begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
        lock_ttl: std::time::Duration,
    ) -> anyhow::Result<Begin> {
        // IMMEDIATE takes the write lock first, so check-then-write cannot interleave.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let record: Option<Record> = sqlx::query_as(
            "SELECT fingerprint, status, headers, body, locked_until, created_at \
             FROM idempotency_keys WHERE scope = ? AND key = ?",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match record {
            None => {
                let owner = Owner::new();
                sqlx::query(
                    "INSERT INTO idempotency_keys \
                       (scope, key, fingerprint, locked_until, created_at, owner) \
                     VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(scope)
                .bind(key)
                .bind(fingerprint)
                .bind(until(now, lock_ttl))
                .bind(now)
                .bind(owner.as_str())
                .execute(&mut *tx)
                .await?;
                Begin::Proceed(owner)
            }
            Some(record) => {
                let decision = decide(&record, fingerprint, now)?;
                if let (true, Begin::Proceed(owner)) = (decision.take_over, &decision.outcome) {
                    sqlx::query(
                        "UPDATE idempotency_keys SET fingerprint = ?, status = NULL, headers = NULL, \
                           body = NULL, locked_until = ?, \
                           created_at = CASE WHEN ? THEN ? ELSE created_at END, owner = ? \
                         WHERE scope = ? AND key = ?",
                    )
                    .bind(fingerprint)
                    .bind(until(now, lock_ttl))
                    .bind(decision.restart)
                    .bind(now)
                    .bind(owner.as_str())
                    .bind(scope)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
                }
                decision.outcome
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn complete(
        &self,
        scope: &str,
        key: &str,
        owner: &Owner,
        response: &StoredResponse,
    ) -> anyhow::Result<bool> {
        fenced(&self.pool, scope, key, owner, Fenced::Complete(response)).await
    }

    async fn extend(
        &self,
        scope: &str,
        key: &str,
        owner: &Owner,
        until: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        fenced(&self.pool, scope, key, owner, Fenced::Extend(until)).await
    }

    async fn abandon(&self, scope: &str, key: &str, owner: &Owner) -> anyhow::Result<()> {
        fenced(&self.pool, scope, key, owner, Fenced::Abandon).await?;
        Ok(())
    }

    async fn prune(&self, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        // Timestamps are stored as RFC 3339 UTC text, whose lexical order is chronological.
        let deleted = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted)
    }
}
