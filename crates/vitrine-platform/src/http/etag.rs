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
    /// Checks the precondition against the version just read. `Ok(Some(v))` is the version the
    /// write must still find (compare-and-set), so a change between the read and the write is a
    /// 412 too; `Ok(None)` means the write is unconditional.
    pub fn expect(&self, current: i64) -> Result<Option<i64>, ApiError> {
        match self {
            IfMatch::Absent | IfMatch::Any => Ok(None),
            IfMatch::Versions(versions) if versions.contains(&current) => Ok(Some(current)),
            IfMatch::Versions(_) => Err(ApiError::PreconditionFailed),
        }
    }

    /// Whether the request carries a list of entity tags (and so needs the current version).
    pub fn has_tags(&self) -> bool {
        matches!(self, IfMatch::Versions(_))
    }

    /// Checks a precondition against a resource's current version.
    pub fn check(&self, current: i64) -> Result<(), ApiError> {
        match self {
            IfMatch::Absent | IfMatch::Any => Ok(()),
            IfMatch::Versions(versions) if versions.contains(&current) => Ok(()),
            IfMatch::Versions(_) => Err(ApiError::PreconditionFailed),
        }
    }

    /// RFC 9110's grammar, exactly (the OpenAPI document states it as a pattern): `*`, or
    /// entity tags (`"opaque"`, `W/"opaque"`) separated by commas with optional spaces.
    fn parse(raw: &str) -> Result<IfMatch, ApiError> {
        if raw == "*" {
            return Ok(IfMatch::Any);
        }
        let invalid = || ApiError::invalid("If-Match", "must be `*` or quoted entity tags");
        let mut versions = Vec::new();
        for tag in raw.split(',').map(|tag| tag.trim_matches(' ')) {
            let (weak, quoted) = match tag.strip_prefix("W/") {
                Some(rest) => (true, rest),
                None => (false, tag),
            };
            let inner = quoted
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .filter(|inner| {
                    inner
                        .bytes()
                        .all(|b| b == b'!' || (b'#'..=b'~').contains(&b))
                })
                .ok_or_else(invalid)?;
            // Weak tags never satisfy If-Match (RFC 9110 strong comparison); keep them out.
            if !weak && let Ok(version) = inner.parse() {
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
        assert!(IfMatch::parse("W/3").is_err());
        assert!(IfMatch::parse("\"a b\"").is_err());
        assert!(IfMatch::parse("").is_err());
    }

    #[test]
    fn any_listed_tag_may_match() {
        let list = IfMatch::parse("\"3\", \"4\"").unwrap();
        assert_eq!(list.expect(4).unwrap(), Some(4));
        assert!(list.expect(5).is_err());
        assert_eq!(IfMatch::Absent.expect(9).unwrap(), None);
    }

    #[test]
    fn foreign_or_weak_tags_never_match() {
        assert!(IfMatch::parse("\"abc\"").unwrap().check(1).is_err());
        assert!(IfMatch::parse("W/\"1\"").unwrap().check(1).is_err());
        assert!(IfMatch::parse("\"1\"").unwrap().check(1).is_ok());
        assert_eq!(etag(7), "\"7\"");
    }
}
