//! The products domain: catalog entries, their stock (a ledger of movements), and reservations
//! that hold stock for a while.
//!
//! Stock is kept as two counters on the product, `on_hand` and `reserved`, with
//! `available = on_hand - reserved`. The database enforces `0 <= reserved <= on_hand`, and every
//! change is a conditional update, so no interleaving of writers can oversell. `on_hand` always
//! equals the sum of the product's ledger; `reserved` always equals the sum of its pending
//! reservations' items (the conformance suite checks both).

use chrono::{DateTime, Utc};
use vitrine_kernel::Money;

vitrine_kernel::define_id!(
    /// Identifies a product.
    ProductId
);
vitrine_kernel::define_id!(
    /// Identifies a business customer selling products (a user-information customer id).
    SellerId
);
vitrine_kernel::define_id!(
    /// Identifies a business customer buying (a user-information customer id).
    BuyerId
);
vitrine_kernel::define_id!(
    /// Identifies a stock reservation.
    ReservationId
);
vitrine_kernel::define_id!(
    /// Identifies one entry of the stock ledger.
    MovementId
);

pub use vitrine_kernel::Text;

/// A seller's stock-keeping unit: 1-64 characters of ASCII letters (no accents), digits, `-`,
/// `_`, `.` and `/`, kept as given (SKUs are often case-sensitive codes printed on labels).
/// Surrounding spaces are dropped; any other whitespace is refused, as the OpenAPI pattern says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sku(String);

impl Sku {
    pub const MAX: usize = 64;

