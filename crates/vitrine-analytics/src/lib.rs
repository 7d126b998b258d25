//! The analytics copy (seed R13): a PII-free snapshot of both services' databases as of a
//! cut-off (D-1 by default), for Metabase, so heavy queries never touch the services'
//! databases and analysts never see personal or payment data.
//!
//! A sync copies everything committed before the cut-off into a new snapshot that replaces the
//! previous one at once (a schema renamed in one transaction on PostgreSQL, a file renamed in
//! the embedded mode), so analysts never see half a sync and a sync killed half-way leaves the
//! previous snapshot as it was. It reads only the columns of [`allow_list::SOURCE_COLUMNS`]:
//! on PostgreSQL as the `vitrine_analytics` role, which has `SELECT` on those columns only.

pub mod allow_list;
pub mod cutoff;
pub mod extract;
pub mod metabase;
mod postgres;
pub mod scram;
mod sqlite;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

pub use postgres::{grant_extraction, grant_metabase};

/// The role the extraction logs in as on the services' databases.
pub const EXTRACTION_ROLE: &str = "vitrine_analytics";
/// The read-only role Metabase logs in as on the analytics database.
pub const METABASE_ROLE: &str = "vitrine_metabase";
/// The schema analysts read on PostgreSQL.
pub const SCHEMA: &str = "analytics";

/// Where one service's data is read from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The embedded SQLite database file.
    Sqlite(PathBuf),
    /// The service's PostgreSQL database (its URL's user is replaced by the extraction role),
    /// and a streaming replica to read from instead, when there is one.
    Postgres {
        url: SecretString,
        replica: Option<SecretString>,
    },
}

/// Where the snapshot goes.
#[derive(Debug, Clone)]
pub enum Destination {
    Sqlite(PathBuf),
    Postgres(SecretString),
}

/// What a sync reads and writes.
#[derive(Debug, Clone)]
pub struct Sync {
    pub user_information: Source,
    pub products: Source,
    pub destination: Destination,
    pub cutoff: DateTime<Utc>,
    /// The extraction role's password (PostgreSQL sources).
    pub source_password: Option<SecretString>,
    /// How long to wait for the products replica to replay up to the sync's start.
    pub replica_wait: std::time::Duration,
}

/// Told of each table as the sync fills it (a progress bar, or a log line per table).
pub trait Progress: Send + std::marker::Sync {
    fn started(&self, tables: usize);
    fn table(&self, table: &str, rows: u64);
}

/// What a sync did.
#[derive(Debug, Clone)]
pub struct Report {
    pub run_id: uuid::Uuid,
    pub cutoff: DateTime<Utc>,
    /// Rows per table, in the order they were filled.
    pub rows: Vec<(String, u64)>,
}

/// The rows copied per table, as `sync_runs.row_counts` records them.
fn row_counts(rows: &[(String, u64)]) -> serde_json::Value {
    serde_json::Value::Object(
        rows.iter()
            .map(|(table, count)| (table.clone(), (*count).into()))
            .collect(),
    )
}

impl Sync {
    /// Takes the snapshot and makes it the one analysts see.
    pub async fn run(&self, progress: &dyn Progress) -> anyhow::Result<Report> {
        match (&self.user_information, &self.products, &self.destination) {
            (Source::Sqlite(users), Source::Sqlite(products), Destination::Sqlite(target)) => {
                sqlite::sync(users, products, target, self.cutoff, progress).await
            }
            (
                Source::Postgres { url: users, .. },
                Source::Postgres {
                    url: products,
                    replica,
                },
                Destination::Postgres(target),
            ) => {
                postgres::sync(
                    postgres::Sources {
                        users,
                        products,
                        products_replica: replica.as_ref(),
                        replica_wait: self.replica_wait,
                        password: self.source_password.as_ref(),
                    },
                    target,
                    self.cutoff,
                    progress,
                )
                .await
            }
            (Source::Sqlite(_), Source::Sqlite(_), Destination::Postgres(_)) => anyhow::bail!(
                "the services run on their embedded SQLite databases: their analytics copy is a \
                 SQLite file (leave VITRINE_ANALYTICS_DATABASE_URL unset)"
            ),
            (Source::Postgres { .. }, Source::Postgres { .. }, Destination::Sqlite(_)) => {
                anyhow::bail!(
                    "the services run on PostgreSQL: set VITRINE_ANALYTICS_DATABASE_URL to the \
                     analytics PostgreSQL database"
                )
            }
            _ => anyhow::bail!(
                "one service runs on PostgreSQL and the other on SQLite: the analytics sync \
                 needs both on the same backend"
            ),
        }
    }
}
