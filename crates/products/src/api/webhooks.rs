//! `/v1/webhook-endpoints` and `/v1/webhook-messages`: DTOs, their mapping, and the handlers.
//! Sellers (`customer` tokens) manage their own endpoints; admins manage their own and see all.
//! An endpoint's secret is in the response that creates or rotates it, and nowhere else.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use vitrine_kernel::Page;
use vitrine_platform::http::{
    ApiError, AppJson, AppPath, AppQuery, Fields, IfMatch, Listed, PageOut, PageQuery, Principal,
    Problem, Role, etag,
};
use vitrine_webhooks::store::{AttemptRecord, Endpoint, EndpointChanges};

use super::AppState;
use crate::endpoints::{Caller, EndpointError};

const URL_MAX: usize = 2048;
const DESCRIPTION_MAX: usize = 500;

/// What an endpoint can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub enum EventType {
    #[serde(rename = "batch.completed")]
    BatchCompleted,
    #[serde(rename = "product-import.completed")]
    ProductImportCompleted,
    #[serde(rename = "product.created")]
    ProductCreated,
    #[serde(rename = "product.updated")]
    ProductUpdated,
    #[serde(rename = "product.deleted")]
    ProductDeleted,
    #[serde(rename = "stock.changed")]
    StockChanged,
    #[serde(rename = "reservation.created")]
    ReservationCreated,
    #[serde(rename = "reservation.committed")]
    ReservationCommitted,
    #[serde(rename = "reservation.released")]
    ReservationReleased,
    #[serde(rename = "reservation.expired")]
    ReservationExpired,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            Self::BatchCompleted => "batch.completed",
            Self::ProductImportCompleted => "product-import.completed",
            Self::ProductCreated => "product.created",
            Self::ProductUpdated => "product.updated",
            Self::ProductDeleted => "product.deleted",
            Self::StockChanged => "stock.changed",
            Self::ReservationCreated => "reservation.created",
            Self::ReservationCommitted => "reservation.committed",
            Self::ReservationReleased => "reservation.released",
            Self::ReservationExpired => "reservation.expired",
        }
    }

    fn names(types: &[EventType]) -> Vec<String> {
        types.iter().map(|t| t.as_str().to_owned()).collect()
    }
}

/// An endpoint to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointIn {
    /// Where deliveries are POSTed: https (http and loopback only in the embedded mode); hosts
    /// resolving to private, loopback, link-local or metadata addresses are refused.
    #[schema(
        example = "https://erp.example.com/webhooks/vitrine",
        min_length = 1,
        max_length = 2048,
        pattern = "^[Hh][Tt][Tt][Pp][Ss]?://"
    )]
    pub url: String,
    #[schema(min_items = 1)]
    pub event_types: Vec<EventType>,
    #[schema(min_length = 1, max_length = 500, pattern = "\\S")]
    pub description: Option<String>,
}

/// A partial update; `null` clears `description`; `enabled: true` re-enables a disabled
/// endpoint (clearing why it was disabled).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct EndpointPatch {
    #[schema(
        min_length = 1,
        max_length = 2048,
        pattern = "^[Hh][Tt][Tt][Pp][Ss]?://"
    )]
    pub url: Option<String>,
    #[schema(min_items = 1)]
    pub event_types: Option<Vec<EventType>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 500, pattern = "\\S")]
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointOut {
    pub id: Uuid,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why it was disabled (410 from the receiver, or failing for 5 days).
    pub disabled_reason: Option<String>,
    /// Start of the current run of failed attempts; none since the last success.
    pub failing_since: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Endpoint> for EndpointOut {
    fn from(endpoint: Endpoint) -> Self {
        Self {
            id: endpoint.id,
            url: endpoint.url,
            event_types: endpoint.event_types,
            description: endpoint.description,
            enabled: endpoint.enabled,
            disabled_reason: endpoint.disabled_reason,
            failing_since: endpoint.failing_since,
            version: endpoint.version,
            created_at: endpoint.created_at,
            updated_at: endpoint.updated_at,
        }
    }
}

/// A created endpoint, with its signing secret: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointCreated {
    #[serde(flatten)]
    pub endpoint: EndpointOut,
    /// `whsec_` and the base64 key: verify deliveries with it (Standard Webhooks).
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

/// The new secret after a rotation; the previous one keeps signing for 24 h.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretOut {
    pub secret: String,
}

