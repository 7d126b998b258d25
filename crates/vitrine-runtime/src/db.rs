//! Database pools for the two backends, with settings that suit Vitrine. Schemas are the
//! owners' (see [`crate::migrations`]).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

/// Opens (creating if needed) the SQLite database at `path`.
///
/// WAL lets readers proceed during a write; `synchronous = FULL` makes every commit durable
/// across power loss, which an embedded store that promises "nothing is lost" needs; foreign keys
/// are off by default in SQLite and must be enabled per connection.
pub async fn sqlite(path: &Path) -> anyhow::Result<SqlitePool> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .with_context(|| format!("opening SQLite database {}", path.display()))
}

/// Connects to PostgreSQL. The URL is secret (it may hold a password) and never logged.
pub async fn postgres(url: &SecretString, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url.expose_secret())
        .context("the PostgreSQL URL is invalid")?
        .application_name("vitrine");
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // A ping per checkout costs a round trip on every query; broken connections surface as
        // errors and are replaced by the pool anyway.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .context("connecting to PostgreSQL")
}

/// Pools to a read replica: connected lazily (the service starts while the replica is down) and
/// quick to give up, because a read that cannot reach the replica falls back to the primary.
pub fn postgres_replica(url: &SecretString, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url.expose_secret())
        .context("the replica URL is invalid")?
        .application_name("vitrine-replica-reader");
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_millis(500))
        .test_before_acquire(false)
        .connect_lazy_with(options))
}
