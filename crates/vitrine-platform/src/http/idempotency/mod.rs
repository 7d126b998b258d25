//! `Idempotency-Key` for every `POST` (API.md "idempotency").
//!
//! Same key + same request within 24 h: the first response is replayed with
//! `Idempotent-Replayed: true`. Same key + different request: 422. The same key while the first
//! request is still running: 409. Keys are scoped to the authenticated subject, so two clients
//! can never see each other's responses.
//!
//! The key is reserved before the handler runs and completed with the response afterwards. A 5xx
//! releases the reservation so the client may retry. If the process dies mid-request the
//! reservation expires after [`LOCK_TTL`] and a retry runs the handler again; handlers whose
//! effects must never repeat still rely on their own uniqueness rules (e.g. one CNPJ per customer).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sha2::Sha256;

use super::auth::Authenticator;
use super::error::ApiError;

mod postgres;
mod sqlite;

pub use postgres::PgIdempotencyStore;
pub use sqlite::SqliteIdempotencyStore;

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// How long a stored response is replayed.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How long a reservation blocks duplicates before it is presumed abandoned by a dead process.
pub const LOCK_TTL: Duration = Duration::from_secs(60);
/// Response headers worth replaying (the rest are regenerated per response).
const REPLAYED_HEADERS: [&str; 4] = ["content-type", "location", "etag", "consistency-token"];
/// Responses larger than this are not stored (ours are far smaller).
const MAX_STORED_BODY: usize = 1024 * 1024;

/// A response as stored for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The outcome of reserving a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// First use (or an expired or abandoned one): run the handler.
    Proceed,
    /// Already completed with the same request: replay this.
    Replay(StoredResponse),
    /// Another request with this key is running.
    InFlight,
    /// The key was used for a different request.
    Mismatch,
}

/// Durable storage of idempotency records; each service keeps them in its own database, in the
/// `idempotency_keys` table its migrations create.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + std::fmt::Debug {
    async fn begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Begin>;
    async fn complete(
        &self,
        scope: &str,
        key: &str,
        response: &StoredResponse,
    ) -> anyhow::Result<()>;
    async fn abandon(&self, scope: &str, key: &str) -> anyhow::Result<()>;
    /// Deletes records created before `cutoff`; returns how many.
    async fn prune(&self, cutoff: DateTime<Utc>) -> anyhow::Result<u64>;
}

