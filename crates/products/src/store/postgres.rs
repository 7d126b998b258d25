//! `ProductStore` on PostgreSQL: writes on the primary, reads on a streaming replica when one is
//! configured and fresh enough (see [`super::consistency`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool};
use vitrine_messaging::outbox::{OutboxMessage, OutboxStore, PgOutbox, enqueue_postgres};

use super::shared::{Backend, impl_product_store, routed};
use super::work::impl_work_store;
use super::{ConsistencyToken, Freshness, ReplicaOptions, StoreError};

/// Probes remembered while the replica falls behind (minutes at the default probe interval,
/// far past any useful lag bound).
const MAX_SAMPLES: usize = 1024;

/// Migrations of the PostgreSQL schema, embedded in the binary.
/// This service's tables (`migrations/postgres`), the outbox and inbox, and the idempotency
/// keys, in one history.
pub static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| {
        vitrine_runtime::migrations::compose(&[
            &sqlx::migrate!("./migrations/postgres"),
            &vitrine_messaging::migrations::POSTGRES,
            &vitrine_platform::migrations::POSTGRES,
            &vitrine_webhooks::migrations::POSTGRES,
        ])
    });

#[derive(Debug, Clone)]
pub struct PostgresStore {
    primary: PgPool,
    replica: Option<Arc<Replica>>,
    /// The furthest primary position this process has seen: tokens up to it need no check.
    reached: Arc<AtomicU64>,
}

/// A streaming replica and what is known about it, refreshed by a probe task.
#[derive(Debug)]
struct Replica {
    pool: PgPool,
    options: ReplicaOptions,
    /// The last replay position the replica reported.
    replayed: AtomicU64,
    /// Reachable and no further behind than `max_lag` at the last probe.
    usable: AtomicBool,
    /// Primary positions recently sampled, with when: the replica's lag is the age of the
    /// oldest sample it has not replayed yet.
    samples: Mutex<std::collections::VecDeque<(Instant, u64)>>,
}

impl PostgresStore {
    /// A store on the primary alone: every read goes there.
    pub fn new(primary: PgPool) -> Self {
        Self {
            primary,
            replica: None,
            reached: Arc::default(),
        }
    }

    /// A store reading from `replica` when it is fresh enough. Starts a probe task that ends
    /// when the store is dropped.
    pub fn with_replica(primary: PgPool, replica: PgPool, options: ReplicaOptions) -> Self {
        let replica = Arc::new(Replica {
            pool: replica,
            options,
            replayed: AtomicU64::new(0),
            usable: AtomicBool::new(false),
            samples: Mutex::default(),
        });
        tokio::spawn(probe(primary.clone(), Arc::downgrade(&replica)));
        Self {
            primary,
            replica: Some(replica),
            reached: Arc::default(),
        }
    }

    /// Brings the schema up to date; the migrations it applied (`version description`).
    pub async fn migrate(&self) -> anyhow::Result<Vec<String>> {
        Ok(vitrine_runtime::migrations::apply(&MIGRATOR, &self.primary).await?)
    }

    pub fn pool(&self) -> &PgPool {
        &self.primary
    }

    /// Whether reads without a token currently go to the replica (for tests and metrics).
    pub fn replica_in_use(&self) -> bool {
        self.replica
            .as_ref()
            .is_some_and(|r| r.usable.load(Ordering::Relaxed))
    }
}

impl Backend for PostgresStore {
    type Database = sqlx::Postgres;
    type Connection = PgConnection;

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        Ok(vitrine_runtime::db::begin(&self.primary).await?)
    }

    /// The primary's WAL insert position now: past the commit record that just returned. (Not
    /// the write position: with `synchronous_commit = off` a commit returns before its record
    /// is written, and a token short of it would let a replica serve the old row.)
    async fn committed(&self) -> Result<ConsistencyToken, StoreError> {
        let position = current_position(&self.primary).await?;
        self.reached
            .fetch_max(position.into_raw(), Ordering::Relaxed);
        Ok(position)
    }

    /// Tokens up to the furthest position seen cost nothing; one beyond it (a write through
    /// another replica of this service, or a forged token) costs one query of the primary.
    async fn reached(&self, token: ConsistencyToken) -> Result<bool, StoreError> {
        if token.into_raw() <= self.reached.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let position = current_position(&self.primary).await?;
        self.reached
            .fetch_max(position.into_raw(), Ordering::Relaxed);
        Ok(token <= position)
    }

    /// Without a replica every read is on the primary, fresh anyway: no round trip needed.
    async fn position_now(&self) -> Result<ConsistencyToken, StoreError> {
        match self.replica {
            Some(_) => current_position(&self.primary).await,
            None => Ok(ConsistencyToken::ZERO),
        }
    }

    async fn reader(&self, freshness: Freshness) -> (&PgPool, bool) {
        let Some(replica) = &self.replica else {
            return (&self.primary, false);
        };
        let chosen = match freshness {
            Freshness::Primary => false,
            Freshness::Any => replica.usable.load(Ordering::Relaxed),
            Freshness::AtLeast(token) => replica.has_replayed(token).await,
        };
        metrics::counter!(
            "vitrine_products_reads_total",
            "target" => if chosen { "replica" } else { "primary" }
        )
        .increment(1);
        if chosen {
            (&replica.pool, true)
        } else {
            (&self.primary, false)
        }
    }

    fn replica_failed(&self, error: &dyn std::fmt::Display) {
        if let Some(replica) = &self.replica {
            tracing::warn!(%error, "replica read failed; reading from the primary");
            replica.usable.store(false, Ordering::Relaxed);
        }
    }

    fn primary(&self) -> &PgPool {
        &self.primary
    }

    async fn enqueue(
        conn: &mut PgConnection,
        messages: &[OutboxMessage],
    ) -> Result<(), StoreError> {
        enqueue_postgres(conn, messages).await?;
        vitrine_webhooks::store::postgres::enqueue_all(
            conn,
            &crate::webhooks::for_events(messages),
        )
        .await
        .map_err(|error| StoreError::Backend(error.into()))?;
        Ok(())
    }

    /// Writes a webhook message (and its deliveries) in the caller's transaction; how many
    /// endpoints it goes to (none: nothing was written).
    async fn enqueue_webhook(
        conn: &mut PgConnection,
        message: &vitrine_webhooks::store::NewMessage,
    ) -> Result<usize, StoreError> {
        vitrine_webhooks::store::postgres::enqueue(conn, message)
            .await
            .map_err(|error| StoreError::Backend(error.into()))
    }

    async fn first_delivery(
        conn: &mut PgConnection,
        consumer: &str,
        message_id: uuid::Uuid,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        Ok(
            vitrine_messaging::inbox::first_delivery_postgres(conn, consumer, message_id, now)
                .await?,
        )
    }

    fn outbox_store(&self) -> Arc<dyn OutboxStore> {
        Arc::new(PgOutbox::new(self.primary.clone()))
    }

    fn inbox_store(&self) -> vitrine_messaging::inbox::Inbox {
        vitrine_messaging::inbox::Inbox::Postgres(self.primary.clone())
    }
}

