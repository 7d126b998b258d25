//! `db::begin` against the test PostgreSQL: a transaction whose `BEGIN` is cancelled midway
//! leaves nothing open on the pooled connection.

use std::pin::pin;
use std::task::Poll;

use secrecy::ExposeSecret;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};
use vitrine_runtime::{db, testing};

/// Polls `begin` up to `polls` times, letting the runtime run in between, then drops it, as a
/// request's future is dropped when its client goes away.
async fn cancel_after<F: Future>(begin: F, polls: usize) {
    let mut begin = pin!(begin);
    for _ in 0..polls {
        let done = std::future::poll_fn(|cx| Poll::Ready(begin.as_mut().poll(cx).is_ready())).await;
        if done {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// Whether the (only) pooled connection is inside a transaction: PostgreSQL refuses a
/// savepoint outside one.
async fn in_transaction(pool: &PgPool) -> bool {
    sqlx::query("SAVEPOINT probe").execute(pool).await.is_ok()
}

/// Cancels `begin` at every point from its first poll to its completion, on a pool of one
/// connection; whether a transaction was ever left open.
async fn ever_leaks<B, F>(begin: B) -> bool
where
    B: Fn(PgPool) -> F,
    F: Future<Output = Result<Transaction<'static, Postgres>, sqlx::Error>>,
{
    let url = testing::postgres_database().await;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(url.expose_secret())
        .await
        .unwrap();
    assert!(!in_transaction(&pool).await);
    for polls in 1..=300 {
        cancel_after(begin(pool.clone()), polls).await;
        if in_transaction(&pool).await {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn a_begin_cancelled_midway_leaves_no_transaction_open() {
    assert!(!ever_leaks(|pool| async move { db::begin(&pool).await }).await);
}

/// What `db::begin` works around, shown so the check above is known to catch it. When a sqlx
/// release fixes its `begin()` (transact-rs/sqlx#4393), this fails: `db::begin` can then go.
#[tokio::test]
async fn sqlx_own_begin_cancelled_midway_leaks_its_transaction() {
    assert!(ever_leaks(|pool| async move { pool.begin().await }).await);
}
