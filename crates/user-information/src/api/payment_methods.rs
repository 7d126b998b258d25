//! `/v1/customers/{id}/payment-methods`: cards and PIX keys. Requests carry the full number or
//! key once; it goes straight to the secret store and only a masked view comes back. The full
//! value is returned only by the audited `/secret` endpoint, to the `payments` role.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use vitrine_kernel::{CardExpiry, CardNumber, PixKey, PixKeyType};
use vitrine_platform::http::{
    ApiError, AppJson, AppPath, AppQuery, Fields, Listed, PageOut, PageQuery, Principal, Problem,
    Role,
};
use vitrine_platform::secrets::SecretValue;

use super::{AppState, authorize_customer, customer_id};
use crate::domain::{MaskedInstrument, PaymentMethod, PaymentMethodId, Text};
use crate::service::NewPaymentMethod;

const HOLDER_MAX: usize = 100;

/// `Debug` that prints only the type name, for DTOs that carry card numbers or PIX keys, so
/// that no `{:?}` anywhere (logs, panics, test output) can print one.
macro_rules! redacted_debug {
    ($($name:ident),+) => {$(
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }
    )+};
}

redacted_debug!(CardIn, PixIn, PaymentSecretOut, CardSecretOut, PixSecretOut);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaymentMethodType {
    Card,
    Pix,
}

/// A payment method to add: `type` plus the matching object.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentMethodIn {
    /// Which of `card` and `pix` is required (the other must be absent).
    #[serde(rename = "type")]
    pub kind: PaymentMethodType,
    pub card: Option<CardIn>,
    pub pix: Option<PixIn>,
}

/// Card data. Security codes (`cvv`, `cvc`, `security_code`) are refused, never stored.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardIn {
    /// 12-19 digits, spaces or dashes allowed; the Luhn check digit must match.
    #[schema(
        example = "4111 1111 1111 1111",
        pattern = "^ *[0-9][0-9 -]{10,40}[0-9] *$"
    )]
    pub number: String,
    #[schema(min_length = 1, max_length = 100, pattern = "[^ ]")]
    pub holder_name: String,
    #[schema(minimum = 1, maximum = 12)]
    pub exp_month: u32,
    /// Not in the past.
    #[schema(example = 2030, minimum = 2000, maximum = 2100)]
    pub exp_year: u32,
    // Recognised only to be refused with a clear message; the value is never kept.
    #[serde(default)]
    #[schema(ignore)]
    cvv: Option<IgnoredAny>,
    #[serde(default)]
    #[schema(ignore)]
    cvc: Option<IgnoredAny>,
    #[serde(default)]
    #[schema(ignore)]
    security_code: Option<IgnoredAny>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PixIn {
    /// `cpf`, `cnpj`, `email`, `phone` or `evp`.
    #[schema(pattern = "^(cpf|cnpj|email|phone|evp)$")]
    pub key_type: String,
    /// The key, in the form its type requires (CPF and CNPJ with check digits).
    #[schema(min_length = 1, max_length = 254)]
    pub key: String,
}

