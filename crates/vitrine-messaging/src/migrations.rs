//! The outbox and inbox tables, per backend, which live in each service's own database so that
//! messages commit with the change they announce (and effects with the message they handle); a
//! service composes them with its own migrations (see `vitrine_runtime::migrations`). The
//! embedded transport's own database has separate migrations (`migrations/local`).

use sqlx::migrate::Migrator;

pub static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");
pub static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
