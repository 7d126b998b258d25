//! The embedded sync: the services' SQLite files are attached to a new analytics file and read
//! through temporary views of the allow-listed columns only (the extraction queries cannot name
//! another column: it does not exist in what they read), in one read transaction; the file
//! replaces `analytics.sqlite3` by a rename when complete.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Connection, SqliteConnection};
use uuid::Uuid;

use crate::allow_list::{Kind, SOURCE_COLUMNS, Service};
use crate::extract::{EXTRACTS, ON_HAND_AT_CUTOFF, PRICES_AT_CUTOFF, render};
use crate::{Progress, Report};

const TABLES: &str = include_str!("schema/sqlite.sql");
const INDEXES: &str = include_str!("schema/sqlite_indexes.sql");

pub(crate) async fn sync(
    users: &Path,
    products: &Path,
    target: &Path,
    cutoff: DateTime<Utc>,
    progress: &dyn Progress,
) -> anyhow::Result<Report> {
    for (path, service) in [
        (users, Service::UserInformation),
        (products, Service::Products),
    ] {
        // ATTACH would create a missing file: an empty source must be an error, not a snapshot.
        anyhow::ensure!(
            path.is_file(),
            "no {} database at {}: run Vitrine on this data directory first",
            service.name(),
            path.display()
        );
    }
    let lock_path = with_suffix(target, ".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        anyhow::bail!("another analytics sync is running on {}", target.display());
    }
    // A previous run killed half-way leaves its unfinished file: it is started again.
    let next = with_suffix(target, ".next");
    remove_if_present(&next)?;
    let run_id = Uuid::now_v7();
    let started_at = Utc::now();
    let rows = fill(
        users, products, target, &next, cutoff, run_id, started_at, progress,
    )
    .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(error) => {
            let _ = remove_if_present(&next);
            return Err(error);
        }
    };
    std::fs::rename(&next, target)
        .with_context(|| format!("replacing {} with the new snapshot", target.display()))?;
    drop(lock);
    Ok(Report {
        run_id,
        cutoff,
        rows,
    })
}

