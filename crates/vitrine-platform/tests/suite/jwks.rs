//! Production token verification against a JWKS served over HTTP (a stand-in for the identity
//! provider, which is a third party we cannot run here).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use vitrine_platform::http::auth::{AuthError, Authenticator, JwksOptions, Role};

const PRIVATE_KEY: &[u8] = include_bytes!("../fixtures/jwks-test-ed25519.pem");
/// The public half of the key above, base64url (RFC 8037 `x`).
const PUBLIC_X: &str = "JPDTfiyEuBW2LmjLC1nY-xDLEdvOFohY60DSHRb4_4k";
const ISSUER: &str = "https://id.vitrine.test";

/// The stand-in identity provider: serves the key set under the key ids it is told, counts
/// fetches, and can be slow or down.
#[derive(Debug, Default)]
struct Provider {
    fetches: AtomicUsize,
    down: AtomicBool,
    delay_ms: AtomicU64,
    /// Key ids the fixture's public key is published under.
    kids: std::sync::Mutex<Vec<&'static str>>,
}

impl Provider {
    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// Serves the key set; returns its URL and the provider's controls.
async fn provider() -> (String, Arc<Provider>) {
    let provider = Arc::new(Provider::default());
    provider.kids.lock().unwrap().push("key-1");
    let state = Arc::clone(&provider);
    let app = Router::new().route(
        "/jwks.json",
        get(move || {
            let provider = Arc::clone(&state);
            async move {
                provider.fetches.fetch_add(1, Ordering::SeqCst);
                let delay = provider.delay_ms.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                if provider.down.load(Ordering::SeqCst) {
                    return Err(axum::http::StatusCode::SERVICE_UNAVAILABLE);
                }
                let keys: Vec<_> = provider
                    .kids
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|kid| json!({"kty": "OKP", "crv": "Ed25519", "x": PUBLIC_X, "kid": kid, "alg": "EdDSA", "use": "sig"}))
                    .collect();
                Ok(axum::Json(json!({ "keys": keys })))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, provider)
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
    let (url, provider) = provider().await;
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
        provider.fetches(),
        1,
        "the key set is fetched once, then cached"
    );
}

#[tokio::test]
async fn wrong_issuer_audience_or_key_id_is_rejected() {
    let (url, _) = provider().await;
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
    let (url, _) = provider().await;
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

fn options(max_age_ms: u64, stale_ms: u64, min_refetch_ms: u64) -> JwksOptions {
    JwksOptions {
        max_age: Duration::from_millis(max_age_ms),
        stale_if_error: Duration::from_millis(stale_ms),
        min_refetch: Duration::from_millis(min_refetch_ms),
    }
}

/// An identity-provider outage is not an outage of Vitrine: the last key set keeps verifying
/// tokens while it is down, for a bound; past it, token checks answer "unavailable".
#[tokio::test]
async fn a_provider_outage_is_bridged_by_the_cached_keys_for_a_bound() {
    let (url, provider) = provider().await;
    let auth = Authenticator::jwks_with(url, Some(ISSUER), Some("vitrine"), options(100, 1500, 0));
    let token = sign("key-1", claims(ISSUER, "vitrine"));
    auth.verify(&token).await.unwrap();
    provider.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    auth.verify(&token)
        .await
        .expect("stale keys serve while the provider is down");
    assert!(provider.fetches() >= 2, "a refresh was attempted");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(matches!(
        auth.verify(&token).await,
        Err(AuthError::KeysUnavailable)
    ));
    provider.down.store(false, Ordering::SeqCst);
    auth.verify(&token)
        .await
        .expect("verifying again once the provider is back");
}

/// Many requests arriving with no key set cached cause one fetch, not one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_fetch_the_key_set_once() {
    let (url, provider) = provider().await;
    provider.delay_ms.store(300, Ordering::SeqCst);
    let auth = Arc::new(Authenticator::jwks(url, Some(ISSUER), Some("vitrine")));
    let token = sign("key-1", claims(ISSUER, "vitrine"));
    let checks: Vec<_> = (0..20)
        .map(|_| {
            let (auth, token) = (Arc::clone(&auth), token.clone());
            tokio::spawn(async move { auth.verify(&token).await.map(|_| ()) })
        })
        .collect();
    for check in checks {
        check.await.unwrap().unwrap();
    }
    assert_eq!(provider.fetches(), 1);
}

/// A token naming an unknown key id refetches the key set (the provider may have rotated), but
/// a flood of them does not turn into a flood of fetches.
#[tokio::test]
async fn unknown_key_ids_refetch_at_most_once_per_interval() {
    let (url, provider) = provider().await;
    let auth = Authenticator::jwks_with(
        url,
        Some(ISSUER),
        Some("vitrine"),
        options(600_000, 600_000, 300),
    );
    auth.verify(&sign("key-1", claims(ISSUER, "vitrine")))
        .await
        .unwrap();
    for _ in 0..50 {
        assert!(matches!(
            auth.verify(&sign("unknown", claims(ISSUER, "vitrine")))
                .await,
            Err(AuthError::Invalid)
        ));
    }
    assert!(provider.fetches() <= 2, "{} fetches", provider.fetches());
    // A rotation: the new key id verifies once the interval has passed.
    provider.kids.lock().unwrap().push("key-2");
    tokio::time::sleep(Duration::from_millis(350)).await;
    auth.verify(&sign("key-2", claims(ISSUER, "vitrine")))
        .await
        .expect("the rotated key is fetched");
}

/// `nbf` in the future is refused, beyond a small clock-skew leeway.
#[tokio::test]
async fn tokens_not_yet_valid_are_refused() {
    let (url, _) = provider().await;
    let auth = Authenticator::jwks(url, Some(ISSUER), Some("vitrine"));
    let now = chrono::Utc::now().timestamp();
    let mut early = claims(ISSUER, "vitrine");
    early["nbf"] = json!(now + 600);
    assert!(matches!(
        auth.verify(&sign("key-1", early)).await,
        Err(AuthError::Invalid)
    ));
    let mut skewed = claims(ISSUER, "vitrine");
    skewed["nbf"] = json!(now + 10);
    auth.verify(&sign("key-1", skewed))
        .await
        .expect("a few seconds of clock skew are tolerated");
}
