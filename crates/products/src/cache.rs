//! `GET /v1/products/{id}` cache-aside over the platform's `Cache` port, with a near cache of
//! encoded responses in front of it.
//!
//! - A hot product is answered from this process's near cache: its response as sent, without a
//!   round trip to Redis or any decoding. Every invalidation below drops it here at once and,
//!   through the cache's invalidation channel, in every other process (see
//!   `vitrine_platform::cache::near` for how racing fills and a broken channel are handled).
//! - Concurrent misses for one product load it once (single flight); the others await that load.
//! - TTLs carry ±10% jitter, so entries written together do not expire together.
//! - "Not found" is cached briefly too (a tombstone), so probing unknown ids stays cheap.
//! - Entries are deleted after every committed write of this process and again when the
//!   product's own events arrive (see `messages`), which also evicts a value that a load racing
//!   a write put back: a stale entry outlives its write by at most the event latency.
//! - A cache error is a miss: the read goes to the database and the failure is counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vitrine_kernel::{Currency, Money};
use vitrine_platform::cache::near::Ticket;
use vitrine_platform::cache::{Cache, NearCache, Representation};

use crate::domain::{
    Price, Product, ProductDetails, ProductId, ProductStatus, SellerId, Sku, Stock, Text,
};
use crate::store::StoreError;

type Load = Shared<BoxFuture<'static, Result<Option<Product>, Arc<StoreError>>>>;

/// The invalidation channel of product entries.
const CHANNEL: &str = "products";

/// Encoded responses kept per process.
const NEAR_ENTRIES: u64 = 10_000;

#[derive(Clone)]
pub struct ProductCache {
    cache: Arc<dyn Cache>,
    /// `None` when turned off (a zero TTL).
    near: Option<Arc<NearCache<ProductId, Representation>>>,
    ttl: Duration,
    negative_ttl: Duration,
    loads: Arc<Mutex<HashMap<ProductId, Load>>>,
}

impl std::fmt::Debug for ProductCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProductCache")
            .field("cache", &self.cache)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn key(id: ProductId) -> String {
    format!("products:v1:{id}")
}

fn count(result: &'static str) {
    metrics::counter!("vitrine_cache_requests_total", "cache" => "products", "result" => result)
        .increment(1);
}

impl ProductCache {
    /// A cache with no near cache in front (see [`Self::with_near`]).
    pub fn new(cache: Arc<dyn Cache>, ttl: Duration, negative_ttl: Duration) -> Self {
        Self {
            cache,
            near: None,
            ttl,
            negative_ttl,
            loads: Arc::default(),
        }
    }

    /// Puts a near cache whose entries live `ttl` in front (none for a zero `ttl`). It serves
    /// nothing until [`Self::watch`] runs.
    pub fn with_near(mut self, ttl: Duration) -> Self {
        self.near = (!ttl.is_zero()).then(|| NearCache::new(NEAR_ENTRIES, ttl));
        self
    }

    pub fn kind(&self) -> &'static str {
        self.cache.kind()
    }

    /// The response of a product read lately, from this process's memory.
    pub fn representation(&self, id: ProductId) -> Option<Representation> {
        let hit = self.near.as_ref()?.get(&id);
        if hit.is_some() {
            count("near-hit");
        }
        hit
    }

    /// Taken before a read whose response may be kept with [`Self::keep`].
    pub fn ticket(&self) -> Option<Ticket> {
        self.near.as_ref().map(|near| near.ticket())
    }

    /// Keeps the response of a read that started at `ticket`, unless the product changed since.
    pub fn keep(&self, ticket: Option<Ticket>, id: ProductId, representation: Representation) {
        if let (Some(near), Some(ticket)) = (&self.near, ticket) {
            near.keep(ticket, id, representation);
        }
    }

    /// Listens, until `stop`, to the invalidations of every process (a background task).
    pub async fn watch(&self, stop: CancellationToken) {
        match &self.near {
            Some(near) => self.cache.watch(CHANNEL, near.clone(), stop).await,
            None => stop.cancelled().await,
        }
    }

    /// The product from the cache, or from `load` (once for all concurrent callers) on a miss.
    pub async fn get_or_load<F, Fut>(
        &self,
        id: ProductId,
        load: F,
    ) -> Result<Option<Product>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Product>, StoreError>> + Send + 'static,
    {
        match self.cache.get(&key(id)).await {
            Ok(Some(bytes)) => match decode(&bytes) {
                Some(cached) => {
                    count("hit");
                    return Ok(cached);
                }
                None => count("undecodable"),
            },
            Ok(None) => count("miss"),
            Err(error) => {
                count("error");
                tracing::warn!(%error, "cache read failed; reading the database");
            }
        }
        let shared = {
            let mut loads = self.loads.lock().expect("loads lock");
            match loads.get(&id) {
                Some(load) => {
                    count("coalesced");
                    load.clone()
                }
                None => {
                    let shared = self.fill(id, load()).boxed().shared();
                    loads.insert(id, shared.clone());
                    shared
                }
            }
        };
        shared
            .await
            .map_err(|error| StoreError::Backend(anyhow::anyhow!("{error}")))
    }

    /// Loads and stores the result; the in-flight entry is removed whoever awaits it.
    fn fill(
        &self,
        id: ProductId,
        load: impl Future<Output = Result<Option<Product>, StoreError>> + Send + 'static,
    ) -> impl Future<Output = Result<Option<Product>, Arc<StoreError>>> + Send + 'static {
        let this = self.clone();
        async move {
            let result = load.await.map_err(Arc::new);
            if let Ok(product) = &result {
                let ttl = match product {
                    Some(_) => jitter(this.ttl),
                    None => jitter(this.negative_ttl),
                };
                if let Err(error) = this
                    .cache
                    .set(&key(id), encode(product.as_ref()), ttl)
                    .await
                {
                    count("error");
                    tracing::warn!(%error, "cache write failed");
                }
            }
            this.loads.lock().expect("loads lock").remove(&id);
            result
        }
    }

    /// Whether the cache answers (for readiness).
    pub async fn ping(&self) -> Result<(), vitrine_platform::cache::CacheError> {
        self.cache.get("products:ping").await.map(|_| ())
    }

    /// Drops the cached entries of `id`: here, in the shared cache, then in every other
    /// process's near cache. A failure is logged: the shared entry then lives until the
    /// product's event evicts it or its TTL ends, a near entry until its (short) TTL ends.
    pub async fn invalidate(&self, id: ProductId) {
        if let Some(near) = &self.near {
            near.invalidate(&id);
        }
        // Published even with this process's near cache off: another's may be on.
        if let Err(error) = self
            .cache
            .delete_and_publish(&key(id), CHANNEL, &id.to_string())
            .await
        {
            count("error");
            tracing::warn!(%error, product_id = %id, "cache invalidation failed");
        }
    }
}

