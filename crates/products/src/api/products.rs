//! `/v1/products` and the stock ledger: DTOs (`ProductIn`, `ProductPatch`, `ProductOut`,
//! `MovementIn`, `MovementOut`), their mapping to the domain, and the handlers.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use vitrine_kernel::{Currency, Money};
use vitrine_platform::cache::Representation;
use vitrine_platform::http::{
    ApiError, AppJson, AppPath, AppQuery, Fields, IfMatch, Listed, PageOut, PageQuery, Principal,
    Problem, Role, etag,
};

use super::{AppState, ReadAfter, token_header};
use crate::domain::{
    Delta, ManualMovement, MovementReason, NewProduct, Price, Product, ProductChanges,
    ProductDetails, ProductId, ProductStatus, SellerId, Sku, StockMovement, Text,
};
use crate::store::{ConsistencyToken, Freshness, ProductFilter};

const NAME_MAX: usize = 200;
const DESCRIPTION_MAX: usize = 5000;
const CATEGORY_MAX: usize = 100;
const SEARCH_MAX: usize = 100;

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyDto {
    /// Integer minor units (centavos); a price is never negative.
    #[schema(example = 1990, minimum = 0)]
    pub amount: i64,
    /// ISO 4217 code; only `BRL` is supported.
    #[schema(example = "BRL", pattern = "^BRL$")]
    pub currency: String,
}

/// A product to list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductIn {
    /// The selling customer (a user-information customer id); a `customer` may only use its own.
    #[schema(format = Uuid)]
    pub seller_id: String,
    /// Unique per seller: ASCII letters (no accents), digits, `-`, `_`, `.`, `/`; at most 64;
    /// surrounding spaces are dropped.
    #[schema(example = "CAFE-500G", pattern = "^ *[A-Za-z0-9._/-]{1,64} *$")]
    pub sku: String,
    #[schema(
        example = "Café torrado 500 g",
        min_length = 1,
        max_length = 200,
        pattern = "[^ ]"
    )]
    pub name: String,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 5000, pattern = "[^ ]")]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(
        example = "alimentos",
        min_length = 1,
        max_length = 100,
        pattern = "[^ ]"
    )]
    pub category: Option<String>,
    pub price: MoneyDto,
    /// Units on hand at creation (default 0); recorded in the ledger as `initial`.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub initial_stock: Option<i64>,
}

