//! Row shapes shared by both backends (same column names and Rust types) and their mapping to
//! domain entities. A row that no longer parses means the database was changed behind our back:
//! that is an error, never silently patched up.

use chrono::{DateTime, Utc};
use uuid::Uuid;
use vitrine_kernel::{CardBrand, Cep, Cnpj, Email, Phone, PixKeyType, Uf};
use vitrine_platform::secrets::SecretPath;

use super::StoreError;
use crate::domain::{
    Address, Customer, CustomerDetails, CustomerId, CustomerStatus, MaskedInstrument,
    PaymentMethod, PaymentMethodId, SecretAccess, Text,
};

/// The columns of [`CustomerRow`], for `concat!` into static SQL (sqlx 0.9 wants `&'static str`).
macro_rules! customer_columns {
    () => {
        "id, cnpj, legal_name, trade_name, email, phone, address_street, address_number, \
         address_complement, address_district, address_city, address_state, address_postal_code, \
         status, version, created_at, updated_at"
    };
}

/// The columns of [`PaymentMethodRow`].
macro_rules! payment_method_columns {
    () => {
        "id, customer_id, kind, card_brand, card_last4, card_exp_month, card_exp_year, \
         card_holder_name, pix_key_type, pix_masked_key, secret_path, created_at"
    };
}

pub(super) use {customer_columns, payment_method_columns};

#[derive(Debug, sqlx::FromRow)]
pub(super) struct CustomerRow {
    pub id: Uuid,
    pub cnpj: String,
    pub legal_name: String,
    pub trade_name: Option<String>,
    pub email: String,
    pub phone: Option<String>,
    pub address_street: String,
    pub address_number: String,
    pub address_complement: Option<String>,
    pub address_district: String,
    pub address_city: String,
    pub address_state: String,
    pub address_postal_code: String,
    pub status: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(anyhow::anyhow!("stored {what} does not parse: {error}"))
}

fn text(what: &str, raw: &str) -> Result<Text, StoreError> {
    // Stored text was validated on the way in; the bound here only guards parsing.
    Text::parse_multiline(raw, usize::MAX).map_err(|e| corrupt(what, e))
}

impl TryFrom<CustomerRow> for Customer {
    type Error = StoreError;

