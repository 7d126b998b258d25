//! Entity tags and `If-Match` (API.md "concurrency"): a stale `PATCH`/`DELETE` gets 412.
//!
//! Resources carry a version number that every write increments; the ETag is that number
//! quoted. Stores take the expected version and perform the compare-and-set themselves, so the
//! check and the write are one atomic step.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};

use super::error::ApiError;

/// The strong ETag of a resource at `version`.
pub fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits and quotes are a valid header")
}

/// The request's `If-Match` precondition, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// No header: the write is unconditional.
    Absent,
    /// `If-Match: *`: the resource must exist.
    Any,
    /// The resource's current version must be one of these.
    Versions(Vec<i64>),
}

impl IfMatch {
    /// The single version a store should compare against; `Err(412)` when no listed tag can
    /// ever match a Vitrine resource (weak or foreign tags).
    pub fn expected_version(&self) -> Result<Option<i64>, ApiError> {
        match self {
            IfMatch::Absent | IfMatch::Any => Ok(None),
            IfMatch::Versions(versions) if versions.len() == 1 => Ok(Some(versions[0])),
            IfMatch::Versions(_) => Err(ApiError::PreconditionFailed),
        }
    }

    /// Checks a precondition against a resource's current version, for callers that cannot push
    /// the comparison into the store.
    pub fn check(&self, current: i64) -> Result<(), ApiError> {
        match self {
            IfMatch::Absent | IfMatch::Any => Ok(()),
            IfMatch::Versions(versions) if versions.contains(&current) => Ok(()),
            IfMatch::Versions(_) => Err(ApiError::PreconditionFailed),
        }
    }

    fn parse(raw: &str) -> Result<IfMatch, ApiError> {
        let raw = raw.trim();
        if raw == "*" {
            return Ok(IfMatch::Any);
        }
        let mut versions = Vec::new();
        for tag in raw.split(',').map(str::trim) {
            // Weak tags never satisfy If-Match (RFC 9110 strong comparison); keep them out.
            if tag.starts_with("W/") {
                continue;
            }
            let inner = tag
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .ok_or_else(|| {
                    ApiError::invalid("If-Match", "must be `*` or quoted entity tags")
                })?;
            if let Ok(version) = inner.parse() {
                versions.push(version);
            }
        }
        Ok(IfMatch::Versions(versions))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get(header::IF_MATCH) {
            None => Ok(IfMatch::Absent),
            Some(value) => IfMatch::parse(
                value
                    .to_str()
                    .map_err(|_| ApiError::invalid("If-Match", "must be ASCII"))?,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_clients_send() {
        assert_eq!(IfMatch::parse("*").unwrap(), IfMatch::Any);
        assert_eq!(IfMatch::parse("\"3\"").unwrap(), IfMatch::Versions(vec![3]));
        assert_eq!(
            IfMatch::parse("\"3\", \"4\"").unwrap(),
            IfMatch::Versions(vec![3, 4])
        );
        assert_eq!(
            IfMatch::parse("W/\"3\"").unwrap(),
            IfMatch::Versions(vec![])
        );
        assert!(IfMatch::parse("3").is_err());
    }

    #[test]
    fn foreign_or_weak_tags_never_match() {
        assert!(
            IfMatch::parse("\"abc\"")
                .unwrap()
                .expected_version()
                .is_err()
        );
        assert!(IfMatch::parse("W/\"1\"").unwrap().check(1).is_err());
        assert!(IfMatch::parse("\"1\"").unwrap().check(1).is_ok());
        assert_eq!(etag(7), "\"7\"");
    }
}
