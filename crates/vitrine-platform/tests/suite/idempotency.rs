//! The `Idempotency-Key` middleware end to end, on both stores: a request that outlives the
//! reservation's TTL keeps its key (a retry meanwhile is 409, never a second effect); nothing is
//! judged before the caller is authenticated, and a caller the middleware cannot authenticate
//! is answered there; a refused request does not burn its key; what a response shows once (a
//! signing secret) is replayed but never stored in the clear.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use vitrine_platform::http::auth::{Authenticator, Principal, Role, TokenIssuer};
use vitrine_platform::http::idempotency::{
    Begin, Idempotency, IdempotencyStore, Owner, PgIdempotencyStore, Sealed, Sealer,
    SqliteIdempotencyStore, StoredResponse, idempotency,
};

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

/// How long the handler holds a request: several reservation TTLs.
const HOLD: Duration = Duration::from_millis(4500);
const LOCK_TTL: Duration = Duration::from_millis(1500);

/// A POST whose effect is counted; `deny` in the body gets 403 (nothing runs).
fn app(store: Arc<dyn IdempotencyStore>, effects: Arc<AtomicU32>) -> Router {
    app_verifying(store, effects, KEY, TaskTracker::new())
}

/// As [`app`], with the middleware verifying tokens with `middleware_key` while the handler
/// verifies them with [`KEY`]: a stand-in for the key provider answering one check and not the
/// other.
fn app_verifying(
    store: Arc<dyn IdempotencyStore>,
    effects: Arc<AtomicU32>,
    middleware_key: &[u8],
    work: TaskTracker,
) -> Router {
    let authenticator = Arc::new(Authenticator::hs256(KEY).unwrap());
    let mut state = Idempotency::new(
        store,
        Arc::new(Authenticator::hs256(middleware_key).unwrap()),
        1024,
        Arc::from(&b"fp"[..]),
    );
    state.lock_ttl = LOCK_TTL;
    state.work = work;
    Router::new()
        .route(
            "/things",
            post(move |_caller: Principal, body: String| {
                let effects = Arc::clone(&effects);
                async move {
                    if body == "deny" {
                        return (StatusCode::FORBIDDEN, String::new());
                    }
                    let n = effects.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(HOLD).await;
                    (StatusCode::CREATED, format!("effect {n}"))
                }
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(state),
            idempotency,
        ))
        .with_state(authenticator)
}

fn token() -> String {
    TokenIssuer::hs256(KEY)
        .unwrap()
        .issue("ana", &[Role::Admin], None, Duration::from_secs(600))
        .unwrap()
}

fn request(key: &str, body: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::post("/things").header("idempotency-key", key);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, String, bool) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let replayed = response.headers().contains_key("idempotent-replayed");
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap(), replayed)
}

async fn a_request_held_past_its_ttl_keeps_its_key(store: Arc<dyn IdempotencyStore>) {
    let effects = Arc::new(AtomicU32::new(0));
    let app = app(store, Arc::clone(&effects));
    let token = token();

    let first = tokio::spawn({
        let app = app.clone();
        let token = token.clone();
        async move { send(&app, request("held", "{}", Some(&token))).await }
    });
    tokio::time::sleep(LOCK_TTL * 2).await;
    let busy = app
        .clone()
        .oneshot(request("held", "{}", Some(&token)))
        .await
        .unwrap();
    assert_eq!(
        busy.status(),
        StatusCode::CONFLICT,
        "the held request still owns the key"
    );
    assert_eq!(
        busy.headers()["retry-after"],
        "1",
        "and says when to ask again"
    );
    let detail = axum::body::to_bytes(busy.into_body(), 1 << 16)
        .await
        .unwrap();
    let detail = String::from_utf8_lossy(&detail);
    assert!(
        detail.contains("the key is free again at 20"),
        "and when the key lapses if its request was cut off: {detail}"
    );

    let (status, body, _) = first.await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::CREATED, "effect 1"));
    let (status, body, replayed) = send(&app, request("held", "{}", Some(&token))).await;
    assert_eq!(
        (status, body.as_str(), replayed),
        (StatusCode::CREATED, "effect 1", true)
    );
    assert_eq!(effects.load(Ordering::SeqCst), 1, "one effect");
}

