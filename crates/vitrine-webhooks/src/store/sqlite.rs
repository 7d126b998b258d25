//! `WebhookStore` on SQLite (the embedded default).

use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};

use super::sql::{enqueue_all_sql, enqueue_sql, impl_webhook_store};
use super::{NewMessage, StoreError};

/// Writes `message` and its deliveries in the caller's transaction (the one of the change the
/// message announces); how many endpoints it goes to.
pub async fn enqueue(
    conn: &mut SqliteConnection,
    message: &NewMessage,
) -> Result<usize, StoreError> {
    enqueue_sql!(conn, message)
}

/// Writes `messages` and their deliveries in the caller's transaction, checking who listens
/// once per tenant and event type; how many deliveries it wrote.
pub async fn enqueue_all(
    conn: &mut SqliteConnection,
    messages: &[NewMessage],
) -> Result<usize, StoreError> {
    enqueue_all_sql!(conn, messages)
}

#[derive(Debug, Clone)]
pub struct SqliteWebhookStore {
    pool: SqlitePool,
}

impl SqliteWebhookStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// `BEGIN IMMEDIATE` takes the write lock up front: a transaction that reads, then writes,
    /// would otherwise fail to upgrade when another writer got there first.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

impl_webhook_store!(
    SqliteWebhookStore,
    conn = SqliteConnection,
    claim_lock = "",
    serialize_claims = "",
    row_lock = ""
);
