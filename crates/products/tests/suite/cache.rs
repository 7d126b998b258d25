//! The product cache over both adapters: concurrent misses load once, "not found" is cached
//! briefly, and a cache that fails (a Redis this test starts, then kills) turns into misses
//! served by the database, never into errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use products::cache::ProductCache;
use products::domain::{
    Price, Product, ProductDetails, ProductId, ProductStatus, SellerId, Sku, Stock, Text,
};
use vitrine_kernel::{Currency, Money};
use vitrine_platform::cache::{Cache, MemoryCache, RedisCache};

fn product(id: ProductId) -> Product {
    let now = Utc::now();
    Product {
        id,
        seller_id: SellerId::new(),
        sku: Sku::parse("C-1").unwrap(),
        details: ProductDetails {
            name: Text::parse("Cacheado", 100).unwrap(),
            description: None,
            category: Some(Text::parse("testes", 100).unwrap()),
            price: Price::parse(Money::new(990, Currency::BRL)).unwrap(),
        },
        status: ProductStatus::Active,
        stock: Stock {
            on_hand: 7,
            reserved: 2,
        },
        version: 3,
        created_at: now,
        updated_at: now,
    }
}

type Loaded = std::pin::Pin<
    Box<dyn Future<Output = Result<Option<Product>, products::store::StoreError>> + Send>,
>;

/// A loader that counts its calls and takes a while, like a database round trip.
fn counting(calls: &Arc<AtomicUsize>, result: Option<Product>) -> impl FnOnce() -> Loaded + use<> {
    let calls = Arc::clone(calls);
    move || {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(result)
        })
    }
}

async fn concurrent_misses_load_once(cache: Arc<dyn Cache>) {
    let cache = ProductCache::new(cache, Duration::from_secs(60), Duration::from_secs(60));
    let id = ProductId::new();
    let expected = product(id);
    let calls = Arc::new(AtomicUsize::new(0));
    let reads: Vec<_> = (0..50)
        .map(|_| {
            let cache = cache.clone();
            let load = counting(&calls, Some(expected.clone()));
            tokio::spawn(async move { cache.get_or_load(id, load).await.unwrap() })
        })
        .collect();
    for read in reads {
        assert_eq!(read.await.unwrap().as_ref(), Some(&expected));
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "fifty concurrent misses, one load"
    );
    // And the next read is a hit.
    let again = cache.get_or_load(id, counting(&calls, None)).await.unwrap();
    assert_eq!(again, Some(expected));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    cache.invalidate(id).await;
    cache
        .get_or_load(id, counting(&calls, Some(product(id))))
        .await
        .unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "invalidation forces a load"
    );
}

async fn not_found_is_cached_briefly(cache: Arc<dyn Cache>) {
    let cache = ProductCache::new(cache, Duration::from_secs(60), Duration::from_millis(300));
    let id = ProductId::new();
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        assert_eq!(
            cache.get_or_load(id, counting(&calls, None)).await.unwrap(),
            None
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let found = cache
        .get_or_load(id, counting(&calls, Some(product(id))))
        .await
        .unwrap();
    assert!(
        found.is_some(),
        "the tombstone expired, the product is found"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

async fn redis() -> Arc<dyn Cache> {
    Arc::new(
        RedisCache::connect(
            &vitrine_platform::testing::redis_url(),
            "products-cache-test",
        )
        .await
        .unwrap(),
    )
}

#[tokio::test]
async fn memory_concurrent_misses_load_once() {
    concurrent_misses_load_once(Arc::new(MemoryCache::new(100))).await;
}

#[tokio::test]
async fn redis_concurrent_misses_load_once() {
    concurrent_misses_load_once(redis().await).await;
}

#[tokio::test]
async fn memory_not_found_is_cached_briefly() {
    not_found_is_cached_briefly(Arc::new(MemoryCache::new(100))).await;
}

#[tokio::test]
async fn redis_not_found_is_cached_briefly() {
    not_found_is_cached_briefly(redis().await).await;
}

#[tokio::test]
async fn a_dead_redis_degrades_reads_to_the_database() {
    let mut redis = vitrine_platform::testing::OwnRedis::start().await;
    let url = redis.url();
    let cache = ProductCache::new(
        Arc::new(RedisCache::connect(&url, "degrade").await.unwrap()),
        Duration::from_secs(60),
        Duration::from_secs(5),
    );
    let id = ProductId::new();
    let calls = Arc::new(AtomicUsize::new(0));
    cache
        .get_or_load(id, counting(&calls, Some(product(id))))
        .await
        .unwrap();
    cache
        .get_or_load(id, counting(&calls, Some(product(id))))
        .await
        .unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "served from Redis while it lives"
    );

    redis.kill();
    for round in 0..5 {
        let started = std::time::Instant::now();
        let read = cache
            .get_or_load(id, counting(&calls, Some(product(id))))
            .await;
        assert!(
            matches!(&read, Ok(Some(p)) if p.id == id),
            "read {round} failed with Redis down: {read:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a dead cache must not stall reads"
        );
        cache.invalidate(id).await;
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        6,
        "every read went to the database"
    );
    assert!(
        cache.ping().await.is_err(),
        "readiness reports the cache down"
    );
}
