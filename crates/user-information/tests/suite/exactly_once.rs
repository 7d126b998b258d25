//! "Nothing committed is lost, nothing is applied twice", checked over the whole history of a
//! concurrent run with injected crashes.
//!
//! A producer commits thousands of business rows, each with an outbox message, and rolls back
//! one transaction in ten. The relay is killed (its task dies) at random points between
//! publishing a message and marking it sent; the consumer is killed at random points between
//! committing its effect and acking the message. Supervisors restart both, as Kubernetes would
//! restart a pod. The checker then requires every committed row to have exactly one effect and no
//! rolled-back row to have any. A deliberately broken consumer that skips its inbox must fail the
//! same checker, which proves the checker can fail.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use user_information::store::{PostgresStore, SqliteStore};
use vitrine_messaging::consumer::{Consumer, ConsumerOptions, Handler};
use vitrine_messaging::outbox::{OutboxMessage, OutboxStore, PgOutbox, SqliteOutbox};
use vitrine_messaging::relay::Relay;
use vitrine_messaging::transport::{
    LocalTransport, Publisher, QueueSpec, SqsTransport, Subscription, Topology, Transport,
    TransportError,
};
use vitrine_messaging::{Envelope, inbox};

const MESSAGES: usize = 2000;
const TOPIC: &str = "exactly-once-facts";
const QUEUE: &str = "exactly-once-effects";
const CONSUMER: &str = "exactly-once-test";
const CRASH_PROBABILITY: f64 = 0.03;
const VISIBILITY: Duration = Duration::from_millis(400);
/// Relays running at once on the same outbox. Their coordination happens in the outbox table,
/// whatever the transport; against moto (one Python process) several publishers only add load.
fn relays(sqs: bool) -> usize {
    if sqs { 1 } else { 3 }
}

