//! The dispatcher end to end on the embedded store, against a scripted receiver on loopback:
//! retries until a success (every attempt listed), a message exhausting a short schedule, 410
//! disabling the endpoint, a receiver aborting a message, and a rotated endpoint signed with
//! both secrets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use uuid::Uuid;
use vitrine_webhooks::address_policy::AddressPolicy;
use vitrine_webhooks::attempt::Sender;
use vitrine_webhooks::dispatcher::{Dispatcher, DispatcherOptions, EndpointSecrets, Notices};
use vitrine_webhooks::secret::WebhookSecret;
use vitrine_webhooks::signature::verify;
use vitrine_webhooks::store::{
    DeliveryState, NewEndpoint, NewMessage, SqliteWebhookStore, WebhookStore, sqlite,
};

use crate::common::{Answer, receiver};

#[derive(Debug, Default)]
struct Secrets(Mutex<HashMap<Uuid, Vec<WebhookSecret>>>);

#[async_trait]
impl EndpointSecrets for Secrets {
    async fn secrets(
        &self,
        endpoint: Uuid,
        with_previous: bool,
    ) -> anyhow::Result<Vec<WebhookSecret>> {
        let all = self
            .0
            .lock()
            .unwrap()
            .get(&endpoint)
            .cloned()
            .unwrap_or_default();
        Ok(all
            .into_iter()
            .take(if with_previous { 2 } else { 1 })
            .collect())
    }
}

#[derive(Debug, Default)]
struct Heard(Mutex<Vec<String>>);

#[async_trait]
impl Notices for Heard {
    async fn attempts_exhausted(&self, endpoint: Uuid, message: Uuid) {
        self.0
            .lock()
            .unwrap()
            .push(format!("exhausted {endpoint} {message}"));
    }
    async fn endpoint_disabled(&self, endpoint: Uuid, reason: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("disabled {endpoint}: {reason}"));
    }
}

struct Setup {
    store: Arc<SqliteWebhookStore>,
    pool: sqlx::SqlitePool,
    secrets: Arc<Secrets>,
    heard: Arc<Heard>,
    dispatcher: Dispatcher,
    _dir: tempfile::TempDir,
}

async fn setup(schedule: &str) -> Setup {
    setup_with(schedule, chrono::Duration::days(5)).await
}

async fn setup_with(schedule: &str, disable_after: chrono::Duration) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pool = vitrine_runtime::db::sqlite(&dir.path().join("webhooks.sqlite3"))
        .await
        .unwrap();
    vitrine_webhooks::migrations::SQLITE
        .run(&pool)
        .await
        .unwrap();
    let store = Arc::new(SqliteWebhookStore::new(pool.clone()));
    let secrets = Arc::new(Secrets::default());
    let heard = Arc::new(Heard::default());
    let dispatcher = Dispatcher::new(
        Arc::clone(&store) as Arc<dyn WebhookStore>,
        Sender::new(
            Arc::new(AddressPolicy::embedded(vec![])),
            Duration::from_secs(5),
        )
        .unwrap(),
        Arc::clone(&secrets) as Arc<dyn EndpointSecrets>,
        Arc::clone(&heard) as Arc<dyn Notices>,
        DispatcherOptions {
            schedule: schedule.parse().unwrap(),
            idle: Duration::from_millis(20),
            disable_after,
            ..DispatcherOptions::default()
        },
    );
    Setup {
        store,
        pool,
        secrets,
        heard,
        dispatcher,
        _dir: dir,
    }
}

impl Setup {
    /// An endpoint at `url` for `batch.completed`, with a fresh secret.
    async fn endpoint(&self, url: &str) -> (Uuid, WebhookSecret) {
        let id = Uuid::now_v7();
        self.store
            .create_endpoint(
                id,
                &NewEndpoint {
                    tenant: "t1".to_owned(),
                    url: url.to_owned(),
                    description: None,
                    event_types: vec!["batch.completed".to_owned()],
                },
                Utc::now(),
            )
            .await
            .unwrap();
        let secret = WebhookSecret::generate();
        self.secrets
            .0
            .lock()
            .unwrap()
            .insert(id, vec![secret.clone()]);
        (id, secret)
    }