/// A partial update: send only what changes; `null` clears `description` or `category`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct ProductPatch {
    #[schema(min_length = 1, max_length = 200, pattern = "[^ ]")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 5000, pattern = "[^ ]")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 100, pattern = "[^ ]")]
    pub category: Option<Option<String>>,
    pub price: Option<MoneyDto>,
    /// `active` or `inactive`.
    #[schema(pattern = "^(active|inactive)$")]
    pub status: Option<String>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StockOut {
    pub on_hand: i64,
    pub reserved: i64,
    /// `on_hand - reserved`: what can still be reserved.
    pub available: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductOut {
    pub id: Uuid,
    pub seller_id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: Option<String>,
    pub category: Option<String>,
    pub price: MoneyDto,
    /// `active` or `inactive`.
    #[schema(example = "active")]
    pub status: String,
    pub stock: StockOut,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub type ProductList = PageOut<ProductOut>;

impl Listed for ProductOut {
    const PAGE_SCHEMA: &'static str = "ProductList";
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListProductsQuery {
    /// 1-100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (opaque).
    #[param(min_length = 1, max_length = 256, pattern = "^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
    #[param(format = Uuid)]
    pub seller_id: Option<String>,
    /// Exact category.
    #[param(min_length = 1, max_length = 100, pattern = "[^ ]")]
    pub category: Option<String>,
    /// `active` or `inactive`.
    #[param(pattern = "^(active|inactive)$")]
    pub status: Option<String>,
    /// Case-insensitive part of the name (the embedded SQLite database folds ASCII letters
    /// only: there `café` finds `Café` but not `CAFÉ`; PostgreSQL folds every letter).
    #[param(min_length = 1, max_length = 100, pattern = "[^ ]")]
    pub q: Option<String>,
}

/// A manual stock movement.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MovementIn {
    /// Non-zero; negative removes units (never below what is reserved).
    #[schema(example = 25, minimum = -1_000_000_000, maximum = 1_000_000_000)]
    pub delta: i64,
    /// `restock`, `adjustment` or `loss`.
    #[schema(example = "restock", pattern = "^(restock|adjustment|loss)$")]
    pub reason: String,
}

/// One ledger entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct MovementOut {
    pub id: Uuid,
    pub product_id: Uuid,
    pub delta: i64,
    /// `initial`, `restock`, `adjustment`, `loss`, or `sale` (a committed reservation).
    pub reason: String,
    pub reservation_id: Option<Uuid>,
    pub on_hand_after: i64,
    pub created_at: DateTime<Utc>,
}

pub type MovementList = PageOut<MovementOut>;

impl Listed for MovementOut {
    const PAGE_SCHEMA: &'static str = "MovementList";
}

impl From<Product> for ProductOut {
    fn from(product: Product) -> Self {
        let price = product.details.price.money();
        let available = product.stock.available();
        ProductOut {
            id: product.id.as_uuid(),
            seller_id: product.seller_id.as_uuid(),
            sku: product.sku.as_str().to_owned(),
            name: product.details.name.as_str().to_owned(),
            description: product.details.description.map(|d| d.as_str().to_owned()),
            category: product.details.category.map(|c| c.as_str().to_owned()),
            price: MoneyDto {
                amount: price.amount(),
                currency: price.currency().as_str().to_owned(),
            },
            status: product.status.as_str().to_owned(),
            stock: StockOut {
                on_hand: product.stock.on_hand,
                reserved: product.stock.reserved,
                available,
            },
            created_at: product.created_at,
            updated_at: product.updated_at,
        }
    }
}

impl From<StockMovement> for MovementOut {
    fn from(movement: StockMovement) -> Self {
        MovementOut {
            id: movement.id.as_uuid(),
            product_id: movement.product_id.as_uuid(),
            delta: movement.delta,
            reason: movement.reason.as_str().to_owned(),
            reservation_id: movement.reservation_id.map(|r| r.as_uuid()),
            on_hand_after: movement.on_hand_after,
            created_at: movement.created_at,
        }
    }
}

fn text(fields: &mut Fields, field: &str, raw: &str, max: usize) -> Option<Text> {
    fields.check(field, Text::parse(raw, max))
}

fn optional_category(fields: &mut Fields, raw: Option<&str>) -> Option<Option<Text>> {
    fields.optional("category", raw, |raw| Text::parse(raw, CATEGORY_MAX))
}

/// Descriptions may span lines.
fn optional_description(fields: &mut Fields, raw: Option<&str>) -> Option<Option<Text>> {
    fields.optional("description", raw, |raw| {
        Text::parse_multiline(raw, DESCRIPTION_MAX)
    })
}

fn price(fields: &mut Fields, input: &MoneyDto) -> Option<Price> {
    let currency = fields.check("price.currency", Currency::parse(&input.currency))?;
    fields.check(
        "price.amount",
        Price::parse(Money::new(input.amount, currency)),
    )
}

impl ProductIn {
    pub(crate) fn into_new_product(self) -> Result<NewProduct, ApiError> {
        let mut fields = Fields::new();
        let seller_id = fields.check("seller_id", SellerId::parse(&self.seller_id));
        let sku = fields.check("sku", Sku::parse(&self.sku));
        let name = text(&mut fields, "name", &self.name, NAME_MAX);
        let description = optional_description(&mut fields, self.description.as_deref());
        let category = optional_category(&mut fields, self.category.as_deref());
        let price = price(&mut fields, &self.price);
        let initial_stock = self.initial_stock.unwrap_or(0);
        if !(0..=crate::domain::Quantity::MAX).contains(&initial_stock) {
            fields.push(
                "initial_stock",
                format!("must be between 0 and {}", crate::domain::Quantity::MAX),
            );
        }
        fields.finish_with(|| {
            Some(NewProduct {
                seller_id: seller_id?,
                sku: sku?,
                details: ProductDetails {
                    name: name?,
                    description: description?,
                    category: category?,
                    price: price?,
                },
                initial_stock,
            })
        })
    }
}

impl ProductPatch {
    fn into_changes(self) -> Result<ProductChanges, ApiError> {
        let mut fields = Fields::new();
        let mut changes = ProductChanges::default();
        if let Some(raw) = &self.name {
            changes.name = text(&mut fields, "name", raw, NAME_MAX);
        }
        if let Some(raw) = &self.description {
            changes.description = optional_description(&mut fields, raw.as_deref());
        }
        if let Some(raw) = &self.category {
            changes.category = optional_category(&mut fields, raw.as_deref());
        }
        if let Some(input) = &self.price {
            changes.price = price(&mut fields, input);
        }
        if let Some(raw) = &self.status {
            changes.status = fields.check("status", ProductStatus::parse(raw));
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

/// The filters of `GET /v1/products` (and of a batch, whose fields are named under
/// `prefix`), errors collected into `fields`.
pub(crate) fn product_filter(
    fields: &mut Fields,
    prefix: &str,
    seller_id: Option<&str>,
    category: Option<&str>,
    status: Option<&str>,
    q: Option<&str>,
) -> ProductFilter {
    ProductFilter {
        seller_id: seller_id
            .and_then(|raw| fields.check(&format!("{prefix}seller_id"), SellerId::parse(raw))),
        category: category
            .and_then(|raw| text(fields, &format!("{prefix}category"), raw, CATEGORY_MAX))
            .map(|c| c.as_str().to_owned()),
        status: status
            .and_then(|raw| fields.check(&format!("{prefix}status"), ProductStatus::parse(raw))),
        name_contains: q
            .and_then(|raw| text(fields, &format!("{prefix}q"), raw, SEARCH_MAX))
            .map(|q| q.as_str().to_owned()),
    }
}

/// One product of an import, parsed and validated exactly as the body of `POST /v1/products`:
/// the new product, or each problem as (field, message), the field `None` when the line is not
/// a JSON object at all.
pub(crate) fn parse_product(line: &[u8]) -> Result<NewProduct, Vec<(Option<String>, String)>> {
    let problems = |error: ApiError| match error {
        ApiError::Validation(errors) => errors
            .into_iter()
            .map(|e| match e.field.as_str() {
                "body" => (None, format!("the line {}", e.message)),
                _ => (Some(e.field), e.message),
            })
            .collect(),
        ApiError::BadRequest(message) => {
            vec![(None, message.replace("the body", "the line"))]
        }
        other => vec![(None, other.to_string())],
    };
    vitrine_platform::http::parse_json::<ProductIn>(line)
        .map_err(problems)?
        .into_new_product()
        .map_err(problems)
}

/// Parses a product id from the path; anything that is not one is simply not found.
fn product_id(raw: &str) -> Result<ProductId, ApiError> {
    ProductId::parse(raw).map_err(|_| ApiError::NotFound)
}

/// API.md: admins manage every product, a customer only those it sells (others are 404, so
/// other tenants' ids are not confirmed); other roles may only read.
fn authorize_seller(principal: &Principal, product: &Product) -> Result<(), ApiError> {
    if principal.owns_or_admin(product.seller_id.as_uuid()) {
        Ok(())
    } else if principal.has(Role::Customer) {
        Err(ApiError::NotFound)
    } else {
        Err(ApiError::Forbidden)
    }
}

/// A single product with its `ETag` (and the write's `Consistency-Token`, if it was written).
fn product_response(
    status: StatusCode,
    product: Product,
    token: Option<ConsistencyToken>,
) -> Response {
    let tag = etag(product.version);
    let location = format!("/v1/products/{}", product.id);
    let mut response = (
        status,
        [(header::ETAG, tag)],
        AppJson(ProductOut::from(product)),
    )
        .into_response();
    let headers = response.headers_mut();
    if let Some(token) = token {
        let (name, value) = token_header(token);
        headers.insert(name, value);
    }
    if status == StatusCode::CREATED
        && let Ok(value) = location.parse()
    {
        headers.insert(header::LOCATION, value);
    }
    response
}

/// The product a write is about, read from the primary (a write must not be refused because
/// the replica has not seen the product yet), with the caller's right to manage it checked.
async fn managed_product(
    state: &AppState,
    principal: &Principal,
    id: ProductId,
) -> Result<Product, ApiError> {
    let product = state.catalog.get(id, Freshness::Primary).await?;
    authorize_seller(principal, &product)?;
    Ok(product)
}

/// List a product.
#[utoipa::path(
    post, path = "/v1/products", tag = "products",
    operation_id = "products_create",
    request_body = ProductIn,
    responses(
        (status = 201, description = "Listed", body = ProductOut,
            headers(("Location" = String), ("ETag" = String),
                    ("Consistency-Token" = String, description = "Send it back on reads to see this write"))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin, or a customer listing for another seller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The seller already has this SKU, or the same Idempotency-Key is in flight", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or the seller is unknown, suspended or closed (`seller_id`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "user-information did not answer in time; see Retry-After", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    AppJson(input): AppJson<ProductIn>,
) -> Result<Response, ApiError> {
    principal.require_any(&[Role::Admin, Role::Customer])?;
    let new = input.into_new_product()?;
    if !principal.owns_or_admin(new.seller_id.as_uuid()) {
        return Err(ApiError::Forbidden);
    }
    let written = state.catalog.create(&new, &principal.subject).await?;
    tracing::info!(product_id = %written.value.id, seller_id = %new.seller_id, "product listed");
    Ok(product_response(
        StatusCode::CREATED,
        written.value,
        Some(written.token),
    ))
}

/// Read a product (possibly from the cache, unless `Consistency-Token` is sent).
#[utoipa::path(
    get, path = "/v1/products/{id}", tag = "products",
    operation_id = "products_get",
    params(("id" = Uuid, Path),
           ("Consistency-Token" = Option<String>, Header, description = "From a write: the read is at least as new as it")),
    responses(
        (status = 200, body = ProductOut, headers(("ETag" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A Consistency-Token no write returned (malformed, or ahead of every write)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    _principal: Principal,
    ReadAfter(freshness): ReadAfter,
    AppPath(id): AppPath<String>,
) -> Result<Response, ApiError> {
    let id = product_id(&id)?;
    let cache = state.catalog.cache();
    // A read carrying a token goes to the database; any other may be answered from memory.
    let remembered = freshness == Freshness::Any;
    if remembered && let Some(hit) = cache.representation(id) {
        return Ok(hit.into_response());
    }
    let ticket = cache.ticket();
    let product = state.catalog.get(id, freshness).await?;
    let representation = Representation::json(etag(product.version), &ProductOut::from(product));
    if remembered {
        cache.keep(ticket, id, representation.clone());
    }
    Ok(representation.into_response())
}

/// List products.
#[utoipa::path(
    get, path = "/v1/products", tag = "products",
    operation_id = "products_list",
    params(ListProductsQuery,
           ("Consistency-Token" = Option<String>, Header, description = "From a write: the list is at least as new as it")),
    responses(
        (status = 200, body = ProductList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    _principal: Principal,
    ReadAfter(freshness): ReadAfter,
    AppQuery(query): AppQuery<ListProductsQuery>,
) -> Result<AppJson<ProductList>, ApiError> {
    let mut fields = Fields::new();
    let page = fields.page(query.limit, query.cursor.as_deref());
    let filter = product_filter(
        &mut fields,
        "",
        query.seller_id.as_deref(),
        query.category.as_deref(),
        query.status.as_deref(),
        query.q.as_deref(),
    );
    fields.finish()?;
    let found = state
        .catalog
        .list(&filter, page.limit, page.cursor.as_ref(), freshness)
        .await?;
    Ok(AppJson(found.into()))
}

/// Change a product (admin or its seller).
#[utoipa::path(
    patch, path = "/v1/products/{id}", tag = "products",
    operation_id = "products_update",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "ETag from a read; 412 if it changed since")),
    request_body = ProductPatch,
    responses(
        (status = 200, body = ProductOut, headers(("ETag" = String), ("Consistency-Token" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Activating a product of a suspended or closed seller", body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    if_match: IfMatch,
    AppPath(id): AppPath<String>,
    AppJson(patch): AppJson<ProductPatch>,
) -> Result<Response, ApiError> {
    let id = product_id(&id)?;
    let current = managed_product(&state, &principal, id).await?;
    let changes = patch.into_changes()?;
    let expected = if_match.expect(current.version)?;
    let written = state.catalog.update(id, expected, &changes).await?;
    Ok(product_response(
        StatusCode::OK,
        written.value,
        Some(written.token),
    ))
}

/// Delete a product (admin or its seller); refused while units are reserved.
#[utoipa::path(
    delete, path = "/v1/products/{id}", tag = "products",
    operation_id = "products_delete",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses(
        (status = 204, description = "Deleted", headers(("Consistency-Token" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Pending reservations hold units", body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    if_match: IfMatch,
    AppPath(id): AppPath<String>,
) -> Result<Response, ApiError> {
    let id = product_id(&id)?;
    let current = managed_product(&state, &principal, id).await?;
    let expected = if_match.expect(current.version)?;
    let written = state.catalog.delete(id, expected).await?;
    Ok((StatusCode::NO_CONTENT, [token_header(written.token)]).into_response())
}

/// Record a stock movement (admin or the seller).
#[utoipa::path(
    post, path = "/v1/products/{id}/stock-movements", tag = "stock",
    operation_id = "stock_movements_create",
    params(("id" = Uuid, Path)),
    request_body = MovementIn,
    responses(
        (status = 201, body = MovementOut, headers(("Consistency-Token" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "on_hand would fall below reserved", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn add_movement(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(id): AppPath<String>,
    AppJson(input): AppJson<MovementIn>,
) -> Result<Response, ApiError> {
    let id = product_id(&id)?;
    managed_product(&state, &principal, id).await?;
    let mut fields = Fields::new();
    let delta = fields.check("delta", Delta::parse(input.delta));
    let reason = match MovementReason::parse(&input.reason) {
        Ok(MovementReason::Initial | MovementReason::Sale) | Err(_) => {
            fields.push("reason", "must be one of restock, adjustment, loss");
            None
        }
        Ok(reason) => Some(reason),
    };
    let movement = fields.finish_with(|| {
        Some(ManualMovement {
            delta: delta?,
            reason: reason?,
        })
    })?;
    let written = state
        .catalog
        .move_stock(id, movement, &principal.subject)
        .await?;
    let (movement, _) = written.value;
    Ok((
        StatusCode::CREATED,
        [token_header(written.token)],
        AppJson(MovementOut::from(movement)),
    )
        .into_response())
}

/// The stock ledger of a product (admin or the seller), oldest first.
#[utoipa::path(
    get, path = "/v1/products/{id}/stock-movements", tag = "stock",
    operation_id = "stock_movements_list",
    params(("id" = Uuid, Path), PageQuery, ("Consistency-Token" = Option<String>, Header)),
    responses(
        (status = 200, body = MovementList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_movements(
    State(state): State<AppState>,
    principal: Principal,
    ReadAfter(freshness): ReadAfter,
    AppPath(id): AppPath<String>,
    AppQuery(query): AppQuery<PageQuery>,
) -> Result<AppJson<MovementList>, ApiError> {
    let id = product_id(&id)?;
    let product = state.catalog.get(id, freshness).await?;
    authorize_seller(&principal, &product)?;
    let mut fields = Fields::new();
    let page = fields.page(query.limit, query.cursor.as_deref());
    fields.finish()?;
    let movements = state
        .catalog
        .movements(id, page.limit, page.cursor.as_ref(), freshness)
        .await?;
    Ok(AppJson(movements.into()))
}