async fn nothing_is_judged_or_kept_for_refused_callers(store: Arc<dyn IdempotencyStore>) {
    let effects = Arc::new(AtomicU32::new(0));
    let app = app(Arc::clone(&store), Arc::clone(&effects));
    let token = token();

    // Unauthenticated: 401, whatever the key looks like.
    let anonymous = Request::post("/things")
        .header("idempotency-key", "")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(anonymous).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // The middleware's own check decides: a caller it cannot authenticate is answered there,
    // never handed on to run without its key reserved.
    let flickering = app_verifying(
        Arc::clone(&store),
        Arc::clone(&effects),
        b"another key, as when the provider is unreachable",
        TaskTracker::new(),
    );
    let (status, _, _) = send(&flickering, request("unverified", "{}", Some(&token))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(effects.load(Ordering::SeqCst), 0, "nothing ran unreserved");

    // Refused (403): the key stays free for the caller's next, different request.
    let (status, _, _) = send(&app, request("refused", "deny", Some(&token))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, replayed) = send(&app, request("refused", "{}", Some(&token))).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, false));
    assert_eq!(effects.load(Ordering::SeqCst), 1);
}

/// A shutdown cuts the connection off while the handler runs; the handler, detached, finishes
/// within the window the host gives it and stores its response, so the retry after the
/// restart is a replay, not a 409 and not a second effect.
async fn a_cut_off_request_finishes_and_its_retry_replays(store: Arc<dyn IdempotencyStore>) {
    let effects = Arc::new(AtomicU32::new(0));
    let work = TaskTracker::new();
    let cut_off = app_verifying(Arc::clone(&store), Arc::clone(&effects), KEY, work.clone());
    let token = token();
    let cut = tokio::time::timeout(
        Duration::from_millis(300),
        send(&cut_off, request("cut", "{}", Some(&token))),
    )
    .await;
    assert!(cut.is_err(), "the connection was cut off mid-request");
    work.close();
    tokio::time::timeout(HOLD * 2, work.wait())
        .await
        .expect("the detached handler finished");
    let restarted = app(store, Arc::clone(&effects));
    let (status, body, replayed) = send(&restarted, request("cut", "{}", Some(&token))).await;
    assert_eq!(
        (status, body.as_str(), replayed),
        (StatusCode::CREATED, "effect 1", true)
    );
    assert_eq!(effects.load(Ordering::SeqCst), 1);
}

/// A store that records every response it is asked to keep, on top of a real one.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn IdempotencyStore>,
    kept: Mutex<Vec<StoredResponse>>,
}

#[async_trait::async_trait]
impl IdempotencyStore for Recording {
    async fn begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        now: chrono::DateTime<chrono::Utc>,
        lock_ttl: Duration,
    ) -> anyhow::Result<Begin> {
        self.inner
            .begin(scope, key, fingerprint, now, lock_ttl)
            .await
    }
    async fn complete(
        &self,
        scope: &str,
        key: &str,
        owner: &Owner,
        response: &StoredResponse,
    ) -> anyhow::Result<bool> {
        self.kept.lock().unwrap().push(response.clone());
        self.inner.complete(scope, key, owner, response).await
    }
    async fn extend(
        &self,
        scope: &str,
        key: &str,
        owner: &Owner,
        until: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<bool> {
        self.inner.extend(scope, key, owner, until).await
    }
    async fn abandon(&self, scope: &str, key: &str, owner: &Owner) -> anyhow::Result<()> {
        self.inner.abandon(scope, key, owner).await
    }
    async fn prune(&self, cutoff: chrono::DateTime<chrono::Utc>) -> anyhow::Result<u64> {
        self.inner.prune(cutoff).await
    }
}

