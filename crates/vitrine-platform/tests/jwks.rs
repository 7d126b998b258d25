//! Production token verification against a JWKS served over HTTP (a stand-in for the identity
//! provider, which is a third party we cannot run here).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use vitrine_platform::http::auth::{AuthError, Authenticator, Role};

const PRIVATE_KEY: &[u8] = include_bytes!("fixtures/jwks-test-ed25519.pem");
/// The public half of the key above, base64url (RFC 8037 `x`).
const PUBLIC_X: &str = "JPDTfiyEuBW2LmjLC1nY-xDLEdvOFohY60DSHRb4_4k";
const ISSUER: &str = "https://id.vitrine.test";

/// Serves the key set and counts how often it is fetched.
async fn identity_provider() -> (String, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&fetches);
    let app = Router::new().route(
        "/jwks.json",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                axum::Json(json!({"keys": [
                    {"kty": "OKP", "crv": "Ed25519", "x": PUBLIC_X, "kid": "key-1", "alg": "EdDSA", "use": "sig"}
                ]}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fetches)
}

/// PKCS#8 DER of the fixture (its PEM body, base64-decoded).
fn private_key_der() -> Vec<u8> {
    use base64::Engine;
    let pem = std::str::from_utf8(PRIVATE_KEY).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

fn sign(kid: &str, claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_ed_der(&private_key_der()),
    )
    .unwrap()
}

fn claims(issuer: &str, audience: &str) -> serde_json::Value {
    json!({
        "sub": "svc-backoffice",
        "roles": ["admin", "payments"],
        "iss": issuer,
        "aud": audience,
        "exp": chrono::Utc::now().timestamp() + 300,
    })
}

#[tokio::test]
async fn tokens_from_the_provider_verify_and_keys_are_cached() {
    let (url, fetches) = identity_provider().await;
    let auth = Authenticator::jwks(url, Some(ISSUER), Some("vitrine"));
    for _ in 0..3 {
        let principal = auth
            .verify(&sign("key-1", claims(ISSUER, "vitrine")))
            .await
            .unwrap();
        assert_eq!(principal.subject, "svc-backoffice");
        assert_eq!(principal.roles, vec![Role::Admin, Role::Payments]);
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "the key set is fetched once, then cached"
    );
}

#[tokio::test]
async fn wrong_issuer_audience_or_key_id_is_rejected() {
    let (url, _) = identity_provider().await;
    let auth = Authenticator::jwks(url, Some(ISSUER), Some("vitrine"));
    for token in [
        sign("key-1", claims("https://evil.test", "vitrine")),
        sign("key-1", claims(ISSUER, "another-api")),
        sign("key-2", claims(ISSUER, "vitrine")),
    ] {
        assert!(matches!(auth.verify(&token).await, Err(AuthError::Invalid)));
    }
}

#[tokio::test]
async fn a_shared_secret_token_cannot_pass_as_a_provider_token() {
    // Algorithm confusion: HS256 "signed" with the public key must not verify.
    let (url, _) = identity_provider().await;
    let auth = Authenticator::jwks(url, Some(ISSUER), Some("vitrine"));
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("key-1".to_owned());
    let forged = jsonwebtoken::encode(
        &header,
        &claims(ISSUER, "vitrine"),
        &EncodingKey::from_secret(PUBLIC_X.as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        auth.verify(&forged).await,
        Err(AuthError::Invalid)
    ));
}

#[tokio::test]
async fn an_unreachable_provider_is_reported_as_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let auth = Authenticator::jwks(format!("http://127.0.0.1:{port}/jwks.json"), None, None);
    let token = sign("key-1", claims(ISSUER, "vitrine"));
    assert!(matches!(
        auth.verify(&token).await,
        Err(AuthError::KeysUnavailable)
    ));
}
