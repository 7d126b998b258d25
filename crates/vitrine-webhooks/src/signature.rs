//! Signing per the Standard Webhooks specification. The signed content is
//! `<webhook-id>.<webhook-timestamp>.<body>`; the `webhook-signature` header holds one
//! `v1,<base64 HMAC-SHA256>` per secret, separated by spaces, so an endpoint whose secret was
//! just rotated gets both signatures and its receiver, on either secret, accepts the delivery.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::WebhookSecret;

/// How far a delivery's timestamp may be from the receiver's clock (the specification's
/// recommendation): older deliveries are refused as possible replays.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// The `webhook-signature` header value for a message, signed with each of `secrets`.
pub fn signature(secrets: &[&WebhookSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| format!("v1,{}", STANDARD.encode(mac(secret, id, timestamp, body))))
        .collect::<Vec<_>>()
        .join(" ")
}

fn keyed(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.key()).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn mac(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    keyed(secret, id, timestamp, body)
        .finalize()
        .into_bytes()
        .to_vec()
}

/// Why a delivery did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("webhook-timestamp is not a number of seconds")]
    Timestamp,
    #[error("webhook-timestamp is more than {TOLERANCE_SECS} s away from now (a replay?)")]
    Stale,
    #[error("no v1 signature in webhook-signature matches")]
    NoMatch,
}

/// Checks a received delivery the way a receiver must: the timestamp within
/// [`TOLERANCE_SECS`] of `now` (Unix seconds), and one of the header's `v1` signatures made
/// with `secret` over this exact id, timestamp and body (compared in constant time).
pub fn verify(
    secret: &WebhookSecret,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let timestamp: i64 = timestamp.parse().map_err(|_| VerifyError::Timestamp)?;
    if now.abs_diff(timestamp) > TOLERANCE_SECS.unsigned_abs() {
        return Err(VerifyError::Stale);
    }
    let matches = signatures
        .split(' ')
        .filter_map(|one| one.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .any(|candidate| {
            keyed(secret, id, timestamp, body)
                .verify_slice(&candidate)
                .is_ok()
        });
    if matches {
        Ok(())
    } else {
        Err(VerifyError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference libraries.
    #[test]
    fn matches_the_specification_example() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let header = signature(&[&secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_rotated_endpoint_verifies_with_either_secret() {
        let (old, new) = (WebhookSecret::generate(), WebhookSecret::generate());
        let body = br#"{"type":"batch.completed"}"#;
        let header = signature(&[&new, &old], "msg_1", 1_700_000_000, body);
        assert_eq!(header.split(' ').count(), 2);
        for secret in [&old, &new] {
            assert_eq!(
                verify(secret, "msg_1", "1700000000", &header, body, 1_700_000_100),
                Ok(())
            );
        }
        let other = WebhookSecret::generate();
        assert_eq!(
            verify(&other, "msg_1", "1700000000", &header, body, 1_700_000_000),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn tampering_and_replays_are_refused() {
        let secret = WebhookSecret::generate();
        let header = signature(&[&secret], "msg_1", 1_700_000_000, b"{}");
        let check = |id, ts, body: &[u8], now| verify(&secret, id, ts, &header, body, now);
        assert_eq!(
            check("msg_2", "1700000000", b"{}", 1_700_000_000),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            check("msg_1", "1700000000", b"{ }", 1_700_000_000),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            check("msg_1", "1700000001", b"{}", 1_700_000_000),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            check("msg_1", "1700000000", b"{}", 1_700_000_301),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            check("msg_1", "soon", b"{}", 1_700_000_000),
            Err(VerifyError::Timestamp)
        );
    }
}
