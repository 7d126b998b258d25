//! How fast the relay drains a backlog: 100,000 committed messages over 30,000 aggregates
//! (about three per aggregate, interleaved as real traffic is), the shape an outbox has after a
//! transport outage. Each path drains the same fresh backlog; the bare baseline is a plain
//! claim-and-mark loop on the same table (no order per aggregate, nothing published), run in the
//! same process, so the table reads as ratios, not as absolute times.
//!
//! Run with `scripts/bench-messaging.sh` (it starts the PostgreSQL and SNS/SQS servers this
//! needs). This is a benchmark: it prints a table and never fails on a number.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use user_information::store::{PostgresStore, SqliteStore};
use vitrine_messaging::Envelope;
use vitrine_messaging::outbox::{OutboxStore, PgOutbox, SqliteOutbox};
use vitrine_messaging::relay::Relay;
use vitrine_messaging::transport::{Publisher, SqsTransport, Topology, Transport, TransportError};

const BACKLOG: i64 = 100_000;
const AGGREGATES: i64 = 30_000;
/// The previous relay's method (one publish call at a time, each awaited) is timed on a sample.
const SERIAL_SAMPLE: usize = 3_000;
const TOPIC: &str = "bench-drain";

/// Accepts everything at once: what the relay costs without a transport.
#[derive(Debug)]
struct Nowhere;

#[async_trait]
impl Publisher for Nowhere {
    async fn publish(&self, _: &str, _: &Envelope) -> Result<(), TransportError> {
        Ok(())
    }

    async fn send(&self, _: &str, _: &Envelope) -> Result<(), TransportError> {
        Ok(())
    }
}

fn template() -> String {
    Envelope::new(
        "vitrine.bench",
        "vitrine.bench.registered.v1",
        &serde_json::json!({"cnpj": "12ABC34501DE35", "status": "active", "n": 0}),
    )
    .unwrap()
    .to_json()
}

/// Empties the outbox and commits the backlog into it, as one bulk insert.
async fn backlog_postgres(pool: &PgPool) {
    sqlx::query("TRUNCATE outbox").execute(pool).await.unwrap();
    sqlx::query(
        "INSERT INTO outbox (id, destination, aggregate, envelope, created_at, next_attempt_at) \
         SELECT m.id, $2, m.aggregate, \
                jsonb_set(jsonb_set($1::jsonb, '{id}', to_jsonb(m.id::text)), \
                          '{subject}', to_jsonb(m.aggregate)), \
                now(), now() \
         FROM (SELECT gen_random_uuid() AS id, 'agg-' || (g % $4) AS aggregate \
               FROM generate_series(1, $3) g) m",
    )
    .bind(template())
    .bind(format!("topic:{TOPIC}"))
    .bind(BACKLOG)
    .bind(AGGREGATES)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE outbox").execute(pool).await.unwrap();
}

