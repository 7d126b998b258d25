//! The `ProductStore` port and its two adapters (SQLite for the embedded default, PostgreSQL for
//! production, with reads routed to a streaming replica). Both pass one conformance suite
//! (`tests/suite/store_conformance.rs`).
//!
//! Every write commits its outbox messages in the same transaction and returns the
//! [`ConsistencyToken`] of its commit, which a later read passes back as
//! [`Freshness::AtLeast`] to see that write even when served by the replica.

mod consistency;
mod postgres;
mod rows;
mod shared;
mod sqlite;
mod work;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;
use vitrine_kernel::{Cursor, Page, PageLimit};

use crate::domain::{
    ManualMovement, NewProduct, NewReservation, Product, ProductChanges, ProductId, ProductStatus,
    Reservation, ReservationId, ReservationStatus, SellerId, SellerStanding, Shortage,
    StockMovement,
};

pub use consistency::{ConsistencyToken, Freshness, ReplicaOptions};
pub use postgres::{MIGRATOR as POSTGRES_MIGRATOR, PostgresStore};
pub use sqlite::{MIGRATOR as SQLITE_MIGRATOR, SqliteStore};
pub use work::WorkStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was violated; names the field (`sku`).
    #[error("{0} is already taken")]
    Duplicate(&'static str),
    /// The write was conditional on a version that is no longer current.
    #[error("version mismatch")]
    VersionMismatch,
    /// The seller is suspended or closed: its products cannot be created or activated.
    #[error("the seller is {}", .0.as_str())]
    SellerNotActive(SellerStanding),
    /// The buyer is suspended or closed: it cannot reserve or commit stock.
    #[error("the buyer is {}", .0.as_str())]
    BuyerNotActive(SellerStanding),
    /// A movement would take `on_hand` below what is reserved.
    #[error("only {available} units are not reserved")]
    InsufficientStock { available: i64 },
    /// The product still has units held by pending reservations.
    #[error("{reserved} units are reserved")]
    StillReserved { reserved: i64 },
    /// Some items of a reservation cannot be held, and why.
    #[error("not enough stock")]
    Shortages(Vec<(ProductId, Shortage)>),
    /// The reservation is not in a state that allows this transition.
    #[error("the reservation is {}", .0.as_str())]
    Transition(ReservationStatus),
    #[error(transparent)]
    Backend(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Backend(error.into())
    }
}

/// A write's result and the token of its commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Written<T> {
    pub value: T,
    pub token: ConsistencyToken,
}

/// Filters of `GET /v1/products`.
#[derive(Debug, Clone, Default)]
pub struct ProductFilter {
    pub seller_id: Option<SellerId>,
    pub category: Option<String>,
    pub status: Option<ProductStatus>,
    /// Case-insensitive substring of the name.
    pub name_contains: Option<String>,
}

impl ProductFilter {
    /// The `LIKE` pattern of `name_contains` (lower-cased), its metacharacters matching
    /// themselves.
    pub(crate) fn name_pattern(&self) -> Option<String> {
        self.name_contains.as_ref().map(|q| {
            let escaped = q
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        })
    }
}

/// How far a projected seller version may run ahead of user-information's own before the
/// projection is deemed pinned by a bogus event and overwritten.
pub const ABSURD_VERSION_LEAD: i64 = 1000;

/// What a status event (or a reconciliation) from user-information did here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SellerUpdate {
    /// This message was handled before (inbox): nothing changed.
    Duplicate,
    /// An older event than one already applied: nothing changed.
    Stale,
    /// Applied; these products were made inactive.
    Applied { deactivated: Vec<ProductId> },
}

