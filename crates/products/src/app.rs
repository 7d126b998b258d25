//! Startup: the only place that chooses adapters, from configuration.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use axum::Router;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use user_information_client::CustomerDirectory;
use utoipa::openapi::OpenApi;
use vitrine_contracts::products as contract;
use vitrine_contracts::user_information as customers;
use vitrine_messaging::consumer::{Consumer, ConsumerOptions};
use vitrine_messaging::relay::Relay;
use vitrine_messaging::transport::{QueueSpec, Subscription, Topology, Transport};
use vitrine_platform::backends::{CacheBackend, Database};
use vitrine_platform::cache::{Cache, MemoryCache, RedisCache};
use vitrine_platform::http::ReadinessCheck;
use vitrine_platform::http::auth::Authenticator;
use vitrine_platform::http::idempotency::{
    Idempotency, IdempotencyStore, PgIdempotencyStore, SqliteIdempotencyStore, idempotency,
};
use vitrine_platform::requirements::Requirements;
use vitrine_platform::secrets::{self, OpenedSecrets, VaultSecretStore};
use vitrine_platform::{Mode, Settings, db, keyfile};
use vitrine_runtime::migrations::{Migrated, Schema};
use vitrine_webhooks::address_policy::{AddressPolicy, Network};
use vitrine_webhooks::attempt::Sender;
use vitrine_webhooks::dispatcher::{Dispatcher, DispatcherOptions};
use vitrine_webhooks::schedule::RetrySchedule;
use vitrine_webhooks::store::{PgWebhookStore, SqliteWebhookStore, WebhookStore};

use crate::endpoints::{BusNotices, WebhookEndpoints};
use vitrine_service::supervisor::housekeeping;
use vitrine_service::{QueueCheck, Service, Shared, Started, Task};

use crate::api::{self, AppState, Handles};
use crate::batches::Batches;
use crate::cache::ProductCache;
use crate::imports::Imports;
use crate::incoming::ProductsHandler;
use crate::service::Catalog;
use crate::store::{PostgresStore, ProductStore, ReplicaOptions, SqliteStore, WorkStore};
use crate::work::WorkHandler;

/// File name of the embedded database inside the data directory.
pub const SQLITE_FILE: &str = "products.sqlite3";
/// File name of the embedded key for idempotency fingerprints.
pub const FINGERPRINT_KEY_FILE: &str = "products-fingerprint.key";
/// CloudEvents source and reply-queue prefix of products' requests.
const REQUESTER: &str = "products";

/// The assembled service, ready to be mounted and served.
pub struct Products {
    /// `/v1/products*` and `/v1/reservations*`, with the Idempotency-Key layer.
    pub router: Router,
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
    pub catalog: Catalog,
    store: Arc<dyn ProductStore>,
    /// Batches and imports, for pruning.
    work: Arc<dyn WorkStore>,
    /// Runs batch parts and import chunks from the work queue.
    work_handler: WorkHandler,
    /// Webhook messages, for the pending gauge and pruning.
    webhooks: Arc<dyn WebhookStore>,
    idempotency: Arc<dyn IdempotencyStore>,
    transport: Arc<dyn Transport>,
    cache: ProductCache,
    /// Stops the request/reply listener once the service has stopped serving.
    requester_stop: CancellationToken,
    /// Idempotent handlers running detached from their connections.
    detached_work: TaskTracker,
    /// Sends the webhook deliveries that are due.
    dispatcher: Dispatcher,
    /// Set when endpoint secrets live in Vault: its token is renewed in the background.
    vault: Option<VaultSecretStore>,
}

