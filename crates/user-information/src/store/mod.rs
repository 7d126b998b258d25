//! The `CustomerStore` port and its two adapters (SQLite for the embedded default, PostgreSQL for
//! production), one implementation written once over both ([`shared`]). Both pass one
//! conformance suite (`tests/suite/store_conformance.rs`).

mod erasures;
mod postgres;
mod rows;
mod shared;
mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vitrine_kernel::{Cnpj, Cursor, Page, PageLimit};

use crate::domain::{
    Customer, CustomerChanges, CustomerDetails, CustomerId, CustomerStatus, PaymentMethod,
    PaymentMethodId, SecretAccess,
};

pub use erasures::PendingErasure;
pub use postgres::{MIGRATOR as POSTGRES_MIGRATOR, PostgresStore};
pub use sqlite::{MIGRATOR as SQLITE_MIGRATOR, SqliteStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was violated; names the field (`cnpj`).
    #[error("{0} is already taken")]
    Duplicate(&'static str),
    /// The write was conditional on a version that is no longer current.
    #[error("version mismatch")]
    VersionMismatch,
    /// The customer is closed; nothing about it may change any more.
    #[error("customer is closed")]
    Closed,
    #[error(transparent)]
    Backend(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Backend(error.into())
    }
}

/// Filters of `GET /v1/customers`.
#[derive(Debug, Clone, Default)]
pub struct CustomerFilter {
    pub cnpj: Option<Cnpj>,
    pub status: Option<CustomerStatus>,
}

/// Persistence of customers, payment methods (masked views only) and the reveal audit trail.
///
/// Every write announces itself: the store builds the messages ([`crate::outgoing`]) inside the
/// write transaction from the state it read and wrote, and commits them to the outbox with the
/// change, so an announcement exists exactly when the change does (as products' stores do).
#[async_trait]
pub trait CustomerStore: Send + Sync + std::fmt::Debug {
    /// Inserts a new active customer. `Duplicate("cnpj")` if the CNPJ is registered.
    async fn insert_customer(
        &self,
        id: CustomerId,
        details: &CustomerDetails,
        now: DateTime<Utc>,
    ) -> Result<Customer, StoreError>;

    async fn get_customer(&self, id: CustomerId) -> Result<Option<Customer>, StoreError>;

    /// Customers in id (creation) order, after `cursor`.
    async fn list_customers(
        &self,
        filter: &CustomerFilter,
        limit: PageLimit,
        cursor: Option<&Cursor>,
    ) -> Result<Page<Customer>, StoreError>;

    /// Applies `changes` atomically, if the current version is `expected_version` (when given).
    /// A closed customer cannot be changed (`Closed`).
    async fn update_customer(
        &self,
        id: CustomerId,
        expected_version: Option<i64>,
        changes: &CustomerChanges,
        now: DateTime<Utc>,
    ) -> Result<Customer, StoreError>;

    /// Marks the customer closed (idempotent: an already closed customer is returned as it is,
    /// whatever `expected_version`) and deletes its payment-method rows in the same
    /// transaction, announcing both and recording that its secrets must be destroyed (a
    /// pending erasure); returns the customer and the removed methods.
    async fn close_customer(
        &self,
        id: CustomerId,
        expected_version: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<(Customer, Vec<PaymentMethod>), StoreError>;

    /// Inserts a payment method; fails with `Closed` when the customer is closed and `NotFound`
    /// when it does not exist, checked in the same statement as the insert.
    async fn insert_payment_method(&self, method: &PaymentMethod) -> Result<(), StoreError>;

    async fn get_payment_method(
        &self,
        customer: CustomerId,
        id: PaymentMethodId,
    ) -> Result<Option<PaymentMethod>, StoreError>;

    async fn list_payment_methods(
        &self,
        customer: CustomerId,
        limit: PageLimit,
        cursor: Option<&Cursor>,
    ) -> Result<Page<PaymentMethod>, StoreError>;

    /// Deletes `method`'s row (its id, of its customer) and announces it; `false` (and no
    /// message) if there was none.
    async fn delete_payment_method(&self, method: &PaymentMethod) -> Result<bool, StoreError>;

    async fn record_secret_access(&self, access: &SecretAccess) -> Result<(), StoreError>;

    /// The reveal audit trail of one payment method, oldest first.
    async fn secret_accesses(&self, id: PaymentMethodId) -> Result<Vec<SecretAccess>, StoreError>;

    /// Erasures due at `now`, oldest first, at most `max`.
    async fn due_erasures(
        &self,
        now: DateTime<Utc>,
        max: i64,
    ) -> Result<Vec<PendingErasure>, StoreError>;

    /// The customer's secrets are destroyed: its erasure is no longer pending.
    async fn erasure_done(&self, customer: CustomerId) -> Result<(), StoreError>;

    /// An erasure attempt failed with `error`; it is retried at `retry_at`.
    async fn erasure_failed(
        &self,
        customer: CustomerId,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The outbox of this database, for the relay.
    fn outbox(&self) -> std::sync::Arc<dyn vitrine_messaging::outbox::OutboxStore>;

    /// The inbox of this database, for housekeeping.
    fn inbox(&self) -> vitrine_messaging::inbox::Inbox;

    /// Readiness probe.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Shared by both backends: a closed customer is frozen; a stale If-Match is refused.
fn check_writable(current: &Customer, expected_version: Option<i64>) -> Result<(), StoreError> {
    if current.status == CustomerStatus::Closed {
        return Err(StoreError::Closed);
    }
    if expected_version.is_some_and(|v| v != current.version) {
        return Err(StoreError::VersionMismatch);
    }
    Ok(())
}
