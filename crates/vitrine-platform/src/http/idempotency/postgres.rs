//! `IdempotencyStore` over a service's PostgreSQL `idempotency_keys` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{Begin, IdempotencyStore, Record, StoredResponse, decide};

#[derive(Debug, Clone)]
pub struct PgIdempotencyStore {
    pool: PgPool,
}

impl PgIdempotencyStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl IdempotencyStore for PgIdempotencyStore {
    async fn begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Begin> {
        let mut tx = self.pool.begin().await?;
        // Insert-or-lock in one round trip: the row is either new (ours) or locked for us to judge.
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, locked_until, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, key) DO NOTHING",
        )
        .bind(scope)
        .bind(key)
        .bind(fingerprint)
        .bind(now + super::lock_ttl())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            tx.commit().await?;
            return Ok(Begin::Proceed);
        }
        let record: Record = sqlx::query_as(
            "SELECT fingerprint, status, headers, body, locked_until, created_at \
             FROM idempotency_keys WHERE scope = $1 AND key = $2 FOR UPDATE",
        )
        .bind(scope)
        .bind(key)
        .fetch_one(&mut *tx)
        .await?;
        let decision = decide(&record, fingerprint, now)?;
        if decision.take_over {
            sqlx::query(
                "UPDATE idempotency_keys SET fingerprint = $3, status = NULL, headers = NULL, \
                   body = NULL, locked_until = $4, created_at = CASE WHEN $6 THEN $5 ELSE created_at END \
                 WHERE scope = $1 AND key = $2",
            )
            .bind(scope)
            .bind(key)
            .bind(fingerprint)
            .bind(now + super::lock_ttl())
            .bind(now)
            .bind(decision.restart)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(decision.outcome)
    }

    async fn complete(
        &self,
        scope: &str,
        key: &str,
        response: &StoredResponse,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE idempotency_keys SET status = $3, headers = $4, body = $5 \
             WHERE scope = $1 AND key = $2",
        )
        .bind(scope)
        .bind(key)
        .bind(i16::try_from(response.status)?)
        .bind(sqlx::types::Json(&response.headers))
        .bind(&response.body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn abandon(&self, scope: &str, key: &str) -> anyhow::Result<()> {
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL",
        )
        .bind(scope)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn prune(&self, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        let deleted = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted)
    }
}
