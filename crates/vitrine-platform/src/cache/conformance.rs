//! One behaviour suite for every `Cache` adapter (moka, Redis). Keys are namespaced by a fresh
//! UUID, so the suite can run against a shared server.

use std::time::Duration;

use bytes::Bytes;

use super::Cache;

/// Runs every check against `cache`.
pub async fn run_all(cache: &dyn Cache) {
    let run = uuid::Uuid::now_v7().simple().to_string();
    set_then_get_round_trips(cache, &run).await;
    missing_key_is_none(cache, &run).await;
    set_replaces(cache, &run).await;
    delete_removes_and_is_idempotent(cache, &run).await;
    delete_and_publish_removes(cache, &run).await;
    entries_expire_after_their_ttl(cache, &run).await;
    binary_values_survive(cache, &run).await;
}

async fn set_then_get_round_trips(cache: &dyn Cache, run: &str) {
    let key = format!("{run}:round-trip");
    let value = Bytes::from_static("produto: café ☕".as_bytes());
    cache
        .set(&key, value.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(cache.get(&key).await.unwrap(), Some(value));
}

async fn missing_key_is_none(cache: &dyn Cache, run: &str) {
    assert_eq!(cache.get(&format!("{run}:never")).await.unwrap(), None);
}

async fn set_replaces(cache: &dyn Cache, run: &str) {
    let key = format!("{run}:replace");
    let ttl = Duration::from_secs(60);
    cache
        .set(&key, Bytes::from_static(b"one"), ttl)
        .await
        .unwrap();
    cache
        .set(&key, Bytes::from_static(b"two"), ttl)
        .await
        .unwrap();
    assert_eq!(
        cache.get(&key).await.unwrap(),
        Some(Bytes::from_static(b"two"))
    );
}

async fn delete_and_publish_removes(cache: &dyn Cache, run: &str) {
    let key = format!("{run}:delete-and-publish");
    cache
        .set(&key, Bytes::from_static(b"x"), Duration::from_secs(60))
        .await
        .unwrap();
    cache
        .delete_and_publish(&key, "conformance", "a-key")
        .await
        .unwrap();
    assert_eq!(cache.get(&key).await.unwrap(), None);
}

async fn delete_removes_and_is_idempotent(cache: &dyn Cache, run: &str) {
    let key = format!("{run}:delete");
    cache
        .set(&key, Bytes::from_static(b"x"), Duration::from_secs(60))
        .await
        .unwrap();
    cache.delete(&key).await.unwrap();
    assert_eq!(cache.get(&key).await.unwrap(), None);
    cache.delete(&key).await.unwrap();
}

async fn entries_expire_after_their_ttl(cache: &dyn Cache, run: &str) {
    let short = format!("{run}:short");
    let long = format!("{run}:long");
    cache
        .set(&short, Bytes::from_static(b"s"), Duration::from_millis(150))
        .await
        .unwrap();
    cache
        .set(&long, Bytes::from_static(b"l"), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(cache.get(&short).await.unwrap().is_some());
    // Expiry is checked against the clock, so poll rather than sleep an exact amount.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while cache.get(&short).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "an entry outlived its TTL by seconds"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cache.get(&long).await.unwrap().is_some(),
        "TTLs are per entry"
    );
}

async fn binary_values_survive(cache: &dyn Cache, run: &str) {
    let key = format!("{run}:binary");
    let value = Bytes::from((0..=255u8).collect::<Vec<_>>());
    cache
        .set(&key, value.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(cache.get(&key).await.unwrap(), Some(value));
}
