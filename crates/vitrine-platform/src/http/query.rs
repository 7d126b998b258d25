//! `AppQuery<T>`: query-string extraction whose failures are problem+json naming the parameter.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::{ApiError, FieldError};

#[derive(Debug, Clone, Copy, Default)]
pub struct AppQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(AppQuery)
            .map_err(|error| {
                let field = error.path().to_string();
                let message = error.into_inner().to_string();
                let (field, message) = if let Some(rest) = message.strip_prefix("unknown field `") {
                    (
                        rest.split('`').next().unwrap_or_default().to_owned(),
                        "is not a recognised parameter".to_owned(),
                    )
                } else if field == "." {
                    ("query".to_owned(), "is invalid".to_owned())
                } else {
                    (field, "has an invalid value".to_owned())
                };
                ApiError::Validation(vec![FieldError::new(field, message)])
            })
    }
}
