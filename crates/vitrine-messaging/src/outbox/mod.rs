//! The transactional outbox: a message is a row written in the same transaction as the business
//! change, so it exists if and only if the change committed. The [`relay`](crate::relay) then
//! publishes it at least once; consumers' inboxes make "at least once" apply exactly once.
//!
//! Each service keeps an `outbox` table in its own database (created by its migrations; see
//! `migrations/` of user-information for the shape). Order is kept per aggregate (the envelope's
//! `subject`): only the oldest unsent message of an aggregate can be claimed, so a later message
//! never overtakes an earlier one, even with several relays.

mod postgres;
mod sqlite;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use postgres::{PgOutbox, enqueue as enqueue_postgres};
pub use sqlite::{SqliteOutbox, enqueue as enqueue_sqlite};

use crate::envelope::Envelope;

/// Where a message goes: a topic (events, fanned out to subscribers) or a queue (commands,
/// requests, replies: one consumer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Topic(String),
    Queue(String),
}

impl Destination {
    fn encode(&self) -> String {
        match self {
            Self::Topic(name) => format!("topic:{name}"),
            Self::Queue(name) => format!("queue:{name}"),
        }
    }

    fn decode(raw: &str) -> anyhow::Result<Destination> {
        match raw.split_once(':') {
            Some(("topic", name)) => Ok(Self::Topic(name.to_owned())),
            Some(("queue", name)) => Ok(Self::Queue(name.to_owned())),
            _ => anyhow::bail!("invalid outbox destination {raw:?}"),
        }
    }
}

/// A message to write into the outbox with a business change.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub destination: Destination,
    pub envelope: Envelope,
}

impl OutboxMessage {
    pub fn event(topic: &str, envelope: Envelope) -> Self {
        Self {
            destination: Destination::Topic(topic.to_owned()),
            envelope,
        }
    }

    pub fn command(queue: &str, envelope: Envelope) -> Self {
        Self {
            destination: Destination::Queue(queue.to_owned()),
            envelope,
        }
    }

    /// The ordering key: messages with the same key are published in commit order.
    fn aggregate(&self) -> &str {
        self.envelope.subject.as_deref().unwrap_or("")
    }
}

/// A claimed, not yet published message.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub seq: i64,
    pub message: OutboxMessage,
    /// Failed publication attempts so far.
    pub attempts: i32,
}

/// How long a claim lasts by default: a relay that dies holding it delays those messages by this
/// much (and one that is merely slow may see them published twice, which inboxes absorb).
pub const LEASE: Duration = Duration::from_secs(30);

/// What the relay needs from a service's outbox table.
#[async_trait]
pub trait OutboxStore: Send + Sync + std::fmt::Debug {
    /// Claims up to `max` due messages, at most one per aggregate (its oldest unsent one), for
    /// `lease`. Claimed messages are invisible to other relays until marked or the lease ends.
    async fn claim(
        &self,
        max: usize,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<Vec<Pending>>;

    async fn mark_sent(&self, seqs: &[i64], now: DateTime<Utc>) -> anyhow::Result<()>;

    /// Records a failed publication; the message is retried at `retry_at`. Never dropped.
    async fn mark_failed(
        &self,
        seq: i64,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> anyhow::Result<()>;

    /// Deletes messages sent before `cutoff`.
    async fn prune(&self, cutoff: DateTime<Utc>) -> anyhow::Result<u64>;

    /// Messages not yet sent (for readiness and tests).
    async fn unsent(&self) -> anyhow::Result<i64>;

    /// Resolves when new messages may be waiting, or after `max_wait` (the polling fallback).
    async fn wait_for_work(&self, max_wait: Duration);
}

fn until(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX)
}

/// A row as both backends read it.
#[derive(Debug, sqlx::FromRow)]
struct Row {
    seq: i64,
    destination: String,
    envelope: String,
    attempts: i32,
}

impl TryFrom<Row> for Pending {
    type Error = anyhow::Error;

    fn try_from(row: Row) -> anyhow::Result<Pending> {
        Ok(Pending {
            seq: row.seq,
            message: OutboxMessage {
                destination: Destination::decode(&row.destination)?,
                envelope: Envelope::from_json(&row.envelope)?,
            },
            attempts: row.attempts,
        })
    }
}
