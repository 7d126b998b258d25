//! Startup: the only place that chooses adapters, from configuration.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use utoipa::openapi::OpenApi;
use vitrine_platform::backends::Database;
use vitrine_platform::http::ReadinessCheck;
use vitrine_platform::http::auth::Authenticator;
use vitrine_platform::http::idempotency::{
    Idempotency, IdempotencyStore, PgIdempotencyStore, SqliteIdempotencyStore, idempotency,
};
use vitrine_platform::requirements::Requirements;
use vitrine_platform::secrets::{self, OpenedSecrets, SecretStore, VaultSecretStore};
use vitrine_platform::{Settings, db};
use vitrine_runtime::migrations::{Migrated, Schema};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vitrine_contracts::user_information as contract;
use vitrine_messaging::consumer::{Consumer, ConsumerOptions};
use vitrine_messaging::relay::Relay;
use vitrine_messaging::transport::{QueueSpec, Topology, Transport};
use vitrine_service::supervisor::housekeeping;
use vitrine_service::{QueueCheck, Service, Shared, Started, Task};

use crate::api::{self, AppState, Handles};
use crate::incoming::LookupResponder;
use crate::service::Customers;
use crate::store::{CustomerStore, PostgresStore, SqliteStore};

/// File name of the embedded database inside the data directory.
pub const SQLITE_FILE: &str = "user-information.sqlite3";
pub use vitrine_platform::secrets::SECRETS_KEY_FILE;

/// The assembled service, ready to be mounted and served.
pub struct UserInformation {
    /// `/v1/customers*`, with the Idempotency-Key layer.
    pub router: Router,
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
    pub customers: Customers,
    store: Arc<dyn CustomerStore>,
    idempotency: Arc<dyn IdempotencyStore>,
    transport: Arc<dyn Transport>,
    /// Set when secrets live in Vault: its token is renewed in the background.
    vault: Option<VaultSecretStore>,
    /// Idempotent handlers running detached from their connections.
    detached_work: TaskTracker,
}

impl std::fmt::Debug for UserInformation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserInformation")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl UserInformation {
    /// Connects and migrates the configured database, opens the secret store, builds the API.
    pub async fn build(
        settings: &Settings,
        authenticator: Arc<Authenticator>,
        transport: Arc<dyn Transport>,
    ) -> anyhow::Result<Self> {
        // Secrets first: a misconfigured production process stops before touching the database.
        let OpenedSecrets {
            store: secrets,
            key: secrets_key,
            vault,
        } = secrets::open(settings).await?;
        let Opened {
            store,
            idempotency: idempotency_store,
            ..
        } = open_database(settings, Schema::Migrate).await?;
        // One tracker for all work that outlives its request: idempotent handlers and the
        // database-and-secret-store steps of closing a customer or removing a payment method.
        let detached_work = TaskTracker::new();
        let customers = Customers::new(
            Arc::clone(&store),
            Arc::clone(&secrets),
            detached_work.clone(),
        );
        let state = AppState::from(Handles {
            customers: customers.clone(),
            authenticator: Arc::clone(&authenticator),
        });
        let (router, _) = api::router(state);
        let mut idempotency_state = Idempotency::new(
            Arc::clone(&idempotency_store),
            authenticator,
            settings.max_body_bytes,
            derive_key(&secrets_key, b"vitrine idempotency fingerprint v1"),
        );
        idempotency_state.work = detached_work.clone();
        let router = router.layer(axum::middleware::from_fn_with_state(
            Arc::new(idempotency_state),
            idempotency,
        ));
        let readiness: Vec<Arc<dyn ReadinessCheck>> = vec![
            Arc::new(DatabaseCheck(Arc::clone(&store))),
            Arc::new(SecretsCheck(secrets)),
            Arc::new(QueueCheck {
                name: "messaging",
                transport: Arc::clone(&transport),
                queue: contract::QUEUE,
            }),
        ];
        Ok(Self {
            router,
            readiness,
            customers,
            store,
            idempotency: idempotency_store,
            detached_work,
            transport,
            vault,
        })
    }

    /// The outbox relay, the request consumer and housekeeping, each restartable.
    pub fn background(&self) -> Vec<Task> {
        let relay = Relay::new(self.store.outbox(), self.transport.clone());
        let store = Arc::clone(&self.store);
        let transport = Arc::clone(&self.transport);
        let mut tasks = vec![
            Task::new("outbox-relay", move |stop| relay.clone().run(stop)),
            Task::new("lookup-consumer", move |stop| {
                let responder = LookupResponder::new(Arc::clone(&store), Arc::clone(&transport));
                Consumer::new(
                    contract::QUEUE,
                    Arc::clone(&transport),
                    Arc::new(responder),
                    ConsumerOptions::default(),
                )
                .run(stop)
            }),
        ];
        let customers = self.customers.clone();
        tasks.push(Task::new("secret-erasure", move |stop| {
            finish_erasures(customers.clone(), stop)
        }));
        tasks.extend(housekeeping(
            self.store.inbox(),
            Arc::clone(&self.idempotency),
        ));
        tasks.push(vitrine_service::gauges::messaging_gauges(
            "user-information",
            self.store.outbox(),
            Arc::clone(&self.transport),
            vec![contract::QUEUE],
        ));
        if let Some(vault) = &self.vault {
            let vault = vault.clone();
            tasks.push(Task::new("vault-token-renewal", move |stop| {
                vault.clone().keep_token_alive(stop)
            }));
        }
        tasks
    }

    pub fn store(&self) -> Arc<dyn CustomerStore> {
        Arc::clone(&self.store)
    }
}