    async fn announce(&self) -> Uuid {
        let id = Uuid::now_v7();
        let mut tx = self.pool.begin().await.unwrap();
        sqlite::enqueue(
            &mut tx,
            &NewMessage {
                id,
                tenant: "t1".to_owned(),
                event_type: "batch.completed".to_owned(),
                body: br#"{"type":"batch.completed","timestamp":"2026-12-01T12:00:00Z","data":{}}"#
                    .to_vec(),
                created_at: Utc::now(),
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        id
    }

    /// Runs rounds until `done` holds (or fails the test after 10 s).
    async fn until(&self, what: &str, done: impl Fn(&[DeliveryState]) -> bool, endpoint: Uuid) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            self.dispatcher.round().await.unwrap();
            let states: Vec<DeliveryState> = self
                .store
                .attempts(endpoint, 100, None)
                .await
                .unwrap()
                .iter()
                .map(|a| a.state)
                .collect();
            if done(&states) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never {what}: {states:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn ok() -> Answer {
    (200, vec![], Duration::ZERO)
}

fn status(code: u16) -> Answer {
    (code, vec![], Duration::ZERO)
}

#[tokio::test]
async fn a_message_is_retried_until_the_receiver_takes_it() {
    let setup = setup("0,50ms,50ms,50ms").await;
    let (url, receiver) = receiver(vec![status(500), status(500), ok()]).await;
    let (endpoint, secret) = setup.endpoint(&url).await;
    let message = setup.announce().await;
    setup
        .until(
            "delivered",
            |s| s.first() == Some(&DeliveryState::Delivered),
            endpoint,
        )
        .await;

    let attempts = setup.store.attempts(endpoint, 100, None).await.unwrap();
    let seen: Vec<_> = attempts
        .iter()
        .rev()
        .map(|a| (a.status_code, a.state))
        .collect();
    assert_eq!(
        seen,
        [
            (Some(500), DeliveryState::Pending),
            (Some(500), DeliveryState::Pending),
            (Some(200), DeliveryState::Delivered)
        ]
    );
    assert!(attempts.iter().all(|a| a.message_id == message));
    assert!(attempts[1].next_attempt_at.is_some() && attempts[0].next_attempt_at.is_none());

    let received = receiver.received.lock().unwrap();
    assert_eq!(received.len(), 3);
    for (headers, body) in received.iter() {
        let header = |name: &str| headers[name].to_str().unwrap().to_owned();
        assert_eq!(
            header("webhook-id"),
            message.to_string(),
            "the same id on every attempt"
        );
        let at = header("webhook-timestamp");
        verify(
            &secret,
            &message.to_string(),
            &at,
            &header("webhook-signature"),
            body,
            at.parse().unwrap(),
        )
        .unwrap();
    }
    assert!(setup.heard.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_exhausted_schedule_fails_the_message_and_says_so() {
    let setup = setup("0,20ms").await;
    let (url, _receiver) = receiver(vec![status(503), status(503)]).await;
    let (endpoint, _) = setup.endpoint(&url).await;
    let message = setup.announce().await;
    setup
        .until(
            "failed",
            |s| s.first() == Some(&DeliveryState::Failed),
            endpoint,
        )
        .await;
    assert_eq!(
        setup
            .store
            .attempts(endpoint, 100, None)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        *setup.heard.0.lock().unwrap(),
        [format!("exhausted {endpoint} {message}")]
    );
    assert!(
        setup
            .store
            .endpoint(endpoint)
            .await
            .unwrap()
            .unwrap()
            .enabled
    );
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_abort_stops_the_message() {
    let setup = setup("0,20ms,20ms").await;
    let (gone_url, _) = receiver(vec![status(410)]).await;
    let (gone, _) = setup.endpoint(&gone_url).await;
    let (abort_url, _) = receiver(vec![(
        422,
        vec![("webhook-delivery", "abort-message".to_owned())],
        Duration::ZERO,
    )])
    .await;
    let (aborting, _) = setup.endpoint(&abort_url).await;
    setup.announce().await;
    setup.until("gone", |s| !s.is_empty(), gone).await;
    setup
        .until(
            "aborted",
            |s| s.first() == Some(&DeliveryState::Aborted),
            aborting,
        )
        .await;
    for _ in 0..5 {
        setup.dispatcher.round().await.unwrap();
    }
    assert_eq!(
        setup
            .store
            .attempts(aborting, 100, None)
            .await
            .unwrap()
            .len(),
        1,
        "not retried"
    );
    let disabled = setup.store.endpoint(gone).await.unwrap().unwrap();
    assert!(!disabled.enabled);
    assert_eq!(
        disabled.disabled_reason.as_deref(),
        Some("the receiver answered 410 Gone")
    );
    let heard = setup.heard.0.lock().unwrap();
    assert_eq!(
        *heard,
        [format!("disabled {gone}: the receiver answered 410 Gone")]
    );
}

#[tokio::test]
async fn a_rotated_endpoint_gets_both_signatures_for_a_day() {
    let setup = setup("0").await;
    let (url, receiver) = receiver(vec![ok()]).await;
    let (endpoint, old) = setup.endpoint(&url).await;
    let new = WebhookSecret::generate();
    setup
        .secrets
        .0
        .lock()
        .unwrap()
        .insert(endpoint, vec![new.clone(), old.clone()]);
    setup
        .store
        .secret_rotated(
            endpoint,
            Utc::now() + chrono::Duration::hours(24),
            Utc::now(),
        )
        .await
        .unwrap();
    let message = setup.announce().await.to_string();
    setup
        .until(
            "delivered",
            |s| s.first() == Some(&DeliveryState::Delivered),
            endpoint,
        )
        .await;
    let received = receiver.received.lock().unwrap();
    let (headers, body) = &received[0];
    let header = |name: &str| headers[name].to_str().unwrap().to_owned();
    let signatures = header("webhook-signature");
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    let at = header("webhook-timestamp");
    for secret in [&old, &new] {
        verify(
            secret,
            &message,
            &at,
            &signatures,
            body,
            at.parse().unwrap(),
        )
        .unwrap();
    }
}

/// Svix disables an endpoint after five days without a success; here the window is 200 ms.
#[tokio::test]
async fn an_endpoint_failing_for_too_long_is_disabled() {
    let setup = setup_with(
        "0,50ms,50ms,50ms,50ms,50ms,50ms",
        chrono::Duration::milliseconds(200),
    )
    .await;
    let (url, _receiver) = receiver(vec![status(500); 10]).await;
    let (endpoint, _) = setup.endpoint(&url).await;
    setup.announce().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while setup
        .store
        .endpoint(endpoint)
        .await
        .unwrap()
        .unwrap()
        .enabled
    {
        assert!(tokio::time::Instant::now() < deadline, "never disabled");
        setup.dispatcher.round().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let disabled = setup.store.endpoint(endpoint).await.unwrap().unwrap();
    let reason = disabled.disabled_reason.unwrap();
    assert!(
        reason.starts_with("every attempt failed since "),
        "{reason}"
    );
    let heard = setup.heard.0.lock().unwrap();
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert!(heard[0].starts_with(&format!("disabled {endpoint}")));
}
