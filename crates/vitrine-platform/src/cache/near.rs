//! A near cache: encoded responses kept in this process, in front of the shared cache, so a hot
//! read is answered without a network round trip and without decoding or encoding anything.
//!
//! It is only as good as its coherence. Every process hears of every change through the shared
//! cache's invalidation channel ([`super::Cache::watch`]) and drops the entry; a
//! write also drops it at once in the process that made it. Two rules keep a racing fill from
//! putting an old value back:
//!
//! - a fill takes a [`Ticket`] before it reads the shared cache or the database, and its value is
//!   kept only if no invalidation arrived since (checked again after inserting, so an
//!   invalidation between the check and the insert still wins);
//! - while the channel is down, nothing is served or kept (messages may be lost), and the whole
//!   cache is dropped when it comes back.
//!
//! Entries also expire after a short TTL, the bound on staleness should a publish itself fail.

use std::hash::Hash;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

/// A response body as sent, with its entity tag.
#[derive(Debug, Clone)]
pub struct Representation {
    pub etag: HeaderValue,
    pub body: Bytes,
}

impl Representation {
    /// The JSON encoding of `value`.
    pub fn json(etag: HeaderValue, value: &impl serde::Serialize) -> Self {
        Self {
            etag,
            body: Bytes::from(serde_json::to_vec(value).expect("response types serialise")),
        }
    }
}

impl IntoResponse for Representation {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::ETAG, self.etag);
        response
    }
}

/// The invalidation state a fill started from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// What the invalidation channel tells a near cache.
pub trait Listener: Send + Sync {
    /// `key` changed somewhere.
    fn changed(&self, key: &str);
    /// The channel is down: invalidations may be lost from now on.
    fn lost(&self);
    /// The channel is listening again: invalidations from now on arrive.
    fn listening(&self);
}

pub struct NearCache<K, V> {
    entries: moka::sync::Cache<K, V>,
    /// Bumped by every invalidation, before the entry is dropped.
    epoch: AtomicU64,
    /// Whether the invalidation channel is listening.
    coherent: AtomicBool,
}

impl<K, V> std::fmt::Debug for NearCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearCache")
            .field("coherent", &self.coherent.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<K, V> NearCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// At most `max_entries` entries, each kept at most `ttl`; serving nothing until the
    /// invalidation channel reports it is listening.
    pub fn new(max_entries: u64, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build(),
            epoch: AtomicU64::new(0),
            coherent: AtomicBool::new(false),
        })
    }

    pub fn get(&self, key: &K) -> Option<V> {
        if !self.coherent.load(Ordering::Acquire) {
            return None;
        }
        self.entries.get(key)
    }

    /// Taken before reading what will be kept.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.epoch.load(Ordering::Acquire))
    }

    /// Keeps `value` unless an invalidation arrived since `ticket` or the channel is down.
    pub fn keep(&self, ticket: Ticket, key: K, value: V)
    where
        K: Clone,
    {
        if !self.coherent.load(Ordering::Acquire) || self.ticket() != ticket {
            return;
        }
        self.entries.insert(key.clone(), value);
        // An invalidation between the check above and the insert bumped the epoch first.
        if self.ticket() != ticket {
            self.entries.invalidate(&key);
        }
    }

    /// Drops `key` here (the channel tells the other processes).
    pub fn invalidate(&self, key: &K) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate(key);
    }

    fn drop_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate_all();
    }
}

impl<K, V> Listener for NearCache<K, V>
where
    K: Hash + Eq + FromStr + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn changed(&self, key: &str) {
        match key.parse::<K>() {
            Ok(key) => self.invalidate(&key),
            // Not one of ours by its form: drop everything rather than guess.
            Err(_) => self.drop_all(),
        }
    }

    fn lost(&self) {
        self.coherent.store(false, Ordering::Release);
        self.drop_all();
    }

    fn listening(&self) {
        self.drop_all();
        self.coherent.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> Arc<NearCache<u32, &'static str>> {
        let near = NearCache::new(100, Duration::from_secs(60));
        near.listening();
        near
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_not_kept() {
        let near = cache();
        let ticket = near.ticket();
        near.changed("1");
        near.keep(ticket, 1, "old");
        assert_eq!(near.get(&1), None);
        let ticket = near.ticket();
        near.keep(ticket, 1, "new");
        assert_eq!(near.get(&1), Some("new"));
        near.changed("1");
        assert_eq!(near.get(&1), None);
    }

    #[test]
    fn nothing_is_served_or_kept_while_the_channel_is_down() {
        let near = cache();
        near.keep(near.ticket(), 1, "a");
        near.lost();
        assert_eq!(near.get(&1), None);
        near.keep(near.ticket(), 2, "b");
        near.listening();
        assert_eq!(near.get(&1), None, "dropped when the channel came back");
        assert_eq!(near.get(&2), None, "not kept while it was down");
        near.keep(near.ticket(), 2, "b");
        assert_eq!(near.get(&2), Some("b"));
    }

    #[test]
    fn a_new_cache_serves_nothing_before_it_listens() {
        let near: Arc<NearCache<u32, &str>> = NearCache::new(10, Duration::from_secs(60));
        near.keep(near.ticket(), 1, "a");
        assert_eq!(near.get(&1), None);
    }

    #[test]
    fn an_unparsable_key_drops_everything() {
        let near = cache();
        near.keep(near.ticket(), 1, "a");
        near.changed("not-a-number");
        assert_eq!(near.get(&1), None);
    }
}
