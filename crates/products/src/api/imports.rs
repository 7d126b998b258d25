//! `/v1/product-imports`: NDJSON bodies streamed into storage and consumed from the work queue.
//! The upload route streams its body, so it is mounted outside the idempotency layer (which
//! buffers bodies); it honours `Idempotency-Key` itself: the tenant's first import under a key
//! is answered again.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use vitrine_platform::http::deadline;
use vitrine_platform::http::idempotency::{IDEMPOTENCY_KEY, parse_key};
use vitrine_platform::http::{ApiError, AppJson, AppPath, AppQuery, Principal, Problem};

use super::AppState;
use super::webhooks::caller;
use crate::imports::{ImportError, ImportId, LineError, ProductImport};

#[derive(Debug, Serialize, ToSchema)]
pub struct LineErrorOut {
    /// The line of the body (from 1, blank lines counted).
    pub line: u32,
    /// The field at fault; null when the line is not a JSON object at all.
    pub field: Option<String>,
    pub message: String,
}

impl From<LineError> for LineErrorOut {
    fn from(error: LineError) -> Self {
        Self {
            line: error.line,
            field: error.field,
            message: error.message,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportOut {
    pub id: Uuid,
    /// `queued`, `running` or `completed` (`receiving` while an upload streams in).
    #[schema(example = "queued")]
    pub status: String,
    /// Non-blank lines received.
    pub received: u32,
    pub created: u32,
    /// Lines that created no product; each has at least one entry in `errors`.
    pub failed: u32,
    /// Line errors by line: those of up to 1,000 lines per page, after `errors_after`.
    pub errors: Vec<LineErrorOut>,
    /// Pass as `errors_after` for the next page of errors; null when there are no more.
    pub next_errors_after: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl ImportOut {
    fn new(import: ProductImport, errors: Vec<LineError>) -> Self {
        let lines = errors
            .iter()
            .map(|e| e.line)
            .collect::<std::collections::BTreeSet<_>>();
        let next_errors_after = (lines.len() >= crate::imports::ERRORS_PAGE as usize)
            .then(|| lines.last().copied())
            .flatten();
        Self {
            id: import.id.as_uuid(),
            status: import.status.as_str().to_owned(),
            received: import.received,
            created: import.created,
            failed: import.failed,
            errors: errors.into_iter().map(LineErrorOut::from).collect(),
            next_errors_after,
            created_at: import.created_at,
            completed_at: import.completed_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// List the errors of lines after this one (`next_errors_after` of the previous page).
    #[param(minimum = 0)]
    pub errors_after: Option<u32>,
}

impl From<ImportError> for ApiError {
    fn from(error: ImportError) -> Self {
        match error {
            ImportError::TooLarge(_) => ApiError::PayloadTooLarge,
            ImportError::Empty => {
                ApiError::invalid("body", "has no products: send one JSON object per line")
            }
            ImportError::Cut(why) => ApiError::BadRequest(format!("the upload was cut off: {why}")),
            ImportError::InProgress => ApiError::Conflict(
                "an import with this Idempotency-Key is still being uploaded".to_owned(),
            ),
            ImportError::NotFound => ApiError::NotFound,
            ImportError::DirectoryUnavailable(_) | ImportError::Internal(_) => {
                ApiError::Internal(anyhow::anyhow!("{error}"))
            }
        }
    }
}

/// Import products: one JSON object per line, each as the body of `POST /v1/products`.
#[utoipa::path(
    post, path = "/v1/product-imports", tag = "imports",
    operation_id = "product_imports_create",
    request_body(content = Vec<super::products::ProductIn>, content_type = "application/x-ndjson",
        description = "NDJSON: the products one per line, each the body of `POST /v1/products`, up to `VITRINE_IMPORT_MAX_BYTES` (50 MB by default); blank lines are skipped. A bad line does not refuse the import: it is reported with its number"),
    params(("Idempotency-Key" = Option<String>, Header, description = "1-255 characters; the caller's import under this key is answered again instead of importing twice")),
    responses(
        (status = 202, description = "Stored and queued; follow `Location`", body = ImportOut,
            headers(("Location" = String))),
        (status = 400, description = "The upload was cut off, or paused for more than 30 s", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither admin nor customer", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An import under the same Idempotency-Key is still uploading", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Larger than VITRINE_IMPORT_MAX_BYTES", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not `application/x-ndjson` (or `application/jsonl`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An empty body, or a malformed Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The upload took more than 15 minutes", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = caller(&principal)?;
    if !deadline::is_streamed_media_type(&headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let key = headers
        .get(&IDEMPOTENCY_KEY)
        .map(|value| parse_key(value).map(str::to_owned))
        .transpose()?;
    let import = state
        .imports
        .receive(&caller, &principal.subject, key, body.into_data_stream())
        .await?;
    tracing::info!(import_id = %import.id, received = import.received, "product import queued");
    let location = format!("/v1/product-imports/{}", import.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        AppJson(ImportOut::new(import, Vec::new())),
    )
        .into_response())
}

/// An import of the caller's: its counts and line errors.
#[utoipa::path(
    get, path = "/v1/product-imports/{id}", tag = "imports",
    operation_id = "product_imports_get",
    params(("id" = Uuid, Path), ImportQuery),
    responses(
        (status = 200, body = ImportOut),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such import of the caller's", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    AppPath(id): AppPath<String>,
    AppQuery(query): AppQuery<ImportQuery>,
) -> Result<AppJson<ImportOut>, ApiError> {
    let caller = caller(&principal)?;
    let id = ImportId::parse(&id).map_err(|_| ApiError::NotFound)?;
    let (import, errors) = state
        .imports
        .get(&caller, id, query.errors_after.unwrap_or(0))
        .await?;
    Ok(AppJson(ImportOut::new(import, errors)))
}
