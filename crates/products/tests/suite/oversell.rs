//! No oversell, proven over HTTP: 200 concurrent reservations of one unit against a stock of 10,
//! on SQLite and on PostgreSQL. A checker reads the whole history (every request's response and
//! its start and end times, plus the final stock) and lists every violation; a deliberately
//! broken store (read, then write back an absolute count) must be caught by it.
//!
//! The seller check is not under test here: these servers get a directory that accepts every
//! seller (stated where it is built).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use products::api::{self, AppState, Handles};
use products::cache::ProductCache;
use products::domain::{
    ManualMovement, NewProduct, NewReservation, Product, ProductChanges, ProductId, Reservation,
    ReservationId, ReservationStatus, SellerId, SellerStanding, StockMovement,
};
use products::service::Catalog;
use products::store::{
    Freshness, PostgresStore, ProductFilter, ProductStore, SellerUpdate, SqliteStore, StoreError,
    Written,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use user_information_client::{CustomerDirectory, CustomerStatus, Lookup};
use uuid::Uuid;
use vitrine_kernel::{Cursor, Page, PageLimit};
use vitrine_platform::cache::MemoryCache;
use vitrine_platform::http::auth::{Authenticator, Role, TokenIssuer};

const STOCK: i64 = 10;
const REQUESTS: usize = 200;

/// Every seller exists and is active: the seller check has its own tests.
#[derive(Debug)]
struct EverySellerActive;

#[async_trait]
impl CustomerDirectory for EverySellerActive {
    async fn lookup(&self, id: Uuid, _timeout: Duration) -> Lookup {
        Lookup::Found {
            id,
            cnpj: "12ABC34501DE35".to_owned(),
            legal_name: "Loja de teste".to_owned(),
            status: CustomerStatus::Active,
            version: Some(1),
        }
    }
}

struct Server {
    base: String,
    admin: String,
    buyer: String,
    client: reqwest::Client,
    store: Arc<dyn ProductStore>,
    stop: CancellationToken,
}

/// Webhook endpoints, batches and imports on a throwaway embedded store: this test never uses
/// them.
async fn unused_parts(
    catalog: &Catalog,
) -> (
    products::endpoints::WebhookEndpoints,
    products::batches::Batches,
    products::imports::Imports,
) {
    let dir = tempfile::tempdir().unwrap().keep();
    let pool = vitrine_platform::db::sqlite(&dir.join("unused.sqlite3"))
        .await
        .unwrap();
    let store = products::store::SqliteStore::new(pool.clone());
    store.migrate().await.unwrap();
    let webhooks: Arc<dyn vitrine_webhooks::store::WebhookStore> =
        Arc::new(vitrine_webhooks::store::SqliteWebhookStore::new(pool));
    let secrets =
        vitrine_platform::secrets::LocalSecretStore::open(dir.join("secrets"), &[7u8; 32]).unwrap();
    let work: Arc<dyn products::store::WorkStore> = Arc::new(store);
    (
        products::endpoints::WebhookEndpoints::new(
            Arc::clone(&webhooks),
            Arc::new(secrets),
            Arc::new(vitrine_webhooks::address_policy::AddressPolicy::embedded(
                vec![],
            )),
        ),
        products::batches::Batches::new(Arc::clone(&work), webhooks),
        products::imports::Imports::new(work, catalog.clone(), 1_000_000),
    )
}

async fn serve(store: Arc<dyn ProductStore>) -> Server {
    let key = b"an hs256 key for the oversell test, 32+ bytes".to_vec();
    let authenticator = Arc::new(Authenticator::hs256(&key).unwrap());
    let issuer = TokenIssuer::hs256(&key).unwrap();
    let hour = Duration::from_secs(3600);
    let admin = issuer.issue("admin", &[Role::Admin], None, hour).unwrap();
    let buyer = issuer
        .issue("buyer", &[Role::Customer], Some(Uuid::now_v7()), hour)
        .unwrap();
    let cache = ProductCache::new(
        Arc::new(MemoryCache::new(1000)),
        Duration::from_secs(60),
        Duration::from_secs(1),
    );
    let catalog = Catalog::new(
        Arc::clone(&store),
        Arc::new(EverySellerActive),
        cache,
        Duration::from_secs(1),
    );
    let (endpoints, batches, imports) = unused_parts(&catalog).await;
    let (routers, _) = api::router(AppState::from(Handles {
        catalog,
        endpoints,
        batches,
        imports,
        authenticator,
    }));
    let router = routers.buffered;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let until = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { until.cancelled().await })
            .await
            .unwrap();
    });
    Server {
        base,
        admin,
        buyer,
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(REQUESTS)
            .build()
            .unwrap(),
        store,
        stop,
    }
}

