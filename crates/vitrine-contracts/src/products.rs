//! What products publishes: catalog, stock and reservation events on its topic.
//!
//! Events carry ids, states and quantities; never customer data beyond the seller's id.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// CloudEvents `source` of everything products emits.
pub const SOURCE: &str = "vitrine.products";
/// The topic its events are published to.
pub const TOPIC: &str = "products-events";
/// The queue products consumes: the user-information events it reacts to (sellers suspended or
/// closed) and its own product events (cache invalidation).
pub const QUEUE: &str = "products";

/// The queue of products' own deferred work (batch parts, import chunks): commands, not
/// events, sent to it directly; in production its depth is what consumers scale on.
pub const WORK_QUEUE: &str = "products-work";

/// Command: run the next part of a batch.
pub const BATCH_PART: &str = "vitrine.products.batch.part.v1";
/// Command: create the products of one chunk of an import's lines.
pub const IMPORT_CHUNK: &str = "vitrine.products.import.chunk.v1";

/// `batch.part`: part `part` (from 1) of batch `batch_id` is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchPart {
    pub batch_id: Uuid,
    pub part: u32,
}

/// `import.chunk`: lines `first_line..=last_line` of import `import_id` are due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportChunk {
    pub import_id: Uuid,
    pub first_line: u32,
    pub last_line: u32,
}

pub const PRODUCT_CREATED: &str = "vitrine.products.product.created.v1";
pub const PRODUCT_UPDATED: &str = "vitrine.products.product.updated.v1";
pub const PRODUCT_DELETED: &str = "vitrine.products.product.deleted.v1";
pub const STOCK_CHANGED: &str = "vitrine.products.stock.changed.v1";
pub const RESERVATION_CREATED: &str = "vitrine.products.reservation.created.v1";
pub const RESERVATION_COMMITTED: &str = "vitrine.products.reservation.committed.v1";
pub const RESERVATION_RELEASED: &str = "vitrine.products.reservation.released.v1";
pub const RESERVATION_EXPIRED: &str = "vitrine.products.reservation.expired.v1";
pub const WEBHOOK_ATTEMPTS_EXHAUSTED: &str = "vitrine.products.webhook.attempts-exhausted.v1";
pub const WEBHOOK_ENDPOINT_DISABLED: &str = "vitrine.products.webhook.endpoint-disabled.v1";

/// Every event type, for subscription filters.
pub const EVENT_TYPES: [&str; 10] = [
    PRODUCT_CREATED,
    PRODUCT_UPDATED,
    PRODUCT_DELETED,
    STOCK_CHANGED,
    RESERVATION_CREATED,
    RESERVATION_COMMITTED,
    RESERVATION_RELEASED,
    RESERVATION_EXPIRED,
    WEBHOOK_ATTEMPTS_EXHAUSTED,
    WEBHOOK_ENDPOINT_DISABLED,
];

/// The events after which a cached product representation is stale.
pub const PRODUCT_CHANGES: [&str; 3] = [PRODUCT_UPDATED, PRODUCT_DELETED, STOCK_CHANGED];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProductStatus {
    Active,
    Inactive,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub amount: i64,
    pub currency: String,
}

/// `product.created` and `product.updated`: the product's catalog data after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductChanged {
    pub product_id: Uuid,
    pub seller_id: Uuid,
    pub sku: String,
    pub name: String,
    pub category: Option<String>,
    pub price: Price,
    pub status: ProductStatus,
    /// Names of the fields that changed (empty on `created`).
    #[serde(default)]
    pub changed: Vec<String>,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductDeleted {
    pub product_id: Uuid,
    pub seller_id: Uuid,
    pub version: i64,
}

/// Why a product's stock changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockCause {
    Initial,
    Restock,
    Adjustment,
    Loss,
    Reserved,
    Committed,
    Released,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockChanged {
    pub product_id: Uuid,
    pub seller_id: Uuid,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    pub cause: StockCause,
    pub version: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReservationStatus {
    Pending,
    Committed,
    Released,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservedItem {
    pub product_id: Uuid,
    pub quantity: i64,
}

/// Every `reservation.*` event: the reservation's state after the transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationChanged {
    pub reservation_id: Uuid,
    pub customer_id: Option<Uuid>,
    pub status: ReservationStatus,
    pub items: Vec<ReservedItem>,
    pub expires_at: String,
}

/// `webhook.attempts-exhausted`: a message failed every attempt of its schedule to an endpoint
/// (operators and the endpoint's owner should know; `resend` or `recover` sends it again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookAttemptsExhausted {
    pub endpoint_id: Uuid,
    /// The endpoint's owner: a customer id, or `admin`.
    pub tenant: String,
    pub message_id: Uuid,
}

/// `webhook.endpoint-disabled`: nothing more is delivered to the endpoint until it is enabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpointDisabled {
    pub endpoint_id: Uuid,
    pub tenant: String,
    pub reason: String,
}