impl std::fmt::Debug for Products {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Products")
            .field("store", &self.store)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Products {
    /// Connects and migrates the configured database, opens the cache, starts the reply queue
    /// for seller checks and builds the API.
    pub async fn build(
        settings: &Settings,
        authenticator: Arc<Authenticator>,
        transport: Arc<dyn Transport>,
    ) -> anyhow::Result<Self> {
        let Opened {
            store,
            work,
            idempotency: idempotency_store,
            webhooks,
            ..
        } = open_database(settings, Schema::Migrate).await?;
        let OpenedSecrets {
            store: secrets,
            vault,
            ..
        } = secrets::open(settings).await?;
        let policy = Arc::new(address_policy(settings)?);
        let endpoints = WebhookEndpoints::new(Arc::clone(&webhooks), secrets, Arc::clone(&policy));
        let dispatcher = Dispatcher::new(
            Arc::clone(&webhooks),
            Sender::new(policy, vitrine_webhooks::attempt::TIMEOUT)?,
            Arc::new(endpoints.clone()),
            Arc::new(BusNotices {
                products: Arc::clone(&store),
                webhooks: Arc::clone(&webhooks),
            }),
            DispatcherOptions {
                schedule: match &settings.webhook_retry_schedule {
                    Some(schedule) => schedule.parse().context("VITRINE_WEBHOOK_RETRY_SCHEDULE")?,
                    None => RetrySchedule::default(),
                },
                ..DispatcherOptions::default()
            },
        );
        let cache = ProductCache::new(
            open_cache(settings).await?,
            Duration::from_secs(settings.cache_ttl_secs),
            Duration::from_secs(settings.cache_negative_ttl_secs),
        )
        .with_near(Duration::from_secs(settings.cache_near_ttl_secs));
        let requester_stop = CancellationToken::new();
        let directory = user_information_client::open(
            settings,
            Arc::clone(&transport),
            REQUESTER,
            contract::SOURCE,
            requester_stop.clone(),
        )
        .await?;
        let catalog = Catalog::new(
            Arc::clone(&store),
            Arc::clone(&directory),
            cache.clone(),
            Duration::from_millis(settings.seller_lookup_timeout_ms),
        );
        let batches = Batches::new(Arc::clone(&work), Arc::clone(&webhooks));
        let imports = Imports::new(
            Arc::clone(&work),
            catalog.clone(),
            settings.import_max_bytes,
        );
        let state = AppState::from(Handles {
            catalog: catalog.clone(),
            endpoints,
            batches: batches.clone(),
            imports: imports.clone(),
            authenticator: Arc::clone(&authenticator),
        });
        let (routers, _) = api::router(state);
        let router = routers.buffered;
        let idempotency_state = Idempotency::new(
            Arc::clone(&idempotency_store),
            authenticator,
            settings.max_body_bytes,
            fingerprint_key(settings)?,
        );
        let detached_work = idempotency_state.work.clone();
        let router = router
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(idempotency_state),
                idempotency,
            ))
            .merge(routers.streamed);
        let readiness: Vec<Arc<dyn ReadinessCheck>> = vec![
            Arc::new(DatabaseCheck(Arc::clone(&store))),
            Arc::new(QueueCheck {
                name: "products-messaging",
                transport: Arc::clone(&transport),
                queue: contract::QUEUE,
            }),
            Arc::new(CacheCheck(cache.clone())),
            Arc::new(DirectoryCheck(directory)),
        ];
        Ok(Self {
            router,
            readiness,
            catalog,
            store,
            work,
            work_handler: WorkHandler::new(batches, imports),
            webhooks,
            idempotency: idempotency_store,
            detached_work,
            transport,
            cache,
            requester_stop,
            dispatcher,
            vault,
        })
    }

    /// The outbox relay, the event consumer, reservation expiry and housekeeping, each
    /// restartable.
    pub fn background(&self) -> Vec<Task> {
        let relay = Relay::new(self.store.outbox(), self.transport.clone());
        let store = Arc::clone(&self.store);
        let transport = Arc::clone(&self.transport);
        let cache = self.cache.clone();
        let catalog = self.catalog.clone();
        let requester_stop = self.requester_stop.clone();
        let mut tasks = vec![
            Task::new("outbox-relay", move |stop| relay.clone().run(stop)),
            Task::new("events-consumer", move |stop| {
                Consumer::new(
                    contract::QUEUE,
                    Arc::clone(&transport),
                    Arc::new(ProductsHandler::new(Arc::clone(&store), cache.clone())),
                    ConsumerOptions::default(),
                )
                .run(stop)
            }),
            Task::new("work-consumer", {
                let transport = Arc::clone(&self.transport);
                let handler = Arc::new(self.work_handler.clone());
                move |stop| {
                    Consumer::new(
                        contract::WORK_QUEUE,
                        Arc::clone(&transport),
                        handler.clone(),
                        ConsumerOptions {
                            // One command at a time: a chunk or a part is one transaction of
                            // up to 1,000 rows, seconds of work, well inside the visibility
                            // timeout (after a crash, its command is redelivered after that).
                            batch: 1,
                            ..ConsumerOptions::default()
                        },
                    )
                    .run(stop)
                }
            }),
            Task::new("webhook-housekeeping", {
                let webhooks = Arc::clone(&self.webhooks);
                move |stop| vitrine_webhooks::housekeeping::run(Arc::clone(&webhooks), stop)
            }),
            Task::new("work-pruning", {
                let work = Arc::clone(&self.work);
                move |stop| prune_work(Arc::clone(&work), stop)
            }),
            Task::new("seller-reconciliation", {
                let catalog = self.catalog.clone();
                move |stop| reconcile_sellers(catalog.clone(), stop)
            }),
            Task::new("cache-invalidations", {
                let cache = self.cache.clone();
                move |stop| {
                    let cache = cache.clone();
                    async move { cache.watch(stop).await }
                }
            }),
            Task::new("reservation-expiry", move |stop| {
                expire_reservations(catalog.clone(), stop)
            }),
            Task::new("webhook-dispatcher", {
                let dispatcher = self.dispatcher.clone();
                move |stop| dispatcher.clone().run(stop)
            }),
            // The seller directory's reply queue lives until background work stops, after the
            // requests that may need it have drained.
            Task::new("requester-stop", move |stop| {
                let requester_stop = requester_stop.clone();
                async move {
                    stop.cancelled().await;
                    requester_stop.cancel();
                }
            }),
        ];
        if let Some(vault) = &self.vault {
            let vault = vault.clone();
            tasks.push(Task::new("vault-token-renewal", move |stop| {
                vault.clone().keep_token_alive(stop)
            }));
        }
        tasks.extend(housekeeping(
            self.store.inbox(),
            Arc::clone(&self.idempotency),
        ));
        tasks.push(vitrine_service::gauges::messaging_gauges(
            "products",
            self.store.outbox(),
            Arc::clone(&self.transport),
            vec![contract::QUEUE, contract::WORK_QUEUE],
        ));
        tasks
    }

    pub fn store(&self) -> Arc<dyn ProductStore> {
        Arc::clone(&self.store)
    }
}

