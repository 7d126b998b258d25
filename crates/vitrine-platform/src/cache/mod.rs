//! The cache port: bytes under string keys with a time to live, behind one trait with an
//! in-process adapter (moka, embedded) and a Redis adapter (production). Both pass one
//! conformance suite ([`conformance`]).
//!
//! A cache is an optimisation: callers treat an error as a miss and go to the source of truth,
//! so a cache outage degrades latency, never correctness.

mod memory;
pub mod near;
mod redis;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

pub use self::redis::RedisCache;
pub use memory::MemoryCache;
pub use near::{Listener, NearCache, Representation};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Cache: Send + Sync + std::fmt::Debug {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError>;

    /// Stores `value` under `key`, replacing any previous value, for `ttl`.
    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), CacheError>;

    /// Removes `key`; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), CacheError>;

    /// Tells every process sharing this cache (this one included) that `key` of `channel`
    /// changed, so near caches ([`near`]) drop it.
    async fn publish(&self, channel: &str, key: &str) -> Result<(), CacheError>;

    /// [`Self::delete`] of `key`, then [`Self::publish`] of `message` on `channel`: in one round
    /// trip where the adapter can (a write's invalidation; with the cache down, it costs that
    /// write one bounded wait, not two).
    async fn delete_and_publish(
        &self,
        key: &str,
        channel: &str,
        message: &str,
    ) -> Result<(), CacheError> {
        self.delete(key).await?;
        self.publish(channel, message).await
    }

    /// Reports to `listener`, until `stop`, every key of `channel` any process publishes, and
    /// when the channel stops and starts listening (reconnecting by itself meanwhile).
    async fn watch(&self, channel: &str, listener: Arc<dyn Listener>, stop: CancellationToken);

    /// The adapter's name, for metrics and readiness (`memory`, `redis`).
    fn kind(&self) -> &'static str;
}
