//! The queue of secret trees still to destroy (`pending_erasures`), written once for both
//! backends: the statements use `$N` placeholders, which PostgreSQL and SQLite both accept, and
//! the functions are generic over the database.

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, Executor, IntoArguments, Type};
use uuid::Uuid;

use super::StoreError;
use crate::domain::CustomerId;

/// A customer whose secrets are still to be destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingErasure {
    pub customer: CustomerId,
    /// Failed attempts so far.
    pub attempts: i32,
}

#[derive(sqlx::FromRow)]
pub(super) struct Row {
    customer_id: Uuid,
    attempts: i32,
}

/// Records, in the caller's transaction, that `customer`'s secrets at `path` must be destroyed
/// (a second close changes nothing).
pub(super) async fn schedule<'c, DB, E>(
    executor: E,
    customer: CustomerId,
    path: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    E: Executor<'c, Database = DB>,
    for<'t> Uuid: Encode<'t, DB> + Type<DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> DateTime<Utc>: Encode<'t, DB> + Type<DB>,
{
    sqlx::query(
        "INSERT INTO pending_erasures (customer_id, path, requested_at, next_attempt_at) \
         VALUES ($1, $2, $3, $3) ON CONFLICT (customer_id) DO NOTHING",
    )
    .bind(customer.as_uuid())
    .bind(path)
    .bind(now)
    .execute(executor)
    .await?;
    Ok(())
}

/// Erasures due at `now`, oldest first.
pub(super) async fn due<'c, DB, E>(
    executor: E,
    now: DateTime<Utc>,
    max: i64,
) -> Result<Vec<PendingErasure>, StoreError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    E: Executor<'c, Database = DB>,
    for<'r> Row: sqlx::FromRow<'r, DB::Row>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> DateTime<Utc>: Encode<'t, DB> + Type<DB>,
{
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT customer_id, attempts FROM pending_erasures \
         WHERE next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2",
    )
    .bind(now)
    .bind(max)
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| PendingErasure {
            customer: CustomerId::from_uuid(row.customer_id),
            attempts: row.attempts,
        })
        .collect())
}

/// The secret store confirmed the destruction.
pub(super) async fn done<'c, DB, E>(executor: E, customer: CustomerId) -> Result<(), StoreError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    E: Executor<'c, Database = DB>,
    for<'t> Uuid: Encode<'t, DB> + Type<DB>,
{
    sqlx::query("DELETE FROM pending_erasures WHERE customer_id = $1")
        .bind(customer.as_uuid())
        .execute(executor)
        .await?;
    Ok(())
}

/// An attempt failed: retried at `retry_at`.
pub(super) async fn failed<'c, DB, E>(
    executor: E,
    customer: CustomerId,
    error: &str,
    retry_at: DateTime<Utc>,
) -> Result<(), StoreError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    E: Executor<'c, Database = DB>,
    for<'t> Uuid: Encode<'t, DB> + Type<DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> DateTime<Utc>: Encode<'t, DB> + Type<DB>,
{
    sqlx::query(
        "UPDATE pending_erasures SET attempts = attempts + 1, last_error = $2, \
           next_attempt_at = $3 WHERE customer_id = $1",
    )
    .bind(customer.as_uuid())
    .bind(error)
    .bind(retry_at)
    .execute(executor)
    .await?;
    Ok(())
}
