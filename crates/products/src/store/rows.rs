//! Row types shared by both backends and their conversion into domain values. A row that does
//! not convert (a value the domain rejects) is a backend error: the database was written by
//! something other than this code.

use chrono::{DateTime, Utc};
use uuid::Uuid;
use vitrine_kernel::{Currency, Money};

use super::StoreError;
use crate::domain::{
    BuyerId, MovementId, MovementReason, Price, Product, ProductDetails, ProductId, ProductStatus,
    Reservation, ReservationId, ReservationItem, ReservationStatus, SellerId, Sku, Stock,
    StockMovement, Text,
};

/// Columns of a product, in `ProductRow` order.
macro_rules! product_columns {
    () => {
        "id, seller_id, sku, name, description, category, price_amount, price_currency, status, \
         on_hand, reserved, version, created_at, updated_at"
    };
}
pub(super) use product_columns;

macro_rules! movement_columns {
    () => {
        "id, product_id, delta, reason, reservation_id, on_hand_after, actor, created_at"
    };
}
pub(super) use movement_columns;

macro_rules! reservation_columns {
    () => {
        "id, buyer_id, status, expires_at, created_at, updated_at"
    };
}
pub(super) use reservation_columns;

#[derive(Debug, sqlx::FromRow)]
pub(super) struct ProductRow {
    id: Uuid,
    seller_id: Uuid,
    sku: String,
    name: String,
    description: Option<String>,
    category: Option<String>,
    price_amount: i64,
    price_currency: String,
    status: String,
    on_hand: i64,
    reserved: i64,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn corrupt(what: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(anyhow::anyhow!("stored {what} is invalid: {why}"))
}

fn text(what: &str, raw: String) -> Result<Text, StoreError> {
    // Stored text was bounded on the way in; the bound here only guards against corruption.
    Text::parse_multiline(&raw, usize::MAX).map_err(|e| corrupt(what, e))
}

impl TryFrom<ProductRow> for Product {
    type Error = StoreError;

    fn try_from(row: ProductRow) -> Result<Self, StoreError> {
        let currency =
            Currency::parse(&row.price_currency).map_err(|e| corrupt("price_currency", e))?;
        Ok(Product {
            id: ProductId::from_uuid(row.id),
            seller_id: SellerId::from_uuid(row.seller_id),
            sku: Sku::parse(&row.sku).map_err(|e| corrupt("sku", e))?,
            details: ProductDetails {
                name: text("name", row.name)?,
                description: row
                    .description
                    .map(|d| text("description", d))
                    .transpose()?,
                category: row.category.map(|c| text("category", c)).transpose()?,
                price: Price::parse(Money::new(row.price_amount, currency))
                    .map_err(|e| corrupt("price", e))?,
            },
            status: ProductStatus::parse(&row.status).map_err(|e| corrupt("status", e))?,
            stock: Stock {
                on_hand: row.on_hand,
                reserved: row.reserved,
            },
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct MovementRow {
    id: Uuid,
    product_id: Uuid,
    delta: i64,
    reason: String,
    reservation_id: Option<Uuid>,
    on_hand_after: i64,
    actor: Option<String>,
    created_at: DateTime<Utc>,
}

impl TryFrom<MovementRow> for StockMovement {
    type Error = StoreError;

    fn try_from(row: MovementRow) -> Result<Self, StoreError> {
        Ok(StockMovement {
            id: MovementId::from_uuid(row.id),
            product_id: ProductId::from_uuid(row.product_id),
            delta: row.delta,
            reason: MovementReason::parse(&row.reason).map_err(|e| corrupt("reason", e))?,
            reservation_id: row.reservation_id.map(ReservationId::from_uuid),
            on_hand_after: row.on_hand_after,
            actor: row.actor,
            created_at: row.created_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct ReservationRow {
    pub(super) id: Uuid,
    buyer_id: Option<Uuid>,
    pub(super) status: String,
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct ItemRow {
    product_id: Uuid,
    quantity: i64,
}

/// A reservation from its row and its items' rows.
pub(super) fn reservation(
    row: ReservationRow,
    items: Vec<ItemRow>,
) -> Result<Reservation, StoreError> {
    let mut items = items
        .into_iter()
        .map(|item| {
            Ok(ReservationItem {
                product_id: ProductId::from_uuid(item.product_id),
                quantity: crate::domain::Quantity::parse(item.quantity)
                    .map_err(|e| corrupt("quantity", e))?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    items.sort_by_key(|i| i.product_id.as_uuid());
    Ok(Reservation {
        id: ReservationId::from_uuid(row.id),
        buyer_id: row.buyer_id.map(BuyerId::from_uuid),
        status: ReservationStatus::parse(&row.status).map_err(|e| corrupt("status", e))?,
        items,
        expires_at: row.expires_at,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// Availability of one product as a reservation sees it.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct AvailabilityRow {
    pub(super) status: String,
    pub(super) on_hand: i64,
    pub(super) reserved: i64,
    pub(super) deleted: bool,
}

pub(super) fn unique_as(error: sqlx::Error, field: &'static str) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate(field),
        _ => StoreError::from(error),
    }
}