/// The topics and queues products owns: its event topic, and its queue subscribed to sellers'
/// status changes and to its own product events (cache invalidation).
pub fn topology() -> Topology {
    Topology {
        topics: vec![contract::TOPIC.to_owned()],
        queues: vec![
            QueueSpec {
                name: contract::QUEUE.to_owned(),
                subscriptions: vec![
                    Subscription {
                        topic: customers::TOPIC.to_owned(),
                        event_types: vec![customers::CUSTOMER_STATUS_CHANGED.to_owned()],
                    },
                    Subscription {
                        topic: contract::TOPIC.to_owned(),
                        event_types: contract::PRODUCT_CHANGES
                            .iter()
                            .map(|t| (*t).to_owned())
                            .collect(),
                    },
                ],
                // A status event that keeps failing is retried for about an hour (backoff up to
                // five minutes) before it is dead-lettered; reconciliation covers what is left.
                max_receives: 20,
            },
            QueueSpec {
                name: contract::WORK_QUEUE.to_owned(),
                // Commands are sent to it directly by products' outbox, not through a topic.
                subscriptions: Vec::new(),
                // A chunk whose seller checks keep failing (user-information down) is retried
                // for about an hour before it is dead-lettered; `vitrine messages redrive`
                // resumes it.
                max_receives: 20,
            },
        ],
    }
}

/// How long finished batches and imports (with their line errors) stay readable.
const WORK_RETENTION: chrono::Duration = chrono::Duration::days(7);
/// An upload still receiving after this long was cut off (the request timeout is far shorter).
const ABANDONED_AFTER: chrono::Duration = chrono::Duration::hours(1);

