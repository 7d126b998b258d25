//! `Idempotency-Key` for every `POST` (API.md "idempotency").
//!
//! Same key + same request within 24 h: the first response is replayed with
//! `Idempotent-Replayed: true`. Same key + different request: 422. The same key while the first
//! request is still running: 409. Keys are scoped to the authenticated subject, so two clients
//! can never see each other's responses.
//!
//! The key is reserved before the handler runs and completed with the response afterwards. A 5xx,
//! 401 or 403 releases the reservation (nothing ran, or it failed) so the client may retry.
//! The reservation belongs to the request that made it (an [`Owner`] token): only that request
//! completes, extends or releases it. While the handler runs, however long, the reservation is
//! extended every third of [`LOCK_TTL`]; if the process dies it expires after [`LOCK_TTL`] and a
//! retry runs the handler again. A request that lost its reservation anyway (its process
//! stalled past the TTL) is fenced out: it cannot overwrite the record of the request that took
//! the key over. Handlers whose effects must never repeat still rely on their own uniqueness
//! rules (e.g. one CNPJ per customer).

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
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::auth::Authenticator;
use super::error::ApiError;

mod postgres;
mod seal;
mod sqlite;

pub use postgres::PgIdempotencyStore;
pub use seal::{Sealed, Sealer};
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
    /// Sealed by the middleware ([`Sealer`]): stores keep it as opaque bytes.
    pub body: Vec<u8>,
}

/// Proof of holding a key's reservation: only its holder completes, extends or releases it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner(String);

impl Owner {
    fn new() -> Owner {
        Owner(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The outcome of reserving a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// First use (or an expired or abandoned one): run the handler, as the key's owner.
    Proceed(Owner),
    /// Already completed with the same request: replay this.
    Replay(StoredResponse),
    /// Another request with this key is running, or was cut off (a crash, a shutdown past its
    /// grace period) and holds the key until `until`. Its effect may have committed, so the key
    /// is never released early: after `until` a retry runs it again.
    InFlight { until: DateTime<Utc> },
    /// The key was used for a different request.
    Mismatch,
}

/// Durable storage of idempotency records; each service keeps them in its own database, in the
/// `idempotency_keys` table its migrations create.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + std::fmt::Debug {
    /// Reserves `key` for `lock_ttl` (or judges the record already there).
    async fn begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
        lock_ttl: Duration,
    ) -> anyhow::Result<Begin>;
    /// Stores the response, if `owner` still holds the reservation; `false` when another
    /// request took the key over in the meantime (nothing is written then).
    async fn complete(
        &self,
        scope: &str,
        key: &str,
        owner: &Owner,
        response: &StoredResponse,
    ) -> anyhow::Result<bool>;
    /// Moves the reservation's expiry to `until`, if `owner` still holds it.
    async fn extend(
        &self,
        scope: &str,
        key: &str,
        owner: &Owner,
        until: DateTime<Utc>,
    ) -> anyhow::Result<bool>;
    /// Releases the reservation, if `owner` still holds it.
    async fn abandon(&self, scope: &str, key: &str, owner: &Owner) -> anyhow::Result<()>;
    /// Deletes records created before `cutoff`; returns how many.
    async fn prune(&self, cutoff: DateTime<Utc>) -> anyhow::Result<u64>;
}

/// What a reservation's owner does with it. The statements are the same on both SQL backends
/// (`$N` placeholders), and each touches the record only while that owner still holds it
/// unfinished: a request that lost its reservation is fenced out.
#[derive(Debug)]
enum Fenced<'a> {
    Complete(&'a StoredResponse),
    Extend(DateTime<Utc>),
    Abandon,
}

/// The rows a statement touched, on either backend.
trait RowsAffected: sqlx::Database {
    fn rows_affected(result: &Self::QueryResult) -> u64;
}