/// Every few seconds until `shutdown`, finishes the erasures of closed customers' secrets that
/// the secret store could not take when they were closed.
async fn finish_erasures(customers: Customers, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(error) = customers.erase_pending().await {
            tracing::warn!(%error, "looking for pending erasures failed");
        }
    }
}

/// The topics and queues user-information owns: its event topic and its request queue.
pub fn topology() -> Topology {
    Topology {
        topics: vec![contract::TOPIC.to_owned()],
        queues: vec![QueueSpec {
            name: contract::QUEUE.to_owned(),
            subscriptions: vec![],
            max_receives: 5,
        }],
    }
}

/// A service's database, opened.
struct Opened {
    store: Arc<dyn CustomerStore>,
    idempotency: Arc<dyn IdempotencyStore>,
    migrated: Migrated,
}

async fn open_database(settings: &Settings, schema: Schema) -> anyhow::Result<Opened> {
    match settings.user_information_database()? {
        Database::Postgres { primary: url, .. } => {
            let database = db::describe_postgres(&url);
            let pool = db::postgres(&url, settings.database_max_connections).await?;
            let store = PostgresStore::new(pool.clone());
            let applied = schema.apply(&database, store.migrate()).await?;
            Ok(Opened {
                store: Arc::new(store),
                idempotency: Arc::new(PgIdempotencyStore::new(pool)),
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
                store: Arc::new(store),
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

/// A purpose-bound key derived from the secrets key (HMAC-SHA256 as a PRF), so one key file
/// serves several purposes without reusing the key itself.
fn derive_key(key: &[u8], purpose: &[u8]) -> Arc<[u8]> {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(purpose);
    Arc::from(mac.finalize().into_bytes().as_slice())
}

/// Key material, wiped from memory when dropped.

#[derive(Debug)]
struct DatabaseCheck(Arc<dyn CustomerStore>);

#[async_trait]
impl ReadinessCheck for DatabaseCheck {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|_| "unreachable".to_owned())
    }
}

#[derive(Debug)]
struct SecretsCheck(Arc<dyn SecretStore>);

#[async_trait]
impl ReadinessCheck for SecretsCheck {
    fn name(&self) -> &'static str {
        "secrets"
    }

    async fn check(&self) -> Result<(), String> {
        self.0.check().await.map_err(|_| "unreachable".to_owned())
    }
}

/// user-information as a process hosts it ([`crate::SERVICE`]).
#[derive(Debug, Clone, Copy)]
pub struct Definition;

#[async_trait]
impl Service for Definition {
    fn name(&self) -> &'static str {
        "user-information"
    }

    fn topology(&self) -> Topology {
        topology()
    }

    fn openapi(&self) -> OpenApi {
        api::openapi()
    }

    fn requirements(&self, settings: &Settings, requirements: &mut Requirements) {
        requirements.check(settings.user_information_database());
        requirements.check(settings.secret_backend());
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
        let service = UserInformation::build(
            &shared.settings,
            Arc::clone(&shared.authenticator),
            Arc::clone(&shared.transport),
        )
        .await?;
        Ok(Arc::new(service))
    }
}

impl Started for UserInformation {
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
        UserInformation::background(self)
    }
}