/// One request of the run, as the client saw it.
#[derive(Debug)]
struct Call {
    started: Instant,
    ended: Instant,
    status: u16,
    body: Value,
}

/// Everything wrong with a run of `calls` (each reserving one unit of a product that had
/// `stock` units and no other activity), given the product afterwards.
fn violations(calls: &[Call], stock: i64, after: &Product, pending_units: i64) -> Vec<String> {
    let mut found = Vec::new();
    let successes: Vec<&Call> = calls.iter().filter(|c| c.status == 201).collect();
    let refusals: Vec<&Call> = calls.iter().filter(|c| c.status == 409).collect();
    for call in calls {
        if call.status != 201 && call.status != 409 {
            found.push(format!("unexpected status {}: {}", call.status, call.body));
        }
    }
    let expected = stock.min(calls.len() as i64);
    if successes.len() as i64 != expected {
        found.push(format!(
            "{} reservations succeeded; exactly {expected} units existed",
            successes.len()
        ));
    }
    let mut ids: Vec<&str> = successes
        .iter()
        .filter_map(|c| c.body["id"].as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() != successes.len() {
        found.push("a reservation id was answered twice".to_owned());
    }
    if after.stock.reserved != successes.len() as i64 {
        found.push(format!(
            "reserved is {} after {} successful reservations",
            after.stock.reserved,
            successes.len()
        ));
    }
    if pending_units != successes.len() as i64 {
        found.push(format!(
            "pending reservations hold {pending_units} units after {} successes",
            successes.len()
        ));
    }
    if after.stock.on_hand != stock {
        found.push(format!(
            "on_hand moved from {stock} to {}",
            after.stock.on_hand
        ));
    }
    // Stock only goes down in this run: once a refusal has been answered, no reservation that
    // started later may succeed.
    if let Some(first_refusal_end) = refusals.iter().map(|c| c.ended).min() {
        let late = successes
            .iter()
            .filter(|c| c.started > first_refusal_end)
            .count();
        if late > 0 {
            found.push(format!(
                "{late} reservations succeeded after a refusal had been answered"
            ));
        }
    }
    for refusal in &refusals {
        if refusal.body["errors"][0]["field"] != "items[0].product_id" {
            found.push(format!(
                "a refusal does not name the short item: {}",
                refusal.body
            ));
        }
    }
    found
}

/// Creates a product with `STOCK` units, fires `REQUESTS` concurrent reservations of one unit,
/// and returns the checker's findings.
async fn run(server: &Server) -> Vec<String> {
    let created: Value = server
        .client
        .post(format!("{}/v1/products", server.base))
        .bearer_auth(&server.admin)
        .json(&json!({
            "seller_id": Uuid::now_v7(),
            "sku": "HOT-1",
            "name": "Produto disputado",
            "price": {"amount": 1000, "currency": "BRL"},
            "initial_stock": STOCK,
        }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let product = created["id"].as_str().unwrap().to_owned();
    let start = Arc::new(tokio::sync::Barrier::new(REQUESTS));
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let client = server.client.clone();
            let url = format!("{}/v1/reservations", server.base);
            let token = server.buyer.clone();
            let product = product.clone();
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                let started = Instant::now();
                let response = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"items": [{"product_id": product, "quantity": 1}]}))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let body = response.json().await.unwrap_or(Value::Null);
                Call {
                    started,
                    ended: Instant::now(),
                    status,
                    body,
                }
            })
        })
        .collect();
    let mut calls = Vec::with_capacity(REQUESTS);
    for task in tasks {
        calls.push(task.await.unwrap());
    }
    let id = ProductId::parse(&product).unwrap();
    let after = server
        .store
        .get_product(id, Freshness::Primary)
        .await
        .unwrap()
        .unwrap();
    let mut pending_units = 0;
    for call in calls.iter().filter(|c| c.status == 201) {
        let rid = ReservationId::parse(call.body["id"].as_str().unwrap()).unwrap();
        if let Some(r) = server
            .store
            .get_reservation(rid, Freshness::Primary)
            .await
            .unwrap()
            && r.status == ReservationStatus::Pending
        {
            pending_units += r.items.iter().map(|i| i.quantity.get()).sum::<i64>();
        }
    }
    violations(&calls, STOCK, &after, pending_units)
}