/// The producer's and consumer's database (one here; the inbox logic does not care).
#[derive(Clone)]
enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Db {
    async fn open(postgres: bool, dir: &std::path::Path) -> Db {
        let create = "CREATE TABLE test_facts (id text PRIMARY KEY)";
        let effects = "CREATE TABLE test_effects (message_id text NOT NULL, fact_id text NOT NULL)";
        if postgres {
            let url = vitrine_platform::testing::postgres_database().await;
            let pool = vitrine_platform::db::postgres(&url, 16).await.unwrap();
            PostgresStore::new(pool.clone()).migrate().await.unwrap();
            sqlx::query(create).execute(&pool).await.unwrap();
            sqlx::query(effects).execute(&pool).await.unwrap();
            Db::Postgres(pool)
        } else {
            let pool = vitrine_platform::db::sqlite(&dir.join("service.sqlite3"))
                .await
                .unwrap();
            SqliteStore::new(pool.clone()).migrate().await.unwrap();
            sqlx::query(create).execute(&pool).await.unwrap();
            sqlx::query(effects).execute(&pool).await.unwrap();
            Db::Sqlite(pool)
        }
    }

    fn outbox(&self) -> Arc<dyn OutboxStore> {
        match self {
            Db::Sqlite(pool) => Arc::new(SqliteOutbox::new(pool.clone())),
            Db::Postgres(pool) => Arc::new(PgOutbox::new(pool.clone())),
        }
    }

    /// One business transaction: a fact and its announcement, committed or rolled back.
    async fn produce(&self, fact: &str, aggregate: &str, commit: bool) {
        let envelope = Envelope::new("vitrine.test", "vitrine.test.fact.recorded.v1", &fact)
            .unwrap()
            .with_subject(aggregate);
        let message = [OutboxMessage::event(TOPIC, envelope)];
        match self {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await.unwrap();
                sqlx::query("INSERT INTO test_facts (id) VALUES (?)")
                    .bind(fact)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                vitrine_messaging::outbox::enqueue_sqlite(&mut tx, &message)
                    .await
                    .unwrap();
                if commit {
                    tx.commit().await.unwrap()
                } else {
                    tx.rollback().await.unwrap()
                }
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await.unwrap();
                sqlx::query("INSERT INTO test_facts (id) VALUES ($1)")
                    .bind(fact)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                vitrine_messaging::outbox::enqueue_postgres(&mut tx, &message)
                    .await
                    .unwrap();
                if commit {
                    tx.commit().await.unwrap()
                } else {
                    tx.rollback().await.unwrap()
                }
            }
        }
    }

    /// The consumer's effect, with (or, broken, without) the inbox check in its transaction.
    async fn apply(&self, envelope: &Envelope, use_inbox: bool) -> anyhow::Result<()> {
        let fact: String = envelope.decode()?;
        let message_id = envelope.id.to_string();
        match self {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                if !use_inbox
                    || inbox::first_delivery_sqlite(&mut tx, CONSUMER, envelope.id, Utc::now())
                        .await?
                {
                    sqlx::query("INSERT INTO test_effects (message_id, fact_id) VALUES (?, ?)")
                        .bind(&message_id)
                        .bind(&fact)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                if !use_inbox
                    || inbox::first_delivery_postgres(&mut tx, CONSUMER, envelope.id, Utc::now())
                        .await?
                {
                    sqlx::query("INSERT INTO test_effects (message_id, fact_id) VALUES ($1, $2)")
                        .bind(&message_id)
                        .bind(&fact)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    async fn effects(&self) -> Vec<String> {
        let sql = "SELECT fact_id FROM test_effects";
        match self {
            Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await.unwrap(),
            Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await.unwrap(),
        }
    }
}

fn crash_now() -> bool {
    rand::rng().random_bool(CRASH_PROBABILITY)
}

/// A transport whose publisher dies right after a successful publish, before the relay can mark
/// the message sent.
#[derive(Debug)]
struct DyingPublisher {
    inner: Arc<dyn Transport>,
    crashes: Arc<AtomicUsize>,
    /// Every successful publication, in order (facts repeat when republished after a crash).
    published: Arc<std::sync::Mutex<Vec<String>>>,
}

#[async_trait]
impl Publisher for DyingPublisher {
    /// As the transport it wraps: the relay's calls then take the same shape as in production.
    fn keeps_batch_order(&self) -> bool {
        self.inner.keeps_batch_order()
    }

    async fn publish(&self, topic: &str, envelope: &Envelope) -> Result<(), TransportError> {
        self.inner.publish(topic, envelope).await?;
        let fact: String = envelope.decode().expect("facts are strings");
        self.published.lock().expect("publications lock").push(fact);
        if crash_now() {
            self.crashes.fetch_add(1, Ordering::SeqCst);
            panic!("injected crash: relay dies between publish and mark-as-sent");
        }
        Ok(())
    }

    async fn send(&self, queue: &str, envelope: &Envelope) -> Result<(), TransportError> {
        self.inner.send(queue, envelope).await
    }

    /// The transport's own batch call (as the relay uses it), then the same chance of dying.
    async fn publish_batch(
        &self,
        topic: &str,
        envelopes: &[&Envelope],
    ) -> Vec<Result<(), TransportError>> {
        let results = self.inner.publish_batch(topic, envelopes).await;
        for (envelope, result) in envelopes.iter().zip(&results) {
            if result.is_ok() {
                let fact: String = envelope.decode().expect("facts are strings");
                self.published.lock().expect("publications lock").push(fact);
            }
        }
        if crash_now() {
            self.crashes.fetch_add(1, Ordering::SeqCst);
            panic!("injected crash: relay dies between publish and mark-as-sent");
        }
        results
    }
}

/// Applies the effect, then sometimes dies before the runtime can ack.
struct DyingHandler {
    db: Db,
    use_inbox: bool,
    crashes: Arc<AtomicUsize>,
}

#[async_trait]
impl Handler for DyingHandler {
    async fn handle(&self, envelope: &Envelope) -> anyhow::Result<()> {
        self.db.apply(envelope, self.use_inbox).await?;
        if crash_now() {
            self.crashes.fetch_add(1, Ordering::SeqCst);
            panic!("injected crash: consumer dies between effect and ack");
        }
        Ok(())
    }
}

/// Runs `make()`'s task until `stop`, restarting it whenever it dies.
fn supervise<F, Fut>(stop: CancellationToken, make: F) -> tokio::task::JoinHandle<usize>
where
    F: Fn(CancellationToken) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut restarts = 0;
        loop {
            let outcome = tokio::spawn(make(stop.clone())).await;
            match outcome {
                Err(error) if error.is_panic() && !stop.is_cancelled() => restarts += 1,
                _ => return restarts,
            }
        }
    })
}

