//! Webhook dispatch throughput (run by `scripts/bench-imports.sh`): the dispatcher delivering
//! queued messages to a local receiver, against a bare baseline in the same run: the same
//! bodies POSTed to the same receiver by a plain HTTP client at the same concurrency (16: four
//! endpoints, four in flight each), with no claims, signatures, SSRF guard or attempt records.
//! Rounds alternate baseline and candidate; it prints a table and never fails on a number.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use uuid::Uuid;
use vitrine_webhooks::address_policy::AddressPolicy;
use vitrine_webhooks::attempt::Sender;
use vitrine_webhooks::dispatcher::{Dispatcher, DispatcherOptions, EndpointSecrets, Notices};
use vitrine_webhooks::secret::WebhookSecret;
use vitrine_webhooks::store::{NewEndpoint, NewMessage, WebhookStore};

/// Endpoints of the benchmark's tenant, and deliveries in flight to each.
const ENDPOINTS: usize = 4;
const PER_ENDPOINT: u32 = 4;
const EVENT: &str = "bench.event";

#[derive(Debug)]
struct OneSecret(WebhookSecret);

#[async_trait]
impl EndpointSecrets for OneSecret {
    async fn secrets(&self, _: Uuid, _: bool) -> anyhow::Result<Vec<WebhookSecret>> {
        Ok(vec![self.0.clone()])
    }
}

#[derive(Debug)]
struct Silent;