/// A stored record, as both SQL backends read it.
#[derive(Debug, sqlx::FromRow)]
struct Record {
    fingerprint: String,
    status: Option<i16>,
    headers: Option<sqlx::types::Json<Vec<(String, String)>>>,
    body: Option<Vec<u8>>,
    locked_until: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

/// What to do with an existing record; the same rules for every backend.
#[derive(Debug)]
struct Decision {
    outcome: Begin,
    /// Reserve the key for this request (overwriting the record).
    take_over: bool,
    /// The old record is past retention: restart its 24 h clock too.
    restart: bool,
}

fn decide(record: &Record, fingerprint: &str, now: DateTime<Utc>) -> anyhow::Result<Decision> {
    let expired = record.created_at + retention() <= now;
    if expired {
        return Ok(Decision {
            outcome: Begin::Proceed,
            take_over: true,
            restart: true,
        });
    }
    if record.fingerprint != fingerprint {
        return Ok(Decision {
            outcome: Begin::Mismatch,
            take_over: false,
            restart: false,
        });
    }
    if let Some(status) = record.status {
        let stored = StoredResponse {
            status: u16::try_from(status)?,
            headers: record
                .headers
                .as_ref()
                .map(|h| h.0.clone())
                .unwrap_or_default(),
            body: record.body.clone().unwrap_or_default(),
        };
        return Ok(Decision {
            outcome: Begin::Replay(stored),
            take_over: false,
            restart: false,
        });
    }
    if record.locked_until > now {
        return Ok(Decision {
            outcome: Begin::InFlight,
            take_over: false,
            restart: false,
        });
    }
    // The request that reserved the key died without finishing: run it again.
    Ok(Decision {
        outcome: Begin::Proceed,
        take_over: true,
        restart: false,
    })
}

fn retention() -> chrono::Duration {
    chrono::Duration::from_std(RETENTION).expect("24 h fits")
}

fn lock_ttl() -> chrono::Duration {
    chrono::Duration::from_std(LOCK_TTL).expect("60 s fits")
}

/// State of the idempotency middleware.
#[derive(Clone)]
pub struct Idempotency {
    pub store: Arc<dyn IdempotencyStore>,
    pub authenticator: Arc<Authenticator>,
    pub max_body_bytes: usize,
    /// Keys the request fingerprint. Bodies can hold card numbers; a plain hash of a
    /// predictable body next to the card's last four digits could be brute-forced, a keyed one
    /// cannot without this key, which never lives in the database.
    pub fingerprint_key: Arc<[u8]>,
}

impl std::fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// Validates an `Idempotency-Key` value: 1-255 visible ASCII characters.
pub fn parse_key(value: &HeaderValue) -> Result<&str, ApiError> {
    value
        .to_str()
        .ok()
        .filter(|key| (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::invalid("Idempotency-Key", "must be 1-255 visible ASCII characters")
        })
}

/// The middleware; mount it with `axum::middleware::from_fn_with_state`.
pub async fn idempotency(
    State(state): State<Idempotency>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST || !request.headers().contains_key(&IDEMPOTENCY_KEY) {
        return next.run(request).await;
    }
    match run(state, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn run(state: Idempotency, request: Request, next: Next) -> Result<Response, Response> {
    let key = parse_key(&request.headers()[&IDEMPOTENCY_KEY])
        .map_err(IntoResponse::into_response)?
        .to_owned();
    let (mut parts, body) = request.into_parts();
    // Unauthenticated requests pass through untouched: the handler answers 401.
    let Ok(principal) = state.authenticator.authenticate(&parts).await else {
        return Ok(next.run(Request::from_parts(parts, body)).await);
    };
    parts.extensions.insert(principal.clone());
    let bytes = axum::body::to_bytes(body, state.max_body_bytes)
        .await
        .map_err(|_| ApiError::PayloadTooLarge.into_response())?;

    let fingerprint = fingerprint(
        &state.fingerprint_key,
        &parts.method,
        parts.uri.path_and_query().map_or("", |p| p.as_str()),
        &bytes,
    );
    // A subject acting for a customer is scoped to that customer as well.
    let scope = match principal.customer_id {
        Some(customer) => format!("{}#{customer}", principal.subject),
        None => principal.subject.clone(),
    };
    let begin = state
        .store
        .begin(&scope, &key, &fingerprint, Utc::now())
        .await
        .map_err(|e| ApiError::internal(e).into_response())?;
    match begin {
        Begin::Replay(stored) => Ok(replay(stored)),
        Begin::InFlight => Err(ApiError::Conflict(
            "a request with this Idempotency-Key is still being processed".to_owned(),
        )
        .into_response()),
        Begin::Mismatch => Err(ApiError::invalid(
            "Idempotency-Key",
            "was already used for a different request; use a new key",
        )
        .into_response()),
        Begin::Proceed => {
            // Detached from the connection: if the client goes away or the request times out,
            // the handler still runs to completion and the key is completed or released,
            // instead of being left reserved with its effect half done.
            let store = Arc::clone(&state.store);
            let work = tokio::spawn(async move {
                let response = next
                    .run(Request::from_parts(parts, Body::from(bytes)))
                    .await;
                finish(&*store, &scope, &key, response).await
            });
            Ok(work.await.unwrap_or_else(|_| {
                ApiError::internal(anyhow::anyhow!("idempotent request task failed"))
                    .into_response()
            }))
        }
    }
}

async fn finish(
    store: &dyn IdempotencyStore,
    scope: &str,
    key: &str,
    response: Response,
) -> Response {
    if response.status().is_server_error() {
        if let Err(error) = store.abandon(scope, key).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "releasing an idempotency key failed"
            );
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_STORED_BODY).await else {
        let _ = store.abandon(scope, key).await;
        return ApiError::internal(anyhow::anyhow!(
            "response too large to store for idempotency"
        ))
        .into_response();
    };
    let stored = StoredResponse {
        status: parts.status.as_u16(),
        headers: REPLAYED_HEADERS
            .iter()
            .filter_map(|name| {
                let value = parts.headers.get(*name)?.to_str().ok()?;
                Some(((*name).to_owned(), value.to_owned()))
            })
            .collect(),
        body: bytes.to_vec(),
    };
    if let Err(error) = store.complete(scope, key, &stored).await {
        // The effect happened; the client still gets its answer. A retry will be told 409 until
        // the reservation expires.
        tracing::error!(
            error = format!("{error:#}"),
            "storing an idempotent response failed"
        );
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    for (name, value) in &stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}

/// HMAC-SHA256 under `key` over method, path and body: what "the same request" means.
pub fn fingerprint(key: &[u8], method: &Method, path_and_query: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(method.as_str().as_bytes());
    mac.update(&[0]);
    mac.update(path_and_query.as_bytes());
    mac.update(&[0]);
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deletes expired records every hour until `shutdown`.
pub async fn prune_periodically(
    store: Arc<dyn IdempotencyStore>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    crate::periodic::prune_every(
        "idempotency keys",
        Duration::from_secs(3600),
        shutdown,
        move || {
            let store = Arc::clone(&store);
            async move { store.prune(Utc::now() - retention()).await }
        },
    )
    .await
}

#[cfg(any(test, feature = "testing"))]
pub mod conformance {
    //! One behaviour suite for every `IdempotencyStore` implementation.
    use super::*;

    pub async fn run_all(store: &dyn IdempotencyStore) {
        let scope = uuid::Uuid::now_v7().to_string();
        let now = Utc::now();
        let response = StoredResponse {
            status: 201,
            headers: vec![("location".into(), "/v1/x/1".into())],
            body: b"{\"id\":1}".to_vec(),
        };

        assert_eq!(
            store.begin(&scope, "k1", "fp-a", now).await.unwrap(),
            Begin::Proceed
        );
        assert_eq!(
            store.begin(&scope, "k1", "fp-a", now).await.unwrap(),
            Begin::InFlight
        );
        assert_eq!(
            store.begin(&scope, "k1", "fp-b", now).await.unwrap(),
            Begin::Mismatch
        );
        store.complete(&scope, "k1", &response).await.unwrap();
        assert_eq!(
            store.begin(&scope, "k1", "fp-a", now).await.unwrap(),
            Begin::Replay(response.clone())
        );
        assert_eq!(
            store.begin(&scope, "k1", "fp-b", now).await.unwrap(),
            Begin::Mismatch
        );

        // Scopes are isolated.
        let other = format!("{scope}-other");
        assert_eq!(
            store.begin(&other, "k1", "fp-a", now).await.unwrap(),
            Begin::Proceed
        );

        // An abandoned reservation can be taken again at once.
        assert_eq!(
            store.begin(&scope, "k2", "fp", now).await.unwrap(),
            Begin::Proceed
        );
        store.abandon(&scope, "k2").await.unwrap();
        assert_eq!(
            store.begin(&scope, "k2", "fp", now).await.unwrap(),
            Begin::Proceed
        );

        // A reservation left by a dead process expires after the lock TTL.
        let later =
            now + chrono::Duration::from_std(LOCK_TTL).unwrap() + chrono::Duration::seconds(1);
        assert_eq!(
            store.begin(&scope, "k2", "fp", later).await.unwrap(),
            Begin::Proceed
        );
        assert_eq!(
            store.begin(&scope, "k2", "fp", later).await.unwrap(),
            Begin::InFlight
        );

        // After the retention window a key starts afresh, even with another body.
        let next_day =
            now + chrono::Duration::from_std(RETENTION).unwrap() + chrono::Duration::seconds(1);
        assert_eq!(
            store.begin(&scope, "k1", "fp-c", next_day).await.unwrap(),
            Begin::Proceed
        );

        // Pruning removes only old records.
        assert_eq!(
            store.begin(&scope, "k3", "fp", now).await.unwrap(),
            Begin::Proceed
        );
        store
            .prune(now - chrono::Duration::seconds(5))
            .await
            .unwrap();
        assert_eq!(
            store.begin(&scope, "k3", "fp", now).await.unwrap(),
            Begin::InFlight,
            "pruned too much"
        );
        assert!(
            store
                .prune(now + chrono::Duration::seconds(5))
                .await
                .unwrap()
                >= 1
        );
        assert_eq!(
            store.begin(&scope, "k3", "fp-new", now).await.unwrap(),
            Begin::Proceed
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        assert!(parse_key(&HeaderValue::from_static("abc-123")).is_ok());
        assert!(parse_key(&HeaderValue::from_static("")).is_err());
        assert!(parse_key(&HeaderValue::from_static("has space")).is_err());
        let long = "k".repeat(256);
        assert!(parse_key(&HeaderValue::from_str(&long).unwrap()).is_err());
        assert!(parse_key(&HeaderValue::from_str(&long[..255]).unwrap()).is_ok());
    }

    #[test]
    fn fingerprint_distinguishes_path_and_body() {
        let key = b"server-side key";
        let a = fingerprint(key, &Method::POST, "/v1/customers", b"{}");
        assert_eq!(a, fingerprint(key, &Method::POST, "/v1/customers", b"{}"));
        assert_ne!(a, fingerprint(key, &Method::POST, "/v1/customers/x", b"{}"));
        assert_ne!(a, fingerprint(key, &Method::POST, "/v1/customers", b"{ }"));
    }

    #[test]
    fn fingerprint_cannot_be_recomputed_without_the_key() {
        use sha2::Digest;
        let body = br#"{"type":"card","card":{"number":"4111111111111111"}}"#;
        let keyed = fingerprint(b"key-1", &Method::POST, "/v1/x", body);
        assert_ne!(keyed, fingerprint(b"key-2", &Method::POST, "/v1/x", body));
        let mut plain = Sha256::new();
        plain.update(b"POST\0/v1/x\0");
        plain.update(body);
        let plain: String = plain
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_ne!(keyed, plain);
    }
}
