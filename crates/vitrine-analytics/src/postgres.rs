//! The sync on PostgreSQL: COPY streams from the services' databases (read as the extraction
//! role, in one repeatable-read snapshot per database) into a staging schema of the analytics
//! database, renamed to `analytics` in one transaction when complete.
//!
//! Why COPY streams rather than postgres_fdw foreign tables: the analytics database then needs
//! no network path to the services' databases and holds no credentials for them (a user mapping
//! would store the extraction role's password there), the rows cross in PostgreSQL's own bulk
//! format with no per-row work in between, and the same code reads a replica or a primary.

use std::fmt::Write as _;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::TryStreamExt;
use secrecy::{ExposeSecret, SecretString};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;
use vitrine_runtime::db;

use crate::allow_list::{Service, tables_of};
use crate::extract::{EXTRACTS, ON_HAND_AT_CUTOFF, PRICES_AT_CUTOFF, render};
use crate::{EXTRACTION_ROLE, METABASE_ROLE, Progress, Report, SCHEMA};

const TABLES: &str = include_str!("schema/postgres.sql");
const INDEXES: &str = include_str!("schema/postgres_indexes.sql");
/// Staging schemas are named this, then the run id.
const STAGING_PREFIX: &str = "analytics_next_";
/// One sync at a time per analytics database (the CronJob forbids overlap; a manual run might
/// not).
const SYNC_LOCK: i64 = 0x5649_5452_494e_4531;

/// The history of syncs; it outlives every snapshot, so it sits outside the swapped schema.
const SYNC_RUNS: &str = "CREATE TABLE IF NOT EXISTS public.sync_runs (
    id          uuid PRIMARY KEY,
    cutoff      timestamptz NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    status      text NOT NULL,
    row_counts  jsonb
);
COMMENT ON TABLE public.sync_runs IS 'Every analytics sync: its cut-off, when it ran, its outcome (running, completed, failed, abandoned) and the rows it copied per table.';";

/// The databases a sync reads.
pub(crate) struct Sources<'a> {
    pub users: &'a SecretString,
    pub products: &'a SecretString,
    /// Read products here instead, once it has replayed what the primary had at the start.
    pub products_replica: Option<&'a SecretString>,
    /// How long to wait for the replica to catch up before refusing.
    pub replica_wait: std::time::Duration,
    pub password: Option<&'a SecretString>,
}

pub(crate) async fn sync(
    sources: Sources<'_>,
    target: &SecretString,
    cutoff: DateTime<Utc>,
    progress: &dyn Progress,
) -> anyhow::Result<Report> {
    let mut analytics = db::postgres_connection(target, "analytics database").await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(SYNC_LOCK)
        .fetch_one(&mut analytics)
        .await?;
    anyhow::ensure!(locked, "another analytics sync is running on this database");
    sqlx::raw_sql(SYNC_RUNS).execute(&mut analytics).await?;
    // Under the lock, a run still marked running was killed, and its staging schema is litter.
    sqlx::query("UPDATE public.sync_runs SET status = 'abandoned' WHERE status = 'running'")
        .execute(&mut analytics)
        .await?;
    let litter: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1)")
            .bind(STAGING_PREFIX)
            .fetch_all(&mut analytics)
            .await?;
    for schema in litter {
        drop_schema(&mut analytics, &schema).await?;
    }
    let run_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO public.sync_runs (id, cutoff, started_at, status) \
         VALUES ($1, $2, now(), 'running')",
    )
    .bind(run_id)
    .bind(cutoff)
    .execute(&mut analytics)
    .await?;
    let staging = format!("{STAGING_PREFIX}{}", run_id.simple());
    let outcome = match take(&sources, &mut analytics, &staging, cutoff, progress).await {
        Ok(rows) => swap(&mut analytics, &staging, run_id, &rows)
            .await
            .map(|()| rows),
        Err(error) => Err(error),
    };
    match outcome {
        Ok(rows) => Ok(Report {
            run_id,
            cutoff,
            rows,
        }),
        Err(error) => {
            // Best effort: the next run cleans up whatever this leaves.
            let _ = drop_schema(&mut analytics, &staging).await;
            let _ = sqlx::query(
                "UPDATE public.sync_runs SET status = 'failed', finished_at = now() WHERE id = $1",
            )
            .bind(run_id)
            .execute(&mut analytics)
            .await;
            Err(error)
        }
    }
}