/// A webhook endpoint's secret is in the response that creates it and nowhere else: a retry
/// under the same key gets it again, but the record kept for that retry holds it sealed.
async fn secrets_in_responses_are_replayed_but_never_kept_in_the_clear(
    store: Arc<dyn IdempotencyStore>,
) {
    const SECRET: &str = "whsec_c2hvd24gb25jZQ==";
    let recording = Arc::new(Recording {
        inner: store,
        kept: Mutex::default(),
    });
    let state = Idempotency::new(
        Arc::clone(&recording) as Arc<dyn IdempotencyStore>,
        Arc::new(Authenticator::hs256(KEY).unwrap()),
        1024,
        Arc::from(&b"fp"[..]),
    );
    let app = Router::new()
        .route(
            "/things",
            post(|| async { (StatusCode::CREATED, format!("{{\"secret\":\"{SECRET}\"}}")) }),
        )
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(state),
            idempotency,
        ));
    let token = token();
    let (status, first, _) = send(&app, request("shown-once", "{}", Some(&token))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(first.contains(SECRET));
    let (status, again, replayed) = send(&app, request("shown-once", "{}", Some(&token))).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, true));
    assert_eq!(
        again, first,
        "the retry gets the secret the first answer had"
    );
    let kept = recording.kept.lock().unwrap().clone();
    assert_eq!(kept.len(), 1);
    let kept = &kept[0];
    for clear in [&b"whsec"[..], b"c2hvd24gb25jZQ"] {
        assert!(
            !kept.body.windows(clear.len()).any(|w| w == clear),
            "the stored body holds no part of the secret in the clear"
        );
    }
    // Sealed, not merely encoded: it opens under the key derived from the fingerprint key, for
    // this subject's record only.
    let record = |scope| Sealed {
        scope,
        key: "shown-once",
        status: kept.status,
        headers: &kept.headers,
    };
    let sealer = Sealer::new(b"fp");
    assert_eq!(
        sealer.open(record("ana"), &kept.body).unwrap(),
        first.as_bytes()
    );
    assert!(sealer.open(record("bia"), &kept.body).is_err());
}

async fn sqlite_store() -> Arc<dyn IdempotencyStore> {
    let dir = tempfile::tempdir().unwrap().keep();
    let pool = vitrine_platform::db::sqlite(&dir.join("keys.sqlite3"))
        .await
        .unwrap();
    vitrine_platform::migrations::SQLITE
        .run(&pool)
        .await
        .unwrap();
    Arc::new(SqliteIdempotencyStore::new(pool))
}

async fn postgres_store() -> Arc<dyn IdempotencyStore> {
    let url = vitrine_platform::testing::postgres_database().await;
    let pool = vitrine_platform::db::postgres(&url, 4).await.unwrap();
    vitrine_platform::migrations::POSTGRES
        .run(&pool)
        .await
        .unwrap();
    Arc::new(PgIdempotencyStore::new(pool))
}

#[tokio::test]
async fn sqlite_held_request_keeps_its_key() {
    a_request_held_past_its_ttl_keeps_its_key(sqlite_store().await).await;
}

#[tokio::test]
async fn postgres_held_request_keeps_its_key() {
    a_request_held_past_its_ttl_keeps_its_key(postgres_store().await).await;
}

#[tokio::test]
async fn sqlite_cut_off_request_replays() {
    a_cut_off_request_finishes_and_its_retry_replays(sqlite_store().await).await;
}

#[tokio::test]
async fn postgres_cut_off_request_replays() {
    a_cut_off_request_finishes_and_its_retry_replays(postgres_store().await).await;
}

#[tokio::test]
async fn sqlite_refused_callers() {
    nothing_is_judged_or_kept_for_refused_callers(sqlite_store().await).await;
}

#[tokio::test]
async fn postgres_refused_callers() {
    nothing_is_judged_or_kept_for_refused_callers(postgres_store().await).await;
}

#[tokio::test]
async fn sqlite_secrets_are_sealed() {
    secrets_in_responses_are_replayed_but_never_kept_in_the_clear(sqlite_store().await).await;
}

#[tokio::test]
async fn postgres_secrets_are_sealed() {
    secrets_in_responses_are_replayed_but_never_kept_in_the_clear(postgres_store().await).await;
}