/// Deletes old batches and imports, and imports whose upload never finished, every hour.
async fn prune_work(work: Arc<dyn WorkStore>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = crate::service::now();
        match work
            .prune_work(now - WORK_RETENTION, now - ABANDONED_AFTER)
            .await
        {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "old batches and imports deleted"),
            Err(error) => tracing::warn!(error = %error, "pruning batches and imports failed"),
        }
    }
}

/// Expires due reservations every second until `shutdown`. With several replicas each sweeps;
/// the store's conditional transition lets exactly one expire a given reservation.
/// Sellers checked against user-information per round, and how often a round runs: about
/// 29,000 sellers a day, least recently checked first.
const RECONCILE_BATCH: i64 = 20;
const RECONCILE_EVERY: Duration = Duration::from_secs(60);

/// Corrects the seller projection from user-information, round after round, until `shutdown`.
async fn reconcile_sellers(catalog: Catalog, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(RECONCILE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match catalog.reconcile_sellers(RECONCILE_BATCH).await {
            Ok(0) => {}
            Ok(checked) => tracing::debug!(checked, "sellers reconciled"),
            Err(error) => tracing::warn!(error = %error, "seller reconciliation failed"),
        }
    }
}

async fn expire_reservations(catalog: Catalog, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match catalog.expire_due().await {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "reservations expired"),
            Err(error) => tracing::warn!(error = %error, "expiring reservations failed"),
        }
    }
}

/// A service's database, opened.
struct Opened {
    store: Arc<dyn ProductStore>,
    work: Arc<dyn WorkStore>,
    idempotency: Arc<dyn IdempotencyStore>,
    webhooks: Arc<dyn WebhookStore>,
    migrated: Migrated,
}

async fn open_database(settings: &Settings, schema: Schema) -> anyhow::Result<Opened> {
    match settings.products_database()? {
        Database::Postgres {
            primary: url,
            replica,
        } => {
            let database = db::describe_postgres(&url);
            let primary = db::postgres(&url, settings.database_max_connections).await?;
            let store = match &replica {
                Some(replica) => PostgresStore::with_replica(
                    primary.clone(),
                    db::postgres_replica(replica, settings.database_max_connections)?,
                    ReplicaOptions {
                        max_lag: Duration::from_millis(settings.replica_max_lag_ms),
                        ..ReplicaOptions::default()
                    },
                ),
                None => PostgresStore::new(primary.clone()),
            };
            let applied = schema.apply(&database, store.migrate()).await?;
            Ok(Opened {
                work: Arc::new(store.clone()),
                store: Arc::new(store),
                webhooks: Arc::new(PgWebhookStore::new(primary.clone())),
                idempotency: Arc::new(PgIdempotencyStore::new(primary)),
                migrated: Migrated { database, applied },
            })
        }
        Database::Embedded => {
            let path = settings.data_dir.join(SQLITE_FILE);
            let database = format!("SQLite {}", path.display());
            let pool = db::sqlite(&path).await?;
            let store = SqliteStore::new(pool.clone());
            let applied = schema.apply(&database, store.migrate()).await?;
            Ok(Opened {
                work: Arc::new(store.clone()),
                store: Arc::new(store),
                webhooks: Arc::new(SqliteWebhookStore::new(pool.clone())),
                idempotency: Arc::new(SqliteIdempotencyStore::new(pool)),
                migrated: Migrated { database, applied },
            })
        }
    }
}

/// Applies the schema migrations to the configured database (`vitrine migrate`): which
/// database, and what was applied.
pub async fn migrate(settings: &Settings) -> anyhow::Result<Migrated> {
    Ok(open_database(settings, Schema::Migrate).await?.migrated)
}

async fn open_cache(settings: &Settings) -> anyhow::Result<Arc<dyn Cache>> {
    Ok(match settings.product_cache()? {
        CacheBackend::Redis(url) => {
            Arc::new(RedisCache::connect(&url, &settings.messaging_prefix).await?)
        }
        CacheBackend::InProcess => Arc::new(MemoryCache::new(100_000)),
    })
}

