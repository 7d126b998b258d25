//! `/v1/customers`: DTOs (`CustomerIn`, `CustomerPatch`, `CustomerOut`), their mapping to the
//! domain, and the handlers.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use vitrine_kernel::{Cep, Cnpj, Email, Phone, Uf};
use vitrine_platform::http::{
    ApiError, AppJson, AppPath, AppQuery, Fields, IfMatch, Listed, PageOut, Principal, Problem,
    Role, etag,
};

use super::{AppState, authorize_customer, customer_id};
use crate::domain::{Address, Customer, CustomerChanges, CustomerDetails, CustomerStatus, Text};
use crate::store::CustomerFilter;

// Text bounds, generous for real Brazilian company data.
const NAME_MAX: usize = 200;
const STREET_MAX: usize = 200;
const NUMBER_MAX: usize = 20;
const COMPLEMENT_MAX: usize = 100;
const PLACE_MAX: usize = 100;

/// A customer to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerIn {
    /// Numeric or 2026 alphanumeric CNPJ, with or without mask (`12.ABC.345/01DE-35`); the
    /// check digits must match.
    #[schema(
        example = "12.ABC.345/01DE-35",
        pattern = "^ *([0-9A-Za-z]{14}|[0-9A-Za-z]{2}\\.[0-9A-Za-z]{3}\\.[0-9A-Za-z]{3}/[0-9A-Za-z]{4}-[0-9]{2}) *$"
    )]
    pub cnpj: String,
    #[schema(
        example = "Comercial Exemplo Ltda",
        min_length = 1,
        max_length = 200,
        pattern = "[^ ]"
    )]
    pub legal_name: String,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200, pattern = "[^ ]")]
    pub trade_name: Option<String>,
    #[schema(example = "compras@exemplo.com.br", format = Email, max_length = 254)]
    pub email: String,
    /// Brazilian phone in any common form; stored as E.164 (`+5511987654321`).
    #[serde(default)]
    #[schema(
        example = "(11) 98765-4321",
        min_length = 8,
        max_length = 25,
        pattern = "^[0-9 ()+.-]+$"
    )]
    pub phone: Option<String>,
    pub address: AddressIn,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressIn {
    #[schema(min_length = 1, max_length = 200, pattern = "[^ ]")]
    pub street: String,
    #[schema(min_length = 1, max_length = 20, pattern = "[^ ]")]
    pub number: String,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100, pattern = "[^ ]")]
    pub complement: Option<String>,
    #[schema(min_length = 1, max_length = 100, pattern = "[^ ]")]
    pub district: String,
    #[schema(min_length = 1, max_length = 100, pattern = "[^ ]")]
    pub city: String,
    /// Two-letter UF code (any case).
    #[schema(
        example = "SP",
        pattern = "^ *(AC|AL|AP|AM|BA|CE|DF|ES|GO|MA|MT|MS|MG|PA|PB|PR|PE|PI|RJ|RN|RS|RO|RR|SC|SP|SE|TO) *$"
    )]
    pub state: String,
    /// CEP, 8 digits with or without the dash.
    #[schema(
        example = "01310-100",
        pattern = "^ *([0-9]{8}|[0-9]{5}-[0-9]{3}|[0-9]{2}\\.[0-9]{3}-[0-9]{3}) *$"
    )]
    pub postal_code: String,
}

/// A partial update: send only what changes; `null` clears an optional field. `address` is
/// replaced as a whole. Only admins may change `status`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct CustomerPatch {
    #[schema(
        pattern = "^ *([0-9A-Za-z]{14}|[0-9A-Za-z]{2}\\.[0-9A-Za-z]{3}\\.[0-9A-Za-z]{3}/[0-9A-Za-z]{4}-[0-9]{2}) *$"
    )]
    pub cnpj: Option<String>,
    #[schema(min_length = 1, max_length = 200, pattern = "[^ ]")]
    pub legal_name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200, pattern = "[^ ]")]
    pub trade_name: Option<Option<String>>,
    #[schema(format = Email, max_length = 254)]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 8, max_length = 25, pattern = "^[0-9 ()+.-]+$")]
    pub phone: Option<Option<String>>,
    pub address: Option<AddressIn>,
    pub status: Option<StatusChange>,
}

