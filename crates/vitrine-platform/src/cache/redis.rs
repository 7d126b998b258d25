//! The Redis cache: `SET key value PX ttl`, `GET`, `DEL` over a multiplexed connection that
//! reconnects by itself. Every call is bounded by a short timeout, so a hung Redis costs a read
//! a few milliseconds, not its deadline.
//!
//! Invalidations travel by Redis pub/sub, which delivers at most once: a listener is told it
//! may have missed some whenever its subscription breaks, and a subscription that stops
//! answering pings (a half-open connection) counts as broken.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use super::{Cache, CacheError, Listener};

/// How often a subscription is pinged, and how long the answer may take.
const SUBSCRIPTION_PING: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct RedisCache {
    client: redis::Client,
    connection: ConnectionManager,
    /// Prepended to every key (one Redis may serve several environments).
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisCache {
    /// Connects to `url` (`redis://host:port/db`; secret, it may hold a password).
    pub async fn connect(url: &SecretString, prefix: &str) -> anyhow::Result<RedisCache> {
        let client = redis::Client::open(url.expose_secret())
            .map_err(|_| anyhow::anyhow!("the Redis URL is invalid"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| anyhow::anyhow!("connecting to Redis: {e}"))?;
        Ok(RedisCache {
            client,
            connection,
            prefix: format!("{prefix}:"),
            timeout: Duration::from_millis(500),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn channel(&self, channel: &str) -> String {
        format!("{}invalidations:{channel}", self.prefix)
    }

    /// One subscription, until it breaks or `stop`; `listening` is reported once it is in place.
    async fn subscribe(
        &self,
        channel: &str,
        listener: &dyn Listener,
        stop: &CancellationToken,
    ) -> Result<(), CacheError> {
        let unavailable = |error: redis::RedisError| CacheError::Unavailable(error.to_string());
        let timed_out = |_| CacheError::Unavailable("timed out".to_owned());
        let mut pubsub = tokio::time::timeout(self.timeout * 4, self.client.get_async_pubsub())
            .await
            .map_err(timed_out)?
            .map_err(unavailable)?;
        tokio::time::timeout(self.timeout * 4, pubsub.subscribe(channel))
            .await
            .map_err(timed_out)?
            .map_err(unavailable)?;
        let (mut sink, mut messages) = pubsub.split();
        listener.listening();
        let mut ping = tokio::time::interval(SUBSCRIPTION_PING);
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                message = messages.next() => match message {
                    // A payload that is not a key of the listener's (not even UTF-8) drops
                    // everything there, as an unknown key does.
                    Some(message) => {
                        listener.changed(&String::from_utf8_lossy(message.get_payload_bytes()));
                    }
                    None => return Err(CacheError::Unavailable("the subscription closed".to_owned())),
                },
                _ = ping.tick() => {
                    match tokio::time::timeout(SUBSCRIPTION_PING, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(error)) => return Err(unavailable(error)),
                        Err(_) => return Err(CacheError::Unavailable("the subscription stopped answering".to_owned())),
                    }
                }
            }
        }
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, CacheError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(CacheError::Unavailable(error.to_string())),
            Err(_) => Err(CacheError::Unavailable("timed out".to_owned())),
        }
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        let mut connection = self.connection.clone();
        let key = self.key(key);
        let value: Option<Vec<u8>> = self.bounded(connection.get(&key)).await?;
        Ok(value.map(Bytes::from))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        let key = self.key(key);
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.bounded(connection.pset_ex::<_, _, ()>(&key, value.as_ref(), millis))
            .await
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        let key = self.key(key);
        self.bounded(connection.del::<_, ()>(&key)).await
    }

    async fn publish(&self, channel: &str, key: &str) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        let channel = self.channel(channel);
        self.bounded(connection.publish::<_, _, ()>(&channel, key))
            .await
    }

    async fn delete_and_publish(
        &self,
        key: &str,
        channel: &str,
        message: &str,
    ) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        let mut pipeline = redis::pipe();
        pipeline
            .del(self.key(key))
            .ignore()
            .publish(self.channel(channel), message)
            .ignore();
        self.bounded(pipeline.query_async::<()>(&mut connection))
            .await
    }

    async fn watch(&self, channel: &str, listener: Arc<dyn Listener>, stop: CancellationToken) {
        let channel = self.channel(channel);
        let mut backoff = Duration::from_millis(100);
        while !stop.is_cancelled() {
            let started = std::time::Instant::now();
            let outcome = self.subscribe(&channel, listener.as_ref(), &stop).await;
            if started.elapsed() > Duration::from_secs(10) {
                backoff = Duration::from_millis(100);
            }
            listener.lost();
            match outcome {
                Ok(()) => return,
                Err(error) => {
                    metrics::counter!("vitrine_cache_subscription_lost_total").increment(1);
                    tracing::warn!(%error, "cache invalidation channel down; near cache off until it is back");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
