//! Several dispatchers claiming from one PostgreSQL database at once never send the same
//! delivery twice at the same time, and every delivery is sent. The whole history of a
//! concurrent run is checked; the same run against a store that claims without row locks shows
//! that the checker catches double claims.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;
use vitrine_webhooks::store::postgres::{UnlockedPgWebhookStore, UnserializedPgWebhookStore};
use vitrine_webhooks::store::{
    AttemptRecord, DeliveryState, NewEndpoint, NewMessage, PgWebhookStore, WebhookStore, postgres,
};

const ENDPOINTS: usize = 3;
const MESSAGES: usize = 300;
const DISPATCHERS: usize = 6;

#[derive(Debug, Clone, Copy)]
enum Event {
    Claimed(usize),
    Recorded,
}

type History = Arc<Mutex<Vec<((Uuid, Uuid), Event)>>>;

/// What went wrong in a history: deliveries claimed while another dispatcher held them, and
/// deliveries never sent.
fn violations(history: &[((Uuid, Uuid), Event)], expected: usize) -> Vec<String> {
    let mut holder: HashMap<(Uuid, Uuid), usize> = HashMap::new();
    let mut sent: HashMap<(Uuid, Uuid), usize> = HashMap::new();
    let mut found = Vec::new();
    for (delivery, event) in history {
        match event {
            Event::Claimed(by) => {
                if let Some(other) = holder.insert(*delivery, *by) {
                    found.push(format!(
                        "{delivery:?} claimed by {by} while {other} held it"
                    ));
                }
            }
            Event::Recorded => {
                holder.remove(delivery);
                *sent.entry(*delivery).or_default() += 1;
            }
        }
    }
    if sent.len() != expected {
        found.push(format!("{} of {expected} deliveries sent", sent.len()));
    }
    found.extend(
        sent.iter()
            .filter(|(_, times)| **times > 1)
            .map(|(delivery, times)| format!("{delivery:?} sent {times} times")),
    );
    found
}

/// A new tenant with `endpoints` endpoints and `messages` messages to each, committed at once.
async fn seed(store: &dyn WebhookStore, pool: &sqlx::PgPool, endpoints: usize, messages: usize) {
    let tenant = Uuid::now_v7().to_string();
    for _ in 0..endpoints {
        store
            .create_endpoint(
                Uuid::now_v7(),
                &NewEndpoint {
                    tenant: tenant.clone(),
                    url: "https://receiver.example/hook".to_owned(),
                    description: None,
                    event_types: vec!["stock.changed".to_owned()],
                },
                Utc::now(),
            )
            .await
            .unwrap();
    }
    let mut tx = pool.begin().await.unwrap();
    for _ in 0..messages {
        let message = NewMessage {
            id: Uuid::now_v7(),
            tenant: tenant.clone(),
            event_type: "stock.changed".to_owned(),
            body: b"{}".to_vec(),
            created_at: Utc::now(),
        };
        postgres::enqueue(&mut tx, &message).await.unwrap();
    }
    tx.commit().await.unwrap();
}