/// Statuses a PATCH may set; closing is `DELETE`.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusChange {
    Active,
    Suspended,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerOut {
    pub id: Uuid,
    /// 14 uppercase characters, no mask.
    #[schema(example = "12ABC34501DE35")]
    pub cnpj: String,
    pub legal_name: String,
    pub trade_name: Option<String>,
    pub email: String,
    /// E.164.
    pub phone: Option<String>,
    pub address: AddressOut,
    pub status: StatusOut,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AddressOut {
    pub street: String,
    pub number: String,
    pub complement: Option<String>,
    pub district: String,
    pub city: String,
    pub state: String,
    /// 8 digits, no dash.
    pub postal_code: String,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusOut {
    Active,
    Suspended,
    Closed,
}

pub type CustomerList = PageOut<CustomerOut>;

impl Listed for CustomerOut {
    const PAGE_SCHEMA: &'static str = "CustomerList";
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListCustomersQuery {
    /// 1-100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (opaque).
    #[param(min_length = 1, max_length = 256, pattern = "^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
    /// Exact CNPJ, masked or not.
    #[param(
        pattern = "^ *([0-9A-Za-z]{14}|[0-9A-Za-z]{2}\\.[0-9A-Za-z]{3}\\.[0-9A-Za-z]{3}/[0-9A-Za-z]{4}-[0-9]{2}) *$"
    )]
    pub cnpj: Option<String>,
    /// `active`, `suspended` or `closed`.
    #[param(pattern = "^(active|suspended|closed)$")]
    pub status: Option<String>,
}

impl From<Customer> for CustomerOut {
    fn from(customer: Customer) -> Self {
        let CustomerDetails {
            cnpj,
            legal_name,
            trade_name,
            email,
            phone,
            address,
        } = customer.details;
        CustomerOut {
            id: customer.id.as_uuid(),
            cnpj: cnpj.as_str().to_owned(),
            legal_name: legal_name.as_str().to_owned(),
            trade_name: trade_name.map(|t| t.as_str().to_owned()),
            email: email.as_str().to_owned(),
            phone: phone.map(|p| p.as_str().to_owned()),
            address: AddressOut {
                street: address.street.as_str().to_owned(),
                number: address.number.as_str().to_owned(),
                complement: address.complement.map(|c| c.as_str().to_owned()),
                district: address.district.as_str().to_owned(),
                city: address.city.as_str().to_owned(),
                state: address.state.as_str().to_owned(),
                postal_code: address.postal_code.as_str().to_owned(),
            },
            status: match customer.status {
                CustomerStatus::Active => StatusOut::Active,
                CustomerStatus::Suspended => StatusOut::Suspended,
                CustomerStatus::Closed => StatusOut::Closed,
            },
            created_at: customer.created_at,
            updated_at: customer.updated_at,
        }
    }
}

fn text(fields: &mut Fields, field: &str, raw: &str, max: usize) -> Option<Text> {
    fields.check(field, Text::parse(raw, max))
}

fn optional_text(
    fields: &mut Fields,
    field: &str,
    raw: Option<&str>,
    max: usize,
) -> Option<Option<Text>> {
    fields.optional(field, raw, |raw| Text::parse(raw, max))
}

fn optional_phone(fields: &mut Fields, raw: Option<&str>) -> Option<Option<Phone>> {
    fields.optional("phone", raw, Phone::parse)
}

fn parse_address(fields: &mut Fields, input: &AddressIn) -> Option<Address> {
    let street = text(fields, "address.street", &input.street, STREET_MAX);
    let number = text(fields, "address.number", &input.number, NUMBER_MAX);
    let complement = optional_text(
        fields,
        "address.complement",
        input.complement.as_deref(),
        COMPLEMENT_MAX,
    );
    let district = text(fields, "address.district", &input.district, PLACE_MAX);
    let city = text(fields, "address.city", &input.city, PLACE_MAX);
    let state = fields.check("address.state", Uf::parse(&input.state));
    let postal_code = fields.check("address.postal_code", Cep::parse(&input.postal_code));
    Some(Address {
        street: street?,
        number: number?,
        complement: complement?,
        district: district?,
        city: city?,
        state: state?,
        postal_code: postal_code?,
    })
}

impl CustomerIn {
    fn into_details(self) -> Result<CustomerDetails, ApiError> {
        let input = self;
        let mut fields = Fields::new();
        let cnpj = fields.check("cnpj", Cnpj::parse(&input.cnpj));
        let legal_name = text(&mut fields, "legal_name", &input.legal_name, NAME_MAX);
        let trade_name = optional_text(
            &mut fields,
            "trade_name",
            input.trade_name.as_deref(),
            NAME_MAX,
        );
        let email = fields.check("email", Email::parse(&input.email));
        let phone = optional_phone(&mut fields, input.phone.as_deref());
        let address = parse_address(&mut fields, &input.address);
        fields.finish_with(|| {
            Some(CustomerDetails {
                cnpj: cnpj?,
                legal_name: legal_name?,
                trade_name: trade_name?,
                email: email?,
                phone: phone?,
                address: address?,
            })
        })
    }
}

impl CustomerPatch {
    fn into_changes(self, may_change_status: bool) -> Result<CustomerChanges, ApiError> {
        let mut fields = Fields::new();
        let mut changes = CustomerChanges::default();
        if let Some(raw) = &self.cnpj {
            changes.cnpj = fields.check("cnpj", Cnpj::parse(raw));
        }
        if let Some(raw) = &self.legal_name {
            changes.legal_name = text(&mut fields, "legal_name", raw, NAME_MAX);
        }
        if let Some(raw) = &self.trade_name {
            changes.trade_name = optional_text(&mut fields, "trade_name", raw.as_deref(), NAME_MAX);
        }
        if let Some(raw) = &self.email {
            changes.email = fields.check("email", Email::parse(raw));
        }
        if let Some(raw) = &self.phone {
            changes.phone = optional_phone(&mut fields, raw.as_deref());
        }
        if let Some(address) = &self.address {
            changes.address = parse_address(&mut fields, address);
        }
        if let Some(status) = self.status {
            if may_change_status {
                changes.status = Some(match status {
                    StatusChange::Active => CustomerStatus::Active,
                    StatusChange::Suspended => CustomerStatus::Suspended,
                });
            } else {
                fields.push("status", "only an admin may change the status");
            }
        }
        fields.finish()?;
        if changes.is_empty() {
            return Err(ApiError::invalid(
                "body",
                "send at least one field to change",
            ));
        }
        Ok(changes)
    }
}

/// The version an `If-Match` write must find: checked against the current version, which the
/// store then requires (compare-and-set), so a concurrent change still fails with 412.
async fn expected_version(
    state: &AppState,
    id: crate::domain::CustomerId,
    if_match: &IfMatch,
) -> Result<Option<i64>, ApiError> {
    if !if_match.has_tags() {
        return Ok(None);
    }
    let current = state.customers.get(id).await?;
    if_match.expect(current.version)
}

/// A single customer with its `ETag`.
fn customer_response(status: StatusCode, customer: Customer) -> Response {
    let tag = etag(customer.version);
    let location = format!("/v1/customers/{}", customer.id);
    let mut response = (
        status,
        [(header::ETAG, tag)],
        AppJson(CustomerOut::from(customer)),
    )
        .into_response();
    if status == StatusCode::CREATED
        && let Ok(value) = location.parse()
    {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Register a customer.
#[utoipa::path(
    post, path = "/v1/customers", tag = "customers",
    operation_id = "customers_create",
    request_body = CustomerIn,
    responses(
        (status = 201, description = "Registered", body = CustomerOut,
            headers(("Location" = String, description = "URL of the new customer"), ("ETag" = String))),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "CNPJ already registered (the detail names the customer that has it, and says when that customer is closed), or the same Idempotency-Key is in flight", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (one entry each)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    AppJson(input): AppJson<CustomerIn>,
) -> Result<Response, ApiError> {
    principal.require_any(&[Role::Admin])?;
    let details = input.into_details()?;
    let customer = state.customers.register(&details).await?;
    tracing::info!(customer_id = %customer.id, "customer registered");
    Ok(customer_response(StatusCode::CREATED, customer))
}

/// Read a customer.
#[utoipa::path(
    get, path = "/v1/customers/{id}", tag = "customers",
    operation_id = "customers_get",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = CustomerOut, headers(("ETag" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A role without access to customers (only `admin`, or the customer itself)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer, or not yours", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(id): AppPath<String>,
) -> Result<Response, ApiError> {
    let id = customer_id(&id)?;
    authorize_customer(&principal, id)?;
    let customer = state.customers.get(id).await?;
    Ok(customer_response(StatusCode::OK, customer))
}

/// List customers (admin).
#[utoipa::path(
    get, path = "/v1/customers", tag = "customers",
    operation_id = "customers_list",
    params(ListCustomersQuery),
    responses(
        (status = 200, body = CustomerList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    AppQuery(query): AppQuery<ListCustomersQuery>,
) -> Result<AppJson<CustomerList>, ApiError> {
    principal.require_any(&[Role::Admin])?;
    let mut fields = Fields::new();
    let page = fields.page(query.limit, query.cursor.as_deref());
    let filter = CustomerFilter {
        cnpj: query
            .cnpj
            .as_deref()
            .and_then(|c| fields.check("cnpj", Cnpj::parse(c))),
        status: query
            .status
            .as_deref()
            .and_then(|s| fields.check("status", CustomerStatus::parse(s))),
    };
    fields.finish()?;
    let customers = state
        .customers
        .list(&filter, page.limit, page.cursor.as_ref())
        .await?;
    Ok(AppJson(customers.into()))
}

/// Change a customer. Honours `If-Match`.
#[utoipa::path(
    patch, path = "/v1/customers/{id}", tag = "customers",
    operation_id = "customers_update",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "ETag from a previous read")),
    request_body = CustomerPatch,
    responses(
        (status = 200, body = CustomerOut, headers(("ETag" = String))),
        (status = 403, description = "A role without access to customers (only `admin`, or the customer itself)", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "CNPJ taken, or customer closed", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match does not match", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(id): AppPath<String>,
    if_match: IfMatch,
    AppJson(patch): AppJson<CustomerPatch>,
) -> Result<Response, ApiError> {
    let id = customer_id(&id)?;
    authorize_customer(&principal, id)?;
    let changes = patch.into_changes(principal.has(Role::Admin))?;
    let expected = expected_version(&state, id, &if_match).await?;
    let customer = state.customers.update(id, expected, &changes).await?;
    Ok(customer_response(StatusCode::OK, customer))
}

/// Close a customer: status becomes `closed`, every secret is destroyed, basic data is kept.
#[utoipa::path(
    delete, path = "/v1/customers/{id}", tag = "customers",
    operation_id = "customers_close",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses(
        (status = 204, description = "Closed, or already closed. Its secrets are destroyed now, or, if the secret store is unavailable, by a background worker as soon as it is back (no retry needed)"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match does not match the current ETag of a customer not yet closed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn close(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(id): AppPath<String>,
    if_match: IfMatch,
) -> Result<StatusCode, ApiError> {
    principal.require_any(&[Role::Admin])?;
    let id = customer_id(&id)?;
    // Closing is an end state: closing again (a retry of this request, whatever version its
    // If-Match names; a malformed one was refused by the extractor, as everywhere)
    // is the same success, and the erasure it started is already guaranteed.
    let current = state.customers.get(id).await?;
    if current.status == crate::domain::CustomerStatus::Closed {
        return Ok(StatusCode::NO_CONTENT);
    }
    // The same read answers If-Match (no second fetch).
    let expected = if_match.expect(current.version)?;
    state.customers.close(id, expected).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Service-to-service lookup (the HTTP alternative to the messaging request): the seller data
/// other services need, in the same shape as the messaging reply.
#[utoipa::path(
    get, path = "/internal/v1/customers/{id}/lookup", tag = "internal",
    operation_id = "customers_lookup",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Found", body = serde_json::Value,
            example = json!({"outcome": "found", "id": "01a2227f-e7ab-77a2-b3cd-9559341bb6c2", "cnpj": "12ABC34501DE35", "legal_name": "Comercial Exemplo Ltda", "status": "active", "version": 3})),
        (status = 403, description = "Not a `service` (or `admin`) token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn lookup(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(id): AppPath<String>,
) -> Result<AppJson<vitrine_contracts::user_information::CustomerLookupReply>, ApiError> {
    principal.require_any(&[Role::Service, Role::Admin])?;
    let customer = state.customers.get(customer_id(&id)?).await?;
    Ok(AppJson(crate::incoming::lookup_reply(&customer)))
}
