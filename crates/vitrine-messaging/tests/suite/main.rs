//! The integration tests of this crate, as one test binary: one link for all of them
//! instead of one per file. Each module is one concern; `cargo nextest run -p vitrine-messaging
//! --test suite <module>::` runs one.

mod consumer;
mod local_transport;
mod outbox_quarantine;
mod relay_pace;
mod request_reply;
mod sqs_transport;

/// A SQLite database in `dir` with the outbox tables.
async fn sqlite_outbox_pool(dir: &std::path::Path) -> sqlx::SqlitePool {
    let pool = vitrine_runtime::db::sqlite(&dir.join("outbox.sqlite3"))
        .await
        .unwrap();
    vitrine_messaging::migrations::SQLITE
        .run(&pool)
        .await
        .unwrap();
    pool
}
