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

use std::collections::BTreeMap;

use sqlx::migrate::{Migration, Migrator};

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
