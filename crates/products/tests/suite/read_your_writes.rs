//! Read-your-writes across a real primary and streaming replica (started by `scripts/test.sh`):
//! a read carrying a write's token never sees older data, even while the replica's replay is
//! paused; reads without a token keep working from the primary while the replica is stopped.
//!
//! This is the only test that pauses or stops the shared replica; other tests reading from it
//! use tokens or the primary, which is exactly what keeps them correct meanwhile.

use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use products::cache::ProductCache;
use products::domain::{
    NewProduct, Price, ProductChanges, ProductDetails, ProductId, SellerId, Sku, Text,
};
use products::service::Catalog;
use products::store::{Freshness, PostgresStore, ProductStore, ReplicaOptions};
use sqlx::Connection;
use user_information_client::{CustomerDirectory, Lookup};
use vitrine_kernel::{Currency, Money};
use vitrine_platform::cache::MemoryCache;
use vitrine_platform::testing::{self, ReplicaControl};

/// Product creation is not exercised here: no seller is ever looked up.
#[derive(Debug)]
struct NoDirectory;

#[async_trait::async_trait]
impl CustomerDirectory for NoDirectory {
    async fn lookup(&self, _id: uuid::Uuid, _timeout: Duration) -> Lookup {
        Lookup::Unavailable("not used in this test".to_owned())
    }
}

fn name(raw: &str) -> Text {
    Text::parse(raw, 200).unwrap()
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_read_their_writes_and_reads_survive_the_replica() {
    let (primary_url, replica_url) = testing::postgres_pair().await;
    let primary = vitrine_platform::db::postgres(&primary_url, 8)
        .await
        .unwrap();
    let replica = vitrine_platform::db::postgres_replica(&replica_url, 4).unwrap();
    let store = Arc::new(PostgresStore::with_replica(
        primary,
        replica,
        ReplicaOptions {
            max_lag: Duration::from_secs(30),
            catch_up_wait: Duration::from_millis(50),
            probe_every: Duration::from_millis(100),
        },
    ));
    store.migrate().await.unwrap();
    until("the replica serves reads", async || store.replica_in_use()).await;
    // The cached read path, over the same store.
    let catalog = Catalog::new(
        Arc::clone(&store) as Arc<dyn ProductStore>,
        Arc::new(NoDirectory),
        ProductCache::new(
            Arc::new(MemoryCache::new(100)),
            Duration::from_secs(300),
            Duration::from_secs(5),
        ),
        Duration::from_secs(1),
    );

    let now = || Utc::now().trunc_subsecs(6);
    let id = ProductId::new();
    let created = store
        .insert_product(
            id,
            &NewProduct {
                seller_id: SellerId::new(),
                sku: Sku::parse("RYW-1").unwrap(),
                details: ProductDetails {
                    name: name("v0"),
                    description: None,
                    category: None,
                    price: Price::parse(Money::new(100, Currency::BRL)).unwrap(),
                },
                initial_stock: 1,
            },
            None,
            now(),
        )
        .await
        .unwrap();
    // (A read that reached the replica before it replayed the schema marked it down until
    // the next probe: wait for it to be back and to show the product.)
    until("the replica shows the product", async || {
        store.replica_in_use()
            && matches!(store.get_product(id, Freshness::Any).await, Ok(Some(_)))
            && store.replica_in_use()
    })
    .await;
    let read = store
        .get_product(id, Freshness::AtLeast(created.token))
        .await
        .unwrap();
    assert!(read.is_some());

    // Pause replay: the replica keeps answering, with data frozen in the past.
    let mut control =
        sqlx::PgConnection::connect(secrecy::ExposeSecret::expose_secret(&replica_url))
            .await
            .unwrap();
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&mut control)
        .await
        .unwrap();
    // Run the paused phase as a task, so replay is resumed even if an assertion fails.
    let paused = tokio::spawn({
        let store = Arc::clone(&store);
        let catalog = catalog.clone();
        async move {
            let mut stale_reads = 0;
            for round in 1..=20 {
                let label = format!("v{round}");
                // Cache the current value, then change it through the service (which evicts
                // it): the refill must not come from the paused replica.
                catalog.get(id, Freshness::Any).await.unwrap();
                let written = catalog
                    .update(
                        id,
                        None,
                        &ProductChanges {
                            name: Some(name(&label)),
                            ..ProductChanges::default()
                        },
                    )
                    .await
                    .unwrap();
                let seen = store
                    .get_product(id, Freshness::AtLeast(written.token))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    seen.details.name.as_str(),
                    label,
                    "a read with the write's token saw older data"
                );
                let cached = catalog.get(id, Freshness::Any).await.unwrap();
                assert_eq!(
                    cached.details.name.as_str(),
                    label,
                    "the cache was refilled with the old value from the paused replica"
                );
                let untokened = store
                    .get_product(id, Freshness::Any)
                    .await
                    .unwrap()
                    .unwrap();
                if untokened.details.name.as_str() != label {
                    stale_reads += 1;
                }
            }
            stale_reads
        }
    });
    let outcome = paused.await;
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut control)
        .await
        .unwrap();
    drop(control);
    let stale_reads =
        outcome.unwrap_or_else(|failed| std::panic::resume_unwind(failed.into_panic()));
    assert!(
        stale_reads > 0,
        "reads without a token never hit the paused replica: the test proves nothing"
    );

    // Stop the replica: reads without a token fall back to the primary, with no errors.
    let replica_server = ReplicaControl::from_env();
    replica_server.stop();
    let restart = scopeguard(&replica_server);
    for round in 0..20 {
        let read = store.get_product(id, Freshness::Any).await;
        assert!(
            matches!(&read, Ok(Some(p)) if p.details.name.as_str() == "v20"),
            "read {round} with the replica down: {read:?}"
        );
    }
    assert!(!store.replica_in_use(), "a stopped replica is not used");
    drop(restart);
    until("the restarted replica serves reads again", async || {
        store.replica_in_use()
    })
    .await;
}

/// Restarts the replica when dropped, so a failing assertion does not leave it down for the
/// tests that follow.
fn scopeguard(control: &ReplicaControl) -> impl Drop + '_ {
    struct Restart<'a>(&'a ReplicaControl);
    impl Drop for Restart<'_> {
        fn drop(&mut self) {
            self.0.start();
        }
    }
    Restart(control)
}
