//! `/v1/batches`: exports and stock snapshots computed from the work queue and delivered by
//! webhook (`batch.completed`).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use vitrine_platform::http::{ApiError, AppJson, AppPath, Fields, Principal, Problem};

use super::AppState;
use super::products::product_filter;
use super::webhooks::caller;
use crate::batches::{Batch, BatchError, BatchId, BatchKind};
use crate::store::ProductFilter;

/// What a batch computes.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
pub enum BatchType {
    /// The products, as `GET /v1/products` shows them.
    #[serde(rename = "products.export")]
    ProductsExport,
    /// `product_id`, `seller_id`, `sku`, `on_hand`, `reserved`, `available` of each product.
    #[serde(rename = "stock.snapshot")]
    StockSnapshot,
}

/// The products a batch covers: the filters of `GET /v1/products`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchFilter {
    #[schema(format = Uuid)]
    pub seller_id: Option<String>,
    /// Exact category.
    #[schema(min_length = 1, max_length = 100, pattern = "[^ ]")]
    pub category: Option<String>,
    /// `active` or `inactive`.
    #[schema(pattern = "^(active|inactive)$")]
    pub status: Option<String>,
    /// Case-insensitive part of the name.
    #[schema(min_length = 1, max_length = 100, pattern = "[^ ]")]
    pub q: Option<String>,
}

/// A batch to run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchIn {
    #[serde(rename = "type")]
    pub kind: BatchType,
    pub filter: Option<BatchFilter>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchOut {
    pub id: Uuid,
    #[serde(rename = "type")]
    #[schema(example = "products.export")]
    pub kind: String,
    /// `queued`, `running`, `completed`, or `failed` (no endpoint subscribed any more).
    #[schema(example = "queued")]
    pub status: String,
    /// Parts it is delivered in (up to 1,000 items each), fixed when requested.
    pub parts: u32,
    pub parts_done: u32,
    /// Items delivered so far.
    pub items: i64,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<Batch> for BatchOut {
    fn from(batch: Batch) -> Self {
        Self {
            id: batch.id.as_uuid(),
            kind: batch.kind.as_str().to_owned(),
            status: batch.status.as_str().to_owned(),
            parts: batch.parts,
            parts_done: batch.parts_done,
            items: batch.items,
            created_at: batch.created_at,
            completed_at: batch.completed_at,
        }
    }
}

impl From<BatchError> for ApiError {
    fn from(error: BatchError) -> Self {
        match error {
            BatchError::Unsubscribed => ApiError::invalid(
                "type",
                "no enabled endpoint of yours is subscribed to batch.completed: nobody would receive the results",
            ),
            BatchError::NotFound => ApiError::NotFound,
            BatchError::Internal(error) => ApiError::Internal(error),
        }
    }
}

impl BatchIn {
    /// What to compute, and over which products.
    fn into_request(self) -> Result<(BatchKind, ProductFilter), ApiError> {
        let mut fields = Fields::new();
        let raw = self.filter.unwrap_or_default();
        let filter = product_filter(
            &mut fields,
            "filter.",
            raw.seller_id.as_deref(),
            raw.category.as_deref(),
            raw.status.as_deref(),
            raw.q.as_deref(),
        );
        fields.finish()?;
        let kind = match self.kind {
            BatchType::ProductsExport => BatchKind::ProductsExport,
            BatchType::StockSnapshot => BatchKind::StockSnapshot,
        };
        Ok((kind, filter))
    }
}

/// Run an export or stock snapshot; its results are delivered by webhook.
#[utoipa::path(
    post, path = "/v1/batches", tag = "batches",
    operation_id = "batches_create",
    request_body = BatchIn,
    responses(
        (status = 202, description = "Queued; parts arrive as `batch.completed` deliveries", body = BatchOut,
            headers(("Location" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither admin nor customer", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields; `type` when no endpoint of the caller is subscribed to `batch.completed`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    AppJson(input): AppJson<BatchIn>,
) -> Result<Response, ApiError> {
    let caller = caller(&principal)?;
    let (kind, filter) = input.into_request()?;
    let batch = state.batches.request(&caller, kind, filter).await?;
    tracing::info!(batch_id = %batch.id, kind = kind.as_str(), parts = batch.parts, "batch queued");
    let location = format!("/v1/batches/{}", batch.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        AppJson(BatchOut::from(batch)),
    )
        .into_response())
}

/// A batch the caller requested, and how far it is.
#[utoipa::path(
    get, path = "/v1/batches/{id}", tag = "batches",
    operation_id = "batches_get",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = BatchOut),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such batch of the caller's", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(id): AppPath<String>,
) -> Result<AppJson<BatchOut>, ApiError> {
    let caller = caller(&principal)?;
    let id = BatchId::parse(&id).map_err(|_| ApiError::NotFound)?;
    Ok(AppJson(BatchOut::from(
        state.batches.get(&caller, id).await?,
    )))
}
