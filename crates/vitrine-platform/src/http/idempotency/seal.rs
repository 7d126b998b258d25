//! Stored responses are sealed before they reach the database. A response may carry what its
//! API shows once (a webhook endpoint's signing secret, on create and on rotation), and the
//! idempotency table keeps it for a day to replay it: in the clear, that copy would be the
//! secret at rest in the services' database. Sealing uses XChaCha20-Poly1305 under a key derived
//! from the fingerprint key (which never lives in the database), with the record's scope, key,
//! status and replayed headers as associated data, so a body moved to another subject's or
//! key's row, or given another status or `Location`, does not open.
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

    pub fn seal(&self, record: Sealed<'_>, body: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = record.associated();
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
    pub fn open(&self, record: Sealed<'_>, stored: &[u8]) -> anyhow::Result<Vec<u8>> {
        let Some(rest) = stored.strip_prefix(MAGIC.as_slice()) else {
            return Ok(stored.to_vec());
        };
        anyhow::ensure!(rest.len() >= NONCE_LEN, "a sealed response is truncated");
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let aad = record.associated();
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

/// What a sealed body is bound to: its record (subject and key) and the rest of its response.
#[derive(Debug, Clone, Copy)]
pub struct Sealed<'a> {
    pub scope: &'a str,
    pub key: &'a str,
    pub status: u16,
    pub headers: &'a [(String, String)],
}

impl Sealed<'_> {
    /// Each part length-prefixed, so no two records share an encoding.
    fn associated(&self) -> Vec<u8> {
        let mut aad = Vec::new();
        let mut part = |bytes: &[u8]| {
            aad.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            aad.extend_from_slice(bytes);
        };
        part(self.scope.as_bytes());
        part(self.key.as_bytes());
        part(&self.status.to_be_bytes());
        for (name, value) in self.headers {
            part(name.as_bytes());
            part(value.as_bytes());
        }
        aad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCATION: &[(String, String)] = &[];

    fn record<'a>(scope: &'a str, key: &'a str, headers: &'a [(String, String)]) -> Sealed<'a> {
        Sealed {
            scope,
            key,
            status: 201,
            headers,
        }
    }

    #[test]
    fn sealed_bodies_open_only_for_their_own_record() {
        let sealer = Sealer::new(b"fingerprint key");
        let headers = [("location".to_owned(), "/v1/x/1".to_owned())];
        let body = br#"{"secret":"whsec_c2VjcmV0"}"#;
        let sealed = sealer.seal(record("ana", "k1", &headers), body);
        assert!(
            !sealed.windows(5).any(|w| w == b"whsec"),
            "not in the clear"
        );
        let open = |record: Sealed<'_>, stored: &[u8]| sealer.open(record, stored);
        assert_eq!(open(record("ana", "k1", &headers), &sealed).unwrap(), body);
        assert!(
            open(record("bia", "k1", &headers), &sealed).is_err(),
            "another subject"
        );
        assert!(
            open(record("ana", "k2", &headers), &sealed).is_err(),
            "another key"
        );
        let moved = [("location".to_owned(), "/v1/x/2".to_owned())];
        assert!(
            open(record("ana", "k1", &moved), &sealed).is_err(),
            "another header"
        );
        let other_status = Sealed {
            status: 200,
            ..record("ana", "k1", &headers)
        };
        assert!(open(other_status, &sealed).is_err(), "another status");
        let stranger = Sealer::new(b"another key");
        assert!(
            stranger
                .open(record("ana", "k1", &headers), &sealed)
                .is_err(),
            "another fingerprint key"
        );
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(open(record("ana", "k1", &headers), &tampered).is_err());
        assert!(
            open(record("ana", "k1", &headers), &sealed[..10]).is_err(),
            "truncated"
        );
    }

    #[test]
    fn bodies_stored_before_sealing_replay_as_they_are() {
        let sealer = Sealer::new(b"fingerprint key");
        for legacy in [&b"{\"id\":1}"[..], b"", b"  [1]"] {
            assert_eq!(
                sealer.open(record("ana", "k1", LOCATION), legacy).unwrap(),
                legacy
            );
        }
    }
}
