//! Stored responses are sealed before they reach the database. A response may carry what its
//! API shows once (a webhook endpoint's signing secret, on create and on rotation), and the
//! idempotency table keeps it for a day to replay it: in the clear, that copy would be the
//! secret at rest in the services' database. Sealing uses XChaCha20-Poly1305 under a key derived
//! from the fingerprint key (which never lives in the database), with the record's scope and
//! key as associated data, so a body moved to another subject's or key's row does not open.
//!
//! Format: `0xFF "IS1"`, the 24-byte nonce, then ciphertext and tag. No UTF-8 text starts with
//! 0xFF, so a body stored before sealing existed (JSON, kept at most for the retention period)
//! is recognised and replayed as it is.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hmac::Mac;
use rand::RngCore;
use sha2::Sha256;

const MAGIC: &[u8; 4] = b"\xffIS1";
const NONCE_LEN: usize = 24;

/// Seals and opens stored response bodies.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

impl Sealer {
    /// The sealing key is HMAC-SHA256(fingerprint key, a label): separate from the fingerprint
    /// key's own use, and gone from the database's reach with it.
    pub fn new(fingerprint_key: &[u8]) -> Self {
        let mut mac = <hmac::Hmac<Sha256> as Mac>::new_from_slice(fingerprint_key)
            .expect("HMAC accepts keys of any length");
        mac.update(b"vitrine idempotency response seal v1");
        let key = mac.finalize().into_bytes();
        Self {
            cipher: XChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    pub fn seal(&self, scope: &str, key: &str, body: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated(scope, key);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 seals any body that fits in memory");
        [MAGIC.as_slice(), &nonce, &sealed].concat()
    }

    /// The body as the handler answered it; a body stored before sealing is returned as is.
    pub fn open(&self, scope: &str, key: &str, stored: &[u8]) -> anyhow::Result<Vec<u8>> {
        let Some(rest) = stored.strip_prefix(MAGIC.as_slice()) else {
            return Ok(stored.to_vec());
        };
        anyhow::ensure!(rest.len() >= NONCE_LEN, "a sealed response is truncated");
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let aad = associated(scope, key);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| anyhow::anyhow!("a stored response does not open under this key"))
    }
}

fn associated(scope: &str, key: &str) -> Vec<u8> {
    [scope.as_bytes(), &[0], key.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bodies_open_only_for_their_own_record() {
        let sealer = Sealer::new(b"fingerprint key");
        let body = br#"{"secret":"whsec_c2VjcmV0"}"#;
        let sealed = sealer.seal("ana", "k1", body);
        assert!(
            !sealed.windows(5).any(|w| w == b"whsec"),
            "not in the clear"
        );
        assert_eq!(sealer.open("ana", "k1", &sealed).unwrap(), body);
        assert!(
            sealer.open("bia", "k1", &sealed).is_err(),
            "another subject"
        );
        assert!(sealer.open("ana", "k2", &sealed).is_err(), "another key");
        assert!(
            Sealer::new(b"another key")
                .open("ana", "k1", &sealed)
                .is_err(),
            "another fingerprint key"
        );
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(sealer.open("ana", "k1", &tampered).is_err());
        assert!(
            sealer.open("ana", "k1", &sealed[..10]).is_err(),
            "truncated"
        );
    }

    #[test]
    fn bodies_stored_before_sealing_replay_as_they_are() {
        let sealer = Sealer::new(b"fingerprint key");
        for legacy in [&b"{\"id\":1}"[..], b"", b"  [1]"] {
            assert_eq!(sealer.open("ana", "k1", legacy).unwrap(), legacy);
        }
    }
}