async fn sqlite_store(dir: &tempfile::TempDir) -> (SqliteStore, sqlx::SqlitePool) {
    let pool = vitrine_platform::db::sqlite(&dir.path().join("products.sqlite3"))
        .await
        .unwrap();
    let store = SqliteStore::new(pool.clone());
    store.migrate().await.unwrap();
    (store, pool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_never_oversells_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = sqlite_store(&dir).await;
    let server = serve(Arc::new(store)).await;
    let found = run(&server).await;
    server.stop.cancel();
    assert!(found.is_empty(), "violations: {found:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_never_oversells_over_http() {
    let url = vitrine_platform::testing::postgres_database().await;
    let pool = vitrine_platform::db::postgres(&url, 32).await.unwrap();
    let store = PostgresStore::new(pool);
    store.migrate().await.unwrap();
    let server = serve(Arc::new(store)).await;
    let found = run(&server).await;
    server.stop.cancel();
    assert!(found.is_empty(), "violations: {found:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checker_catches_a_store_that_reads_then_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, pool) = sqlite_store(&dir).await;
    let broken = ReadThenWrite {
        inner: Arc::new(store),
        pool,
    };
    let server = serve(Arc::new(broken)).await;
    let found = run(&server).await;
    server.stop.cancel();
    assert!(
        found.iter().any(|v| v.contains("reservations succeeded")),
        "the broken store went unnoticed: {found:#?}"
    );
}

/// The classic bug: check availability, then write back `reserved + quantity` computed from
/// that earlier read. Concurrent reservations overwrite each other's holds.
#[derive(Debug)]
struct ReadThenWrite {
    inner: Arc<dyn ProductStore>,
    pool: sqlx::SqlitePool,
}

#[async_trait]
impl ProductStore for ReadThenWrite {
    async fn reserve(
        &self,
        id: ReservationId,
        new: &NewReservation,
        now: DateTime<Utc>,
    ) -> Result<Written<Reservation>, StoreError> {
        for item in new.items() {
            let product = self
                .inner
                .get_product(item.product_id, Freshness::Primary)
                .await?
                .ok_or(StoreError::NotFound)?;
            if product.stock.available() < item.quantity.get() {
                return Err(StoreError::Shortages(vec![(
                    item.product_id,
                    products::domain::Shortage::Insufficient {
                        available: product.stock.available(),
                    },
                )]));
            }
            // Widen the window between the read and the write, as a slow request would.
            tokio::time::sleep(Duration::from_millis(20)).await;
            sqlx::query("UPDATE products SET reserved = $1 WHERE id = $2")
                .bind(product.stock.reserved + item.quantity.get())
                .bind(item.product_id.as_uuid())
                .execute(&self.pool)
                .await?;
        }
        Ok(Written {
            value: Reservation {
                id,
                buyer_id: new.buyer_id,
                status: ReservationStatus::Pending,
                items: new.items().to_vec(),
                expires_at: new.expires_at,
                created_at: now,
                updated_at: now,
            },
            token: products::store::ConsistencyToken::ZERO,
        })
    }

    async fn insert_product(
        &self,
        id: ProductId,
        new: &NewProduct,
        actor: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Written<Product>, StoreError> {
        self.inner.insert_product(id, new, actor, now).await
    }

    async fn insert_product_for_known_seller(
        &self,
        id: ProductId,
        new: &NewProduct,
        actor: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<Written<Product>>, StoreError> {
        self.inner
            .insert_product_for_known_seller(id, new, actor, now)
            .await
    }

    async fn get_product(
        &self,
        id: ProductId,
        freshness: Freshness,
    ) -> Result<Option<Product>, StoreError> {
        self.inner.get_product(id, freshness).await
    }

    async fn list_products(
        &self,
        filter: &ProductFilter,
        limit: PageLimit,
        cursor: Option<&Cursor>,
        freshness: Freshness,
    ) -> Result<Page<Product>, StoreError> {
        self.inner
            .list_products(filter, limit, cursor, freshness)
            .await
    }

    async fn update_product(
        &self,
        id: ProductId,
        expected_version: Option<i64>,
        changes: &ProductChanges,
        now: DateTime<Utc>,
    ) -> Result<Written<Product>, StoreError> {
        self.inner
            .update_product(id, expected_version, changes, now)
            .await
    }

    async fn delete_product(
        &self,
        id: ProductId,
        expected_version: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Written<Product>, StoreError> {
        self.inner.delete_product(id, expected_version, now).await
    }

    async fn record_movement(
        &self,
        id: ProductId,
        movement: ManualMovement,
        actor: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Written<(StockMovement, Product)>, StoreError> {
        self.inner.record_movement(id, movement, actor, now).await
    }

    async fn list_movements(
        &self,
        id: ProductId,
        limit: PageLimit,
        cursor: Option<&Cursor>,
        freshness: Freshness,
    ) -> Result<Page<StockMovement>, StoreError> {
        self.inner
            .list_movements(id, limit, cursor, freshness)
            .await
    }

    async fn get_reservation(
        &self,
        id: ReservationId,
        freshness: Freshness,
    ) -> Result<Option<Reservation>, StoreError> {
        self.inner.get_reservation(id, freshness).await
    }

    async fn finish_reservation(
        &self,
        id: ReservationId,
        target: ReservationStatus,
        actor: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Written<Reservation>, StoreError> {
        self.inner.finish_reservation(id, target, actor, now).await
    }

    async fn due_reservations(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ReservationId>, StoreError> {
        self.inner.due_reservations(now, limit).await
    }

    async fn apply_seller_standing(
        &self,
        consumer: &str,
        message_id: Uuid,
        seller: SellerId,
        standing: SellerStanding,
        version: i64,
        now: DateTime<Utc>,
    ) -> Result<SellerUpdate, StoreError> {
        self.inner
            .apply_seller_standing(consumer, message_id, seller, standing, version, now)
            .await
    }

    async fn reconcile_seller(
        &self,
        seller: SellerId,
        standing: SellerStanding,
        version: i64,
        now: DateTime<Utc>,
    ) -> Result<SellerUpdate, StoreError> {
        self.inner
            .reconcile_seller(seller, standing, version, now)
            .await
    }

    async fn sellers_to_reconcile(&self, max: i64) -> Result<Vec<SellerId>, StoreError> {
        self.inner.sellers_to_reconcile(max).await
    }

    async fn announce(
        &self,
        messages: &[vitrine_messaging::outbox::OutboxMessage],
    ) -> Result<(), StoreError> {
        self.inner.announce(messages).await
    }

    async fn seller_checked(&self, seller: SellerId, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.seller_checked(seller, now).await
    }

    async fn current_position(&self) -> Result<products::store::ConsistencyToken, StoreError> {
        self.inner.current_position().await
    }

    async fn admits(&self, token: products::store::ConsistencyToken) -> Result<bool, StoreError> {
        self.inner.admits(token).await
    }

    fn outbox(&self) -> Arc<dyn vitrine_messaging::outbox::OutboxStore> {
        self.inner.outbox()
    }

    fn inbox(&self) -> vitrine_messaging::inbox::Inbox {
        self.inner.inbox()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}