fn jitter(ttl: Duration) -> Duration {
    ttl.mul_f64(rand::rng().random_range(0.9..=1.1))
}

/// The cached form of a product (or of its absence).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "v")]
enum Cached {
    #[serde(rename = "1")]
    Found(Box<CachedProduct>),
    #[serde(rename = "0")]
    Missing,
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedProduct {
    id: Uuid,
    seller_id: Uuid,
    sku: String,
    name: String,
    description: Option<String>,
    category: Option<String>,
    price: i64,
    currency: String,
    active: bool,
    on_hand: i64,
    reserved: i64,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn encode(product: Option<&Product>) -> Bytes {
    let cached = match product {
        None => Cached::Missing,
        Some(p) => Cached::Found(Box::new(CachedProduct {
            id: p.id.as_uuid(),
            seller_id: p.seller_id.as_uuid(),
            sku: p.sku.as_str().to_owned(),
            name: p.details.name.as_str().to_owned(),
            description: p
                .details
                .description
                .as_ref()
                .map(|d| d.as_str().to_owned()),
            category: p.details.category.as_ref().map(|c| c.as_str().to_owned()),
            price: p.details.price.money().amount(),
            currency: p.details.price.money().currency().as_str().to_owned(),
            active: p.status == ProductStatus::Active,
            on_hand: p.stock.on_hand,
            reserved: p.stock.reserved,
            version: p.version,
            created_at: p.created_at,
            updated_at: p.updated_at,
        })),
    };
    Bytes::from(serde_json::to_vec(&cached).expect("cached products serialise"))
}

/// `None` when the bytes are not a cached product this version understands (treated as a miss).
fn decode(bytes: &[u8]) -> Option<Option<Product>> {
    let cached: Cached = serde_json::from_slice(bytes).ok()?;
    let CachedProduct {
        id,
        seller_id,
        sku,
        name,
        description,
        category,
        price,
        currency,
        active,
        on_hand,
        reserved,
        version,
        created_at,
        updated_at,
    } = match cached {
        Cached::Missing => return Some(None),
        Cached::Found(product) => *product,
    };
    let text = |raw: &str| Text::parse_multiline(raw, usize::MAX).ok();
    Some(Some(Product {
        id: ProductId::from_uuid(id),
        seller_id: SellerId::from_uuid(seller_id),
        sku: Sku::parse(&sku).ok()?,
        details: ProductDetails {
            name: text(&name)?,
            description: match description {
                Some(d) => Some(text(&d)?),
                None => None,
            },
            category: match category {
                Some(c) => Some(text(&c)?),
                None => None,
            },
            price: Price::parse(Money::new(price, Currency::parse(&currency).ok()?)).ok()?,
        },
        status: if active {
            ProductStatus::Active
        } else {
            ProductStatus::Inactive
        },
        stock: Stock { on_hand, reserved },
        version,
        created_at,
        updated_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let ttl = Duration::from_secs(100);
        let samples: Vec<Duration> = (0..1000).map(|_| jitter(ttl)).collect();
        assert!(samples.iter().all(|d| *d >= Duration::from_secs(90)));
        assert!(samples.iter().all(|d| *d <= Duration::from_secs(110)));
        assert!(
            samples.iter().any(|d| *d != samples[0]),
            "jitter varies between entries"
        );
    }

    #[test]
    fn foreign_bytes_are_a_miss_not_an_error() {
        assert!(decode(b"not json").is_none());
        assert!(decode(br#"{"v":"9"}"#).is_none());
        assert_eq!(decode(&encode(None)), Some(None));
    }
}