pub type EndpointList = PageOut<EndpointOut>;

impl Listed for EndpointOut {
    const PAGE_SCHEMA: &'static str = "EndpointList";
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptOut {
    pub id: Uuid,
    pub message_id: Uuid,
    pub attempted_at: DateTime<Utc>,
    /// The receiver's answer; none when there was none (timeout, refused address).
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    pub error: Option<String>,
    /// The delivery after this attempt: `pending` (retried at `next_attempt_at`),
    /// `delivered`, `failed`, `aborted` or `cancelled`.
    pub state: String,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl From<AttemptRecord> for AttemptOut {
    fn from(attempt: AttemptRecord) -> Self {
        Self {
            id: attempt.id,
            message_id: attempt.message_id,
            attempted_at: attempt.attempted_at,
            status_code: attempt.status_code,
            duration_ms: attempt.duration_ms,
            error: attempt.error,
            state: attempt.state.as_str().to_owned(),
            next_attempt_at: attempt.next_attempt_at,
        }
    }
}

pub type AttemptList = PageOut<AttemptOut>;

impl Listed for AttemptOut {
    const PAGE_SCHEMA: &'static str = "AttemptList";
}

/// Failed deliveries since when to send again.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverIn {
    pub since: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Queued {
    /// How many deliveries were queued again.
    pub queued: usize,
}

impl From<EndpointError> for ApiError {
    fn from(error: EndpointError) -> Self {
        match error {
            EndpointError::NotFound => ApiError::NotFound,
            EndpointError::VersionMismatch => ApiError::PreconditionFailed,
            EndpointError::Url(refused) => ApiError::invalid("url", refused.to_string()),
            EndpointError::SecretsUnavailable(_) => ApiError::Unavailable {
                what: "the secret store",
                retry_after: std::time::Duration::from_secs(5),
            },
            EndpointError::Internal(error) => ApiError::Internal(error),
        }
    }
}

/// Admins act as admins; a `customer` token as its customer.
/// A create's fields, checked.
struct NewEndpoint {
    url: String,
    event_types: Vec<String>,
    description: Option<String>,
}

impl EndpointIn {
    fn into_new(self) -> Result<NewEndpoint, ApiError> {
        let mut fields = Fields::new();
        url(&mut fields, &self.url);
        if self.event_types.is_empty() {
            fields.push("event_types", "must name at least one event type");
        }
        let description = description(&mut fields, self.description);
        fields.finish()?;
        Ok(NewEndpoint {
            url: self.url,
            event_types: EventType::names(&self.event_types),
            description,
        })
    }
}

impl EndpointPatch {
    fn into_changes(self) -> Result<EndpointChanges, ApiError> {
        let mut fields = Fields::new();
        if let Some(raw) = &self.url {
            url(&mut fields, raw);
        }
        if self.event_types.as_ref().is_some_and(Vec::is_empty) {
            fields.push("event_types", "must name at least one event type");
        }
        // Absent: unchanged; null: cleared; a text: checked.
        let description = match self.description {
            None => None,
            Some(None) => Some(None),
            Some(Some(raw)) => Some(description(&mut fields, Some(raw))),
        };
        if self.url.is_none()
            && self.event_types.is_none()
            && description.is_none()
            && self.enabled.is_none()
        {
            fields.push("body", "send at least one field to change");
        }
        fields.finish()?;
        Ok(EndpointChanges {
            url: self.url,
            description,
            event_types: self.event_types.as_deref().map(EventType::names),
            enabled: self.enabled,
        })
    }
}

pub(super) fn caller(principal: &Principal) -> Result<Caller, ApiError> {
    if principal.has(Role::Admin) {
        return Ok(Caller::Admin);
    }
    principal.require_any(&[Role::Customer])?;
    let customer = principal.customer_id.ok_or(ApiError::Forbidden)?;
    Ok(Caller::Tenant(customer.to_string()))
}

fn endpoint_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw).map_err(|_| ApiError::NotFound)
}