impl RowsAffected for sqlx::Postgres {
    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

impl RowsAffected for sqlx::Sqlite {
    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

/// Runs `action` for `owner`; true when the owner still held the reservation.
async fn fenced<DB>(
    pool: &sqlx::Pool<DB>,
    scope: &str,
    key: &str,
    owner: &Owner,
    action: Fenced<'_>,
) -> anyhow::Result<bool>
where
    DB: RowsAffected,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'t> &'t str: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> i16: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> &'t [u8]: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> sqlx::types::Json<&'t [(String, String)]>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> DateTime<Utc>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    const WHERE: &str = "WHERE scope = $1 AND key = $2 AND owner = $3 AND status IS NULL";
    let sql = match action {
        Fenced::Complete(_) => {
            format!("UPDATE idempotency_keys SET status = $4, headers = $5, body = $6 {WHERE}")
        }
        Fenced::Extend(_) => format!("UPDATE idempotency_keys SET locked_until = $4 {WHERE}"),
        Fenced::Abandon => format!("DELETE FROM idempotency_keys {WHERE}"),
    };
    let query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(scope)
        .bind(key)
        .bind(owner.as_str());
    let query = match action {
        Fenced::Complete(response) => query
            .bind(i16::try_from(response.status)?)
            .bind(sqlx::types::Json(response.headers.as_slice()))
            .bind(response.body.as_slice()),
        Fenced::Extend(until) => query.bind(until),
        Fenced::Abandon => query,
    };
    let result = query.execute(pool).await?;
    Ok(DB::rows_affected(&result) == 1)
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
            outcome: Begin::Proceed(Owner::new()),
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
            outcome: Begin::InFlight {
                until: record.locked_until,
            },
            take_over: false,
            restart: false,
        });
    }
    // The request that reserved the key died without finishing: run it again.
    Ok(Decision {
        outcome: Begin::Proceed(Owner::new()),
        take_over: true,
        restart: false,
    })
}

fn retention() -> chrono::Duration {
    chrono::Duration::from_std(RETENTION).expect("24 h fits")
}

fn until(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
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
    /// How long a reservation lasts without being extended ([`LOCK_TTL`]).
    pub lock_ttl: Duration,
    /// The handlers running detached from their connections, so that a shutdown can let them
    /// finish (and store their responses) after it has cut the connections off.
    pub work: TaskTracker,
    /// Seals stored response bodies, keyed from `fingerprint_key`.
    sealer: Sealer,
}

impl Idempotency {
    pub fn new(
        store: Arc<dyn IdempotencyStore>,
        authenticator: Arc<Authenticator>,
        max_body_bytes: usize,
        fingerprint_key: Arc<[u8]>,
    ) -> Self {
        Self {
            store,
            authenticator,
            max_body_bytes,
            sealer: Sealer::new(&fingerprint_key),
            fingerprint_key,
            lock_ttl: LOCK_TTL,
            work: TaskTracker::new(),
        }
    }
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
    State(state): State<Arc<Idempotency>>,
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

async fn run(state: Arc<Idempotency>, request: Request, next: Next) -> Result<Response, Response> {
    let (mut parts, body) = request.into_parts();
    // The caller is authenticated before anything else is judged, and a failure is answered
    // here (401, 403, or 503 when the signing keys cannot be fetched): handing the request on
    // would run it unreserved if the handler's own check then succeeded (the key provider back
    // between the two), which is exactly the double effect the key exists to prevent.
    let principal = state
        .authenticator
        .authenticate(&parts)
        .await
        .map_err(IntoResponse::into_response)?;
    let key = parse_key(&parts.headers[&IDEMPOTENCY_KEY])
        .map_err(IntoResponse::into_response)?
        .to_owned();
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
        .begin(&scope, &key, &fingerprint, Utc::now(), state.lock_ttl)
        .await
        .map_err(|e| ApiError::internal(e).into_response())?;
    match begin {
        Begin::Replay(stored) => Ok(replay(stored, &state.sealer, &scope, &key)),
        Begin::InFlight { until } => {
            let mut busy = ApiError::Conflict(format!(
                "a request with this Idempotency-Key is still being processed; retry after \
                 Retry-After seconds to get its response (if that request was cut off by a \
                 restart, the key is free again at {})",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ))
            .into_response();
            busy.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from_static("1"),
            );
            Err(busy)
        }
        Begin::Mismatch => Err(ApiError::invalid(
            "Idempotency-Key",
            "was already used for a different request; use a new key",
        )
        .into_response()),
        Begin::Proceed(owner) => {
            // Detached from the connection: if the client goes away or the request times out,
            // the handler still runs to completion and the key is completed or released,
            // instead of being left reserved with its effect half done.
            let reservation = Reservation {
                store: Arc::clone(&state.store),
                sealer: state.sealer.clone(),
                scope,
                key,
                owner,
                ttl: state.lock_ttl,
            };
            // The detached task carries on the request's trace (its span, and the traceparent
            // the messages it writes inherit), which a spawned task would otherwise lose.
            let traceparent = crate::trace_context::current();
            let work = async move {
                let handler = next.run(Request::from_parts(parts, Body::from(bytes)));
                let response = reservation.held_while(handler).await;
                reservation.finish(response).await
            };
            let work = match traceparent {
                Some(traceparent) => state
                    .work
                    .spawn(crate::trace_context::scope(traceparent, work).in_current_span()),
                None => state.work.spawn(work.in_current_span()),
            };
            Ok(work.await.unwrap_or_else(|_| {
                ApiError::internal(anyhow::anyhow!("idempotent request task failed"))
                    .into_response()
            }))
        }
    }
}

