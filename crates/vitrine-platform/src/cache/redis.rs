//! The Redis cache: `SET key value PX ttl`, `GET`, `DEL` over a multiplexed connection that
//! reconnects by itself. Every call is bounded by a short timeout, so a hung Redis costs a read
//! a few milliseconds, not its deadline.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};

use super::{Cache, CacheError};

#[derive(Clone)]
pub struct RedisCache {
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
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| anyhow::anyhow!("connecting to Redis: {e}"))?;
        Ok(RedisCache {
            connection,
            prefix: format!("{prefix}:"),
            timeout: Duration::from_millis(500),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
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

    fn kind(&self) -> &'static str {
        "redis"
    }
}
