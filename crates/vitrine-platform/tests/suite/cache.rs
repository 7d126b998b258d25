//! The cache conformance suite against both adapters: in-process (moka) and a real Redis started
//! by `scripts/test.sh`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;
use vitrine_platform::cache::{Cache, Listener, MemoryCache, RedisCache, conformance};
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

/// Records what a watch reports.
#[derive(Default)]
struct Recorder {
    events: std::sync::Mutex<Vec<String>>,
}

impl Listener for Recorder {
    fn changed(&self, key: &str) {
        self.events.lock().unwrap().push(format!("changed {key}"));
    }
    fn lost(&self) {
        self.events.lock().unwrap().push("lost".to_owned());
    }
    fn listening(&self) {
        self.events.lock().unwrap().push("listening".to_owned());
    }
}

impl Recorder {
    async fn wait_for(&self, event: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self
                .events
                .lock()
                .unwrap()
                .iter()
                .filter(|e| *e == event)
                .count();
            if seen >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {event:?} (x{count}) within 10 s: {:?}",
                self.events.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn redis_invalidations_reach_every_process_and_a_broken_subscription_says_so() {
    let prefix = format!("coherence-{}", uuid::Uuid::now_v7().simple());
    let connect = || async {
        RedisCache::connect(&testing::redis_url(), &prefix)
            .await
            .expect("the test Redis is reachable")
    };
    let (writer, reader) = (connect().await, connect().await);
    let recorder = Arc::new(Recorder::default());
    let stop = CancellationToken::new();
    let watch = tokio::spawn({
        let (recorder, stop) = (Arc::clone(&recorder), stop.clone());
        async move { reader.watch("products", recorder, stop).await }
    });
    recorder.wait_for("listening", 1).await;

    writer.publish("products", "key-1").await.unwrap();
    recorder.wait_for("changed key-1", 1).await;
    writer
        .delete_and_publish("some-entry", "products", "key-0")
        .await
        .unwrap();
    recorder.wait_for("changed key-0", 1).await;
    // Another channel (or another prefix) is not heard.
    writer.publish("customers", "key-2").await.unwrap();
    writer.publish("products", "key-3").await.unwrap();
    recorder.wait_for("changed key-3", 1).await;
    assert!(
        !recorder
            .events
            .lock()
            .unwrap()
            .contains(&"changed key-2".to_owned())
    );

    // Redis drops the subscriber: the listener hears that it may have missed messages, then
    // that it listens again, and messages arrive again.
    let client = redis::Client::open(testing::redis_url().expose_secret()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(killed >= 1);
    recorder.wait_for("lost", 1).await;
    recorder.wait_for("listening", 2).await;
    writer.publish("products", "key-4").await.unwrap();
    recorder.wait_for("changed key-4", 1).await;

    stop.cancel();
    watch.await.unwrap();
    assert_eq!(
        recorder.events.lock().unwrap().last().map(String::as_str),
        Some("lost"),
        "a stopped watch leaves the listener off"
    );
}