/// What the checker found wrong, if anything.
fn check_history(
    committed: &BTreeSet<String>,
    rolled_back: &BTreeSet<String>,
    effects: &[String],
) -> Result<(), String> {
    let mut applied: BTreeMap<&str, usize> = BTreeMap::new();
    for fact in effects {
        *applied.entry(fact).or_default() += 1;
    }
    let mut problems = Vec::new();
    let lost: Vec<_> = committed
        .iter()
        .filter(|f| !applied.contains_key(f.as_str()))
        .collect();
    let doubled: Vec<_> = applied.iter().filter(|(_, n)| **n > 1).collect();
    let phantom: Vec<_> = applied
        .keys()
        .filter(|f| rolled_back.contains(**f))
        .collect();
    let unknown: Vec<_> = applied
        .keys()
        .filter(|f| !committed.contains(**f) && !rolled_back.contains(**f))
        .collect();
    if !lost.is_empty() {
        problems.push(format!(
            "{} committed facts never applied (e.g. {:?})",
            lost.len(),
            lost.first()
        ));
    }
    if !doubled.is_empty() {
        problems.push(format!(
            "{} facts applied more than once (e.g. {:?})",
            doubled.len(),
            doubled.first()
        ));
    }
    if !phantom.is_empty() {
        problems.push(format!("{} rolled-back facts applied", phantom.len()));
    }
    if !unknown.is_empty() {
        problems.push(format!("{} effects of unknown facts", unknown.len()));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Per aggregate, the order in which messages were first published must be their commit order.
fn check_order(
    commit_order: &BTreeMap<String, Vec<String>>,
    published: &[String],
) -> Result<(), String> {
    let mut first = Vec::new();
    let mut seen = BTreeSet::new();
    for fact in published {
        if seen.insert(fact.as_str()) {
            first.push(fact.as_str());
        }
    }
    for (aggregate, facts) in commit_order {
        let in_aggregate: BTreeSet<&str> = facts.iter().map(String::as_str).collect();
        let order: Vec<&str> = first
            .iter()
            .copied()
            .filter(|f| in_aggregate.contains(f))
            .collect();
        if order != facts.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(format!("{aggregate} was published out of commit order"));
        }
    }
    Ok(())
}

struct Run {
    outcome: Result<(), String>,
    order: Result<(), String>,
    relay_crashes: usize,
    consumer_crashes: usize,
}

async fn run(postgres: bool, sqs: bool, use_inbox: bool) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(postgres, dir.path()).await;
    let transport: Arc<dyn Transport> = if sqs {
        Arc::new(SqsTransport::for_tests().await)
    } else {
        Arc::new(
            LocalTransport::open(&dir.path().join("messaging.sqlite3"))
                .await
                .unwrap(),
        )
    };
    transport
        .provision(&Topology {
            topics: vec![TOPIC.to_owned()],
            queues: vec![QueueSpec {
                name: QUEUE.to_owned(),
                subscriptions: vec![Subscription {
                    topic: TOPIC.to_owned(),
                    event_types: vec![],
                }],
                // Crashes are not poison: never dead-letter in this run.
                max_receives: 1000,
            }],
        })
        .await
        .unwrap();

    let stop = CancellationToken::new();
    let relay_crashes = Arc::new(AtomicUsize::new(0));
    let consumer_crashes = Arc::new(AtomicUsize::new(0));
    let published = Arc::new(std::sync::Mutex::new(Vec::new()));
    // Several relays at once, each killed and restarted independently.
    let relays: Vec<_> = (0..relays(sqs))
        .map(|_| {
            let (outbox, transport) = (db.outbox(), Arc::clone(&transport));
            let (crashes, published) = (Arc::clone(&relay_crashes), Arc::clone(&published));
            supervise(stop.clone(), move |stop| {
                let dying: Arc<dyn Publisher> = Arc::new(DyingPublisher {
                    inner: Arc::clone(&transport),
                    crashes: Arc::clone(&crashes),
                    published: Arc::clone(&published),
                });
                Relay::new(Arc::clone(&outbox), dying)
                    .with_lease(Duration::from_secs(2))
                    .with_idle_wait(Duration::from_millis(20))
                    .run(stop)
            })
        })
        .collect();
    let consumers = {
        let (db, transport, crashes) = (
            db.clone(),
            Arc::clone(&transport),
            Arc::clone(&consumer_crashes),
        );
        supervise(stop.clone(), move |stop| {
            let handler = DyingHandler {
                db: db.clone(),
                use_inbox,
                crashes: Arc::clone(&crashes),
            };
            let options = ConsumerOptions {
                batch: 20,
                visibility: VISIBILITY,
                retry_delay: Duration::from_millis(20),
                max_retry_delay: Duration::from_millis(200),
                wait: Duration::from_millis(100),
            };
            Consumer::new(QUEUE, Arc::clone(&transport), Arc::new(handler), options).run(stop)
        })
    };

    // Producers: four concurrent writers over a few aggregates.
    let mut writers = Vec::new();
    for writer in 0..4 {
        let db = db.clone();
        writers.push(tokio::spawn(async move {
            let (mut committed, mut rolled_back) = (Vec::new(), BTreeSet::new());
            for i in 0..MESSAGES / 4 {
                let fact = format!("fact-{writer}-{i}");
                // Each writer owns its aggregates, so its commit order is their order.
                let aggregate = format!("aggregate-{writer}-{}", i % 3);
                let commit = rand::rng().random_ratio(9, 10);
                db.produce(&fact, &aggregate, commit).await;
                if commit {
                    committed.push((aggregate, fact));
                } else {
                    rolled_back.insert(fact);
                }
            }
            (committed, rolled_back)
        }));
    }
    let (mut committed, mut rolled_back) = (BTreeSet::new(), BTreeSet::new());
    let mut commit_order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for writer in writers {
        let (c, r) = writer.await.unwrap();
        for (aggregate, fact) in c {
            commit_order
                .entry(aggregate)
                .or_default()
                .push(fact.clone());
            committed.insert(fact);
        }
        rolled_back.extend(r);
    }

    // Wait until every committed fact has an effect, then long enough for every redelivery
    // still in flight to arrive and be judged.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        let applied: BTreeSet<String> = db.effects().await.into_iter().collect();
        if committed.iter().all(|f| applied.contains(f)) || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(VISIBILITY * 4).await;
    stop.cancel();
    for relay in relays {
        relay.await.unwrap();
    }
    consumers.await.unwrap();

    let effects = db.effects().await;
    let published = published.lock().expect("publications lock").clone();
    Run {
        outcome: check_history(&committed, &rolled_back, &effects),
        order: check_order(&commit_order, &published),
        relay_crashes: relay_crashes.load(Ordering::SeqCst),
        consumer_crashes: consumer_crashes.load(Ordering::SeqCst),
    }
}