    pub fn parse(raw: &str) -> Result<Sku, String> {
        let raw = raw.trim_matches(' ');
        if raw.is_empty() {
            return Err("must not be blank".to_owned());
        }
        if raw.len() > Self::MAX {
            return Err(format!("must be at most {} characters", Self::MAX));
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        {
            return Err(
                "may contain only ASCII letters A-Z and a-z (no accents), digits 0-9, '-', '_', \
                 '.' and '/'"
                    .to_owned(),
            );
        }
        Ok(Sku(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A unit price: a non-negative amount in minor units (the kernel's `Currency` admits BRL only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price(Money);

impl Price {
    pub fn parse(money: Money) -> Result<Price, String> {
        if money.is_negative() {
            return Err("must not be negative".to_owned());
        }
        Ok(Price(money))
    }

    pub fn money(&self) -> Money {
        self.0
    }
}

/// A positive quantity of units, bounded so sums and products never overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i64);

impl Quantity {
    pub const MAX: i64 = 1_000_000_000;

    pub fn parse(raw: i64) -> Result<Quantity, String> {
        if raw < 1 {
            return Err("must be at least 1".to_owned());
        }
        if raw > Self::MAX {
            return Err(format!("must be at most {}", Self::MAX));
        }
        Ok(Quantity(raw))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// A non-zero change to `on_hand`, bounded like [`Quantity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta(i64);

impl Delta {
    pub fn parse(raw: i64) -> Result<Delta, String> {
        if raw == 0 {
            return Err("must not be zero".to_owned());
        }
        if raw.unsigned_abs() > Quantity::MAX.unsigned_abs() {
            return Err(format!("must be between -{0} and {0}", Quantity::MAX));
        }
        Ok(Delta(raw))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductStatus {
    Active,
    Inactive,
}

impl ProductStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
        }
    }

    pub fn parse(raw: &str) -> Result<ProductStatus, String> {
        match raw {
            "active" => Ok(Self::Active),
            "inactive" => Ok(Self::Inactive),
            _ => Err("must be one of active, inactive".to_owned()),
        }
    }
}

/// What a seller describes when listing a product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductDetails {
    pub name: Text,
    pub description: Option<Text>,
    pub category: Option<Text>,
    pub price: Price,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub seller_id: SellerId,
    pub sku: Sku,
    pub details: ProductDetails,
    pub initial_stock: i64,
}

/// The stock counters of a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stock {
    pub on_hand: i64,
    pub reserved: i64,
}

impl Stock {
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: ProductId,
    pub seller_id: SellerId,
    pub sku: Sku,
    pub details: ProductDetails,
    pub status: ProductStatus,
    pub stock: Stock,
    /// Incremented by every change, stock included: it is the ETag.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A partial update of a product (`PATCH`); `Some(None)` clears an optional field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductChanges {
    pub name: Option<Text>,
    pub description: Option<Option<Text>>,
    pub category: Option<Option<Text>>,
    pub price: Option<Price>,
    pub status: Option<ProductStatus>,
}

impl ProductChanges {
    pub fn is_empty(&self) -> bool {
        *self == ProductChanges::default()
    }

    pub fn apply_to(&self, current: &ProductDetails) -> ProductDetails {
        ProductDetails {
            name: self.name.clone().unwrap_or_else(|| current.name.clone()),
            description: self
                .description
                .clone()
                .unwrap_or_else(|| current.description.clone()),
            category: self
                .category
                .clone()
                .unwrap_or_else(|| current.category.clone()),
            price: self.price.unwrap_or(current.price),
        }
    }
}

/// Why `on_hand` moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MovementReason {
    /// The stock a product was created with.
    Initial,
    Restock,
    Adjustment,
    Loss,
    /// A committed reservation took the units out.
    Sale,
}

impl MovementReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Restock => "restock",
            Self::Adjustment => "adjustment",
            Self::Loss => "loss",
            Self::Sale => "sale",
        }
    }

    pub fn parse(raw: &str) -> Result<MovementReason, String> {
        match raw {
            "initial" => Ok(Self::Initial),
            "restock" => Ok(Self::Restock),
            "adjustment" => Ok(Self::Adjustment),
            "loss" => Ok(Self::Loss),
            "sale" => Ok(Self::Sale),
            _ => Err("must be one of restock, adjustment, loss".to_owned()),
        }
    }
}

/// A manual movement requested through the API (restock, adjustment, loss).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManualMovement {
    pub delta: Delta,
    pub reason: MovementReason,
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockMovement {
    pub id: MovementId,
    pub product_id: ProductId,
    pub delta: i64,
    pub reason: MovementReason,
    pub reservation_id: Option<ReservationId>,
    /// `on_hand` right after this movement.
    pub on_hand_after: i64,
    /// The token subject that made the movement (absent for system movements).
    pub actor: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationStatus {
    Pending,
    Committed,
    Released,
    Expired,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Committed => "committed",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }

    pub fn parse(raw: &str) -> Result<ReservationStatus, String> {
        match raw {
            "pending" => Ok(Self::Pending),
            "committed" => Ok(Self::Committed),
            "released" => Ok(Self::Released),
            "expired" => Ok(Self::Expired),
            _ => Err(format!("unknown reservation status {raw:?}")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservationItem {
    pub product_id: ProductId,
    pub quantity: Quantity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: ReservationId,
    /// The customer that reserved (absent when an admin reserved on nobody's behalf).
    pub buyer_id: Option<BuyerId>,
    pub status: ReservationStatus,
    /// Sorted by product id.
    pub items: Vec<ReservationItem>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A reservation to place: items with distinct products, sorted by product id (the order every
/// writer locks rows in, so concurrent reservations cannot deadlock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReservation {
    pub buyer_id: Option<BuyerId>,
    items: Vec<ReservationItem>,
    pub expires_at: DateTime<Utc>,
}

impl NewReservation {
    /// `Err(index)` names the first item whose product repeats an earlier one.
    pub fn new(
        buyer_id: Option<BuyerId>,
        items: Vec<ReservationItem>,
        expires_at: DateTime<Utc>,
    ) -> Result<NewReservation, usize> {
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = items.iter().position(|i| !seen.insert(i.product_id)) {
            return Err(dup);
        }
        let mut items = items;
        items.sort_by_key(|i| i.product_id.as_uuid());
        Ok(NewReservation {
            buyer_id,
            items,
            expires_at,
        })
    }

    pub fn items(&self) -> &[ReservationItem] {
        &self.items
    }
}

/// Why an item of a reservation could not be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortage {
    /// No such product (or it was deleted).
    Unknown,
    /// The product is inactive.
    Inactive,
    /// Fewer units are available than requested.
    Insufficient { available: i64 },
}

/// The state of a seller as products last heard it from user-information's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SellerStanding {
    Active,
    Suspended,
    Closed,
}

impl SellerStanding {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Closed => "closed",
        }
    }

    pub fn parse(raw: &str) -> Result<SellerStanding, String> {
        match raw {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            "closed" => Ok(Self::Closed),
            _ => Err(format!("unknown seller standing {raw:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_are_codes_not_prose() {
        assert_eq!(Sku::parse(" AB-12/x.9_ ").unwrap().as_str(), "AB-12/x.9_");
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("has space").is_err());
        assert!(Sku::parse(&"A".repeat(65)).is_err());
        let accented = Sku::parse("ção").unwrap_err();
        assert!(accented.contains("no accents"), "{accented}");
        assert!(
            Sku::parse("\tAB").is_err(),
            "only spaces are trimmed, as the pattern says"
        );
    }

    #[test]
    fn quantities_and_deltas_are_bounded() {
        assert!(Quantity::parse(0).is_err());
        assert!(Quantity::parse(-1).is_err());
        assert_eq!(Quantity::parse(3).unwrap().get(), 3);
        assert!(Quantity::parse(Quantity::MAX + 1).is_err());
        assert!(Delta::parse(0).is_err());
        assert_eq!(Delta::parse(-5).unwrap().get(), -5);
        assert!(Delta::parse(i64::MIN).is_err());
    }

    #[test]
    fn prices_are_non_negative() {
        let brl = vitrine_kernel::Currency::BRL;
        assert!(Price::parse(Money::new(-1, brl)).is_err());
        assert_eq!(
            Price::parse(Money::new(0, brl)).unwrap().money().amount(),
            0
        );
    }

    #[test]
    fn reservations_sort_items_and_refuse_repeats() {
        let (a, b) = (ProductId::new(), ProductId::new());
        let q = Quantity::parse(1).unwrap();
        let item = |product_id| ReservationItem {
            product_id,
            quantity: q,
        };
        let r = NewReservation::new(None, vec![item(b), item(a)], Utc::now()).unwrap();
        assert_eq!(r.items()[0].product_id, a);
        assert_eq!(
            NewReservation::new(None, vec![item(a), item(b), item(a)], Utc::now()),
            Err(2)
        );
    }
}