/// Fills the staging schema; the rows copied per table.
async fn take(
    sources: &Sources<'_>,
    analytics: &mut PgConnection,
    staging: &str,
    cutoff: DateTime<Utc>,
    progress: &dyn Progress,
) -> anyhow::Result<Vec<(String, u64)>> {
    let prefix = format!("{staging}.");
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {staging};")))
        .execute(&mut *analytics)
        .await?;
    sqlx::raw_sql(AssertSqlSafe(TABLES.replace("{schema}.", &prefix)))
        .execute(&mut *analytics)
        .await
        .context("creating the snapshot's tables")?;

    let mut users = connect_source(sources.users, "user-information database", sources).await?;
    begin_snapshot(&mut users, "user-information database").await?;
    let mut products = match sources.products_replica {
        Some(replica) => {
            // Everything committed before the cut-off is in the primary's WAL before its
            // current position: the replica must have replayed that far before its snapshot.
            let mut primary = connect_source(sources.products, "products primary", sources).await?;
            let position: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
                .fetch_one(&mut primary)
                .await?;
            primary.close().await.ok();
            let mut replica = connect_source(replica, "products replica", sources).await?;
            caught_up(&mut replica, &position, sources.replica_wait).await?;
            replica
        }
        None => connect_source(sources.products, "products database", sources).await?,
    };
    begin_snapshot(&mut products, "products database").await?;
    let literal = format!(
        "'{}'::timestamptz",
        cutoff.to_rfc3339_opts(SecondsFormat::Micros, true)
    );
    progress.started(EXTRACTS.len());
    let mut rows = Vec::with_capacity(EXTRACTS.len() + 1);
    for extract in EXTRACTS {
        let source = match extract.service {
            Service::UserInformation => &mut users,
            Service::Products => &mut products,
        };
        let query = render(extract.query, &literal, "");
        let mut out = source
            .copy_out_raw(&format!("COPY ({query}) TO STDOUT"))
            .await
            .with_context(|| format!("reading the rows of {}", extract.table))?;
        let mut into = analytics
            .copy_in_raw(&format!(
                "COPY {prefix}{} ({}) FROM STDIN",
                extract.table,
                extract.columns.join(", ")
            ))
            .await?;
        let mut failed = None;
        while let Some(chunk) = out.try_next().await.transpose() {
            match chunk {
                Ok(bytes) => {
                    into.send(bytes).await?;
                }
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        drop(out);
        if let Some(error) = failed {
            into.abort("the source stream failed").await.ok();
            return Err(error).with_context(|| format!("reading the rows of {}", extract.table));
        }
        let copied = into.finish().await?;
        progress.table(extract.table, copied);
        rows.push((extract.table.to_owned(), copied));
    }
    for source in [users, products] {
        source.close().await.ok();
    }

    sqlx::raw_sql(AssertSqlSafe(INDEXES.replace("{schema}.", &prefix)))
        .execute(&mut *analytics)
        .await?;
    sqlx::query(AssertSqlSafe(render(ON_HAND_AT_CUTOFF, &literal, &prefix)))
        .execute(&mut *analytics)
        .await?;
    // The price history is carried from snapshot to snapshot, and only grows (see
    // PRICES_AT_CUTOFF): a rerun or a backfill never rewrites what an earlier sync recorded.
    let previous: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM pg_tables WHERE schemaname = $1 \
         AND tablename = 'fact_price_history')",
    )
    .bind(SCHEMA)
    .fetch_one(&mut *analytics)
    .await?;
    if previous {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {prefix}fact_price_history SELECT * FROM {SCHEMA}.fact_price_history"
        )))
        .execute(&mut *analytics)
        .await?;
    }
    let prices = sqlx::query(AssertSqlSafe(render(PRICES_AT_CUTOFF, &literal, &prefix)))
        .execute(&mut *analytics)
        .await?
        .rows_affected();
    let history: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {prefix}fact_price_history"
    )))
    .fetch_one(&mut *analytics)
    .await?;
    tracing::debug!(prices, "prices at the cut-off recorded");
    progress.table("fact_price_history", history as u64);
    rows.push(("fact_price_history".to_owned(), history as u64));
    // Statistics now, so the first dashboards do not plan on an empty guess.
    let analyze = EXTRACTS
        .iter()
        .map(|e| format!("ANALYZE {prefix}{};", e.table))
        .collect::<String>();
    sqlx::raw_sql(AssertSqlSafe(analyze))
        .execute(&mut *analytics)
        .await?;
    Ok(rows)
}

