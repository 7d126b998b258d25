//! `CustomerStore` on SQLite (the embedded default): the shared SQL ([`super::shared`]) with
//! SQLite's transactions and outbox.

use std::sync::Arc;

use sqlx::{SqliteConnection, SqlitePool};
use vitrine_messaging::outbox::{OutboxMessage, OutboxStore, SqliteOutbox, enqueue_sqlite};

use super::StoreError;
use super::shared::{Backend, impl_customer_store};

/// Migrations of the SQLite schema, embedded in the binary.
/// This service's tables (`migrations/sqlite`), the outbox and inbox, and the idempotency
/// keys, in one history.
pub static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| {
        vitrine_runtime::migrations::compose(&[
            &sqlx::migrate!("./migrations/sqlite"),
            &vitrine_messaging::migrations::SQLITE,
            &vitrine_platform::migrations::SQLITE,
        ])
    });

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Shared with the relay, which writes wake after committing messages.
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
}

impl Backend for SqliteStore {
    type Database = sqlx::Sqlite;

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// `BEGIN IMMEDIATE` takes the write lock up front: two deferred transactions that both
    /// read and then write would otherwise fail with `SQLITE_BUSY` when upgrading.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    fn committed(&self) {
        self.outbox.wake();
    }

    async fn enqueue(
        conn: &mut SqliteConnection,
        messages: &[OutboxMessage],
    ) -> Result<(), StoreError> {
        Ok(enqueue_sqlite(conn, messages).await?)
    }

    fn outbox_store(&self) -> Arc<dyn OutboxStore> {
        Arc::new(self.outbox.clone())
    }

    fn inbox_store(&self) -> vitrine_messaging::inbox::Inbox {
        vitrine_messaging::inbox::Inbox::Sqlite(self.pool.clone())
    }
}

impl_customer_store!(SqliteStore, lock = "", share = "");