/// The key of idempotency fingerprints: configured (required in production), or a key file
/// generated in the data directory.
/// Where webhooks may go: public addresses only in production, plus loopback and http in
/// embedded mode, plus what `VITRINE_WEBHOOK_ALLOWED_NETWORKS` allows.
fn address_policy(settings: &Settings) -> anyhow::Result<AddressPolicy> {
    let allowed = settings
        .webhook_allowed_networks
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|network| !network.is_empty())
        .map(str::parse)
        .collect::<Result<Vec<Network>, _>>()
        .context("VITRINE_WEBHOOK_ALLOWED_NETWORKS")?;
    Ok(match settings.mode {
        Mode::Production => AddressPolicy::production(allowed),
        Mode::Embedded => AddressPolicy::embedded(allowed),
    })
}

fn fingerprint_key(settings: &Settings) -> anyhow::Result<Arc<[u8]>> {
    let key = match settings.fingerprint()? {
        Some(encoded) => {
            keyfile::decode(encoded.expose_secret(), 32).context("VITRINE_FINGERPRINT_KEY")?
        }
        None => keyfile::load_or_create(&settings.data_dir.join(FINGERPRINT_KEY_FILE), 32)?,
    };
    Ok(Arc::from(key.as_slice()))
}

#[derive(Debug)]
struct DatabaseCheck(Arc<dyn ProductStore>);

#[async_trait]
impl ReadinessCheck for DatabaseCheck {
    fn name(&self) -> &'static str {
        "products-database"
    }

    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|_| "unreachable".to_owned())
    }
}

/// Whether seller checks can be answered: with request/reply, whether this process's reply
/// queue exists (it is recreated if another replica's janitor deleted it after a stall).
struct DirectoryCheck(Arc<dyn CustomerDirectory>);

#[async_trait]
impl ReadinessCheck for DirectoryCheck {
    fn name(&self) -> &'static str {
        "products-directory"
    }

    async fn check(&self) -> Result<(), String> {
        self.0.check()
    }
}

/// Reported, but reads do not need it: without the cache they go to the database.
#[derive(Debug)]
struct CacheCheck(ProductCache);

#[async_trait]
impl ReadinessCheck for CacheCheck {
    fn name(&self) -> &'static str {
        "products-cache"
    }

    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|_| "unreachable".to_owned())
    }

    fn required(&self) -> bool {
        false
    }
}

/// products as a process hosts it ([`crate::SERVICE`]).
#[derive(Debug, Clone, Copy)]
pub struct Definition;

#[async_trait]
impl Service for Definition {
    fn name(&self) -> &'static str {
        "products"
    }

    fn topology(&self) -> Topology {
        topology()
    }

    fn openapi(&self) -> OpenApi {
        api::openapi()
    }

    fn requirements(&self, settings: &Settings, requirements: &mut Requirements) {
        requirements.check(settings.products_database());
        requirements.check(settings.product_cache());
        requirements.check(settings.fingerprint());
        requirements.check(settings.secret_backend());
        requirements.check(settings.directory());
    }

    async fn migrate(&self, settings: &Settings) -> anyhow::Result<Migrated> {
        migrate(settings).await
    }

    async fn outbox(
        &self,
        settings: &Settings,
    ) -> anyhow::Result<Arc<dyn vitrine_messaging::outbox::OutboxStore>> {
        Ok(open_database(settings, Schema::AsIs).await?.store.outbox())
    }

    async fn start(&self, shared: &Shared) -> anyhow::Result<Arc<dyn Started>> {
        let service = Products::build(
            &shared.settings,
            Arc::clone(&shared.authenticator),
            Arc::clone(&shared.transport),
        )
        .await?;
        Ok(Arc::new(service))
    }
}

impl Started for Products {
    fn router(&self) -> Router {
        self.router.clone()
    }

    fn readiness(&self) -> Vec<Arc<dyn ReadinessCheck>> {
        self.readiness.clone()
    }

    fn detached_work(&self) -> Option<TaskTracker> {
        Some(self.detached_work.clone())
    }

    fn background(&self) -> Vec<Task> {
        Products::background(self)
    }
}
