//! `ProductStore` on SQLite (the embedded default): one database file, so every read is as fresh
//! as the last commit and every write's token is [`ConsistencyToken::ZERO`].

use std::sync::Arc;

use sqlx::{SqliteConnection, SqlitePool};
use vitrine_messaging::outbox::{OutboxMessage, OutboxStore, SqliteOutbox, enqueue_sqlite};

use super::shared::{Backend, impl_product_store, routed};
use super::work::impl_work_store;
use super::{ConsistencyToken, Freshness, StoreError};

/// Migrations of the SQLite schema, embedded in the binary.
/// This service's tables (`migrations/sqlite`), the outbox and inbox, and the idempotency
/// keys, in one history.
pub static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| {
        vitrine_runtime::migrations::compose(&[
            &sqlx::migrate!("./migrations/sqlite"),
            &vitrine_messaging::migrations::SQLITE,
            &vitrine_platform::migrations::SQLITE,
            &vitrine_webhooks::migrations::SQLITE,
        ])
    });

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Shared with the relay, which is woken after a commit that wrote messages.
    outbox: SqliteOutbox,
}

impl SqliteStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            outbox: SqliteOutbox::new(pool.clone()),
            pool,
        }
    }

    /// Brings the schema up to date; the migrations it applied (`version description`).
    pub async fn migrate(&self) -> anyhow::Result<Vec<String>> {
        Ok(vitrine_runtime::migrations::apply(&MIGRATOR, &self.pool).await?)
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl Backend for SqliteStore {
    type Database = sqlx::Sqlite;
    type Connection = SqliteConnection;

    /// `BEGIN IMMEDIATE` takes the write lock up front: two deferred transactions that both
    /// read and then write would otherwise fail with `SQLITE_BUSY` when upgrading.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn committed(&self) -> Result<ConsistencyToken, StoreError> {
        self.outbox.wake();
        Ok(ConsistencyToken::ZERO)
    }

    /// One database: every read is as fresh as the last commit.
    async fn position_now(&self) -> Result<ConsistencyToken, StoreError> {
        Ok(ConsistencyToken::ZERO)
    }

    /// Its writes all carry the zero token.
    async fn reached(&self, token: ConsistencyToken) -> Result<bool, StoreError> {
        Ok(token == ConsistencyToken::ZERO)
    }

    async fn reader(&self, _freshness: Freshness) -> (&SqlitePool, bool) {
        (&self.pool, false)
    }

    fn replica_failed(&self, _error: &dyn std::fmt::Display) {}

    fn primary(&self) -> &SqlitePool {
        &self.pool
    }

    async fn enqueue(
        conn: &mut SqliteConnection,
        messages: &[OutboxMessage],
    ) -> Result<(), StoreError> {
        enqueue_sqlite(conn, messages).await?;
        vitrine_webhooks::store::sqlite::enqueue_all(conn, &crate::webhooks::for_events(messages))
            .await
            .map_err(|error| StoreError::Backend(error.into()))?;
        Ok(())
    }

    /// Writes a webhook message (and its deliveries) in the caller's transaction; how many
    /// endpoints it goes to (none: nothing was written).
    async fn enqueue_webhook(
        conn: &mut SqliteConnection,
        message: &vitrine_webhooks::store::NewMessage,
    ) -> Result<usize, StoreError> {
        vitrine_webhooks::store::sqlite::enqueue(conn, message)
            .await
            .map_err(|error| StoreError::Backend(error.into()))
    }

    async fn first_delivery(
        conn: &mut SqliteConnection,
        consumer: &str,
        message_id: uuid::Uuid,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        Ok(
            vitrine_messaging::inbox::first_delivery_sqlite(conn, consumer, message_id, now)
                .await?,
        )
    }

    fn outbox_store(&self) -> Arc<dyn OutboxStore> {
        Arc::new(self.outbox.clone())
    }

    fn inbox_store(&self) -> vitrine_messaging::inbox::Inbox {
        vitrine_messaging::inbox::Inbox::Sqlite(self.pool.clone())
    }
}

impl_product_store!(SqliteStore, lock = "");
impl_work_store!(SqliteStore, lock = "");
