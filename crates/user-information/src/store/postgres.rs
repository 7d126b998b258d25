//! `CustomerStore` on PostgreSQL (production).

use std::sync::Arc;

use sqlx::{PgConnection, PgPool};
use vitrine_messaging::outbox::{OutboxMessage, OutboxStore, PgOutbox, enqueue_postgres};

use super::StoreError;
use super::shared::{Backend, impl_customer_store};

/// Migrations of the PostgreSQL schema, embedded in the binary.
/// This service's tables (`migrations/postgres`), the outbox and inbox, and the idempotency
/// keys, in one history.
pub static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| {
        vitrine_runtime::migrations::compose(&[
            &sqlx::migrate!("./migrations/postgres"),
            &vitrine_messaging::migrations::POSTGRES,
            &vitrine_platform::migrations::POSTGRES,
        ])
    });

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Brings the schema up to date; the migrations it applied (`version description`).
    pub async fn migrate(&self) -> anyhow::Result<Vec<String>> {
        Ok(vitrine_runtime::migrations::apply(&MIGRATOR, &self.pool).await?)
    }
}

impl Backend for PostgresStore {
    type Database = sqlx::Postgres;

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A plain transaction: the rows it reads to write are locked `FOR UPDATE`.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        Ok(vitrine_runtime::db::begin(&self.pool).await?)
    }

    /// The relay is woken by the outbox's `NOTIFY`.
    fn committed(&self) {}

    async fn enqueue(
        conn: &mut PgConnection,
        messages: &[OutboxMessage],
    ) -> Result<(), StoreError> {
        Ok(enqueue_postgres(conn, messages).await?)
    }

    fn outbox_store(&self) -> Arc<dyn OutboxStore> {
        Arc::new(PgOutbox::new(self.pool.clone()))
    }

    fn inbox_store(&self) -> vitrine_messaging::inbox::Inbox {
        vitrine_messaging::inbox::Inbox::Postgres(self.pool.clone())
    }
}

impl_customer_store!(PostgresStore, lock = " FOR UPDATE", share = " FOR SHARE");
