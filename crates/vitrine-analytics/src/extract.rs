//! What each analytics table is filled with: one query per table over the source tables, in
//! SQL both backends run, reading only the columns of the allow-list (PostgreSQL refuses any
//! other to the extraction role; the embedded sync reads through views of those columns).
//! `{cutoff}` stands for the cut-off, as a literal of the backend's timestamp.

use crate::allow_list::Service;

/// How one analytics table is filled.
#[derive(Debug)]
pub struct Extract {
    pub table: &'static str,
    pub service: Service,
    /// The target columns, in the order the query yields them.
    pub columns: &'static [&'static str],
    pub query: &'static str,
}

/// In the order they are filled.
pub const EXTRACTS: &[Extract] = &[
    Extract {
        table: "dim_customers",
        service: Service::UserInformation,
        columns: &["customer_id", "status", "state", "city", "registered_at"],
        query: "SELECT id, status, address_state, address_city, created_at \
                FROM customers WHERE created_at < {cutoff}",
    },
    Extract {
        table: "dim_payment_methods",
        service: Service::UserInformation,
        columns: &[
            "payment_method_id",
            "customer_id",
            "kind",
            "card_brand",
            "pix_key_type",
            "created_at",
        ],
        query: "SELECT id, customer_id, kind, card_brand, pix_key_type, created_at \
                FROM payment_methods WHERE created_at < {cutoff}",
    },
    Extract {
        table: "dim_products",
        service: Service::Products,
        columns: &[
            "product_id",
            "seller_id",
            "sku",
            "name",
            "category",
            "status",
            "price_amount",
            "price_currency",
            "created_at",
        ],
        // A product deleted after the cut-off was still there at it.
        query: "SELECT id, seller_id, sku, name, category, \
                CASE WHEN deleted_at IS NOT NULL AND deleted_at < {cutoff} THEN 'deleted' \
                ELSE status END, price_amount, price_currency, created_at \
                FROM products WHERE created_at < {cutoff}",
    },
    Extract {
        table: "fact_stock_movements",
        service: Service::Products,
        columns: &[
            "movement_id",
            "product_id",
            "delta",
            "reason",
            "reservation_id",
            "on_hand_after",
            "created_at",
        ],
        query: "SELECT id, product_id, delta, reason, reservation_id, on_hand_after, created_at \
                FROM stock_movements WHERE created_at < {cutoff}",
    },
    Extract {
        table: "fact_reservations",
        service: Service::Products,
        columns: &[
            "reservation_id",
            "buyer_id",
            "status",
            "created_at",
            "closed_at",
            "expires_at",
        ],
        // A reservation leaves `pending` once, and that change stamps `updated_at`: one closed
        // after the cut-off was pending at it, which makes its status at the cut-off exact;
        // except that its expiry is its `expires_at`, however late the sweeper records it (the
        // service treats it as expired from then on): one past it at the cut-off is expired.
        query: "SELECT id, buyer_id, \
                CASE WHEN status <> 'pending' AND updated_at < {cutoff} THEN status \
                WHEN status IN ('pending', 'expired') AND expires_at < {cutoff} THEN 'expired' \
                ELSE 'pending' END, created_at, \
                CASE WHEN status <> 'pending' AND updated_at < {cutoff} THEN updated_at \
                WHEN status IN ('pending', 'expired') AND expires_at < {cutoff} THEN expires_at \
                END, expires_at FROM reservations WHERE created_at < {cutoff}",
    },
    Extract {
        table: "fact_reservation_items",
        service: Service::Products,
        columns: &["reservation_id", "product_id", "quantity"],
        query: "SELECT i.reservation_id, i.product_id, i.quantity FROM reservation_items i \
                JOIN reservations r ON r.id = i.reservation_id WHERE r.created_at < {cutoff}",
    },
];

/// Stock on hand at the cut-off: the last movement's `on_hand_after` (movement ids are
/// UUIDv7, so they order movements of the same instant).
pub const ON_HAND_AT_CUTOFF: &str = "UPDATE {schema}dim_products SET on_hand = COALESCE((\
     SELECT m.on_hand_after FROM {schema}fact_stock_movements m \
     WHERE m.product_id = {schema}dim_products.product_id \
     ORDER BY m.created_at DESC, m.movement_id DESC LIMIT 1), 0)";

/// This cut-off's prices (as read at the sync: the services keep no price history), added to
/// the history carried over from the previous snapshot, unless the history already reaches this
/// cut-off: a rerun keeps what the first sync of a cut-off recorded, and a backfill (an older
/// cut-off) would record today's prices under a past date, so it records none.
pub const PRICES_AT_CUTOFF: &str = "INSERT INTO {schema}fact_price_history \
     (as_of, product_id, price_amount, price_currency) \
     SELECT {cutoff}, product_id, price_amount, price_currency FROM {schema}dim_products \
     WHERE status <> 'deleted' AND NOT EXISTS \
     (SELECT 1 FROM {schema}fact_price_history h WHERE h.as_of >= {cutoff})";

/// `query` for a backend: the cut-off literal and the schema prefix (`name.` or nothing) in.
pub fn render(query: &str, cutoff_literal: &str, schema_prefix: &str) -> String {
    query
        .replace("{cutoff}", cutoff_literal)
        .replace("{schema}", schema_prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allow_list::{ANALYTICS_COLUMNS, tables_of};

    #[test]
    fn every_extract_fills_columns_of_the_analytics_allow_list() {
        for extract in EXTRACTS {
            let (_, allowed) = ANALYTICS_COLUMNS
                .iter()
                .find(|(table, _)| *table == extract.table)
                .unwrap_or_else(|| panic!("{} is not in the allow-list", extract.table));
            for column in extract.columns {
                assert!(allowed.contains(column), "{}.{column}", extract.table);
            }
            assert!(
                tables_of(extract.service).count() > 0,
                "{} reads a service with no allowed table",
                extract.table
            );
        }
    }
}
