//! The one error type of the HTTP boundary, rendered as RFC 9457 `application/problem+json`.
//!
//! Handlers return `Result<_, ApiError>`. Client errors say precisely what is wrong (one entry per
//! bad field for validation); server errors are logged inside the request span and the client gets
//! a generic body, so internals never leak.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid input: `field` is a dotted path into the body (`address.postal_code`), a query
/// parameter, or a header name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Collects every bad field of a request, so the client learns about all of them at once.
#[derive(Debug, Default)]
pub struct Fields {
    errors: Vec<FieldError>,
}

impl Fields {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the parsed value, or records the error against `field`.
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        parsed: Result<T, E>,
    ) -> Option<T> {
        parsed
            .map_err(|error| self.push(field, error.to_string()))
            .ok()
    }

    /// For an optional field: absent or blank is `Some(None)` (nothing, or "clear it"), else
    /// the parsed value as `Some(Some(v))`, or `None` with the error recorded.
    pub fn optional<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        raw: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<Option<T>> {
        match raw.map(str::trim) {
            None | Some("") => Some(None),
            Some(raw) => self.check(field, parse(raw)).map(Some),
        }
    }

    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// The value built from the checked fields (`build` takes them with `?`), or the 422
    /// listing every bad one. A check yields no value only after recording its field, so with
    /// nothing recorded `build` has every value; DTO conversions need no branch of their own
    /// for the case where it would not (a bug: answered 500 here, never a panic).
    pub fn finish_with<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, ApiError> {
        self.finish()?;
        build().ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!(
                "a field yielded no value without recording an error"
            ))
        })
    }

    /// `Ok` when nothing was recorded, else the 422 listing every field.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

/// RFC 9457 problem details, as sent on the wire.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:vitrine:problem:<slug>`).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Present on validation problems: one entry per bad field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("authentication required")]
    Unauthorized(&'static str),
    #[error("not allowed")]
    Forbidden,
    /// Not allowed, and why (the caller can do something about it).
    #[error("not allowed: {0}")]
    NotPermitted(String),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("conflict: {0}")]
    Conflict(String),
    /// A conflict about particular fields (e.g. the reservation items that are short).
    #[error("conflict: {detail}")]
    ConflictOn {
        detail: String,
        errors: Vec<FieldError>,
    },
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("dependency unavailable: {what}")]
    Unavailable {
        what: &'static str,
        retry_after: Duration,
    },
    /// Anything unexpected: logged in full, rendered as an opaque 500.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A validation error on a single field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::NotPermitted(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) | Self::ConflictOn { .. } => StatusCode::CONFLICT,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad-request",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden | Self::NotPermitted(_) => "forbidden",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Conflict(_) | Self::ConflictOn { .. } => "conflict",
            Self::PreconditionFailed => "precondition-failed",
            Self::PayloadTooLarge => "payload-too-large",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::Validation(_) => "validation",
            Self::Unavailable { .. } => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            Self::BadRequest(detail)
            | Self::Conflict(detail)
            | Self::ConflictOn { detail, .. }
            | Self::NotPermitted(detail) => Some(detail.clone()),
            Self::Unauthorized(why) => Some((*why).to_owned()),
            Self::Forbidden => {
                Some("your token does not grant access to this operation".to_owned())
            }
            Self::NotFound => Some("no such resource".to_owned()),
            Self::PreconditionFailed => {
                Some("the resource changed since you read it (If-Match does not match)".to_owned())
            }
            Self::PayloadTooLarge => Some("the body exceeds the size limit".to_owned()),
            Self::UnsupportedMediaType => Some("send the body as application/json".to_owned()),
            Self::Validation(_) => Some("one or more fields are invalid".to_owned()),
            Self::Unavailable { what, .. } => Some(format!("{what} is unavailable, retry later")),
            Self::Internal(_) => Some("an unexpected error occurred".to_owned()),
            Self::MethodNotAllowed => None,
        }
    }

    /// The wire form of this error.
    pub fn to_problem(&self) -> Problem {
        let status = self.status();
        Problem {
            kind: format!("urn:vitrine:problem:{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            errors: match self {
                Self::Validation(errors) | Self::ConflictOn { errors, .. } => errors.clone(),
                _ => Vec::new(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            // Logged here, inside the request span, with the full chain; never sent.
            Self::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed")
            }
            Self::Unavailable { what, .. } => {
                tracing::warn!(dependency = *what, "dependency unavailable")
            }
            _ => {}
        }
        let mut response = problem_response(&self.to_problem());
        let headers = response.headers_mut();
        match &self {
            Self::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::Unavailable { retry_after, .. } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after.as_secs().max(1)),
                );
            }
            _ => {}
        }
        response
    }
}

/// Renders a problem with the right status and media type.
pub fn problem_response(problem: &Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(problem).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn validation_lists_every_field() {
        let response = ApiError::Validation(vec![
            FieldError::new("cnpj", "check digits do not match"),
            FieldError::new("address.postal_code", "must have 8 digits"),
        ])
        .into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = body_json(response).await;
        assert_eq!(body["status"], 422);
        assert_eq!(body["type"], "urn:vitrine:problem:validation");
        assert_eq!(body["errors"][1]["field"], "address.postal_code");
    }

    #[tokio::test]
    async fn internal_errors_do_not_leak() {
        let response = ApiError::internal(anyhow::anyhow!("password=hunter2 connection refused"))
            .into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let text = body_json(response).await.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("errors"), "{text}");
    }

    #[tokio::test]
    async fn unavailable_carries_retry_after() {
        let response = ApiError::Unavailable {
            what: "secret store",
            retry_after: Duration::from_secs(5),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
    }
}
