//! What the analytics copy may read, in one place (the README reviews it). Both the extraction
//! role's column grants on PostgreSQL and the read-only views the embedded sync reads through
//! are generated from [`SOURCE_COLUMNS`], so a query for any other column (an e-mail, a CNPJ,
//! a legal name, an address line, a phone, a masked card or PIX key, a card holder's name) fails
//! instead of leaking. Payment secrets are not in these databases at all: they are in Vault.

/// The service a source table belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    UserInformation,
    Products,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Self::UserInformation => "user-information",
            Self::Products => "products",
        }
    }
}

/// How a column is stored, where the two backends differ (SQLite keeps ids as 16-byte blobs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Uuid,
    Other,
}

/// A table the extraction may read, and the only columns it may read from it.
#[derive(Debug)]
pub struct SourceTable {
    pub service: Service,
    pub table: &'static str,
    pub columns: &'static [(&'static str, Kind)],
}

use Kind::{Other, Uuid};

/// Every column the analytics copy may read. Left out on purpose: `customers.cnpj`,
/// `legal_name`, `trade_name`, `email`, `phone`, the address lines, district and postal code
/// (an 8-digit CEP can single out a street); `payment_methods.card_last4`, `card_exp_*`,
/// `card_holder_name`, `pix_masked_key`, `secret_path`; `products.description` (free text);
/// `stock_movements.actor` (who did it); and every table of audit, erasure, idempotency,
/// outbox, inbox and webhook bookkeeping.
pub const SOURCE_COLUMNS: &[SourceTable] = &[
    SourceTable {
        service: Service::UserInformation,
        table: "customers",
        columns: &[
            ("id", Uuid),
            ("status", Other),
            ("address_city", Other),
            ("address_state", Other),
            ("created_at", Other),
        ],
    },
    SourceTable {
        service: Service::UserInformation,
        table: "payment_methods",
        columns: &[
            ("id", Uuid),
            ("customer_id", Uuid),
            ("kind", Other),
            ("card_brand", Other),
            ("pix_key_type", Other),
            ("created_at", Other),
        ],
    },
    SourceTable {
        service: Service::Products,
        table: "products",
        columns: &[
            ("id", Uuid),
            ("seller_id", Uuid),
            ("sku", Other),
            ("name", Other),
            ("category", Other),
            ("price_amount", Other),
            ("price_currency", Other),
            ("status", Other),
            ("created_at", Other),
            ("deleted_at", Other),
        ],
    },
    SourceTable {
        service: Service::Products,
        table: "stock_movements",
        columns: &[
            ("id", Uuid),
            ("product_id", Uuid),
            ("delta", Other),
            ("reason", Other),
            ("reservation_id", Uuid),
            ("on_hand_after", Other),
            ("created_at", Other),
        ],
    },
    SourceTable {
        service: Service::Products,
        table: "reservations",
        columns: &[
            ("id", Uuid),
            ("buyer_id", Uuid),
            ("status", Other),
            ("expires_at", Other),
            ("created_at", Other),
            ("updated_at", Other),
        ],
    },
    SourceTable {
        service: Service::Products,
        table: "reservation_items",
        columns: &[
            ("reservation_id", Uuid),
            ("product_id", Uuid),
            ("quantity", Other),
        ],
    },
];

/// The source tables of one service.
pub fn tables_of(service: Service) -> impl Iterator<Item = &'static SourceTable> {
    SOURCE_COLUMNS.iter().filter(move |t| t.service == service)
}

/// Every table and column of the analytics database, as the sync creates them: a test holds
/// the database to exactly this list, so a column cannot be added without being reviewed here.
pub const ANALYTICS_COLUMNS: &[(&str, &[&str])] = &[
    (
        "dim_customers",
        &[
            "customer_id",
            "status",
            "state",
            "city",
            "registered_at",
            "registered_month",
        ],
    ),
    (
        "dim_payment_methods",
        &[
            "payment_method_id",
            "customer_id",
            "kind",
            "card_brand",
            "pix_key_type",
            "created_at",
        ],
    ),
    (
        "dim_products",
        &[
            "product_id",
            "seller_id",
            "sku",
            "name",
            "category",
            "status",
            "price_amount",
            "price_currency",
            "on_hand",
            "created_at",
        ],
    ),
    (
        "fact_stock_movements",
        &[
            "movement_id",
            "product_id",
            "delta",
            "reason",
            "reservation_id",
            "on_hand_after",
            "created_at",
            "created_day",
        ],
    ),
    (
        "fact_reservations",
        &[
            "reservation_id",
            "buyer_id",
            "status",
            "created_at",
            "closed_at",
            "expires_at",
            "created_day",
            "minutes_to_close",
        ],
    ),
    (
        "fact_reservation_items",
        &["reservation_id", "product_id", "quantity"],
    ),
    (
        "fact_price_history",
        &["as_of", "product_id", "price_amount", "price_currency"],
    ),
    (
        "sales",
        &[
            "day",
            "reservation_id",
            "seller_id",
            "category",
            "product_id",
            "quantity",
            "amount",
        ],
    ),
    (
        "sync_runs",
        &[
            "id",
            "cutoff",
            "started_at",
            "finished_at",
            "status",
            "row_counts",
        ],
    ),
];
