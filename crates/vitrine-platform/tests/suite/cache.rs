//! The cache conformance suite against both adapters: in-process (moka) and a real Redis started
//! by `scripts/test.sh`.

use vitrine_platform::cache::{Cache, MemoryCache, RedisCache, conformance};
use vitrine_platform::testing;

#[tokio::test]
async fn memory_cache_conforms() {
    conformance::run_all(&MemoryCache::new(1000)).await;
}

#[tokio::test]
async fn redis_cache_conforms() {
    let cache = RedisCache::connect(&testing::redis_url(), "conformance")
        .await
        .expect("the test Redis is reachable");
    conformance::run_all(&cache).await;
    assert_eq!(cache.kind(), "redis");
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_not_a_hang() {
    // Connecting fails fast and names the problem without echoing the URL's password.
    let url = secrecy::SecretString::from("redis://:hunter2@127.0.0.1:1/0".to_owned());
    let error = RedisCache::connect(&url, "x").await.unwrap_err();
    assert!(!format!("{error:#}").contains("hunter2"), "{error:#}");
}