/// Aborts the task when dropped: the extender stops when the handler finishes, and also when it
/// panics (unwinding past `held_while`), so a failed request's key lapses after its TTL instead
/// of being extended for ever.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A key this request reserved.
struct Reservation {
    store: Arc<dyn IdempotencyStore>,
    sealer: Sealer,
    scope: String,
    key: String,
    owner: Owner,
    ttl: Duration,
}

impl Reservation {
    /// Runs `work`, extending the reservation every third of its TTL until it finishes: a slow
    /// handler keeps its key; only a dead (or stalled) process loses it.
    async fn held_while<F: std::future::Future>(&self, work: F) -> F::Output {
        // The extender runs on its own task: the handler keeps running while an extension
        // waits (for SQLite's write lock, or a pooled connection the handler itself holds).
        let (store, scope, key, owner, ttl) = (
            Arc::clone(&self.store),
            self.scope.clone(),
            self.key.clone(),
            self.owner.clone(),
            self.ttl,
        );
        let _extender = AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                match store
                    .extend(&scope, &key, &owner, until(Utc::now(), ttl))
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("an idempotency key was taken over while its request ran")
                    }
                    Err(error) => tracing::warn!(
                        error = format!("{error:#}"),
                        "extending an idempotency key failed"
                    ),
                }
            }
        }));
        work.await
    }

    async fn release(&self) {
        if let Err(error) = self
            .store
            .abandon(&self.scope, &self.key, &self.owner)
            .await
        {
            tracing::warn!(
                error = format!("{error:#}"),
                "releasing an idempotency key failed"
            );
        }
    }

    async fn finish(&self, response: Response) -> Response {
        let status = response.status();
        // Nothing ran (401, 403) or it failed (5xx): the key stays free for a retry.
        if status.is_server_error()
            || status == StatusCode::UNAUTHORIZED
            || status == StatusCode::FORBIDDEN
        {
            self.release().await;
            return response;
        }
        let (parts, body) = response.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_STORED_BODY).await else {
            self.release().await;
            return ApiError::internal(anyhow::anyhow!(
                "response too large to store for idempotency"
            ))
            .into_response();
        };
        let headers: Vec<(String, String)> = REPLAYED_HEADERS
            .iter()
            .filter_map(|name| {
                let value = parts.headers.get(*name)?.to_str().ok()?;
                Some(((*name).to_owned(), value.to_owned()))
            })
            .collect();
        let status = parts.status.as_u16();
        let record = Sealed {
            scope: &self.scope,
            key: &self.key,
            status,
            headers: &headers,
        };
        let stored = StoredResponse {
            status,
            body: self.sealer.seal(record, &bytes),
            headers,
        };
        match self
            .store
            .complete(&self.scope, &self.key, &self.owner, &stored)
            .await
        {
            Ok(true) => {}
            // Fenced out: the record belongs to the request that took the key over.
            Ok(false) => tracing::warn!(
                "an idempotency key was taken over while its request ran; its response is not stored"
            ),
            // The effect happened; the client still gets its answer. A retry will be told 409
            // until the reservation expires.
            Err(error) => tracing::error!(
                error = format!("{error:#}"),
                "storing an idempotent response failed"
            ),
        }
        Response::from_parts(parts, Body::from(bytes))
    }
}

