//! The `SecretStore` port: where card numbers and PIX keys live, never in a service database.
//!
//! Production uses Vault KV v2 (a path per customer and payment method); the embedded default uses
//! [`LocalSecretStore`], which seals each secret with an AEAD key kept outside the database.

mod local;
mod open;
mod vault;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;

use std::fmt;

use async_trait::async_trait;
use zeroize::Zeroizing;

pub use local::LocalSecretStore;
pub use open::{OpenedSecrets, SECRETS_KEY_FILE, open};
pub use vault::{VaultAuth, VaultSecretStore};

/// A slash-separated secret location such as `customers/<id>/payment-methods/<id>`.
///
/// Segments are restricted to `[a-z0-9-]` so a path can never climb out of its tree (`..`), and
/// maps one-to-one onto Vault paths and local file names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretPath(String);

impl SecretPath {
    pub fn new<S: AsRef<str>>(segments: &[S]) -> Result<SecretPath, SecretError> {
        if segments.is_empty() {
            return Err(SecretError::InvalidPath(
                "a secret path needs at least one segment".into(),
            ));
        }
        for segment in segments {
            let segment = segment.as_ref();
            let valid = !segment.is_empty()
                && segment.len() <= 64
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                return Err(SecretError::InvalidPath(format!(
                    "invalid path segment {segment:?}"
                )));
            }
        }
        Ok(SecretPath(
            segments
                .iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join("/"),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Whether `self` lies under `prefix` (or is it).
    pub fn starts_with(&self, prefix: &SecretPath) -> bool {
        self.0 == prefix.0 || self.0.starts_with(&format!("{}/", prefix.0))
    }
}

impl fmt::Display for SecretPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret value: zeroed on drop, redacted in `Debug`, never `Display` or `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The plaintext; named so every use is easy to find.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("invalid secret path: {0}")]
    InvalidPath(String),
    /// The store cannot be reached or refused the operation; the caller should retry later.
    #[error("secret store unavailable: {0}")]
    Unavailable(String),
    /// A stored secret failed authentication (tampered, or sealed with another key).
    #[error("secret at {0} cannot be opened")]
    Corrupt(String),
}

/// Stores secrets by path. Every operation is idempotent, so callers may retry freely.
#[async_trait]
pub trait SecretStore: Send + Sync + fmt::Debug {
    /// Writes (or replaces) the secret at `path`.
    async fn put(&self, path: &SecretPath, value: &SecretValue) -> Result<(), SecretError>;

    /// Reads the current secret at `path`.
    async fn get(&self, path: &SecretPath) -> Result<Option<SecretValue>, SecretError>;

    /// Destroys every version of the secret at `path`; no-op if absent.
    async fn destroy(&self, path: &SecretPath) -> Result<(), SecretError>;

    /// Destroys every secret at or under `prefix` (erasure of a whole customer).
    async fn destroy_tree(&self, prefix: &SecretPath) -> Result<(), SecretError>;

    /// Readiness: succeeds when the store can serve requests.
    async fn check(&self) -> Result<(), SecretError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_refuse_traversal_and_odd_characters() {
        assert!(SecretPath::new(&["customers", "abc-123"]).is_ok());
        for bad in ["..", "", "a/b", "A", "a b", "a.b"] {
            assert!(SecretPath::new(&["customers", bad]).is_err(), "{bad:?}");
        }
        let empty: [&str; 0] = [];
        assert!(SecretPath::new(&empty).is_err());
    }

    #[test]
    fn prefix_matching_is_by_segment() {
        let base = SecretPath::new(&["customers", "a"]).unwrap();
        assert!(
            SecretPath::new(&["customers", "a", "x"])
                .unwrap()
                .starts_with(&base)
        );
        assert!(
            !SecretPath::new(&["customers", "ab", "x"])
                .unwrap()
                .starts_with(&base)
        );
    }

    #[test]
    fn values_are_redacted_in_debug() {
        let value = SecretValue::new("4111111111111111");
        assert!(!format!("{value:?}").contains("4111"));
    }
}
