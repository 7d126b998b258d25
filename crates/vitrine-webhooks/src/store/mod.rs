//! Where endpoints, messages, deliveries and attempts are kept: the [`WebhookStore`] port, on
//! PostgreSQL and SQLite (one SQL text for both, in `sql.rs`), with one conformance suite.
//!
//! A message is written by [`postgres::enqueue`] / [`sqlite::enqueue`] in the transaction of the
//! business change it announces, together with one *delivery* per endpoint of the tenant that
//! is enabled and subscribed to its type at that moment: a committed change always has its
//! deliveries, a rolled-back one never. Dispatchers then [`WebhookStore::claim`] due deliveries
//! under a lease (any number of dispatchers, none sending the same delivery at once) and
//! [`WebhookStore::record`] each attempt.

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

pub mod postgres;
mod sql;
pub mod sqlite;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;

pub use postgres::PgWebhookStore;
pub use sqlite::SqliteWebhookStore;

/// An endpoint as stored (its secret is not: it lives in the secret store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: Uuid,
    /// The owner: a customer id, or `admin`.
    pub tenant: String,
    pub url: String,
    pub description: Option<String>,
    /// Sorted, without duplicates.
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Start of the current unbroken run of failures; `None` after a success.
    pub failing_since: Option<DateTime<Utc>>,
    /// The previous secret signs too until then (after a rotation).
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An endpoint to create; `url` already checked against the address policy.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub tenant: String,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
}

/// Changes to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointChanges {
    pub url: Option<String>,
    pub description: Option<Option<String>>,
    pub event_types: Option<Vec<String>>,
    /// Re-enabling clears the failure run and the reason it was disabled.
    pub enabled: Option<bool>,
}

/// A message to announce: the body is delivered byte for byte.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: Uuid,
    pub tenant: String,
    pub event_type: String,
    pub body: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Delivered,
    /// Every attempt of the schedule failed.
    Failed,
    /// The receiver asked for no more attempts.
    Aborted,
    /// The endpoint was deleted or disabled before it was delivered.
    Cancelled,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryState> {
        [
            Self::Pending,
            Self::Delivered,
            Self::Failed,
            Self::Aborted,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// A delivery claimed for sending, with what sending needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub message_id: Uuid,
    pub endpoint_id: Uuid,
    pub url: String,
    pub body: Vec<u8>,
    /// Attempts made before this one.
    pub attempts: u32,
    pub previous_secret_until: Option<DateTime<Utc>>,
}

/// One attempt, as recorded (and listed by the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub id: Uuid,
    pub message_id: Uuid,
    pub endpoint_id: Uuid,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    pub error: Option<String>,
    /// The delivery's state after this attempt.
    pub state: DeliveryState,
    /// When it is tried next, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("the endpoint changed since it was read")]
    VersionMismatch,
    #[error(transparent)]
    Backend(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Backend(error.into())
    }
}

#[async_trait]
pub trait WebhookStore: Send + Sync + std::fmt::Debug {
    async fn create_endpoint(
        &self,
        id: Uuid,
        new: &NewEndpoint,
        now: DateTime<Utc>,
    ) -> Result<Endpoint, StoreError>;

    /// A live (not deleted) endpoint.
    async fn endpoint(&self, id: Uuid) -> Result<Option<Endpoint>, StoreError>;

    /// Whether `tenant` has an enabled endpoint subscribed to `event_type` (a message of that
    /// type would be delivered somewhere).
    async fn subscribed(&self, tenant: &str, event_type: &str) -> Result<bool, StoreError>;

    /// Live endpoints of `tenant` (all tenants when `None`), by id, after `after`.
    async fn endpoints(
        &self,
        tenant: Option<&str>,
        limit: u32,
        after: Option<Uuid>,
    ) -> Result<Vec<Endpoint>, StoreError>;

    /// Applies `changes` if the endpoint is at `expected_version` (when given). Disabling
    /// cancels its pending deliveries.
    async fn update_endpoint(
        &self,
        id: Uuid,
        expected_version: Option<i64>,
        changes: &EndpointChanges,
        now: DateTime<Utc>,
    ) -> Result<Endpoint, StoreError>;

    /// Deletes the endpoint (its attempts are kept) and cancels its pending deliveries.
    async fn delete_endpoint(&self, id: Uuid, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Records a secret rotation: the previous secret keeps signing until `previous_until`.
    async fn secret_rotated(
        &self,
        id: Uuid,
        previous_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Endpoint, StoreError>;

    /// Up to `limit` due deliveries of enabled endpoints, leased until `lease_until`, oldest
    /// due first, at most `per_endpoint` leased per endpoint at a time (counting leases held
    /// by earlier claims), so a slow receiver cannot take every dispatcher slot.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_endpoint: u32,
    ) -> Result<Vec<Due>, StoreError>;

    /// Records an attempt and moves its delivery to `attempt.state` (due again at
    /// `attempt.next_attempt_at` while pending), releasing the lease. A success ends the
    /// endpoint's failure run; a failure starts one if none is running. Returns the endpoint's
    /// failure run start after this attempt.
    async fn record(&self, attempt: &AttemptRecord) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut runs = self.record_all(std::slice::from_ref(attempt)).await?;
        Ok(runs.pop().flatten())
    }

    /// [`WebhookStore::record`] for several attempts in one transaction (a dispatch round's):
    /// each endpoint's failure run start after its attempt, in order.
    async fn record_all(
        &self,
        attempts: &[AttemptRecord],
    ) -> Result<Vec<Option<DateTime<Utc>>>, StoreError>;

    /// Disables an endpoint (410, or failing for too long), cancelling its pending deliveries;
    /// false if it was already disabled or is gone.
    async fn disable_endpoint(
        &self,
        id: Uuid,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Attempts to `endpoint`, newest first, before the attempt `before`.
    async fn attempts(
        &self,
        endpoint: Uuid,
        limit: u32,
        before: Option<Uuid>,
    ) -> Result<Vec<AttemptRecord>, StoreError>;

    /// Queues a message again to every endpoint it was delivered or tried to (enabled ones);
    /// how many deliveries were queued. `NotFound` when no such message (of `tenant`, if given).
    async fn resend(
        &self,
        message: Uuid,
        tenant: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError>;

    /// Queues again every delivery to `endpoint` that failed for good since `since`; how many.
    async fn recover(
        &self,
        endpoint: Uuid,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError>;

    /// Deliveries still pending (due, or waiting for a retry): the dispatch queue's depth.
    async fn pending(&self) -> Result<i64, StoreError>;

    /// Deletes up to `max` messages created before `before` that no delivery waits on any more,
    /// with their deliveries and attempts; how many messages.
    async fn prune(&self, before: DateTime<Utc>, max: u32) -> Result<u64, StoreError>;
}

/// Times are kept to the microsecond (PostgreSQL's precision), so both backends compare and
/// return the same values.
pub(crate) fn micros(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(6)
}

/// Event types as stored: sorted, without duplicates.
pub(crate) fn normalised(types: &[String]) -> Vec<String> {
    let mut types = types.to_vec();
    types.sort();
    types.dedup();
    types
}
