//! `IdempotencyStore` over a service's PostgreSQL `idempotency_keys` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{
    Begin, Fenced, IdempotencyStore, Owner, Record, StoredResponse, decide, fenced, until,
};

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
        lock_ttl: std::time::Duration,
    ) -> anyhow::Result<Begin> {
        let mut tx = vitrine_runtime::db::begin(&self.pool).await?;
        let owner = Owner::new();
        // Insert-or-lock in one round trip: the row is either new (ours) or locked for us to judge.
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, locked_until, created_at, owner) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, key) DO NOTHING",
        )
        .bind(scope)
        .bind(key)
        .bind(fingerprint)
        .bind(until(now, lock_ttl))
        .bind(now)
        .bind(owner.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            tx.commit().await?;
            return Ok(Begin::Proceed(owner));
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
        if let (true, Begin::Proceed(owner)) = (decision.take_over, &decision.outcome) {
            sqlx::query(
                "UPDATE idempotency_keys SET fingerprint = $3, status = NULL, headers = NULL, \
                   body = NULL, locked_until = $4, created_at = CASE WHEN $6 THEN $5 ELSE created_at END, \
                   owner = $7 \
                 WHERE scope = $1 AND key = $2",
            )
            .bind(scope)
            .bind(key)
            .bind(fingerprint)
            .bind(until(now, lock_ttl))
            .bind(now)
            .bind(decision.restart)
            .bind(owner.as_str())
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
        let deleted = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted)
    }
}