    fn try_from(row: CustomerRow) -> Result<Self, Self::Error> {
        let details = CustomerDetails {
            cnpj: Cnpj::parse(&row.cnpj).map_err(|e| corrupt("cnpj", e))?,
            legal_name: text("legal_name", &row.legal_name)?,
            trade_name: row
                .trade_name
                .as_deref()
                .map(|t| text("trade_name", t))
                .transpose()?,
            email: Email::parse(&row.email).map_err(|e| corrupt("email", e))?,
            phone: row
                .phone
                .as_deref()
                .map(Phone::parse)
                .transpose()
                .map_err(|e| corrupt("phone", e))?,
            address: Address {
                street: text("address_street", &row.address_street)?,
                number: text("address_number", &row.address_number)?,
                complement: row
                    .address_complement
                    .as_deref()
                    .map(|c| text("address_complement", c))
                    .transpose()?,
                district: text("address_district", &row.address_district)?,
                city: text("address_city", &row.address_city)?,
                state: Uf::parse(&row.address_state).map_err(|e| corrupt("address_state", e))?,
                postal_code: Cep::parse(&row.address_postal_code)
                    .map_err(|e| corrupt("address_postal_code", e))?,
            },
        };
        Ok(Customer {
            id: CustomerId::from_uuid(row.id),
            details,
            status: CustomerStatus::parse(&row.status).map_err(|e| corrupt("status", e))?,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct PaymentMethodRow {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub kind: String,
    pub card_brand: Option<String>,
    pub card_last4: Option<String>,
    pub card_exp_month: Option<i16>,
    pub card_exp_year: Option<i16>,
    pub card_holder_name: Option<String>,
    pub pix_key_type: Option<String>,
    pub pix_masked_key: Option<String>,
    pub secret_path: String,
    pub created_at: DateTime<Utc>,
}

/// The columns a payment method is stored as (the inverse of `TryFrom<PaymentMethodRow>`).
pub(super) struct PaymentMethodColumns<'a> {
    pub kind: &'static str,
    pub card_brand: Option<&'static str>,
    pub card_last4: Option<&'a str>,
    pub card_exp_month: Option<i16>,
    pub card_exp_year: Option<i16>,
    pub card_holder_name: Option<&'a str>,
    pub pix_key_type: Option<&'static str>,
    pub pix_masked_key: Option<&'a str>,
}

impl<'a> From<&'a MaskedInstrument> for PaymentMethodColumns<'a> {
    fn from(instrument: &'a MaskedInstrument) -> Self {
        match instrument {
            MaskedInstrument::Card {
                brand,
                last4,
                exp_month,
                exp_year,
                holder_name,
            } => Self {
                kind: "card",
                card_brand: Some(brand.as_str()),
                card_last4: Some(last4),
                card_exp_month: Some(i16::from(*exp_month)),
                card_exp_year: i16::try_from(*exp_year).ok(),
                card_holder_name: Some(holder_name.as_str()),
                pix_key_type: None,
                pix_masked_key: None,
            },
            MaskedInstrument::Pix {
                key_type,
                masked_key,
            } => Self {
                kind: "pix",
                card_brand: None,
                card_last4: None,
                card_exp_month: None,
                card_exp_year: None,
                card_holder_name: None,
                pix_key_type: Some(key_type.as_str()),
                pix_masked_key: Some(masked_key),
            },
        }
    }
}

fn brand(raw: &str) -> Result<CardBrand, StoreError> {
    [
        CardBrand::Visa,
        CardBrand::Mastercard,
        CardBrand::Amex,
        CardBrand::Elo,
        CardBrand::Hipercard,
        CardBrand::Other,
    ]
    .into_iter()
    .find(|b| b.as_str() == raw)
    .ok_or_else(|| corrupt("card_brand", raw))
}

impl TryFrom<PaymentMethodRow> for PaymentMethod {
    type Error = StoreError;

    fn try_from(row: PaymentMethodRow) -> Result<Self, Self::Error> {
        let missing = |column: &str| corrupt(column, "missing");
        let instrument = match row.kind.as_str() {
            "card" => MaskedInstrument::Card {
                brand: brand(
                    row.card_brand
                        .as_deref()
                        .ok_or_else(|| missing("card_brand"))?,
                )?,
                last4: row.card_last4.ok_or_else(|| missing("card_last4"))?,
                exp_month: row
                    .card_exp_month
                    .and_then(|m| u8::try_from(m).ok())
                    .ok_or_else(|| missing("card_exp_month"))?,
                exp_year: row
                    .card_exp_year
                    .and_then(|y| u16::try_from(y).ok())
                    .ok_or_else(|| missing("card_exp_year"))?,
                holder_name: text(
                    "card_holder_name",
                    row.card_holder_name
                        .as_deref()
                        .ok_or_else(|| missing("card_holder_name"))?,
                )?,
            },
            "pix" => MaskedInstrument::Pix {
                key_type: PixKeyType::parse(
                    row.pix_key_type
                        .as_deref()
                        .ok_or_else(|| missing("pix_key_type"))?,
                )
                .map_err(|e| corrupt("pix_key_type", e))?,
                masked_key: row
                    .pix_masked_key
                    .ok_or_else(|| missing("pix_masked_key"))?,
            },
            other => return Err(corrupt("kind", other)),
        };
        let segments: Vec<&str> = row.secret_path.split('/').collect();
        Ok(PaymentMethod {
            id: PaymentMethodId::from_uuid(row.id),
            customer_id: CustomerId::from_uuid(row.customer_id),
            instrument,
            secret_path: SecretPath::new(&segments).map_err(|e| corrupt("secret_path", e))?,
            created_at: row.created_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct SecretAccessRow {
    pub customer_id: Uuid,
    pub payment_method_id: Uuid,
    pub actor: String,
    pub accessed_at: DateTime<Utc>,
    pub request_id: Option<String>,
}

impl From<SecretAccessRow> for SecretAccess {
    fn from(row: SecretAccessRow) -> Self {
        SecretAccess {
            customer_id: CustomerId::from_uuid(row.customer_id),
            payment_method_id: PaymentMethodId::from_uuid(row.payment_method_id),
            actor: row.actor,
            accessed_at: row.accessed_at,
            request_id: row.request_id,
        }
    }
}

/// Maps a unique violation to `Duplicate(field)`, anything else to a backend error.
pub(super) fn unique_as(error: sqlx::Error, field: &'static str) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate(field),
        _ => StoreError::from(error),
    }
}