#[async_trait]
impl Notices for Silent {
    async fn attempts_exhausted(&self, _: Uuid, _: Uuid) {}
    async fn endpoint_disabled(&self, _: Uuid, _: &str) {}
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A receiver on loopback that answers 204 to every POST; its URL.
async fn receiver() -> String {
    let app = axum::Router::new().fallback(|| async { axum::http::StatusCode::NO_CONTENT });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A body the size of a typical catalogue event (about 600 bytes).
fn body(n: usize) -> Vec<u8> {
    serde_json::json!({
        "type": EVENT,
        "timestamp": "2026-12-01T12:00:00.000Z",
        "data": {"n": n, "product_id": Uuid::now_v7(), "seller_id": Uuid::now_v7(),
                 "sku": format!("SKU-{n}"), "name": "Café torrado 500 g",
                 "price": {"amount": 1990, "currency": "BRL"}, "status": "active",
                 "on_hand": 10, "reserved": 2, "available": 8, "cause": "reserved",
                 "padding": "x".repeat(300)},
    })
    .to_string()
    .into_bytes()
}

/// The bare baseline: every body POSTed once per endpoint, 16 at a time; deliveries/s.
async fn bare(url: &str, messages: usize) -> f64 {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let total = messages * ENDPOINTS;
    futures::stream::iter(0..total)
        .map(|n| {
            let client = client.clone();
            async move {
                let response = client.post(url).body(body(n)).send().await.unwrap();
                assert!(response.status().is_success());
            }
        })
        .buffer_unordered(ENDPOINTS * PER_ENDPOINT as usize)
        .collect::<Vec<()>>()
        .await;
    total as f64 / started.elapsed().as_secs_f64()
}

/// The candidate: `messages` messages to four subscribed endpoints, dispatched until none is
/// pending; deliveries/s (from the dispatcher's start, the messages already queued).
async fn dispatched<F, Fut>(
    store: Arc<dyn WebhookStore>,
    enqueue: F,
    url: &str,
    messages: usize,
) -> f64
where
    F: Fn(NewMessage) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let tenant = Uuid::now_v7().to_string();
    for _ in 0..ENDPOINTS {
        store
            .create_endpoint(
                Uuid::now_v7(),
                &NewEndpoint {
                    tenant: tenant.clone(),
                    url: url.to_owned(),
                    description: None,
                    event_types: vec![EVENT.to_owned()],
                },
                chrono::Utc::now(),
            )
            .await
            .unwrap();
    }
    for n in 0..messages {
        enqueue(NewMessage {
            id: Uuid::now_v7(),
            tenant: tenant.clone(),
            event_type: EVENT.to_owned(),
            body: body(n),
            created_at: chrono::Utc::now(),
        })
        .await;
    }
    let dispatcher = Dispatcher::new(
        Arc::clone(&store),
        Sender::new(
            Arc::new(AddressPolicy::embedded(vec![])),
            Duration::from_secs(15),
        )
        .unwrap(),
        Arc::new(OneSecret(WebhookSecret::generate())),
        Arc::new(Silent),
        DispatcherOptions {
            per_endpoint: PER_ENDPOINT,
            idle: Duration::from_millis(5),
            ..DispatcherOptions::default()
        },
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(dispatcher.run(stop.clone()));
    while store.pending().await.unwrap() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    stop.cancel();
    running.await.unwrap();
    (messages * ENDPOINTS) as f64 / elapsed.as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn row(path: &str, bare: &[f64], candidate: &[f64]) {
    let ratios: Vec<f64> = bare.iter().zip(candidate).map(|(b, c)| c / b).collect();
    let (low, high) = (
        ratios.iter().copied().fold(f64::MAX, f64::min),
        ratios.iter().copied().fold(0.0, f64::max),
    );
    println!(
        "| {path} | {:.0} | {:.0} | {:.2} ({low:.2}-{high:.2}) |",
        median(candidate.to_vec()),
        median(bare.to_vec()),
        median(ratios)
    );
}

#[tokio::main]
async fn main() {
    let rounds = env("BENCH_ROUNDS", 3);
    let messages = env("BENCH_WEBHOOK_MESSAGES", 1000);
    let url = receiver().await;
    println!(
        "webhook dispatch: {messages} messages x {ENDPOINTS} endpoints, {rounds} alternating rounds\n"
    );
    println!("| path | candidate deliveries/s | bare POSTs/s | ratio (range) |");
    println!("|---|---|---|---|");

    let (mut base, mut sqlite) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        base.push(bare(&url, messages).await);
        let dir = tempfile::tempdir().unwrap();
        let pool = vitrine_runtime::db::sqlite(&dir.path().join("webhooks.sqlite3"))
            .await
            .unwrap();
        vitrine_webhooks::migrations::SQLITE
            .run(&pool)
            .await
            .unwrap();
        let store = Arc::new(vitrine_webhooks::store::SqliteWebhookStore::new(
            pool.clone(),
        ));
        sqlite.push(
            dispatched(
                store,
                |message| {
                    let pool = pool.clone();
                    async move {
                        let mut conn = pool.acquire().await.unwrap();
                        vitrine_webhooks::store::sqlite::enqueue(&mut conn, &message)
                            .await
                            .unwrap();
                    }
                },
                &url,
                messages,
            )
            .await,
        );
    }
    row("dispatcher, SQLite store (embedded)", &base, &sqlite);

    {
        let (mut base, mut postgres) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            base.push(bare(&url, messages).await);
            let url_db = vitrine_runtime::testing::postgres_database().await;
            let pool = sqlx::PgPool::connect(secrecy::ExposeSecret::expose_secret(&url_db))
                .await
                .unwrap();
            vitrine_webhooks::migrations::POSTGRES
                .run(&pool)
                .await
                .unwrap();
            let store = Arc::new(vitrine_webhooks::store::PgWebhookStore::new(pool.clone()));
            postgres.push(
                dispatched(
                    store,
                    |message| {
                        let pool = pool.clone();
                        async move {
                            let mut conn = pool.acquire().await.unwrap();
                            vitrine_webhooks::store::postgres::enqueue(&mut conn, &message)
                                .await
                                .unwrap();
                        }
                    },
                    &url,
                    messages,
                )
                .await,
            );
        }
        row("dispatcher, PostgreSQL store", &base, &postgres);
    }
}