/// A source connection as the extraction role.
async fn connect_source(
    url: &SecretString,
    what: &str,
    sources: &Sources<'_>,
) -> anyhow::Result<PgConnection> {
    db::postgres_connection_as(
        url,
        what,
        EXTRACTION_ROLE,
        sources.password,
        "vitrine-analytics",
    )
    .await
}

/// Starts the one read-only snapshot every table of this database is read in.
async fn begin_snapshot(connection: &mut PgConnection, what: &str) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
         SET LOCAL DateStyle = ISO; SET LOCAL TimeZone = 'UTC';",
    )
    .execute(connection)
    .await
    .with_context(|| format!("opening a snapshot of the {what}"))?;
    Ok(())
}

/// Waits (up to `wait`) for the replica to replay the primary's WAL up to `position`.
async fn caught_up(
    replica: &mut PgConnection,
    position: &str,
    wait: std::time::Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let replayed: Option<bool> =
            sqlx::query_scalar("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn")
                .bind(position)
                .fetch_one(&mut *replica)
                .await?;
        match replayed {
            Some(true) => return Ok(()),
            None => anyhow::bail!(
                "VITRINE_PRODUCTS_REPLICA_URL does not name a streaming replica (it replays no WAL)"
            ),
            Some(false) if tokio::time::Instant::now() >= deadline => anyhow::bail!(
                "the products replica has not replayed up to the cut-off after {} s: run the \
                 sync again later",
                wait.as_secs()
            ),
            Some(false) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
}

/// Makes the staging schema the one analysts read, and records the run, in one transaction.
async fn swap(
    analytics: &mut PgConnection,
    staging: &str,
    run_id: Uuid,
    rows: &[(String, u64)],
) -> anyhow::Result<()> {
    let counts = crate::row_counts(rows);
    // Dropping the old snapshot waits for the queries reading it; while it waits, new queries
    // queue behind it. So it waits briefly, and tries again, rather than stall the dashboards.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut tx = analytics.begin().await?;
        let swapped = sqlx::raw_sql(AssertSqlSafe(format!(
            "SET LOCAL lock_timeout = '{}ms'; \
             DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; ALTER SCHEMA {staging} RENAME TO {SCHEMA};",
            SWAP_LOCK_WAIT.as_millis()
        )))
        .execute(&mut *tx)
        .await;
        match swapped {
            Ok(_) => {}
            Err(error) if attempt < SWAP_ATTEMPTS && is_lock_timeout(&error) => {
                tx.rollback().await.ok();
                tracing::info!(
                    attempt,
                    "the previous snapshot is being read: swapping again"
                );
                tokio::time::sleep(SWAP_LOCK_WAIT).await;
                continue;
            }
            Err(error) => {
                return Err(error).context("making the new snapshot the one analysts read");
            }
        }
        sqlx::raw_sql(AssertSqlSafe(grant_reading(SCHEMA)))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE public.sync_runs SET status = 'completed', finished_at = now(), \
             row_counts = $2 WHERE id = $1",
        )
        .bind(run_id)
        .bind(counts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(());
    }
}

/// How long the swap waits for the old snapshot's readers each time, and how many times.
const SWAP_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
const SWAP_ATTEMPTS: u32 = 24;

fn is_lock_timeout(error: &sqlx::Error) -> bool {
    // 55P03: lock_not_available.
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "55P03")
}

