//! Database pools for the two backends, with settings that suit Vitrine. Schemas are the
//! owners' (see [`crate::migrations`]).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgConnection, PgPool, SqlitePool};

/// `pool.begin()`, safe to cancel. sqlx 0.9.0 leaks an open transaction into the pool when the
/// future of `begin()` is dropped during its `BEGIN` round trip (PostgreSQL; transact-rs/sqlx
/// #4393, fixed upstream after 0.9.0): the next borrower's statements then run inside it, and
/// what they write without a transaction of their own is not committed. A request's future is
/// dropped whenever its client goes away or its deadline passes, so the `BEGIN` runs in a task
/// of its own, which finishes whoever waits for it; a transaction nobody takes is dropped there,
/// and rolled back like any other.
pub async fn begin<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
) -> Result<sqlx::Transaction<'static, DB>, sqlx::Error> {
    let pool = pool.clone();
    tokio::spawn(async move { pool.begin().await })
        .await
        .map_err(|error| sqlx::Error::Io(std::io::Error::other(error)))?
}

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

/// Parses a PostgreSQL URL, refusing any other scheme by name (a `mysql://` URL would
/// otherwise be tried as PostgreSQL and fail on something unrelated).
fn postgres_options(url: &SecretString, what: &str) -> anyhow::Result<PgConnectOptions> {
    let raw = url.expose_secret();
    match raw.split_once("://") {
        Some((scheme, _))
            if scheme.eq_ignore_ascii_case("postgres")
                || scheme.eq_ignore_ascii_case("postgresql") => {}
        Some((scheme, _)) => anyhow::bail!(
            "the {what} URL has the scheme `{scheme}`, which Vitrine does not support: it needs \
             PostgreSQL (postgres://user:password@host:5432/database), or no URL at all for the \
             embedded SQLite database"
        ),
        None => anyhow::bail!(
            "the {what} URL is not a URL: expected postgres://user:password@host:5432/database"
        ),
    }
    // sqlx's parse error may quote the URL, password included: say only that it is invalid.
    PgConnectOptions::from_str(raw).map_err(|_| anyhow::anyhow!("the {what} URL is invalid"))
}

/// A PostgreSQL URL as it may be printed: user, host, port and database, never the password.
pub fn describe_postgres(url: &SecretString) -> String {
    match postgres_options(url, "database") {
        Ok(options) => format!(
            "PostgreSQL {}@{}:{}/{}",
            options.get_username(),
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or(options.get_username())
        ),
        Err(_) => "PostgreSQL (unreadable URL)".to_owned(),
    }
}

/// Connects to PostgreSQL. The URL is secret (it may hold a password) and never logged.
///
/// One direct connection comes first: a pool reports an unreachable server only as "timed out
/// waiting for a connection", and the cause (refused, unknown host, bad password, no such
/// database) is what the operator needs to read.
pub async fn postgres(url: &SecretString, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = postgres_options(url, "PostgreSQL")?.application_name("vitrine");
    let target = describe_postgres(url);
    let probe = connect_once(&options, &target).await?;
    let _ = probe.close().await;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // A ping per checkout costs a round trip on every query; broken connections surface as
        // errors and are replaced by the pool anyway.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .with_context(|| format!("connecting to {target}"))
}

/// Pools to a read replica: connected lazily (the service starts while the replica is down) and
/// quick to give up, because a read that cannot reach the replica falls back to the primary.
pub fn postgres_replica(url: &SecretString, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = postgres_options(url, "replica")?.application_name("vitrine-replica-reader");
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_millis(500))
        .test_before_acquire(false)
        .connect_lazy_with(options))
}

/// One connection to the database at `url`, logged in as `role` (with `password`) instead of
/// the URL's own user: a tool that must hold only a role's privileges (the analytics extraction)
/// reuses the services' URLs without ever using their owners' credentials.
pub async fn postgres_connection_as(
    url: &SecretString,
    what: &str,
    role: &str,
    password: Option<&SecretString>,
    application: &str,
) -> anyhow::Result<PgConnection> {
    let mut options = postgres_options(url, what)?
        .username(role)
        .application_name(application);
    if let Some(password) = password {
        options = options.password(password.expose_secret());
    }
    connect_once(
        &options,
        &format!("{} ({what}) as {role}", describe_postgres(url)),
    )
    .await
}

/// One connection to the database at `url` as the URL's own user (administrative commands).
pub async fn postgres_connection(url: &SecretString, what: &str) -> anyhow::Result<PgConnection> {
    let options = postgres_options(url, what)?.application_name("vitrine");
    connect_once(&options, &format!("{} ({what})", describe_postgres(url))).await
}

/// Like [`postgres_connection`], with sqlx's statement logging off: for statements that carry
/// credentials (a role's password verifier), which sqlx would otherwise log at DEBUG, and at
/// WARN when slow.
pub async fn postgres_connection_quiet(
    url: &SecretString,
    what: &str,
) -> anyhow::Result<PgConnection> {
    use sqlx::ConnectOptions;
    let options = postgres_options(url, what)?
        .application_name("vitrine")
        .disable_statement_logging();
    connect_once(&options, &format!("{} ({what})", describe_postgres(url))).await
}

/// One connection, or the cause (refused, unknown host, bad password, no such database) with
/// `target` named; 10 s at most.
async fn connect_once(options: &PgConnectOptions, target: &str) -> anyhow::Result<PgConnection> {
    tokio::time::timeout(Duration::from_secs(10), PgConnection::connect_with(options))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within 10 s"))
        .and_then(|connected| connected.map_err(anyhow::Error::from))
        .with_context(|| format!("connecting to {target}"))
}