/// Persistence of the catalog, the stock ledger, reservations, and the seller projection.
#[async_trait]
pub trait ProductStore: Send + Sync + std::fmt::Debug {
    /// Inserts an active product with its initial stock (a ledger entry when non-zero).
    /// `Duplicate("sku")` if the seller already has the SKU; `SellerNotActive` if the seller is
    /// known here to be suspended or closed.
    async fn insert_product(
        &self,
        id: ProductId,
        new: &NewProduct,
        actor: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Written<Product>, StoreError>;

    /// [`Self::insert_product`] when this service's projection already knows the seller as
    /// active (from its status events, or from an earlier answer of user-information): the
    /// seller check and the insert are then one local transaction. `None`, with nothing
    /// written, when it does not (never heard of, or suspended or closed here: the projection
    /// may be the one that is wrong, so the caller asks user-information).
    async fn insert_product_for_known_seller(
        &self,
        id: ProductId,
        new: &NewProduct,
        actor: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<Written<Product>>, StoreError>;

    async fn get_product(
        &self,
        id: ProductId,
        freshness: Freshness,
    ) -> Result<Option<Product>, StoreError>;

    /// Products in id (creation) order, after `cursor`.
    async fn list_products(
        &self,
        filter: &ProductFilter,
        limit: PageLimit,
        cursor: Option<&Cursor>,
        freshness: Freshness,
    ) -> Result<Page<Product>, StoreError>;

    /// Applies `changes` if the current version is `expected_version` (when given).
    async fn update_product(
        &self,
        id: ProductId,
        expected_version: Option<i64>,
        changes: &ProductChanges,
        now: DateTime<Utc>,
    ) -> Result<Written<Product>, StoreError>;

    /// Deletes the product (its row stays for the ledger). `StillReserved` while pending
    /// reservations hold units of it.
    async fn delete_product(
        &self,
        id: ProductId,
        expected_version: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Written<Product>, StoreError>;

    /// Appends a ledger entry and moves `on_hand`; `InsufficientStock` if it would fall below
    /// `reserved`.
    async fn record_movement(
        &self,
        id: ProductId,
        movement: ManualMovement,
        actor: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Written<(StockMovement, Product)>, StoreError>;

    /// The ledger of one product, oldest first.
    async fn list_movements(
        &self,
        id: ProductId,
        limit: PageLimit,
        cursor: Option<&Cursor>,
        freshness: Freshness,
    ) -> Result<Page<StockMovement>, StoreError>;

    /// Holds every item or none: `Shortages` names each item that cannot be held.
    async fn reserve(
        &self,
        id: ReservationId,
        new: &NewReservation,
        now: DateTime<Utc>,
    ) -> Result<Written<Reservation>, StoreError>;

    async fn get_reservation(
        &self,
        id: ReservationId,
        freshness: Freshness,
    ) -> Result<Option<Reservation>, StoreError>;

    /// Moves a pending reservation to `target` (committed, released or expired), adjusting
    /// stock. Repeating the transition that already happened returns the reservation unchanged;
    /// any other state is `Transition(current)`. A pending reservation past its expiry is
    /// expired first, so it can no longer be committed.
    async fn finish_reservation(
        &self,
        id: ReservationId,
        target: ReservationStatus,
        actor: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Written<Reservation>, StoreError>;

    /// Pending reservations whose expiry has passed, oldest first.
    async fn due_reservations(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ReservationId>, StoreError>;

    /// Applies a seller status event (recorded in the inbox under `consumer`, in the same
    /// transaction): a suspended or closed seller's active products become inactive.
    async fn apply_seller_standing(
        &self,
        consumer: &str,
        message_id: Uuid,
        seller: SellerId,
        standing: SellerStanding,
        version: i64,
        now: DateTime<Utc>,
    ) -> Result<SellerUpdate, StoreError>;

    /// Sets a seller's standing from user-information's own answer (not an event), when that
    /// answer is at least as new as the projection, or when the projection's version is absurdly
    /// ahead of it (more than [`ABSURD_VERSION_LEAD`]: no real history moves that fast, so the
    /// row was pinned by a bad event). Records the check either way. A suspended or closed
    /// seller's active products become inactive, as with the event.
    async fn reconcile_seller(
        &self,
        seller: SellerId,
        standing: SellerStanding,
        version: i64,
        now: DateTime<Utc>,
    ) -> Result<SellerUpdate, StoreError>;

    /// Commits `messages` to the outbox on their own (events that announce no change of this
    /// store's rows: a webhook endpoint disabled, a message's attempts exhausted).
    async fn announce(
        &self,
        messages: &[vitrine_messaging::outbox::OutboxMessage],
    ) -> Result<(), StoreError>;

    /// Up to `max` sellers with active products, least recently reconciled first.
    async fn sellers_to_reconcile(&self, max: i64) -> Result<Vec<SellerId>, StoreError>;

    /// Records that `seller` was looked at without changing its standing (user-information
    /// does not know it, or its answer could not be applied), so it goes to the back of the
    /// line instead of holding the head of every round.
    async fn seller_checked(&self, seller: SellerId, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// A token at least as new as every write committed so far, for reads that must not see
    /// anything older than "now" (filling the cache). Zero when every read is fresh anyway.
    async fn current_position(&self) -> Result<ConsistencyToken, StoreError>;

    /// Whether `token` names a position this database has reached: a token ahead of it was not
    /// returned by any write, and honouring it would send reads hunting for a future.
    async fn admits(&self, token: ConsistencyToken) -> Result<bool, StoreError>;

    /// The outbox of this database, for the relay.
    fn outbox(&self) -> std::sync::Arc<dyn vitrine_messaging::outbox::OutboxStore>;

    /// The inbox of this database, for housekeeping.
    fn inbox(&self) -> vitrine_messaging::inbox::Inbox;

    /// Readiness probe of the primary.
    async fn ping(&self) -> Result<(), StoreError>;
}
