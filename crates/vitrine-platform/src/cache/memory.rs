//! The in-process cache (moka): bounded by entry count, each entry expiring after its own TTL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use moka::Expiry;
use tokio_util::sync::CancellationToken;

use super::{Cache, CacheError, Listener};

#[derive(Clone)]
pub struct MemoryCache {
    entries: moka::future::Cache<String, (Bytes, Duration)>,
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

/// Each entry lives for the TTL it was stored with.
struct PerEntryTtl;

impl Expiry<String, (Bytes, Duration)> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &(Bytes, Duration),
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.1)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &(Bytes, Duration),
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.1)
    }
}

impl MemoryCache {
    /// A cache holding at most `max_entries` entries (least recently used go first).
    pub fn new(max_entries: u64) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(max_entries)
                .expire_after(PerEntryTtl)
                .build(),
        }
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        Ok(self.entries.get(key).await.map(|(value, _)| value))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), CacheError> {
        self.entries.insert(key.to_owned(), (value, ttl)).await;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.entries.invalidate(key).await;
        Ok(())
    }

    /// This process is the only one using an in-process cache, and its writers drop their
    /// own near entries: there is nobody else to tell.
    async fn publish(&self, _channel: &str, _key: &str) -> Result<(), CacheError> {
        Ok(())
    }

    async fn watch(&self, _channel: &str, listener: Arc<dyn Listener>, stop: CancellationToken) {
        listener.listening();
        stop.cancelled().await;
        listener.lost();
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}