#[allow(clippy::too_many_arguments)]
async fn fill(
    users: &Path,
    products: &Path,
    previous: &Path,
    next: &Path,
    cutoff: DateTime<Utc>,
    run_id: Uuid,
    started_at: DateTime<Utc>,
    progress: &dyn Progress,
) -> anyhow::Result<Vec<(String, u64)>> {
    // A rollback journal, not WAL: the file must stand alone when it is renamed into place.
    let options = SqliteConnectOptions::new()
        .filename(next)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Delete)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(30));
    let mut connection = SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("creating {}", next.display()))?;
    sqlx::raw_sql(TABLES).execute(&mut connection).await?;
    attach(&mut connection, users, "source_users").await?;
    attach(&mut connection, products, "source_products").await?;
    sqlx::raw_sql(AssertSqlSafe(source_views()))
        .execute(&mut connection)
        .await?;

    // Timestamps are stored as sqlx writes them (RFC 3339 in UTC, `+00:00`): the cut-off in the
    // same form compares as text exactly as the instants do.
    let literal = format!("'{}'", cutoff.to_rfc3339_opts(SecondsFormat::AutoSi, false));
    progress.started(EXTRACTS.len());
    let mut rows = Vec::with_capacity(EXTRACTS.len() + 1);
    // One transaction: the source files are read in one snapshot each.
    let mut tx = connection.begin().await?;
    for extract in EXTRACTS {
        let query = render(extract.query, &literal, "");
        let copied = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO main.{} ({}) {query}",
            extract.table,
            extract.columns.join(", ")
        )))
        .execute(&mut *tx)
        .await
        .with_context(|| format!("copying {}", extract.table))?
        .rows_affected();
        progress.table(extract.table, copied);
        rows.push((extract.table.to_owned(), copied));
    }
    sqlx::raw_sql(INDEXES).execute(&mut *tx).await?;
    sqlx::query(AssertSqlSafe(render(ON_HAND_AT_CUTOFF, &literal, "main.")))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    for schema in ["source_users", "source_products"] {
        sqlx::raw_sql(AssertSqlSafe(format!("DETACH DATABASE {schema};")))
            .execute(&mut connection)
            .await?;
    }

    // The price history and the sync history are carried over from the previous snapshot.
    let carried = previous.is_file();
    if carried {
        attach(&mut connection, previous, "previous").await?;
    }
    let mut tx = connection.begin().await?;
    if carried {
        sqlx::query(
            "INSERT INTO main.fact_price_history SELECT * FROM previous.fact_price_history",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO main.sync_runs SELECT * FROM previous.sync_runs")
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(AssertSqlSafe(render(PRICES_AT_CUTOFF, &literal, "main.")))
        .execute(&mut *tx)
        .await?;
    let history: i64 = sqlx::query_scalar("SELECT count(*) FROM main.fact_price_history")
        .fetch_one(&mut *tx)
        .await?;
    progress.table("fact_price_history", history as u64);
    rows.push(("fact_price_history".to_owned(), history as u64));
    let counts = crate::row_counts(&rows);
    sqlx::query(
        "INSERT INTO main.sync_runs (id, cutoff, started_at, finished_at, status, row_counts) \
         VALUES (?1, ?2, ?3, ?4, 'completed', ?5)",
    )
    .bind(run_id.to_string())
    .bind(cutoff.to_rfc3339_opts(SecondsFormat::AutoSi, false))
    .bind(started_at.to_rfc3339_opts(SecondsFormat::AutoSi, false))
    .bind(Utc::now().to_rfc3339_opts(SecondsFormat::AutoSi, false))
    .bind(counts.to_string())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if carried {
        sqlx::raw_sql("DETACH DATABASE previous;")
            .execute(&mut connection)
            .await?;
    }
    sqlx::raw_sql("ANALYZE;").execute(&mut connection).await?;
    connection.close().await?;
    Ok(rows)
}

/// Attaches the file at `path`, read-only: the sync never writes to the services' files or to
/// the previous snapshot.
async fn attach(
    connection: &mut SqliteConnection,
    path: &Path,
    schema: &str,
) -> anyhow::Result<()> {
    let absolute =
        std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?;
    sqlx::query(AssertSqlSafe(format!("ATTACH DATABASE ?1 AS {schema}")))
        .bind(format!("file:{}?mode=ro", uri_path(&absolute)))
        .execute(connection)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    Ok(())
}

/// A path as the path of a `file:` URI: every byte but unreserved characters and `/`
/// percent-encoded (a `?`, `#` or `%` in a directory name would otherwise change the URI).
fn uri_path(path: &Path) -> String {
    path.to_string_lossy()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A temporary view per source table, named as the table, with the allow-listed columns only;
/// ids (16-byte blobs in the services' files) become their usual text form.
fn source_views() -> String {
    SOURCE_COLUMNS
        .iter()
        .map(|table| {
            let schema = match table.service {
                Service::UserInformation => "source_users",
                Service::Products => "source_products",
            };
            let columns = table
                .columns
                .iter()
                .map(|(name, kind)| match kind {
                    Kind::Uuid => format!(
                        "CASE WHEN {name} IS NULL THEN NULL ELSE lower(\
                         substr(hex({name}), 1, 8) || '-' || substr(hex({name}), 9, 4) || '-' || \
                         substr(hex({name}), 13, 4) || '-' || substr(hex({name}), 17, 4) || '-' || \
                         substr(hex({name}), 21)) END AS {name}"
                    ),
                    Kind::Other => (*name).to_owned(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "CREATE TEMP VIEW {} AS SELECT {columns} FROM {schema}.{};\n",
                table.table, table.table
            )
        })
        .collect()
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("removing {}", path.display())),
    }
}
