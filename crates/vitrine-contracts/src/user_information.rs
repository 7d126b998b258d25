//! What user-information publishes (events on its topic) and answers (requests on its queue).
//!
//! No payload ever carries a card number or a PIX key: payment-method events say only that a
//! method of some type was added or removed.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// CloudEvents `source` of everything user-information emits.
pub const SOURCE: &str = "vitrine.user-information";
/// The topic its events are published to.
pub const TOPIC: &str = "user-information-events";
/// The queue its requests and commands are sent to.
pub const QUEUE: &str = "user-information";

pub const CUSTOMER_REGISTERED: &str = "vitrine.user-information.customer.registered.v1";
pub const CUSTOMER_UPDATED: &str = "vitrine.user-information.customer.updated.v1";
pub const CUSTOMER_STATUS_CHANGED: &str = "vitrine.user-information.customer.status-changed.v1";
pub const PAYMENT_METHOD_ADDED: &str = "vitrine.user-information.payment-method.added.v1";
pub const PAYMENT_METHOD_REMOVED: &str = "vitrine.user-information.payment-method.removed.v1";

/// Request type: look a customer up by id.
pub const CUSTOMER_LOOKUP: &str = "vitrine.user-information.customer.lookup.v1";
/// Reply type to [`CUSTOMER_LOOKUP`].
pub const CUSTOMER_LOOKUP_REPLY: &str = "vitrine.user-information.customer.lookup.reply.v1";

/// Every event type, for subscription filters.
pub const EVENT_TYPES: [&str; 5] = [
    CUSTOMER_REGISTERED,
    CUSTOMER_UPDATED,
    CUSTOMER_STATUS_CHANGED,
    PAYMENT_METHOD_ADDED,
    PAYMENT_METHOD_REMOVED,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CustomerStatus {
    Active,
    Suspended,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRegistered {
    pub customer_id: Uuid,
    pub cnpj: String,
    pub legal_name: String,
    pub status: CustomerStatus,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerUpdated {
    pub customer_id: Uuid,
    /// Names of the fields that changed (`legal_name`, `address`, ...), never their values.
    pub changed: Vec<String>,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerStatusChanged {
    pub customer_id: Uuid,
    pub from: CustomerStatus,
    pub to: CustomerStatus,
    pub version: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentMethodType {
    Card,
    Pix,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMethodAdded {
    pub customer_id: Uuid,
    pub payment_method_id: Uuid,
    #[serde(rename = "type")]
    pub kind: PaymentMethodType,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMethodRemoved {
    pub customer_id: Uuid,
    pub payment_method_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerLookup {
    pub customer_id: Uuid,
}

/// The answer to a lookup: found with the seller-relevant data, or not found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CustomerLookupReply {
    Found {
        id: Uuid,
        cnpj: String,
        legal_name: String,
        status: CustomerStatus,
        /// The customer's version (the one its status events carry), so a projection can tell
        /// whether it is behind. Absent in replies from versions before it was added.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<i64>,
    },
    NotFound {
        id: Uuid,
    },
}
