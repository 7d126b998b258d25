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
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
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
    pub products_is_replica: bool,
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
    let outcome = take(&sources, &mut analytics, &staging, cutoff, progress).await;
    match outcome {
        Ok(rows) => {
            swap(&mut analytics, &staging, run_id, &rows).await?;
            Ok(Report {
                run_id,
                cutoff,
                rows,
            })
        }
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

    let mut users = open_source(sources.users, "user-information database", sources).await?;
    let mut products = open_source(sources.products, "products database", sources).await?;
    if sources.products_is_replica {
        caught_up(&mut products, cutoff).await?;
    }
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
    // The price history is carried from snapshot to snapshot; this cut-off's prices replace
    // any a previous run took at the same cut-off, so a rerun gives the same history.
    let previous: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM pg_tables WHERE schemaname = $1 \
         AND tablename = 'fact_price_history')",
    )
    .bind(SCHEMA)
    .fetch_one(&mut *analytics)
    .await?;
    if previous {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {prefix}fact_price_history SELECT * FROM {SCHEMA}.fact_price_history \
             WHERE as_of <> {literal}"
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

/// A source connection as the extraction role, in one read-only snapshot of the database.
async fn open_source(
    url: &SecretString,
    what: &str,
    sources: &Sources<'_>,
) -> anyhow::Result<PgConnection> {
    let mut connection = db::postgres_connection_as(
        url,
        what,
        EXTRACTION_ROLE,
        sources.password,
        "vitrine-analytics",
    )
    .await?;
    sqlx::raw_sql(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
         SET LOCAL DateStyle = ISO; SET LOCAL TimeZone = 'UTC';",
    )
    .execute(&mut connection)
    .await
    .with_context(|| format!("opening a snapshot of the {what}"))?;
    Ok(connection)
}

/// Refuses a replica that has not yet replayed everything committed before the cut-off.
async fn caught_up(replica: &mut PgConnection, cutoff: DateTime<Utc>) -> anyhow::Result<()> {
    let row = sqlx::query(
        "SELECT pg_is_in_recovery() AS recovering, \
         pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() AS idle, \
         coalesce(pg_last_xact_replay_timestamp() >= $1, false) AS past_cutoff",
    )
    .bind(cutoff)
    .fetch_one(&mut *replica)
    .await?;
    let (recovering, idle, past): (bool, bool, bool) = (
        row.try_get("recovering")?,
        row.try_get("idle")?,
        row.try_get("past_cutoff")?,
    );
    anyhow::ensure!(
        !recovering || idle || past,
        "the products replica has not replayed up to the cut-off yet: run the sync again later"
    );
    Ok(())
}

/// Makes the staging schema the one analysts read, and records the run, in one transaction.
async fn swap(
    analytics: &mut PgConnection,
    staging: &str,
    run_id: Uuid,
    rows: &[(String, u64)],
) -> anyhow::Result<()> {
    let counts: serde_json::Map<String, serde_json::Value> = rows
        .iter()
        .map(|(table, count)| (table.clone(), (*count).into()))
        .collect();
    let mut tx = analytics.begin().await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; ALTER SCHEMA {staging} RENAME TO {SCHEMA};"
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::raw_sql(AssertSqlSafe(grant_reading(SCHEMA)))
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE public.sync_runs SET status = 'completed', finished_at = now(), \
         row_counts = $2 WHERE id = $1",
    )
    .bind(run_id)
    .bind(serde_json::Value::Object(counts))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
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
/// cluster-wide role are tolerated) and whose transactions are read-only by default.
fn login_role(role: &str, password: &SecretString) -> String {
    format!(
        "DO $$ BEGIN CREATE ROLE {role} LOGIN; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$; \
         ALTER ROLE {role} LOGIN PASSWORD '{}'; \
         ALTER ROLE {role} SET default_transaction_read_only = on;",
        password.expose_secret().replace('\'', "''")
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
    let mut connection = db::postgres_connection(url, &what).await?;
    sqlx::raw_sql(AssertSqlSafe(login_role(EXTRACTION_ROLE, password)))
        .execute(&mut connection)
        .await
        .with_context(|| format!("creating the role {EXTRACTION_ROLE}"))?;
    let mut grants = format!(
        "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {EXTRACTION_ROLE}; \
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
    let mut connection = db::postgres_connection(url, "analytics database").await?;
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