/// A payment method as anyone but `payments` sees it: masked.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentMethodOut {
    pub id: Uuid,
    pub customer_id: Uuid,
    #[serde(rename = "type")]
    pub kind: PaymentMethodType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card: Option<CardOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pix: Option<PixOut>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardOut {
    /// `visa`, `mastercard`, `amex`, `elo`, `hipercard` or `other`.
    pub brand: String,
    pub last4: String,
    pub exp_month: u8,
    pub exp_year: u16,
    pub holder_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PixOut {
    pub key_type: String,
    pub masked_key: String,
}

pub type PaymentMethodList = PageOut<PaymentMethodOut>;

impl Listed for PaymentMethodOut {
    const PAGE_SCHEMA: &'static str = "PaymentMethodList";
}

/// The full secret, for the `payments` role only.
#[derive(Serialize, ToSchema)]
pub struct PaymentSecretOut {
    pub payment_method_id: Uuid,
    #[serde(rename = "type")]
    pub kind: PaymentMethodType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card: Option<CardSecretOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pix: Option<PixSecretOut>,
}

#[derive(Serialize, ToSchema)]
pub struct CardSecretOut {
    pub number: String,
    pub holder_name: String,
    pub exp_month: u8,
    pub exp_year: u16,
}

#[derive(Serialize, ToSchema)]
pub struct PixSecretOut {
    pub key_type: String,
    pub key: String,
}

impl From<PaymentMethod> for PaymentMethodOut {
    fn from(method: PaymentMethod) -> Self {
        let (kind, card, pix) = match method.instrument {
            MaskedInstrument::Card {
                brand,
                last4,
                exp_month,
                exp_year,
                holder_name,
            } => (
                PaymentMethodType::Card,
                Some(CardOut {
                    brand: brand.as_str().to_owned(),
                    last4,
                    exp_month,
                    exp_year,
                    holder_name: holder_name.as_str().to_owned(),
                }),
                None,
            ),
            MaskedInstrument::Pix {
                key_type,
                masked_key,
            } => (
                PaymentMethodType::Pix,
                None,
                Some(PixOut {
                    key_type: key_type.as_str().to_owned(),
                    masked_key,
                }),
            ),
        };
        PaymentMethodOut {
            id: method.id.as_uuid(),
            customer_id: method.customer_id.as_uuid(),
            kind,
            card,
            pix,
            created_at: method.created_at,
        }
    }
}

fn parse_card(
    fields: &mut Fields,
    card: &CardIn,
    today: chrono::NaiveDate,
) -> Option<NewPaymentMethod> {
    for (name, present) in [
        ("cvv", card.cvv.is_some()),
        ("cvc", card.cvc.is_some()),
        ("security_code", card.security_code.is_some()),
    ] {
        if present {
            fields.push(
                format!("card.{name}"),
                "security codes are never accepted; omit this field",
            );
        }
    }
    let number = fields.check("card.number", CardNumber::parse(&card.number));
    let holder = fields.check(
        "card.holder_name",
        Text::parse(&card.holder_name, HOLDER_MAX),
    );
    let expiry = match CardExpiry::new(card.exp_month, card.exp_year) {
        Ok(expiry) if expiry.is_expired_at(today) => {
            fields.push("card.exp_year", "the card has expired");
            None
        }
        Ok(expiry) => Some(expiry),
        Err(error) => {
            let field = if (1..=12).contains(&card.exp_month) {
                "card.exp_year"
            } else {
                "card.exp_month"
            };
            fields.push(field, error.to_string());
            None
        }
    };
    let (number, holder_name, expiry) = (number?, holder?, expiry?);
    Some(NewPaymentMethod {
        instrument: MaskedInstrument::Card {
            brand: number.brand(),
            last4: number.last4().to_owned(),
            exp_month: expiry.month(),
            exp_year: expiry.year(),
            holder_name,
        },
        secret: SecretValue::new(number.expose()),
    })
}

fn parse_pix(fields: &mut Fields, pix: &PixIn) -> Option<NewPaymentMethod> {
    let key_type = fields.check("pix.key_type", PixKeyType::parse(&pix.key_type))?;
    let key = fields.check("pix.key", PixKey::parse(key_type, &pix.key))?;
    Some(NewPaymentMethod {
        instrument: MaskedInstrument::Pix {
            key_type,
            masked_key: key.masked(),
        },
        secret: SecretValue::new(key.as_str()),
    })
}

impl PaymentMethodIn {
    fn into_new(self, today: chrono::NaiveDate) -> Result<NewPaymentMethod, ApiError> {
        let mut fields = Fields::new();
        let parsed = match (self.kind, &self.card, &self.pix) {
            (PaymentMethodType::Card, Some(card), None) => parse_card(&mut fields, card, today),
            (PaymentMethodType::Pix, None, Some(pix)) => parse_pix(&mut fields, pix),
            (PaymentMethodType::Card, None, _) => {
                fields.push("card", "is required when type is card");
                None
            }
            (PaymentMethodType::Pix, _, None) => {
                fields.push("pix", "is required when type is pix");
                None
            }
            (PaymentMethodType::Card, Some(_), Some(_)) => {
                fields.push("pix", "must be absent when type is card");
                None
            }
            (PaymentMethodType::Pix, Some(_), Some(_)) => {
                fields.push("card", "must be absent when type is pix");
                None
            }
        };
        fields.finish_with(|| parsed)
    }
}

fn method_id(raw: &str) -> Result<PaymentMethodId, ApiError> {
    PaymentMethodId::parse(raw).map_err(|_| ApiError::NotFound)
}

/// Add a card or PIX key.
#[utoipa::path(
    post, path = "/v1/customers/{id}/payment-methods", tag = "payment-methods",
    operation_id = "payment_methods_add",
    params(("id" = Uuid, Path)),
    request_body = PaymentMethodIn,
    responses(
        (status = 201, description = "Added; only the masked view is returned", body = PaymentMethodOut,
            headers(("Location" = String))),
        (status = 403, description = "A role without access to customers (only `admin`, or the customer itself)", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Customer closed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Luhn, brand, expiry or PIX format invalid; security code sent", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Secret store unavailable; nothing was stored", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn add(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(id): AppPath<String>,
    AppJson(input): AppJson<PaymentMethodIn>,
) -> Result<Response, ApiError> {
    let customer = customer_id(&id)?;
    authorize_customer(&principal, customer)?;
    let new = input.into_new(Utc::now().date_naive())?;
    let method = state.customers.add_payment_method(customer, new).await?;
    let location = format!("/v1/customers/{customer}/payment-methods/{}", method.id);
    let mut response =
        (StatusCode::CREATED, AppJson(PaymentMethodOut::from(method))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// List payment methods (masked).
#[utoipa::path(
    get, path = "/v1/customers/{id}/payment-methods", tag = "payment-methods",
    operation_id = "payment_methods_list",
    params(("id" = Uuid, Path), PageQuery),
    responses(
        (status = 200, body = PaymentMethodList),
        (status = 403, description = "A role without access to customers (only `admin`, or the customer itself)", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(id): AppPath<String>,
    AppQuery(query): AppQuery<PageQuery>,
) -> Result<AppJson<PaymentMethodList>, ApiError> {
    let customer = customer_id(&id)?;
    authorize_customer(&principal, customer)?;
    let mut fields = Fields::new();
    let page = fields.page(query.limit, query.cursor.as_deref());
    fields.finish()?;
    // 404 for unknown customers rather than an empty list.
    state.customers.get(customer).await?;
    let methods = state
        .customers
        .list_payment_methods(customer, page.limit, page.cursor.as_ref())
        .await?;
    Ok(AppJson(methods.into()))
}

/// Remove a payment method; its secret is destroyed.
#[utoipa::path(
    delete, path = "/v1/customers/{id}/payment-methods/{pm_id}", tag = "payment-methods",
    operation_id = "payment_methods_remove",
    params(("id" = Uuid, Path), ("pm_id" = Uuid, Path)),
    responses(
        (status = 204, description = "Removed and its secret destroyed"),
        (status = 403, description = "A role without access to customers (only `admin`, or the customer itself)", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    AppPath((id, pm_id)): AppPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let customer = customer_id(&id)?;
    authorize_customer(&principal, customer)?;
    state
        .customers
        .remove_payment_method(customer, method_id(&pm_id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reveal the full card number or PIX key (`payments` role; every call is audited).
#[utoipa::path(
    get, path = "/v1/customers/{id}/payment-methods/{pm_id}/secret", tag = "payment-methods",
    operation_id = "payment_methods_reveal",
    params(("id" = Uuid, Path), ("pm_id" = Uuid, Path)),
    responses(
        (status = 200, body = PaymentSecretOut, headers(("Cache-Control" = String, description = "no-store"))),
        (status = 403, description = "Not the payments role", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn reveal(
    State(state): State<AppState>,
    principal: Principal,
    AppPath((id, pm_id)): AppPath<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    principal.require_any(&[Role::Payments])?;
    let customer = customer_id(&id)?;
    let request_id = headers
        .get(vitrine_platform::http::REQUEST_ID)
        .and_then(|value| value.to_str().ok());
    let (method, secret) = state
        .customers
        .reveal(customer, method_id(&pm_id)?, &principal.subject, request_id)
        .await?;
    let body = match method.instrument {
        MaskedInstrument::Card {
            exp_month,
            exp_year,
            holder_name,
            ..
        } => PaymentSecretOut {
            payment_method_id: method.id.as_uuid(),
            kind: PaymentMethodType::Card,
            card: Some(CardSecretOut {
                number: secret.expose().to_owned(),
                holder_name: holder_name.as_str().to_owned(),
                exp_month,
                exp_year,
            }),
            pix: None,
        },
        MaskedInstrument::Pix { key_type, .. } => PaymentSecretOut {
            payment_method_id: method.id.as_uuid(),
            kind: PaymentMethodType::Pix,
            card: None,
            pix: Some(PixSecretOut {
                key_type: key_type.as_str().to_owned(),
                key: secret.expose().to_owned(),
            }),
        },
    };
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        AppJson(body),
    )
        .into_response())
}

/// One reveal of a payment secret: who, when, in which request.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretAccessOut {
    /// The token's subject that revealed it.
    #[schema(example = "ana@financeiro")]
    pub actor: String,
    pub accessed_at: DateTime<Utc>,
    /// The request's `X-Request-Id` (absent for reveals recorded before it was kept).
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SecretAccessList {
    /// Oldest first.
    pub items: Vec<SecretAccessOut>,
}

/// Who revealed this payment method's secret, and when (`admin` or `payments`); kept after the
/// method is removed.
#[utoipa::path(
    get, path = "/v1/customers/{id}/payment-methods/{pm_id}/secret-accesses", tag = "payment-methods",
    operation_id = "payment_methods_secret_accesses",
    params(("id" = Uuid, Path), ("pm_id" = Uuid, Path)),
    responses(
        (status = 200, body = SecretAccessList),
        (status = 403, description = "Not an admin or payments token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn secret_accesses(
    State(state): State<AppState>,
    principal: Principal,
    AppPath((id, pm_id)): AppPath<(String, String)>,
) -> Result<AppJson<SecretAccessList>, ApiError> {
    principal.require_any(&[Role::Admin, Role::Payments])?;
    let accesses = state
        .customers
        .secret_accesses(customer_id(&id)?, method_id(&pm_id)?)
        .await?;
    Ok(AppJson(SecretAccessList {
        items: accesses
            .into_iter()
            .map(|access| SecretAccessOut {
                actor: access.actor,
                accessed_at: access.accessed_at,
                request_id: access.request_id,
            })
            .collect(),
    }))
}
