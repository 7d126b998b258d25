//! The `WebhookStore` implementation both backends share: one SQL text with `$N` placeholders,
//! which PostgreSQL and SQLite (through sqlx) both accept. What differs comes from each backend:
//! `begin_write()` (SQLite takes its write lock up front), `pool()`, and the row-locking clause
//! of a claim (`FOR UPDATE OF d SKIP LOCKED` on PostgreSQL, so dispatchers never wait for or
//! take each other's candidates; nothing on SQLite, whose writers are serialised).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{AttemptRecord, DeliveryState, Endpoint, StoreError};

macro_rules! endpoint_columns {
    () => {
        "id, tenant, url, description, enabled, disabled_reason, failing_since, \
         previous_secret_until, version, created_at, updated_at"
    };
}
pub(super) use endpoint_columns;

#[derive(Debug, sqlx::FromRow)]
pub(super) struct EndpointRow {
    pub id: Uuid,
    pub tenant: String,
    pub url: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<DateTime<Utc>>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl EndpointRow {
    pub fn with_types(self, event_types: Vec<String>) -> Endpoint {
        Endpoint {
            id: self.id,
            tenant: self.tenant,
            url: self.url,
            description: self.description,
            event_types,
            enabled: self.enabled,
            disabled_reason: self.disabled_reason,
            failing_since: self.failing_since,
            previous_secret_until: self.previous_secret_until,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct AttemptRow {
    pub id: Uuid,
    pub message_id: Uuid,
    pub endpoint_id: Uuid,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub duration_ms: i64,
    pub error: Option<String>,
    pub state: String,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl TryFrom<AttemptRow> for AttemptRecord {
    type Error = StoreError;

    fn try_from(row: AttemptRow) -> Result<Self, StoreError> {
        Ok(AttemptRecord {
            id: row.id,
            message_id: row.message_id,
            endpoint_id: row.endpoint_id,
            attempted_at: row.attempted_at,
            status_code: row.status_code.and_then(|code| u16::try_from(code).ok()),
            duration_ms: u64::try_from(row.duration_ms).unwrap_or_default(),
            error: row.error,
            state: DeliveryState::parse(&row.state).ok_or_else(|| {
                StoreError::Backend(anyhow::anyhow!("unknown delivery state {}", row.state))
            })?,
            next_attempt_at: row.next_attempt_at,
        })
    }
}

/// Due deliveries of enabled endpoints, oldest first, at most `$4` leased per endpoint counting
/// the leases already held; endpoints already at their limit are left out of the candidates,
/// so one endpoint's backlog cannot fill the window and hold up every other; `$1` now, `$2` the new lease's end, `$3` how many. (RETURNING names
/// bare columns, which SQLite requires, so the chosen rows' columns are renamed apart.) The
/// limit is exact because claims run one at a time (SQLite's write lock; on PostgreSQL the
/// store's `serialize_claims` advisory lock), each seeing the leases of the one before.
macro_rules! claim_sql {
    ($lock:literal) => {
        concat!(
            "WITH candidates AS (
                SELECT d.message_id, d.endpoint_id, d.next_attempt_at FROM webhook_deliveries d
                JOIN webhook_endpoints e ON e.id = d.endpoint_id
                WHERE d.state = 'pending' AND d.next_attempt_at <= $1
                  AND (d.lease_until IS NULL OR d.lease_until <= $1)
                  AND e.enabled AND e.deleted_at IS NULL
                  AND (SELECT count(*) FROM webhook_deliveries h
                       WHERE h.endpoint_id = d.endpoint_id AND h.state = 'pending'
                         AND h.lease_until > $1) < $4
                ORDER BY d.next_attempt_at
                LIMIT $3 * 4",
            $lock,
            "
            ),
            ranked AS (
                SELECT c.message_id, c.endpoint_id, c.next_attempt_at,
                       row_number() OVER (PARTITION BY c.endpoint_id ORDER BY c.next_attempt_at, c.message_id) AS r,
                       (SELECT count(*) FROM webhook_deliveries l
                        WHERE l.endpoint_id = c.endpoint_id AND l.state = 'pending'
                          AND l.lease_until > $1) AS busy
                FROM candidates c
            ),
            chosen AS (
                SELECT message_id AS chosen_message, endpoint_id AS chosen_endpoint FROM ranked
                WHERE r + busy <= $4
                ORDER BY next_attempt_at LIMIT $3
            )
            UPDATE webhook_deliveries AS d SET lease_until = $2
            FROM chosen c
            WHERE d.message_id = c.chosen_message AND d.endpoint_id = c.chosen_endpoint
            RETURNING message_id, endpoint_id, attempts"
        )
    };
}
pub(super) use claim_sql;

/// Messages older than `$1` that no delivery waits on, oldest first, at most `$2`.
macro_rules! finished_messages {
    () => {
        "SELECT m.id FROM webhook_messages m WHERE m.created_at < $1 AND NOT EXISTS ( \
           SELECT 1 FROM webhook_deliveries d WHERE d.message_id = m.id AND d.state = 'pending') \
         ORDER BY m.created_at, m.id LIMIT $2"
    };
}
pub(crate) use finished_messages;

/// Writes `message` and one pending delivery per endpoint of its tenant that is enabled and
/// subscribed to its type; `$conn` is the caller's transaction. A message nobody is subscribed
/// to is not written at all (one indexed read instead of two writes on every change a seller
/// has no endpoint for, and no rows that would only wait to be pruned).
macro_rules! enqueue_sql {
    ($conn:expr, $message:expr) => {{
        let message: &$crate::store::NewMessage = $message;
        let at = $crate::store::micros(message.created_at);
        let written = sqlx::query(
            "INSERT INTO webhook_messages (id, tenant, event_type, body, created_at) \
             SELECT $1, $2, $3, $4, $5 WHERE EXISTS ( \
               SELECT 1 FROM webhook_endpoints e \
               JOIN webhook_endpoint_events t ON t.endpoint_id = e.id AND t.event_type = $3 \
               WHERE e.tenant = $2 AND e.enabled AND e.deleted_at IS NULL)",
        )
        .bind(message.id)
        .bind(&message.tenant)
        .bind(&message.event_type)
        .bind(&message.body)
        .bind(at)
        .execute(&mut *$conn)
        .await?
        .rows_affected();
        if written == 0 {
            return Ok(0);
        }
        let deliveries = sqlx::query(
            "INSERT INTO webhook_deliveries (message_id, endpoint_id, state, attempts, \
               next_attempt_at, updated_at) \
             SELECT $1, e.id, 'pending', 0, $2, $2 FROM webhook_endpoints e \
             JOIN webhook_endpoint_events t ON t.endpoint_id = e.id AND t.event_type = $3 \
             WHERE e.tenant = $4 AND e.enabled AND e.deleted_at IS NULL",
        )
        .bind(message.id)
        .bind(at)
        .bind(&message.event_type)
        .bind(&message.tenant)
        .execute(&mut *$conn)
        .await?
        .rows_affected();
        Ok(usize::try_from(deliveries).unwrap_or(usize::MAX))
    }};
}
pub(super) use enqueue_sql;

/// Whether an enabled endpoint of tenant `$1` listens to event type `$2`.
macro_rules! listening {
    () => {
        "SELECT EXISTS (SELECT 1 FROM webhook_endpoints e \
           JOIN webhook_endpoint_events t ON t.endpoint_id = e.id AND t.event_type = $2 \
           WHERE e.tenant = $1 AND e.enabled AND e.deleted_at IS NULL)"
    };
}
pub(crate) use listening;

/// Writes `messages` (each as `enqueue` does) asking once per tenant and event type whether
/// any endpoint listens, not once per message: a transaction announcing many events of one
/// seller (an import chunk) asks twice, not a thousand times. Expands where `enqueue` is the
/// backend's own.
macro_rules! enqueue_all_sql {
    ($conn:expr, $messages:expr) => {{
        let messages: &[$crate::store::NewMessage] = $messages;
        let mut listened: std::collections::HashMap<(&str, &str), bool> =
            std::collections::HashMap::new();
        let mut deliveries = 0usize;
        for message in messages {
            let key = (message.tenant.as_str(), message.event_type.as_str());
            let listening = match listened.get(&key) {
                Some(listening) => *listening,
                None => {
                    let listening: bool = sqlx::query_scalar($crate::store::sql::listening!())
                        .bind(&message.tenant)
                        .bind(&message.event_type)
                        .fetch_one(&mut *$conn)
                        .await?;
                    listened.insert(key, listening);
                    listening
                }
            };
            if listening {
                deliveries += enqueue(&mut *$conn, message).await?;
            }
        }
        Ok(deliveries)
    }};
}
pub(super) use enqueue_all_sql;

macro_rules! impl_webhook_store {
    (
        $store:ty,
        conn = $conn:ty,
        claim_lock = $lock:literal,
        serialize_claims = $serialize:literal,
        row_lock = $row_lock:literal
    ) => {
        impl $store {
            /// Cancels the pending deliveries of an endpoint being disabled or deleted.
            async fn cancel_pending(
                conn: &mut $conn,
                id: uuid::Uuid,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "UPDATE webhook_deliveries SET state = 'cancelled', lease_until = NULL, \
                       updated_at = $2 WHERE endpoint_id = $1 AND state = 'pending'",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            async fn event_types(
                &self,
                id: uuid::Uuid,
            ) -> Result<Vec<String>, $crate::store::StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT event_type FROM webhook_endpoint_events WHERE endpoint_id = $1 \
                     ORDER BY event_type",
                )
                .bind(id)
                .fetch_all(self.pool())
                .await?)
            }

            async fn live_endpoint(
                &self,
                id: uuid::Uuid,
            ) -> Result<Option<$crate::store::Endpoint>, $crate::store::StoreError> {
                let row: Option<$crate::store::sql::EndpointRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::store::sql::endpoint_columns!(),
                    " FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL"
                ))
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
                match row {
                    Some(row) => Ok(Some(row.with_types(self.event_types(id).await?))),
                    None => Ok(None),
                }
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::WebhookStore for $store {
            #[tracing::instrument(level = "debug", skip_all)]
            async fn create_endpoint(
                &self,
                id: uuid::Uuid,
                new: &$crate::store::NewEndpoint,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::Endpoint, $crate::store::StoreError> {
                let now = $crate::store::micros(now);
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO webhook_endpoints (id, tenant, url, description, enabled, \
                       version, created_at, updated_at) VALUES ($1, $2, $3, $4, TRUE, 1, $5, $5)",
                )
                .bind(id)
                .bind(&new.tenant)
                .bind(&new.url)
                .bind(&new.description)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                for event_type in $crate::store::normalised(&new.event_types) {
                    sqlx::query(
                        "INSERT INTO webhook_endpoint_events (endpoint_id, event_type) VALUES ($1, $2)",
                    )
                    .bind(id)
                    .bind(event_type)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                self.live_endpoint(id)
                    .await?
                    .ok_or($crate::store::StoreError::NotFound)
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn endpoint(
                &self,
                id: uuid::Uuid,
            ) -> Result<Option<$crate::store::Endpoint>, $crate::store::StoreError> {
                self.live_endpoint(id).await
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn pending(&self) -> Result<i64, $crate::store::StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'pending'",
                )
                .fetch_one(self.pool())
                .await?)
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn prune(
                &self,
                before: chrono::DateTime<chrono::Utc>,
                max: u32,
            ) -> Result<u64, $crate::store::StoreError> {
                // The same oldest-first selection in each statement of one transaction: the
                // attempts, then the deliveries, then the messages (the references' order). A
                // message resent meanwhile has a pending delivery again and drops out.
                let before = $crate::store::micros(before);
                let mut tx = self.begin_write().await?;
                for statement in [
                    concat!(
                        "DELETE FROM webhook_attempts WHERE message_id IN (",
                        $crate::store::sql::finished_messages!(),
                        ")"
                    ),
                    concat!(
                        "DELETE FROM webhook_deliveries WHERE message_id IN (",
                        $crate::store::sql::finished_messages!(),
                        ")"
                    ),
                ] {
                    sqlx::query(statement)
                        .bind(before)
                        .bind(i64::from(max))
                        .execute(&mut *tx)
                        .await?;
                }
                let pruned = sqlx::query(concat!(
                    "DELETE FROM webhook_messages WHERE id IN (",
                    $crate::store::sql::finished_messages!(),
                    ")"
                ))
                .bind(before)
                .bind(i64::from(max))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(pruned)
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn subscribed(
                &self,
                tenant: &str,
                event_type: &str,
            ) -> Result<bool, $crate::store::StoreError> {
                Ok(sqlx::query_scalar($crate::store::sql::listening!())
                    .bind(tenant)
                    .bind(event_type)
                    .fetch_one(self.pool())
                    .await?)
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn endpoints(
                &self,
                tenant: Option<&str>,
                limit: u32,
                after: Option<uuid::Uuid>,
            ) -> Result<Vec<$crate::store::Endpoint>, $crate::store::StoreError> {
                let rows: Vec<$crate::store::sql::EndpointRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::store::sql::endpoint_columns!(),
                    " FROM webhook_endpoints WHERE deleted_at IS NULL \
                     AND ($1 IS NULL OR tenant = $1) AND ($2 IS NULL OR id > $2) \
                     ORDER BY id LIMIT $3"
                ))
                .bind(tenant)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(self.pool())
                .await?;
                let mut endpoints = Vec::with_capacity(rows.len());
                for row in rows {
                    let types = self.event_types(row.id).await?;
                    endpoints.push(row.with_types(types));
                }
                Ok(endpoints)
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn update_endpoint(
                &self,
                id: uuid::Uuid,
                expected_version: Option<i64>,
                changes: &$crate::store::EndpointChanges,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::Endpoint, $crate::store::StoreError> {
                let now = $crate::store::micros(now);
                let mut tx = self.begin_write().await?;
                let (description_set, description) = match &changes.description {
                    Some(description) => (true, description.clone()),
                    None => (false, None),
                };
                let updated: Option<i64> = sqlx::query_scalar(
                    "UPDATE webhook_endpoints SET \
                       url = COALESCE($3, url), \
                       description = CASE WHEN $4 THEN $5 ELSE description END, \
                       enabled = COALESCE($6, enabled), \
                       disabled_reason = CASE WHEN $6 THEN NULL ELSE disabled_reason END, \
                       failing_since = CASE WHEN $6 THEN NULL ELSE failing_since END, \
                       version = version + 1, updated_at = $7 \
                     WHERE id = $1 AND deleted_at IS NULL AND ($2 IS NULL OR version = $2) \
                     RETURNING version",
                )
                .bind(id)
                .bind(expected_version)
                .bind(&changes.url)
                .bind(description_set)
                .bind(description)
                .bind(changes.enabled)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                if updated.is_none() {
                    let exists: Option<i64> = sqlx::query_scalar(
                        "SELECT version FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL",
                    )
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    return Err(match exists {
                        Some(_) => $crate::store::StoreError::VersionMismatch,
                        None => $crate::store::StoreError::NotFound,
                    });
                }
                if let Some(types) = &changes.event_types {
                    sqlx::query("DELETE FROM webhook_endpoint_events WHERE endpoint_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    for event_type in $crate::store::normalised(types) {
                        sqlx::query(
                            "INSERT INTO webhook_endpoint_events (endpoint_id, event_type) \
                             VALUES ($1, $2)",
                        )
                        .bind(id)
                        .bind(event_type)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                if changes.enabled == Some(false) {
                    Self::cancel_pending(&mut *tx, id, now).await?;
                }
                tx.commit().await?;
                self.live_endpoint(id)
                    .await?
                    .ok_or($crate::store::StoreError::NotFound)
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn delete_endpoint(
                &self,
                id: uuid::Uuid,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::store::StoreError> {
                let now = $crate::store::micros(now);
                let mut tx = self.begin_write().await?;
                let deleted = sqlx::query(
                    "UPDATE webhook_endpoints SET deleted_at = $2, enabled = FALSE, \
                       version = version + 1, updated_at = $2 \
                     WHERE id = $1 AND deleted_at IS NULL",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if deleted == 0 {
                    return Err($crate::store::StoreError::NotFound);
                }
                Self::cancel_pending(&mut *tx, id, now).await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn secret_rotated(
                &self,
                id: uuid::Uuid,
                previous_until: chrono::DateTime<chrono::Utc>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::Endpoint, $crate::store::StoreError> {
                let rotated = sqlx::query(
                    "UPDATE webhook_endpoints SET previous_secret_until = $2, \
                       version = version + 1, updated_at = $3 \
                     WHERE id = $1 AND deleted_at IS NULL",
                )
                .bind(id)
                .bind($crate::store::micros(previous_until))
                .bind($crate::store::micros(now))
                .execute(self.pool())
                .await?
                .rows_affected();
                if rotated == 0 {
                    return Err($crate::store::StoreError::NotFound);
                }
                self.live_endpoint(id)
                    .await?
                    .ok_or($crate::store::StoreError::NotFound)
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn claim(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                lease_until: chrono::DateTime<chrono::Utc>,
                limit: u32,
                per_endpoint: u32,
            ) -> Result<Vec<$crate::store::Due>, $crate::store::StoreError> {
                let mut tx = self.begin_write().await?;
                // Claims one at a time (PostgreSQL; SQLite's write lock already does it), so
                // each sees the leases the previous one took and the per-endpoint limit holds
                // across dispatchers. A claim is one short transaction.
                if !$serialize.is_empty() {
                    sqlx::query($serialize).execute(&mut *tx).await?;
                }
                let claimed: Vec<(uuid::Uuid, uuid::Uuid, i32)> =
                    sqlx::query_as($crate::store::sql::claim_sql!($lock))
                        .bind($crate::store::micros(now))
                        .bind($crate::store::micros(lease_until))
                        .bind(i64::from(limit))
                        .bind(i64::from(per_endpoint))
                        .fetch_all(&mut *tx)
                        .await?;
                let mut due = Vec::with_capacity(claimed.len());
                for (message_id, endpoint_id, attempts) in claimed {
                    let (url, body, previous_secret_until): (
                        String,
                        Vec<u8>,
                        Option<chrono::DateTime<chrono::Utc>>,
                    ) = sqlx::query_as(
                        "SELECT e.url, m.body, e.previous_secret_until \
                         FROM webhook_endpoints e, webhook_messages m \
                         WHERE e.id = $1 AND m.id = $2",
                    )
                    .bind(endpoint_id)
                    .bind(message_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    due.push($crate::store::Due {
                        message_id,
                        endpoint_id,
                        url,
                        body,
                        attempts: u32::try_from(attempts).unwrap_or_default(),
                        previous_secret_until,
                    });
                }
                tx.commit().await?;
                Ok(due)
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn record_all(
                &self,
                attempts: &[$crate::store::AttemptRecord],
            ) -> Result<Vec<Option<chrono::DateTime<chrono::Utc>>>, $crate::store::StoreError>
            {
                use $crate::store::DeliveryState;
                // Endpoint rows are written in one order (by id) by every transaction, so
                // two dispatchers recording at once cannot deadlock on them.
                let mut order: Vec<usize> = (0..attempts.len()).collect();
                // Within an endpoint, oldest attempt first, so its failure run ends with the
                // latest outcome.
                order.sort_by_key(|&i| {
                    (
                        attempts[i].endpoint_id,
                        attempts[i].attempted_at,
                        attempts[i].message_id,
                    )
                });
                let mut runs = vec![None; attempts.len()];
                let mut tx = self.begin_write().await?;
                // The endpoints first, in id order, as disabling and deleting an endpoint lock
                // it before its deliveries: the same order everywhere, so no deadlock between
                // a dispatcher recording and one disabling.
                let endpoints: std::collections::BTreeSet<uuid::Uuid> =
                    attempts.iter().map(|a| a.endpoint_id).collect();
                for endpoint in endpoints {
                    sqlx::query(concat!(
                        "SELECT id FROM webhook_endpoints WHERE id = $1",
                        $row_lock
                    ))
                    .bind(endpoint)
                    .fetch_optional(&mut *tx)
                    .await?;
                }
                for index in order {
                let attempt = &attempts[index];
                let at = $crate::store::micros(attempt.attempted_at);
                let next = attempt.next_attempt_at.map($crate::store::micros);
                sqlx::query(
                    "INSERT INTO webhook_attempts (id, message_id, endpoint_id, attempted_at, \
                       status_code, duration_ms, error, state, next_attempt_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(attempt.id)
                .bind(attempt.message_id)
                .bind(attempt.endpoint_id)
                .bind(at)
                .bind(attempt.status_code.map(i32::from))
                .bind(i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX))
                .bind(&attempt.error)
                .bind(attempt.state.as_str())
                .bind(next)
                .execute(&mut *tx)
                .await?;
                // A delivery cancelled while this attempt ran stays cancelled, unless the
                // attempt delivered it after all.
                sqlx::query(
                    "UPDATE webhook_deliveries SET \
                       state = CASE WHEN state = 'cancelled' AND $3 <> 'delivered' \
                                    THEN 'cancelled' ELSE $3 END, \
                       attempts = attempts + 1, \
                       next_attempt_at = COALESCE($4, next_attempt_at), \
                       lease_until = NULL, updated_at = $5 \
                     WHERE message_id = $1 AND endpoint_id = $2",
                )
                .bind(attempt.message_id)
                .bind(attempt.endpoint_id)
                .bind(attempt.state.as_str())
                .bind(next)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                let failing_since: Option<chrono::DateTime<chrono::Utc>> = match attempt.state {
                    DeliveryState::Delivered => {
                        // Only when a run is open: an endpoint that keeps succeeding is not
                        // written (nor its row locked) on every delivery.
                        sqlx::query(
                            "UPDATE webhook_endpoints SET failing_since = NULL \
                             WHERE id = $1 AND failing_since IS NOT NULL",
                        )
                            .bind(attempt.endpoint_id)
                            .execute(&mut *tx)
                            .await?;
                        None
                    }
                    DeliveryState::Pending | DeliveryState::Failed => sqlx::query_scalar(
                        "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $2) \
                         WHERE id = $1 RETURNING failing_since",
                    )
                    .bind(attempt.endpoint_id)
                    .bind(at)
                    .fetch_optional(&mut *tx)
                    .await?
                    .flatten(),
                    DeliveryState::Aborted | DeliveryState::Cancelled => sqlx::query_scalar(
                        "SELECT failing_since FROM webhook_endpoints WHERE id = $1",
                    )
                    .bind(attempt.endpoint_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .flatten(),
                };
                runs[index] = failing_since;
                }
                tx.commit().await?;
                Ok(runs)
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn disable_endpoint(
                &self,
                id: uuid::Uuid,
                reason: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, $crate::store::StoreError> {
                let now = $crate::store::micros(now);
                let mut tx = self.begin_write().await?;
                let disabled = sqlx::query(
                    "UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = $2, \
                       version = version + 1, updated_at = $3 \
                     WHERE id = $1 AND enabled AND deleted_at IS NULL",
                )
                .bind(id)
                .bind(reason)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
                if disabled {
                    Self::cancel_pending(&mut *tx, id, now).await?;
                }
                tx.commit().await?;
                Ok(disabled)
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn attempts(
                &self,
                endpoint: uuid::Uuid,
                limit: u32,
                before: Option<uuid::Uuid>,
            ) -> Result<Vec<$crate::store::AttemptRecord>, $crate::store::StoreError> {
                let rows: Vec<$crate::store::sql::AttemptRow> = sqlx::query_as(
                    "SELECT id, message_id, endpoint_id, attempted_at, status_code, duration_ms, \
                       error, state, next_attempt_at \
                     FROM webhook_attempts WHERE endpoint_id = $1 AND ($2 IS NULL OR id < $2) \
                     ORDER BY id DESC LIMIT $3",
                )
                .bind(endpoint)
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(self.pool())
                .await?;
                rows.into_iter().map(TryFrom::try_from).collect()
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn resend(
                &self,
                message: uuid::Uuid,
                tenant: Option<&str>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<usize, $crate::store::StoreError> {
                let now = $crate::store::micros(now);
                let mut tx = self.begin_write().await?;
                let known: Option<uuid::Uuid> = sqlx::query_scalar(
                    "SELECT id FROM webhook_messages WHERE id = $1 AND ($2 IS NULL OR tenant = $2)",
                )
                .bind(message)
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?;
                if known.is_none() {
                    return Err($crate::store::StoreError::NotFound);
                }
                let queued = sqlx::query(
                    "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, \
                       next_attempt_at = $2, lease_until = NULL, updated_at = $2 \
                     WHERE message_id = $1 AND state <> 'pending' AND endpoint_id IN \
                       (SELECT id FROM webhook_endpoints WHERE enabled AND deleted_at IS NULL)",
                )
                .bind(message)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(usize::try_from(queued).unwrap_or(usize::MAX))
            }

            #[tracing::instrument(level = "debug", skip_all)]
            async fn recover(
                &self,
                endpoint: uuid::Uuid,
                since: chrono::DateTime<chrono::Utc>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<usize, $crate::store::StoreError> {
                let now = $crate::store::micros(now);
                if self.live_endpoint(endpoint).await?.is_none() {
                    return Err($crate::store::StoreError::NotFound);
                }
                let queued = sqlx::query(
                    "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, \
                       next_attempt_at = $3, lease_until = NULL, updated_at = $3 \
                     WHERE endpoint_id = $1 AND state = 'failed' AND updated_at >= $2",
                )
                .bind(endpoint)
                .bind($crate::store::micros(since))
                .bind(now)
                .execute(self.pool())
                .await?
                .rows_affected();
                Ok(usize::try_from(queued).unwrap_or(usize::MAX))
            }
        }
    };
}
pub(super) use impl_webhook_store;
