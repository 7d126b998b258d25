//! The webhook tables, per backend; a service that sends webhooks composes them with its own
//! migrations (see `vitrine_runtime::migrations`), so messages commit with its changes.

use sqlx::migrate::Migrator;

pub static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");
pub static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