async fn backlog_sqlite(pool: &sqlx::SqlitePool) {
    sqlx::query("DELETE FROM outbox")
        .execute(pool)
        .await
        .unwrap();
    let template: serde_json::Value = serde_json::from_str(&template()).unwrap();
    let now = chrono::Utc::now();
    let mut tx = pool.begin().await.unwrap();
    for n in 0..BACKLOG {
        let id = uuid::Uuid::now_v7();
        let aggregate = format!("agg-{}", n % AGGREGATES);
        let mut envelope = template.clone();
        envelope["id"] = id.to_string().into();
        envelope["subject"] = aggregate.clone().into();
        sqlx::query(
            "INSERT INTO outbox (id, destination, aggregate, envelope, created_at, next_attempt_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(format!("topic:{TOPIC}"))
        .bind(&aggregate)
        .bind(envelope.to_string())
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

/// Claims 200 unsent rows, reads them, marks them sent; until none is left.
async fn bare_claim_and_mark(pool: &PgPool) -> Duration {
    let started = Instant::now();
    loop {
        let claimed: Vec<(i64, String)> = sqlx::query_as(
            "UPDATE outbox SET lease_until = now() + interval '30 s' \
             WHERE seq IN (SELECT seq FROM outbox WHERE sent_at IS NULL \
                           ORDER BY seq LIMIT 200 FOR UPDATE SKIP LOCKED) \
             RETURNING seq, envelope::text",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        if claimed.is_empty() {
            return started.elapsed();
        }
        let seqs: Vec<i64> = claimed.iter().map(|(seq, _)| *seq).collect();
        sqlx::query("UPDATE outbox SET sent_at = now(), lease_until = NULL WHERE seq = ANY($1)")
            .bind(&seqs)
            .execute(pool)
            .await
            .unwrap();
    }
}

/// Runs the relay (its defaults) until the outbox is empty.
async fn relay(outbox: Arc<dyn OutboxStore>, transport: Arc<dyn Publisher>) -> Duration {
    let started = Instant::now();
    let stop = CancellationToken::new();
    let running = tokio::spawn(Relay::new(Arc::clone(&outbox), transport).run(stop.clone()));
    while outbox.unsent().await.unwrap() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    stop.cancel();
    running.await.unwrap();
    elapsed
}

/// The previous relay's way of publishing: one call per message, each awaited.
async fn serial_publish(transport: &dyn Publisher) -> Duration {
    let started = Instant::now();
    for n in 0..SERIAL_SAMPLE {
        let envelope = Envelope::new("vitrine.bench", "vitrine.bench.registered.v1", &n)
            .unwrap()
            .with_subject(format!("agg-{n}"));
        transport.publish(TOPIC, &envelope).await.unwrap();
    }
    started.elapsed()
}

#[tokio::main]
async fn main() {
    // A fresh database on the benchmark's server (VITRINE_TEST_POSTGRES_URL).
    let url = vitrine_platform::testing::postgres_database().await;
    let pg = PgPool::connect(url.expose_secret()).await.unwrap();
    PostgresStore::new(pg.clone()).migrate().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = vitrine_platform::db::sqlite(&dir.path().join("service.sqlite3"))
        .await
        .unwrap();
    SqliteStore::new(sqlite.clone()).migrate().await.unwrap();
    // SNS without subscribers: the emulator's SQS scans a whole queue on every send, so a
    // subscribed queue filling with this backlog would measure the emulator, not the relay.
    let sns: Arc<SqsTransport> = Arc::new(SqsTransport::for_tests().await);
    sns.provision(&Topology {
        topics: vec![TOPIC.to_owned()],
        queues: vec![],
    })
    .await
    .unwrap();

    let mut rows: Vec<(&str, f64)> = Vec::new();
    let rate = |count: f64, took: Duration| count / took.as_secs_f64();

    backlog_postgres(&pg).await;
    let bare = rate(BACKLOG as f64, bare_claim_and_mark(&pg).await);
    rows.push(("baseline: bare claim-and-mark loop, PostgreSQL", bare));

    backlog_postgres(&pg).await;
    let took = relay(Arc::new(PgOutbox::new(pg.clone())), Arc::new(Nowhere)).await;
    rows.push((
        "relay, PostgreSQL outbox, no transport",
        rate(BACKLOG as f64, took),
    ));

    backlog_postgres(&pg).await;
    let took = relay(Arc::new(PgOutbox::new(pg.clone())), sns.clone()).await;
    rows.push((
        "relay, PostgreSQL outbox -> SNS (emulator)",
        rate(BACKLOG as f64, took),
    ));

    let took = serial_publish(&*sns).await;
    rows.push((
        "one SNS publish at a time (the previous relay's method)",
        rate(SERIAL_SAMPLE as f64, took),
    ));

    backlog_sqlite(&sqlite).await;
    let took = relay(
        Arc::new(SqliteOutbox::new(sqlite.clone())),
        Arc::new(Nowhere),
    )
    .await;
    rows.push((
        "relay, SQLite outbox (embedded), no transport",
        rate(BACKLOG as f64, took),
    ));

    println!(
        "draining {BACKLOG} messages over {AGGREGATES} aggregates (serial publishing: a \
         {SERIAL_SAMPLE}-message sample)"
    );
    println!(
        "{:<60} {:>12} {:>16}",
        "path", "messages/s", "ratio to bare"
    );
    for (name, messages_per_second) in rows {
        println!(
            "{name:<60} {messages_per_second:>12.0} {:>16.2}",
            messages_per_second / bare
        );
    }
}
