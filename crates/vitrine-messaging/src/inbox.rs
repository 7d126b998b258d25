//! The inbox: a consumer records `(consumer, message id)` in the same transaction as the effect of
//! handling the message. A redelivered message finds its record and is skipped, so "at least
//! once" delivery applies each effect exactly once. Records outlive any redelivery window
//! ([`RETENTION`]) and are then pruned.
//!
//! Each service keeps an `inbox` table in its own database, next to the data its handlers change.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, SqliteConnection};
use uuid::Uuid;

/// How long records are kept: far longer than the outbox lease, the queues' retention of
/// redeliveries and the dead-letter redrive window.
pub const RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);

/// Records the message in the caller's transaction; `false` when it was already handled.
pub async fn first_delivery_postgres(
    conn: &mut PgConnection,
    consumer: &str,
    message_id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO inbox (consumer, message_id, handled_at) VALUES ($1, $2, $3) \
         ON CONFLICT (consumer, message_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(message_id)
    .bind(now)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Records the message in the caller's transaction; `false` when it was already handled.
pub async fn first_delivery_sqlite(
    conn: &mut SqliteConnection,
    consumer: &str,
    message_id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO inbox (consumer, message_id, handled_at) VALUES (?, ?, ?) \
         ON CONFLICT (consumer, message_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(message_id)
    .bind(now)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// A service's inbox table, for housekeeping.
#[derive(Debug, Clone)]
pub enum Inbox {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Inbox {
    /// Deletes records of messages handled before `cutoff`; returns how many.
    pub async fn prune(&self, cutoff: DateTime<Utc>) -> sqlx::Result<u64> {
        let deleted = match self {
            Inbox::Sqlite(pool) => sqlx::query("DELETE FROM inbox WHERE handled_at < ?")
                .bind(cutoff)
                .execute(pool)
                .await?
                .rows_affected(),
            Inbox::Postgres(pool) => sqlx::query("DELETE FROM inbox WHERE handled_at < $1")
                .bind(cutoff)
                .execute(pool)
                .await?
                .rows_affected(),
        };
        Ok(deleted)
    }

    /// Prunes records older than [`RETENTION`] every hour until `shutdown`.
    pub async fn prune_periodically(self, shutdown: tokio_util::sync::CancellationToken) {
        vitrine_runtime::periodic::prune_every(
            "inbox",
            Duration::from_secs(3600),
            shutdown,
            move || {
                let inbox = self.clone();
                async move {
                    let cutoff = Utc::now() - chrono::Duration::from_std(RETENTION).expect("fits");
                    Ok(inbox.prune(cutoff).await?)
                }
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn redeliveries_are_recognised_and_pruning_keeps_recent_records() {
        let dir = tempfile::tempdir().unwrap();
        let pool = vitrine_runtime::db::sqlite(&dir.path().join("i.sqlite3"))
            .await
            .unwrap();
        sqlx::query(
            "CREATE TABLE inbox (consumer TEXT, message_id BLOB, handled_at TEXT, \
             PRIMARY KEY (consumer, message_id))",
        )
        .execute(&pool)
        .await
        .unwrap();
        let now = Utc::now();
        let mut conn = pool.acquire().await.unwrap();
        let (old, new) = (Uuid::now_v7(), Uuid::now_v7());
        assert!(
            first_delivery_sqlite(&mut conn, "c", old, now - chrono::Duration::days(30))
                .await
                .unwrap()
        );
        assert!(
            first_delivery_sqlite(&mut conn, "c", new, now)
                .await
                .unwrap()
        );
        assert!(
            !first_delivery_sqlite(&mut conn, "c", new, now)
                .await
                .unwrap(),
            "a redelivery"
        );
        assert!(
            first_delivery_sqlite(&mut conn, "other", new, now)
                .await
                .unwrap(),
            "per consumer"
        );
        drop(conn);
        let inbox = Inbox::Sqlite(pool.clone());
        assert_eq!(
            inbox.prune(now - chrono::Duration::days(14)).await.unwrap(),
            1
        );
        let mut conn = pool.acquire().await.unwrap();
        assert!(
            !first_delivery_sqlite(&mut conn, "c", new, now)
                .await
                .unwrap(),
            "recent records stay"
        );
    }
}