async fn run(store: Arc<dyn WebhookStore>, pool: sqlx::PgPool) -> Vec<String> {
    seed(store.as_ref(), &pool, ENDPOINTS, MESSAGES).await;

    let history: History = Arc::default();
    let dispatchers: Vec<_> = (0..DISPATCHERS)
        .map(|me| {
            let (store, history) = (Arc::clone(&store), Arc::clone(&history));
            tokio::spawn(async move {
                let mut idle = 0;
                while idle < 5 {
                    let now = Utc::now();
                    let claimed = store
                        .claim(now, now + chrono::Duration::minutes(5), 10, 1000)
                        .await
                        .unwrap();
                    if claimed.is_empty() {
                        idle += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    idle = 0;
                    for due in claimed {
                        let key = (due.message_id, due.endpoint_id);
                        history.lock().unwrap().push((key, Event::Claimed(me)));
                        tokio::task::yield_now().await;
                        history.lock().unwrap().push((key, Event::Recorded));
                        store
                            .record(&AttemptRecord {
                                id: Uuid::now_v7(),
                                message_id: due.message_id,
                                endpoint_id: due.endpoint_id,
                                attempted_at: Utc::now(),
                                status_code: Some(200),
                                duration_ms: 1,
                                error: None,
                                state: DeliveryState::Delivered,
                                next_attempt_at: None,
                            })
                            .await
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for dispatcher in dispatchers {
        dispatcher.await.unwrap();
    }
    let history = history.lock().unwrap().clone();
    violations(&history, ENDPOINTS * MESSAGES)
}

async fn database() -> sqlx::PgPool {
    let url = vitrine_runtime::testing::postgres_database().await;
    let pool = vitrine_runtime::db::postgres(&url, 16).await.unwrap();
    vitrine_webhooks::migrations::POSTGRES
        .run(&pool)
        .await
        .unwrap();
    pool
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_dispatchers_send_each_delivery_once() {
    let pool = database().await;
    let found = run(Arc::new(PgWebhookStore::new(pool.clone())), pool).await;
    assert!(found.is_empty(), "{found:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checker_catches_claims_without_row_locks() {
    let pool = database().await;
    let found = run(Arc::new(UnlockedPgWebhookStore::new(pool.clone())), pool).await;
    assert!(
        found
            .iter()
            .any(|v| v.contains("while") || v.contains("times")),
        "a store that claims without locks passed the checker: {found:?}"
    );
}

/// Deliveries one endpoint may have in flight in the limit test.
const LIMIT: u32 = 2;

/// The most deliveries of one endpoint held at once in a history, per endpoint. A delivery
/// counts from after its claim returned until just before its attempt is recorded (its lease
/// outlives both), so the count never exceeds what the store really handed out.
fn most_held(history: &[((Uuid, Uuid), Event)]) -> usize {
    let mut held: HashMap<Uuid, usize> = HashMap::new();
    let mut most = 0;
    for ((_, endpoint), event) in history {
        let count = held.entry(*endpoint).or_default();
        match event {
            Event::Claimed(_) => *count += 1,
            Event::Recorded => *count -= 1,
        }
        most = most.max(*count);
    }
    most
}

/// Six dispatchers claiming with a per-endpoint limit of 2, each holding what it claimed for a
/// while (a slow receiver): the most held for one endpoint at once.
async fn held_at_once(store: Arc<dyn WebhookStore>, pool: sqlx::PgPool) -> usize {
    seed(store.as_ref(), &pool, 1, 60).await;
    let history: History = Arc::default();
    let start = Arc::new(tokio::sync::Barrier::new(DISPATCHERS));
    let dispatchers: Vec<_> = (0..DISPATCHERS)
        .map(|me| {
            let (store, history, start) =
                (Arc::clone(&store), Arc::clone(&history), Arc::clone(&start));
            tokio::spawn(async move {
                // A fixed number of rounds, started together: every dispatcher reaches the
                // barrier each time (60 deliveries need 30 rounds at the limit).
                for _ in 0..40 {
                    start.wait().await;
                    let now = Utc::now();
                    let claimed = store
                        .claim(now, now + chrono::Duration::minutes(5), 10, LIMIT)
                        .await
                        .unwrap();
                    for due in &claimed {
                        let key = (due.message_id, due.endpoint_id);
                        history.lock().unwrap().push((key, Event::Claimed(me)));
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    for due in claimed {
                        let key = (due.message_id, due.endpoint_id);
                        history.lock().unwrap().push((key, Event::Recorded));
                        store
                            .record(&AttemptRecord {
                                id: Uuid::now_v7(),
                                message_id: due.message_id,
                                endpoint_id: due.endpoint_id,
                                attempted_at: Utc::now(),
                                status_code: Some(200),
                                duration_ms: 30,
                                error: None,
                                state: DeliveryState::Delivered,
                                next_attempt_at: None,
                            })
                            .await
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for dispatcher in dispatchers {
        dispatcher.await.unwrap();
    }
    let history = history.lock().unwrap().clone();
    most_held(&history)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_dispatchers_respect_the_per_endpoint_limit() {
    let pool = database().await;
    let most = held_at_once(Arc::new(PgWebhookStore::new(pool.clone())), pool).await;
    assert!(most <= LIMIT as usize, "{most} in flight for one endpoint");
    assert_eq!(most, LIMIT as usize, "the limit was reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checker_catches_claims_that_are_not_serialised() {
    let pool = database().await;
    let most = held_at_once(
        Arc::new(UnserializedPgWebhookStore::new(pool.clone())),
        pool,
    )
    .await;
    assert!(
        most > LIMIT as usize,
        "claims taken at the same instant stayed within the limit: {most}"
    );
}