fn replay(stored: StoredResponse, sealer: &Sealer, scope: &str, key: &str) -> Response {
    // Does not open: the row was altered or moved. The effect happened once and must not run
    // again, so the key stays taken and the caller is told it cannot be answered.
    let record = Sealed {
        scope,
        key,
        status: stored.status,
        headers: &stored.headers,
    };
    let body = match sealer.open(record, &stored.body) {
        Ok(body) => body,
        Err(error) => return ApiError::internal(error).into_response(),
    };
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, body).into_response();
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

    fn owner(begin: Begin) -> Owner {
        match begin {
            Begin::Proceed(owner) => owner,
            other => panic!("expected to proceed, got {other:?}"),
        }
    }

    fn in_flight(outcome: Begin) -> bool {
        matches!(outcome, Begin::InFlight { .. })
    }

    pub async fn run_all(store: &dyn IdempotencyStore) {
        let scope = uuid::Uuid::now_v7().to_string();
        let now = Utc::now();
        let ttl = LOCK_TTL;
        let response = StoredResponse {
            status: 201,
            headers: vec![("location".into(), "/v1/x/1".into())],
            body: b"{\"id\":1}".to_vec(),
        };
        let begin = |key: &'static str, fingerprint: &'static str, at: DateTime<Utc>| {
            let scope = scope.clone();
            async move {
                store
                    .begin(&scope, key, fingerprint, at, ttl)
                    .await
                    .unwrap()
            }
        };

        let first = owner(begin("k1", "fp-a", now).await);
        match begin("k1", "fp-a", now).await {
            Begin::InFlight { until: held } => assert!(
                (held - until(now, ttl)).abs() < chrono::Duration::milliseconds(1),
                "says until when the key is held: {held}"
            ),
            other => panic!("expected in flight, got {other:?}"),
        }
        assert_eq!(begin("k1", "fp-b", now).await, Begin::Mismatch);
        assert!(
            store
                .complete(&scope, "k1", &first, &response)
                .await
                .unwrap()
        );
        assert_eq!(
            begin("k1", "fp-a", now).await,
            Begin::Replay(response.clone())
        );
        assert_eq!(begin("k1", "fp-b", now).await, Begin::Mismatch);
        assert!(
            !store
                .complete(&scope, "k1", &first, &response)
                .await
                .unwrap(),
            "a completed record is never written again"
        );

        // Scopes are isolated.
        let other = format!("{scope}-other");
        owner(store.begin(&other, "k1", "fp-a", now, ttl).await.unwrap());

        // An abandoned reservation can be taken again at once; only its owner abandons it.
        let holder = owner(begin("k2", "fp", now).await);
        store.abandon(&scope, "k2", &Owner::new()).await.unwrap();
        assert!(in_flight(begin("k2", "fp", now).await), "not the owner");
        store.abandon(&scope, "k2", &holder).await.unwrap();
        let holder = owner(begin("k2", "fp", now).await);

        // A reservation left by a dead process expires after the lock TTL; an extended one
        // does not.
        let later = now + chrono::Duration::from_std(ttl).unwrap() + chrono::Duration::seconds(1);
        assert!(
            store
                .extend(&scope, "k2", &holder, later + chrono::Duration::seconds(1))
                .await
                .unwrap()
        );
        assert!(in_flight(begin("k2", "fp", later).await), "extended");
        let much_later = later + chrono::Duration::from_std(ttl).unwrap();
        let successor = owner(begin("k2", "fp", much_later).await);
        assert!(in_flight(begin("k2", "fp", much_later).await));

        // The request that lost its reservation is fenced out: it can neither extend, nor
        // complete over, nor release its successor's reservation.
        assert!(
            !store
                .extend(&scope, "k2", &holder, much_later)
                .await
                .unwrap()
        );
        let stale = StoredResponse {
            status: 200,
            headers: vec![],
            body: b"stale".to_vec(),
        };
        assert!(!store.complete(&scope, "k2", &holder, &stale).await.unwrap());
        store.abandon(&scope, "k2", &holder).await.unwrap();
        assert!(in_flight(begin("k2", "fp", much_later).await));
        assert!(
            store
                .complete(&scope, "k2", &successor, &response)
                .await
                .unwrap()
        );
        assert_eq!(
            begin("k2", "fp", much_later).await,
            Begin::Replay(response.clone()),
            "the successor's response, not the stale one"
        );

        // After the retention window a key starts afresh, even with another body.
        let next_day =
            now + chrono::Duration::from_std(RETENTION).unwrap() + chrono::Duration::seconds(1);
        owner(begin("k1", "fp-c", next_day).await);

        // Pruning removes only old records.
        owner(begin("k3", "fp", now).await);
        store
            .prune(now - chrono::Duration::seconds(5))
            .await
            .unwrap();
        assert!(in_flight(begin("k3", "fp", now).await), "pruned too much");
        assert!(
            store
                .prune(now + chrono::Duration::seconds(5))
                .await
                .unwrap()
                >= 1
        );
        owner(begin("k3", "fp-new", now).await);
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
