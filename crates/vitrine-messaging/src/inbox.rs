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

pub async fn prune_postgres(pool: &sqlx::PgPool, cutoff: DateTime<Utc>) -> sqlx::Result<u64> {
    Ok(sqlx::query("DELETE FROM inbox WHERE handled_at < $1")
        .bind(cutoff)
        .execute(pool)
        .await?
        .rows_affected())
}

pub async fn prune_sqlite(pool: &sqlx::SqlitePool, cutoff: DateTime<Utc>) -> sqlx::Result<u64> {
    Ok(sqlx::query("DELETE FROM inbox WHERE handled_at < ?")
        .bind(cutoff)
        .execute(pool)
        .await?
        .rows_affected())
}
