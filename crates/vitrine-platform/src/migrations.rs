//! The tables the platform's HTTP conventions keep in each service's database (the stored
//! responses of `Idempotency-Key`), per backend; a service composes them with its own (see
//! `vitrine_runtime::migrations`).

use sqlx::migrate::Migrator;

pub static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");
pub static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
