//! Endpoint signing secrets, in the Standard Webhooks format: `whsec_` followed by the base64
//! of the key bytes. The key is shown to the customer once, when the endpoint is created or its
//! secret rotated; it is never logged (its `Debug` is redacted) and is wiped from memory when
//! dropped.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use zeroize::Zeroizing;

const PREFIX: &str = "whsec_";

/// How many random bytes a generated secret has (the specification asks for 24 to 64).
pub const GENERATED_BYTES: usize = 32;
const MIN_BYTES: usize = 24;
const MAX_BYTES: usize = 64;

/// A key that signs deliveries to one endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

/// Why a text is not a webhook secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("must start with `whsec_`")]
    Prefix,
    #[error("must be base64 after `whsec_`")]
    Base64,
    #[error("must hold {MIN_BYTES} to {MAX_BYTES} bytes")]
    Length,
}

impl WebhookSecret {
    /// A new random secret.
    pub fn generate() -> WebhookSecret {
        let mut key = Zeroizing::new(vec![0u8; GENERATED_BYTES]);
        rand::rng().fill_bytes(&mut key);
        WebhookSecret(key)
    }

    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<WebhookSecret, SecretError> {
        let encoded = text.strip_prefix(PREFIX).ok_or(SecretError::Prefix)?;
        let key = Zeroizing::new(STANDARD.decode(encoded).map_err(|_| SecretError::Base64)?);
        if !(MIN_BYTES..=MAX_BYTES).contains(&key.len()) {
            return Err(SecretError::Length);
        }
        Ok(WebhookSecret(key))
    }

    /// The `whsec_...` text, for the one response that shows it and for storage.
    pub fn expose(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{PREFIX}{}", STANDARD.encode(&*self.0)))
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(redacted)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_round_trip_and_differ() {
        let secret = WebhookSecret::generate();
        let text = secret.expose();
        assert!(text.starts_with("whsec_"));
        assert_eq!(WebhookSecret::parse(&text).unwrap(), secret);
        assert_ne!(WebhookSecret::generate(), secret);
        assert_eq!(format!("{secret:?}"), "WebhookSecret(redacted)");
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert_eq!(
            WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::Prefix)
        );
        assert_eq!(WebhookSecret::parse("whsec_!!"), Err(SecretError::Base64));
        assert_eq!(
            WebhookSecret::parse(&format!("whsec_{}", STANDARD.encode([7u8; 16]))),
            Err(SecretError::Length)
        );
        assert_eq!(
            WebhookSecret::parse(&format!("whsec_{}", STANDARD.encode([7u8; 65]))),
            Err(SecretError::Length)
        );
    }
}