/// Lets the Metabase role read `schema`, when the role exists.
fn grant_reading(schema: &str) -> String {
    format!(
        "DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{METABASE_ROLE}') THEN \
         GRANT USAGE ON SCHEMA {schema} TO {METABASE_ROLE}; \
         GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {METABASE_ROLE}; \
         END IF; END $$;"
    )
}

async fn drop_schema(analytics: &mut PgConnection, schema: &str) -> anyhow::Result<()> {
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{}\" CASCADE;",
        schema.replace('"', "")
    )))
    .execute(analytics)
    .await?;
    Ok(())
}

/// A role that logs in with `password` (created when missing; concurrent creators of the same
/// cluster-wide role are tolerated). The password is sent as a SCRAM-SHA-256 verifier, never
/// in clear text (statements can reach the server's log and pg_stat_statements). Its
/// transactions are read-only by default: a convenience, not the guard (its privileges are).
fn login_role(role: &str, password: &SecretString) -> String {
    format!(
        "DO $$ BEGIN CREATE ROLE {role} LOGIN; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$; \
         ALTER ROLE {role} LOGIN PASSWORD '{}'; \
         ALTER ROLE {role} SET default_transaction_read_only = on;",
        crate::scram::verifier(password.expose_secret())
    )
}

/// Creates (or updates) the extraction role on one service's database, with `SELECT` on the
/// allow-listed columns of its tables and nothing else: every other privilege it holds there is
/// revoked first, so the grants are exactly the list. Run as the database's owner.
pub async fn grant_extraction(
    url: &SecretString,
    service: Service,
    password: &SecretString,
) -> anyhow::Result<()> {
    let what = format!("{} database", service.name());
    let mut connection = db::postgres_connection_quiet(url, &what).await?;
    sqlx::raw_sql(AssertSqlSafe(login_role(EXTRACTION_ROLE, password)))
        .execute(&mut connection)
        .await
        .with_context(|| format!("creating the role {EXTRACTION_ROLE}"))?;
    // Everything it may hold in the schema is revoked first (a table-level revoke takes the
    // column grants with it), and nobody but the owner may create objects there (PostgreSQL
    // 15's default, made explicit for older servers), so the grants below are all it has.
    let mut grants = format!(
        "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {EXTRACTION_ROLE}; \
         REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {EXTRACTION_ROLE}; \
         REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM {EXTRACTION_ROLE}; \
         REVOKE CREATE ON SCHEMA public FROM PUBLIC; \
         GRANT USAGE ON SCHEMA public TO {EXTRACTION_ROLE};"
    );
    for table in tables_of(service) {
        let columns = table
            .columns
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            grants,
            " GRANT SELECT ({columns}) ON public.{} TO {EXTRACTION_ROLE};",
            table.table
        );
    }
    let mut tx = connection.begin().await?;
    sqlx::raw_sql(AssertSqlSafe(grants))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Creates (or updates) the read-only Metabase role on the analytics database, able to read the
/// snapshot and the sync history and nothing else. Run as the database's owner.
pub async fn grant_metabase(url: &SecretString, password: &SecretString) -> anyhow::Result<()> {
    let mut connection = db::postgres_connection_quiet(url, "analytics database").await?;
    sqlx::raw_sql(AssertSqlSafe(login_role(METABASE_ROLE, password)))
        .execute(&mut connection)
        .await
        .with_context(|| format!("creating the role {METABASE_ROLE}"))?;
    sqlx::raw_sql(SYNC_RUNS).execute(&mut connection).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)")
            .bind(SCHEMA)
            .fetch_one(&mut connection)
            .await?;
    // Only SELECT is granted; and no role but the owner may create objects in `public`
    // (PostgreSQL 15's default, made explicit for older servers).
    let mut grants = format!(
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC; \
         GRANT SELECT ON public.sync_runs TO {METABASE_ROLE};"
    );
    if exists {
        grants.push_str(&grant_reading(SCHEMA));
    }
    sqlx::raw_sql(AssertSqlSafe(grants))
        .execute(&mut connection)
        .await?;
    Ok(())
}
