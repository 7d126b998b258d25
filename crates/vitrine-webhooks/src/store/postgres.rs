//! `WebhookStore` on PostgreSQL.

use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::sql::{enqueue_all_sql, enqueue_sql, impl_webhook_store};
use super::{NewMessage, StoreError};

/// Writes `message` and its deliveries in the caller's transaction (the one of the change the
/// message announces); how many endpoints it goes to.
pub async fn enqueue(conn: &mut PgConnection, message: &NewMessage) -> Result<usize, StoreError> {
    enqueue_sql!(conn, message)
}

/// Writes `messages` and their deliveries in the caller's transaction, checking who listens
/// once per tenant and event type; how many deliveries it wrote.
pub async fn enqueue_all(
    conn: &mut PgConnection,
    messages: &[NewMessage],
) -> Result<usize, StoreError> {
    enqueue_all_sql!(conn, messages)
}

/// A PostgreSQL store type over a pool, with the SQL variants of `impl_webhook_store!`.
macro_rules! pg_store {
    ($(#[doc = $doc:literal])* $(#[cfg($cfg:meta)])? $name:ident, $($variant:tt)*) => {
        $(#[doc = $doc])*
        $(#[cfg($cfg)])?
        #[derive(Debug, Clone)]
        pub struct $name {
            pool: PgPool,
        }

        $(#[cfg($cfg)])?
        impl $name {
            pub fn new(pool: PgPool) -> Self {
                Self { pool }
            }

            fn pool(&self) -> &PgPool {
                &self.pool
            }

            async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
                Ok(vitrine_runtime::db::begin(&self.pool).await?)
            }
        }

        $(#[cfg($cfg)])?
        impl_webhook_store!($name, conn = PgConnection, $($variant)*);
    };
}

// `serialize_claims`: a transaction-scoped advisory lock taken by every claim (the key is
// arbitrary, unique to webhook claims), so claims run one at a time across dispatchers.
pg_store!(
    PgWebhookStore,
    claim_lock = " FOR UPDATE OF d SKIP LOCKED",
    serialize_claims = "SELECT pg_advisory_xact_lock(5703524931580151883)",
    row_lock = " FOR UPDATE"
);

pg_store!(
    /// Deliberately broken: claims without locking the candidate rows, so two dispatchers
    /// claiming at once can both take the same delivery. It exists only so the concurrency
    /// test can show that its checker catches double claims.
    #[cfg(feature = "testing")]
    UnlockedPgWebhookStore,
    claim_lock = "",
    serialize_claims = "",
    row_lock = " FOR UPDATE"
);

pg_store!(
    /// Deliberately broken: locks the rows it claims but does not serialise claims, so two
    /// dispatchers claiming in the same instant each count the other's leases as free and
    /// together exceed the per-endpoint limit. Only for the test that shows its checker
    /// catches that.
    #[cfg(feature = "testing")]
    UnserializedPgWebhookStore,
    claim_lock = " FOR UPDATE OF d SKIP LOCKED",
    serialize_claims = "",
    row_lock = " FOR UPDATE"
);