impl_product_store!(PostgresStore, lock = " FOR UPDATE");

async fn current_position(pool: &PgPool) -> Result<ConsistencyToken, StoreError> {
    let lsn: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
        .fetch_one(pool)
        .await?;
    ConsistencyToken::from_lsn(&lsn)
        .ok_or_else(|| StoreError::Backend(anyhow::anyhow!("unexpected LSN {lsn:?}")))
}

/// The replica's replay position; `None` if it is unreachable or not a replica.
async fn replay_position(pool: &PgPool) -> Option<ConsistencyToken> {
    let lsn: Option<String> = sqlx::query_scalar("SELECT pg_last_wal_replay_lsn()::text")
        .fetch_one(pool)
        .await
        .ok()?;
    lsn.as_deref().and_then(ConsistencyToken::from_lsn)
}

impl Replica {
    /// Whether the replica shows everything up to `token`, waiting briefly for it to catch up.
    async fn has_replayed(&self, token: ConsistencyToken) -> bool {
        if ConsistencyToken::from_raw(self.replayed.load(Ordering::Relaxed)) >= token {
            return true;
        }
        if !self.usable.load(Ordering::Relaxed) {
            return false;
        }
        let deadline = Instant::now() + self.options.catch_up_wait;
        loop {
            match replay_position(&self.pool).await {
                Some(replayed) => {
                    self.replayed
                        .fetch_max(replayed.into_raw(), Ordering::Relaxed);
                    if replayed >= token {
                        return true;
                    }
                }
                None => return false,
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Records a probe: the primary's position then, and the replica's replay position (or
    /// `None` when unreachable).
    fn observe(&self, primary: ConsistencyToken, replayed: Option<ConsistencyToken>) {
        let now = Instant::now();
        let mut samples = self.samples.lock().expect("samples lock");
        samples.push_back((now, primary.into_raw()));
        if samples.len() > MAX_SAMPLES {
            samples.pop_front();
        }
        let Some(replayed) = replayed else {
            self.usable.store(false, Ordering::Relaxed);
            return;
        };
        self.replayed
            .fetch_max(replayed.into_raw(), Ordering::Relaxed);
        // Samples the replica has replayed say nothing more about its lag.
        while samples
            .front()
            .is_some_and(|(_, position)| *position <= replayed.into_raw())
        {
            samples.pop_front();
        }
        let lag = samples
            .front()
            .map_or(Duration::ZERO, |(at, _)| now.duration_since(*at));
        let usable = lag <= self.options.max_lag;
        if usable != self.usable.swap(usable, Ordering::Relaxed) {
            tracing::info!(
                usable,
                lag_ms = lag.as_millis() as u64,
                "replica {}",
                if usable {
                    "serves reads"
                } else {
                    "skipped: lagging"
                }
            );
        }
        metrics::gauge!("vitrine_products_replica_lag_seconds").set(lag.as_secs_f64());
    }
}

/// Probes the replica until the store is dropped.
async fn probe(primary: PgPool, replica: Weak<Replica>) {
    loop {
        let Some(replica) = replica.upgrade() else {
            return;
        };
        // Primary first: a replica position at least this recent means no lag at this instant.
        if let Ok(position) = current_position(&primary).await {
            let replayed =
                tokio::time::timeout(Duration::from_secs(1), replay_position(&replica.pool))
                    .await
                    .ok()
                    .flatten();
            replica.observe(position, replayed);
        }
        let every = replica.options.probe_every;
        drop(replica);
        tokio::time::sleep(every).await;
    }
}
impl_work_store!(PostgresStore, lock = " FOR UPDATE");