fn endpoint_response(status: StatusCode, endpoint: Endpoint) -> Response {
    (
        status,
        [(header::ETAG, etag(endpoint.version))],
        AppJson(EndpointOut::from(endpoint)),
    )
        .into_response()
}

fn description(fields: &mut Fields, raw: Option<String>) -> Option<String> {
    let raw = raw?;
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.chars().count() > DESCRIPTION_MAX {
        fields.push(
            "description",
            format!("must be 1-{DESCRIPTION_MAX} characters, not only whitespace"),
        );
        return None;
    }
    Some(trimmed.to_owned())
}

fn url(fields: &mut Fields, raw: &str) {
    if raw.is_empty() || raw.len() > URL_MAX {
        fields.push("url", format!("must be 1-{URL_MAX} characters"));
    }
}

/// Create a webhook endpoint; its signing secret is in this response only.
#[utoipa::path(
    post, path = "/v1/webhook-endpoints", tag = "webhooks",
    operation_id = "webhook_endpoints_create",
    request_body = EndpointIn,
    responses(
        (status = 201, description = "Created; keep `secret`, it is not shown again", body = EndpointCreated,
            headers(("Location" = String), ("ETag" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither admin nor customer", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields; a refused destination names `url`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The secret store is unavailable; see Retry-After", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    AppJson(input): AppJson<EndpointIn>,
) -> Result<Response, ApiError> {
    let caller = caller(&principal)?;
    let new = input.into_new()?;
    let (endpoint, secret) = state
        .endpoints
        .create(&caller, &new.url, new.event_types, new.description)
        .await?;
    tracing::info!(endpoint_id = %endpoint.id, "webhook endpoint created");
    let location = format!("/v1/webhook-endpoints/{}", endpoint.id);
    let version = endpoint.version;
    let body = EndpointCreated {
        endpoint: EndpointOut::from(endpoint),
        secret: secret.expose().to_string(),
    };
    let mut response = (
        StatusCode::CREATED,
        [(header::ETAG, etag(version))],
        AppJson(body),
    )
        .into_response();
    if let Ok(value) = location.parse() {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// List webhook endpoints (a customer's own; every tenant's for admins).
#[utoipa::path(
    get, path = "/v1/webhook-endpoints", tag = "webhooks",
    operation_id = "webhook_endpoints_list",
    params(PageQuery),
    responses(
        (status = 200, body = EndpointList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    AppQuery(query): AppQuery<PageQuery>,
) -> Result<AppJson<EndpointList>, ApiError> {
    let caller = caller(&principal)?;
    let mut fields = Fields::new();
    let page = fields.page(query.limit, query.cursor.as_deref());
    fields.finish()?;
    let endpoints = state
        .endpoints
        .list(
            &caller,
            page.limit.get() + 1,
            page.cursor.map(|c| c.position()),
        )
        .await?;
    Ok(AppJson(
        Page::from_overfetch(endpoints, page.limit, |e| e.id).into(),
    ))
}

/// Read a webhook endpoint.
#[utoipa::path(
    get, path = "/v1/webhook-endpoints/{id}", tag = "webhooks",
    operation_id = "webhook_endpoints_get",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = EndpointOut, headers(("ETag" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint of the caller's", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(id): AppPath<String>,
) -> Result<Response, ApiError> {
    let caller = caller(&principal)?;
    let endpoint = state.endpoints.get(&caller, endpoint_id(&id)?).await?;
    Ok(endpoint_response(StatusCode::OK, endpoint))
}

/// Change a webhook endpoint (`If-Match` guards against lost updates).
#[utoipa::path(
    patch, path = "/v1/webhook-endpoints/{id}", tag = "webhooks",
    operation_id = "webhook_endpoints_update",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "The ETag read")),
    request_body = EndpointPatch,
    responses(
        (status = 200, body = EndpointOut, headers(("ETag" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Changed since the ETag in If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(id): AppPath<String>,
    if_match: IfMatch,
    AppJson(input): AppJson<EndpointPatch>,
) -> Result<Response, ApiError> {
    let caller = caller(&principal)?;
    let id = endpoint_id(&id)?;
    let changes = input.into_changes()?;
    let current = state.endpoints.get(&caller, id).await?;
    let expected = if_match.expect(current.version)?;
    let endpoint = state
        .endpoints
        .update(&caller, id, expected, &changes)
        .await?;
    Ok(endpoint_response(StatusCode::OK, endpoint))
}

/// Delete a webhook endpoint and its secrets; what is pending for it is cancelled.
#[utoipa::path(
    delete, path = "/v1/webhook-endpoints/{id}", tag = "webhooks",
    operation_id = "webhook_endpoints_delete",
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    let caller = caller(&principal)?;
    state.endpoints.delete(&caller, endpoint_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate the endpoint's signing secret; the previous one keeps signing for 24 h (deliveries
/// carry both signatures meanwhile).
#[utoipa::path(
    post, path = "/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhooks",
    operation_id = "webhook_endpoints_rotate_secret",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The new secret, shown this once", body = SecretOut, headers(("ETag" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The secret store is unavailable; see Retry-After", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(id): AppPath<String>,
) -> Result<Response, ApiError> {
    let caller = caller(&principal)?;
    let (endpoint, secret) = state.endpoints.rotate(&caller, endpoint_id(&id)?).await?;
    Ok((
        [(header::ETAG, etag(endpoint.version))],
        AppJson(SecretOut {
            secret: secret.expose().to_string(),
        }),
    )
        .into_response())
}

/// Every delivery attempt to the endpoint, newest first.
#[utoipa::path(
    get, path = "/v1/webhook-endpoints/{id}/attempts", tag = "webhooks",
    operation_id = "webhook_endpoints_attempts",
    params(("id" = Uuid, Path), PageQuery),
    responses(
        (status = 200, body = AttemptList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn attempts(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(id): AppPath<String>,
    AppQuery(query): AppQuery<PageQuery>,
) -> Result<AppJson<AttemptList>, ApiError> {
    let caller = caller(&principal)?;
    let id = endpoint_id(&id)?;
    let mut fields = Fields::new();
    let page = fields.page(query.limit, query.cursor.as_deref());
    fields.finish()?;
    let attempts = state
        .endpoints
        .attempts(
            &caller,
            id,
            page.limit.get() + 1,
            page.cursor.map(|c| c.position()),
        )
        .await?;
    Ok(AppJson(
        Page::from_overfetch(attempts, page.limit, |a| a.id).into(),
    ))
}

/// Send every delivery to the endpoint that failed for good since `since` once more, in the
/// background (with a fresh retry schedule).
#[utoipa::path(
    post, path = "/v1/webhook-endpoints/{id}/recover", tag = "webhooks",
    operation_id = "webhook_endpoints_recover",
    params(("id" = Uuid, Path)),
    request_body = RecoverIn,
    responses(
        (status = 202, description = "Queued", body = Queued),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn recover(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(id): AppPath<String>,
    AppJson(input): AppJson<RecoverIn>,
) -> Result<Response, ApiError> {
    let caller = caller(&principal)?;
    let queued = state
        .endpoints
        .recover(&caller, endpoint_id(&id)?, input.since)
        .await?;
    Ok((StatusCode::ACCEPTED, AppJson(Queued { queued })).into_response())
}

/// Send a message again to every enabled endpoint it went to.
#[utoipa::path(
    post, path = "/v1/webhook-messages/{id}/resend", tag = "webhooks",
    operation_id = "webhook_messages_resend",
    params(("id" = Uuid, Path, description = "The message id (`webhook-id` of its deliveries)")),
    responses(
        (status = 202, description = "Queued", body = Queued),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such message of the caller's", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn resend(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(id): AppPath<String>,
) -> Result<Response, ApiError> {
    let caller = caller(&principal)?;
    let message = Uuid::try_parse(&id).map_err(|_| ApiError::NotFound)?;
    let queued = state.endpoints.resend(&caller, message).await?;
    Ok((StatusCode::ACCEPTED, AppJson(Queued { queued })).into_response())
}
