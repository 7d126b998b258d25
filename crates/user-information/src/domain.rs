//! The user-information domain: business customers and their payment methods.
//!
//! Entities hold only parsed, valid values (kernel newtypes); they are never serialised to
//! clients, which see the DTOs of `api`. Card numbers and PIX keys never appear here: a payment
//! method carries its masked view and the path of its secret in the `SecretStore`.

use chrono::{DateTime, Utc};
use vitrine_kernel::{CardBrand, Cep, Cnpj, Email, Phone, PixKeyType, Uf};
use vitrine_platform::secrets::SecretPath;

vitrine_kernel::define_id!(
    /// Identifies a business customer.
    CustomerId
);
vitrine_kernel::define_id!(
    /// Identifies a payment method of a customer.
    PaymentMethodId
);

pub use vitrine_kernel::Text;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerStatus {
    Active,
    Suspended,
    /// Terminal: secrets destroyed, basic data kept for legal records.
    Closed,
}

impl CustomerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Closed => "closed",
        }
    }

    pub fn parse(raw: &str) -> Result<CustomerStatus, String> {
        match raw {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            "closed" => Ok(Self::Closed),
            _ => Err("must be one of active, suspended, closed".to_owned()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub street: Text,
    pub number: Text,
    pub complement: Option<Text>,
    pub district: Text,
    pub city: Text,
    pub state: Uf,
    pub postal_code: Cep,
}

/// The data a customer is registered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerDetails {
    pub cnpj: Cnpj,
    pub legal_name: Text,
    pub trade_name: Option<Text>,
    pub email: Email,
    pub phone: Option<Phone>,
    pub address: Address,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: CustomerId,
    pub details: CustomerDetails,
    pub status: CustomerStatus,
    /// Incremented by every write; the ETag.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A partial update. `Some(None)` clears an optional field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerChanges {
    pub cnpj: Option<Cnpj>,
    pub legal_name: Option<Text>,
    pub trade_name: Option<Option<Text>>,
    pub email: Option<Email>,
    pub phone: Option<Option<Phone>>,
    pub address: Option<Address>,
    pub status: Option<CustomerStatus>,
}

impl CustomerChanges {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The customer after these changes (the store persists exactly this).
    pub fn apply_to(&self, customer: &Customer) -> CustomerDetails {
        let mut details = customer.details.clone();
        if let Some(cnpj) = &self.cnpj {
            details.cnpj = cnpj.clone();
        }
        if let Some(legal_name) = &self.legal_name {
            details.legal_name = legal_name.clone();
        }
        if let Some(trade_name) = &self.trade_name {
            details.trade_name = trade_name.clone();
        }
        if let Some(email) = &self.email {
            details.email = email.clone();
        }
        if let Some(phone) = &self.phone {
            details.phone = phone.clone();
        }
        if let Some(address) = &self.address {
            details.address = address.clone();
        }
        details
    }
}

/// What may be shown of a payment method: never enough to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskedInstrument {
    Card {
        brand: CardBrand,
        last4: String,
        exp_month: u8,
        exp_year: u16,
        holder_name: Text,
    },
    Pix {
        key_type: PixKeyType,
        masked_key: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentMethod {
    pub id: PaymentMethodId,
    pub customer_id: CustomerId,
    pub instrument: MaskedInstrument,
    /// Where the full card number or PIX key lives in the `SecretStore`.
    pub secret_path: SecretPath,
    pub created_at: DateTime<Utc>,
}

/// One reveal of a payment secret: who, when, which (kept even after the method is removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretAccess {
    pub customer_id: CustomerId,
    pub payment_method_id: PaymentMethodId,
    pub actor: String,
    pub accessed_at: DateTime<Utc>,
    /// The revealing request's `X-Request-Id`, to find it in the logs.
    pub request_id: Option<String>,
}

/// `customers/<id>`: everything secret of one customer lives under here.
pub fn customer_secrets(customer: CustomerId) -> SecretPath {
    SecretPath::new(&["customers".to_owned(), customer.to_string()])
        .expect("UUID segments are valid secret path segments")
}

/// `customers/<id>/payment-methods/<id>`: one payment method's secret.
pub fn payment_method_secret(customer: CustomerId, method: PaymentMethodId) -> SecretPath {
    SecretPath::new(&[
        "customers".to_owned(),
        customer.to_string(),
        "payment-methods".to_owned(),
        method.to_string(),
    ])
    .expect("UUID segments are valid secret path segments")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_paths_nest_under_the_customer() {
        let customer = CustomerId::new();
        let method = payment_method_secret(customer, PaymentMethodId::new());
        assert!(method.starts_with(&customer_secrets(customer)));
    }
}