async fn exactly_once(postgres: bool, sqs: bool) {
    let run = run(postgres, sqs, true).await;
    assert!(
        run.relay_crashes > 0 && run.consumer_crashes > 0,
        "crashes were injected"
    );
    assert_eq!(
        run.outcome,
        Ok(()),
        "after {} relay and {} consumer crashes",
        run.relay_crashes,
        run.consumer_crashes
    );
    assert_eq!(
        run.order,
        Ok(()),
        "per-aggregate order with {} relays",
        relays(sqs)
    );
}

async fn broken_consumer_is_caught(postgres: bool, sqs: bool) {
    let run = run(postgres, sqs, false).await;
    let problems = run
        .outcome
        .expect_err("a consumer without an inbox applies redeliveries twice");
    assert!(problems.contains("more than once"), "{problems}");
}

macro_rules! histories {
    ($($name:ident => $check:ident(postgres: $postgres:expr, sqs: $sqs:expr);)+) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            $check($postgres, $sqs).await;
        }
    )+};
}

histories! {
    sqlite_outbox_local_transport_applies_each_fact_once => exactly_once(postgres: false, sqs: false);
    postgres_outbox_local_transport_applies_each_fact_once => exactly_once(postgres: true, sqs: false);
    sqlite_outbox_sqs_transport_applies_each_fact_once => exactly_once(postgres: false, sqs: true);
    postgres_outbox_sqs_transport_applies_each_fact_once => exactly_once(postgres: true, sqs: true);
    local_transport_checker_catches_a_consumer_without_inbox => broken_consumer_is_caught(postgres: false, sqs: false);
    sqs_transport_checker_catches_a_consumer_without_inbox => broken_consumer_is_caught(postgres: true, sqs: true);
}

#[test]
fn order_checker_catches_overtaking() {
    let order: BTreeMap<String, Vec<String>> =
        [("a".to_owned(), vec!["1".to_owned(), "2".to_owned()])].into();
    assert_eq!(
        check_order(&order, &["1".into(), "x".into(), "1".into(), "2".into()]),
        Ok(())
    );
    assert!(check_order(&order, &["2".into(), "1".into()]).is_err());
}

#[test]
fn checker_reports_each_kind_of_violation() {
    let committed: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
    let rolled_back: BTreeSet<String> = ["x"].map(String::from).into();
    let good = ["a", "b", "c"].map(String::from);
    assert_eq!(check_history(&committed, &rolled_back, &good), Ok(()));
    let bad = ["a", "a", "x", "z"].map(String::from);
    let problems = check_history(&committed, &rolled_back, &bad).unwrap_err();
    for expected in ["never applied", "more than once", "rolled-back", "unknown"] {
        assert!(problems.contains(expected), "{problems}");
    }
}
