//! Commit-to-handled latency of an event, p50/p99, for the embedded path (SQLite outbox ->
//! relay -> local transport -> consumer) and the PostgreSQL path (PostgreSQL outbox -> relay
//! woken by LISTEN/NOTIFY -> local transport -> consumer), next to the bare floor measured in the
//! same run: one INSERT + NOTIFY transaction and a LISTENing connection.
//!
//! Run with `scripts/bench-messaging.sh` (it starts the PostgreSQL server this needs). Messages
//! are sent one at a time, each after the previous one was handled, so the figures are latency,
//! not throughput. This is a benchmark: it prints a table and never fails on a number.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use user_information::store::{PostgresStore, SqliteStore};
use vitrine_messaging::consumer::{Consumer, ConsumerOptions, Handler};
use vitrine_messaging::outbox::{OutboxMessage, OutboxStore, PgOutbox, SqliteOutbox};
use vitrine_messaging::relay::Relay;
use vitrine_messaging::transport::{LocalTransport, QueueSpec, Subscription, Topology, Transport};
use vitrine_messaging::{Envelope, outbox};

const SAMPLES: usize = 300;
const WARMUP: usize = 20;
const TOPIC: &str = "bench";

struct Stamp(mpsc::UnboundedSender<(uuid::Uuid, Instant)>);

#[async_trait]
impl Handler for Stamp {
    async fn handle(&self, envelope: &Envelope) -> anyhow::Result<()> {
        let _ = self.0.send((envelope.id, Instant::now()));
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

struct Figures {
    p50: Duration,
    p99: Duration,
}

fn figures(mut samples: Vec<Duration>) -> Figures {
    samples.sort();
    Figures {
        p50: percentile(&samples, 0.5),
        p99: percentile(&samples, 0.99),
    }
}

async fn bare_notify(url: &str) -> Figures {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS bench_bare (id uuid PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    let mut listener = PgListener::connect(url).await.unwrap();
    listener.listen("bench_bare").await.unwrap();
    let mut samples = Vec::new();
    for i in 0..SAMPLES + WARMUP {
        let started = Instant::now();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO bench_bare (id) VALUES ($1)")
            .bind(uuid::Uuid::now_v7())
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query("SELECT pg_notify('bench_bare', '')")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        listener.recv().await.unwrap();
        if i >= WARMUP {
            samples.push(started.elapsed());
        }
    }
    figures(samples)
}

/// Commits events one by one with `write` and times each until the consumer handled it.
async fn through_the_pipeline<W, F>(
    outbox: Arc<dyn OutboxStore>,
    transport: Arc<dyn Transport>,
    write: W,
) -> Figures
where
    W: Fn(OutboxMessage) -> F,
    F: std::future::Future<Output = ()>,
{
    let stop = CancellationToken::new();
    let (sender, mut handled) = mpsc::unbounded_channel();
    let options = ConsumerOptions {
        wait: Duration::from_secs(1),
        ..ConsumerOptions::default()
    };
    tokio::spawn(Relay::new(outbox, transport.clone()).run(stop.clone()));
    tokio::spawn(
        Consumer::new(
            "bench-consumer",
            Arc::clone(&transport),
            Arc::new(Stamp(sender)),
            options,
        )
        .run(stop.clone()),
    );
    let mut samples = Vec::new();
    for i in 0..SAMPLES + WARMUP {
        let envelope = Envelope::new("vitrine.bench", "vitrine.bench.tick.v1", &i)
            .unwrap()
            .with_subject("bench");
        let id = envelope.id;
        let started = Instant::now();
        write(OutboxMessage::event(TOPIC, envelope)).await;
        loop {
            let (handled_id, at) = handled.recv().await.unwrap();
            if handled_id == id {
                if i >= WARMUP {
                    samples.push(at.duration_since(started));
                }
                break;
            }
        }
    }
    stop.cancel();
    figures(samples)
}

async fn transport(dir: &std::path::Path) -> Arc<dyn Transport> {
    let transport: Arc<dyn Transport> = Arc::new(
        LocalTransport::open(&dir.join("messaging.sqlite3"))
            .await
            .unwrap(),
    );
    let queue = QueueSpec {
        name: "bench-consumer".into(),
        subscriptions: vec![Subscription {
            topic: TOPIC.into(),
            event_types: vec![],
        }],
        max_receives: 5,
    };
    transport
        .provision(&Topology {
            topics: vec![TOPIC.into()],
            queues: vec![queue],
        })
        .await
        .unwrap();
    transport
}

#[tokio::main]
async fn main() {
    let url =
        std::env::var("VITRINE_TEST_POSTGRES_URL").expect("run through scripts/bench-messaging.sh");
    let dir = tempfile::tempdir().unwrap();

    let baseline = bare_notify(&url).await;

    let pg = sqlx::PgPool::connect(&url).await.unwrap();
    PostgresStore::new(pg.clone()).migrate().await.unwrap();
    let postgres = {
        let pool = pg.clone();
        through_the_pipeline(
            Arc::new(PgOutbox::new(pg.clone())),
            transport(&dir.path().join("pg")).await,
            move |message| {
                let pool = pool.clone();
                async move {
                    let mut tx = pool.begin().await.unwrap();
                    outbox::enqueue_postgres(&mut tx, &[message]).await.unwrap();
                    tx.commit().await.unwrap();
                }
            },
        )
        .await
    };

    let sqlite = vitrine_platform::db::sqlite(&dir.path().join("service.sqlite3"))
        .await
        .unwrap();
    SqliteStore::new(sqlite.clone()).migrate().await.unwrap();
    let embedded = {
        // As the store does: one outbox handle shared by the writer (which wakes) and the relay.
        let shared = SqliteOutbox::new(sqlite.clone());
        let (pool, waker) = (sqlite.clone(), shared.clone());
        through_the_pipeline(
            Arc::new(shared),
            transport(&dir.path().join("embedded")).await,
            move |message| {
                let (pool, waker) = (pool.clone(), waker.clone());
                async move {
                    let mut tx = pool.begin().await.unwrap();
                    outbox::enqueue_sqlite(&mut tx, &[message]).await.unwrap();
                    tx.commit().await.unwrap();
                    waker.wake();
                }
            },
        )
        .await
    };

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "write-to-handled latency (transaction start to handler), {SAMPLES} events each after \
         {WARMUP} warm-up, sequential"
    );
    println!(
        "{:<52} {:>9} {:>9} {:>11} {:>11}",
        "path", "p50 ms", "p99 ms", "p50 ratio", "p99 ratio"
    );
    for (name, f) in [
        (
            "baseline: INSERT + NOTIFY -> LISTEN (PostgreSQL)",
            &baseline,
        ),
        (
            "PostgreSQL outbox -> relay -> local queue -> consumer",
            &postgres,
        ),
        (
            "embedded: SQLite outbox -> relay -> local queue -> consumer",
            &embedded,
        ),
    ] {
        println!(
            "{name:<52} {:>9.2} {:>9.2} {:>10.1}x {:>10.1}x",
            ms(f.p50),
            ms(f.p99),
            ms(f.p50) / ms(baseline.p50),
            ms(f.p99) / ms(baseline.p99)
        );
    }
}
