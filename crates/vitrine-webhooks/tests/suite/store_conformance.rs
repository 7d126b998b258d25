//! The webhook store conformance suite on SQLite and on PostgreSQL (the real server that
//! scripts/test.sh starts).

use std::sync::Arc;

use vitrine_webhooks::store::{
    NewMessage, PgWebhookStore, SqliteWebhookStore, conformance, postgres, sqlite,
};

#[tokio::test]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let pool = vitrine_runtime::db::sqlite(&dir.path().join("webhooks.sqlite3"))
        .await
        .unwrap();
    vitrine_webhooks::migrations::SQLITE
        .run(&pool)
        .await
        .unwrap();
    let store = SqliteWebhookStore::new(pool.clone());
    let pool = Arc::new(pool);
    conformance::run_all(&store, &move |message: NewMessage| {
        let pool = Arc::clone(&pool);
        Box::pin(async move {
            let mut tx = pool.begin().await.unwrap();
            let written = sqlite::enqueue(&mut tx, &message).await.unwrap();
            tx.commit().await.unwrap();
            written
        })
    })
    .await;
}

#[tokio::test]
async fn postgres_store_conforms() {
    let url = vitrine_runtime::testing::postgres_database().await;
    let pool = vitrine_runtime::db::postgres(&url, 8).await.unwrap();
    vitrine_webhooks::migrations::POSTGRES
        .run(&pool)
        .await
        .unwrap();
    let store = PgWebhookStore::new(pool.clone());
    let pool = Arc::new(pool);
    conformance::run_all(&store, &move |message: NewMessage| {
        let pool = Arc::clone(&pool);
        Box::pin(async move {
            let mut tx = pool.begin().await.unwrap();
            let written = postgres::enqueue(&mut tx, &message).await.unwrap();
            tx.commit().await.unwrap();
            written
        })
    })
    .await;
}
