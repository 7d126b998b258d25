//! A database's migrations come from several owners: the service (its own tables) and the
//! libraries whose tables it keeps in the same database, written in the same transactions (the
//! outbox and inbox of `vitrine-messaging`, the idempotency keys of `vitrine-platform`). Each
//! owner ships its migrations per backend next to its code; [`compose`] joins them into one sqlx
//! `Migrator`, so one `_sqlx_migrations` history records them all.
//!
//! Versions share that one history. The first migrations kept their historical numbers (1: a
//! service's initial schema; 2 and 3: the outbox and inbox); every later one, whoever owns it,
//! is numbered by its UTC creation time (`YYYYMMDDHHMMSS_name.sql`), so owners never collide and
//! a database applies them in the order they were written.

use std::collections::{BTreeMap, HashSet};

use sqlx::migrate::{Migrate, MigrateError, Migration, Migrator};
use sqlx::{Database, Pool};

/// sqlx's history table; Vitrine never renames it.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// Whether opening a database brings its schema up to date: services and `vitrine migrate` do;
/// operator commands that only read or repair (the outbox quarantine) leave it as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    Migrate,
    AsIs,
}

impl Schema {
    /// Runs `migrate` (a store's) when asked to, with `database` named in its error; the
    /// migrations applied.
    pub async fn apply<F>(self, database: &str, migrate: F) -> anyhow::Result<Vec<String>>
    where
        F: Future<Output = anyhow::Result<Vec<String>>>,
    {
        match self {
            Schema::Migrate => migrate
                .await
                .map_err(|error| error.context(format!("migrating {database}"))),
            Schema::AsIs => Ok(Vec::new()),
        }
    }
}

/// What migrating one service's database did, for `vitrine migrate` to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The database as it may be printed: a SQLite file's path, or PostgreSQL's
    /// user@host:port/database (never the password).
    pub database: String,
    /// The migrations this run applied (`version description`), in order; empty when the
    /// database was already up to date.
    pub applied: Vec<String>,
}

/// Applies `migrator` to the database behind `pool`; the migrations it applied.
pub async fn apply<DB>(migrator: &Migrator, pool: &Pool<DB>) -> Result<Vec<String>, MigrateError>
where
    DB: Database,
    DB::Connection: Migrate,
{
    let before = applied_versions(pool).await;
    migrator.run(pool).await?;
    Ok(newly_applied(migrator, &before))
}

/// The versions applied so far. Read without the migrator's lock and without creating its
/// table (replicas starting together must leave that to the migrator, which locks first); a
/// database never migrated has no table, which reads as nothing applied. Two processes
/// migrating at once may both list a migration only one of them applied: the report can
/// over-count, the schema is right either way.
async fn applied_versions<DB>(pool: &Pool<DB>) -> HashSet<i64>
where
    DB: Database,
    DB::Connection: Migrate,
{
    let Ok(mut conn) = pool.acquire().await else {
        return HashSet::new();
    };
    conn.list_applied_migrations(MIGRATIONS_TABLE)
        .await
        .map(|applied| applied.into_iter().map(|m| m.version).collect())
        .unwrap_or_default()
}

fn newly_applied(migrator: &Migrator, before: &HashSet<i64>) -> Vec<String> {
    migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration() && !before.contains(&m.version))
        .map(|m| format!("{} {}", m.version, m.description))
        .collect()
}

/// One migrator running every owner's migrations in version order. Panics when two owners
/// define the same version: a programming error that must not reach a database.
pub fn compose(owners: &[&Migrator]) -> Migrator {
    let mut by_version: BTreeMap<i64, Migration> = BTreeMap::new();
    for migration in owners.iter().flat_map(|owner| owner.iter()) {
        if let Some(earlier) = by_version.insert(migration.version, migration.clone()) {
            panic!(
                "migration version {} is defined twice ({} and {})",
                migration.version, earlier.description, migration.description
            );
        }
    }
    Migrator::with_migrations(by_version.into_values().collect())
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use sqlx::migrate::{Migration, MigrationType, Migrator};
    use sqlx::{AssertSqlSafe, SqlSafeStr};

    use super::compose;

    fn migrator(versions: &[i64]) -> Migrator {
        Migrator::with_migrations(
            versions
                .iter()
                .map(|&v| {
                    Migration::new(
                        v,
                        Cow::Owned(format!("m{v}")),
                        MigrationType::Simple,
                        AssertSqlSafe(format!("SELECT {v}")).into_sql_str(),
                        false,
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn owners_interleave_in_version_order() {
        let composed = compose(&[&migrator(&[1, 20261201000000]), &migrator(&[2, 3])]);
        let versions: Vec<i64> = composed.iter().map(|m| m.version).collect();
        assert_eq!(versions, vec![1, 2, 3, 20261201000000]);
    }

    #[test]
    #[should_panic(expected = "defined twice")]
    fn a_version_defined_twice_is_refused() {
        compose(&[&migrator(&[1, 2]), &migrator(&[2])]);
    }
}
