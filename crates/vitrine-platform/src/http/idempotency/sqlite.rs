//! `IdempotencyStore` over a service's SQLite `idempotency_keys` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use super::{Begin, IdempotencyStore, Record, StoredResponse, decide};

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
                sqlx::query(
                    "INSERT INTO idempotency_keys (scope, key, fingerprint, locked_until, created_at) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(scope)
                .bind(key)
                .bind(fingerprint)
                .bind(now + super::lock_ttl())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                Begin::Proceed
            }
            Some(record) => {
                let decision = decide(&record, fingerprint, now)?;
                if decision.take_over {
                    sqlx::query(
                        "UPDATE idempotency_keys SET fingerprint = ?, status = NULL, headers = NULL, \
                           body = NULL, locked_until = ?, \
                           created_at = CASE WHEN ? THEN ? ELSE created_at END \
                         WHERE scope = ? AND key = ?",
                    )
                    .bind(fingerprint)
                    .bind(now + super::lock_ttl())
                    .bind(decision.restart)
                    .bind(now)
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
        response: &StoredResponse,
    ) -> anyhow::Result<()> {
        sqlx::query("UPDATE idempotency_keys SET status = ?, headers = ?, body = ? WHERE scope = ? AND key = ?")
            .bind(i16::try_from(response.status)?)
            .bind(sqlx::types::Json(&response.headers))
            .bind(&response.body)
            .bind(scope)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn abandon(&self, scope: &str, key: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND status IS NULL")
            .bind(scope)
            .bind(key)
            .execute(&self.pool)
            .await?;
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
