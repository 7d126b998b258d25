//! The transactional outbox: a message is a row written in the same transaction as the business
//! change, so it exists if and only if the change committed. The [`relay`](crate::relay) then
//! publishes it at least once; consumers' inboxes make "at least once" apply exactly once.
//!
//! Each service keeps an `outbox` table in its own database (created by its migrations; see
//! `migrations/` of user-information for the shape). Order is kept per aggregate (the envelope's
//! `subject`): a claim takes, for each aggregate, a run of its oldest unsent messages and nothing
//! past a message it could not take, so a later message never overtakes an earlier one, even with
//! several relays.
//!
//! A claim costs O(batch), not O(backlog): it reads a window of due messages through an index on
//! `(next_attempt_at, seq)` (messages waiting for a retry are skipped by the index, not scanned),
//! then, for each aggregate in the window, compares the window's messages with the aggregate's
//! first unsent ones, which an index on `(aggregate, seq)` reads in as many steps as the window
//! holds for it. Messages stuck behind an aggregate's failed message are deferred to its retry
//! time, so they leave the window instead of filling it.
//!
//! A claimed row that cannot be read (its envelope or destination was written by an older or
//! foreign writer, or edited by hand) is quarantined by the claim: moved to
//! `outbox_quarantine` with its error, out of its aggregate's line, and counted in
//! `vitrine_outbox_quarantined_total`; the rest of the claim goes out as usual.

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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    pub fn aggregate(&self) -> &str {
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

/// A publication that failed: the message is retried at `retry_at`, never dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub seq: i64,
    pub error: String,
    pub retry_at: DateTime<Utc>,
}

/// What one claim took.
#[derive(Debug, Default)]
pub struct Claim {
    /// In `seq` order.
    pub messages: Vec<Pending>,
    /// The claim's window of due messages was full: more may be due behind it, even when few
    /// were claimable (the rest of the window belongs to runs another relay holds). The relay
    /// paces its claims only after one that saw the outbox's whole due set.
    pub window_full: bool,
}

/// What the relay needs from a service's outbox table.
#[async_trait]
pub trait OutboxStore: Send + Sync + std::fmt::Debug {
    /// Claims up to `max` due messages for `lease`, in `seq` order. For each aggregate the claim
    /// holds a run of its oldest unsent messages, in order: never a message while an earlier one
    /// of its aggregate is unsent and not in the claim. Claimed messages are invisible to other
    /// relays until marked, released, or the lease ends. Each round looks at a window of up
    /// to `max` due messages.
    async fn claim(&self, max: usize, now: DateTime<Utc>, lease: Duration)
    -> anyhow::Result<Claim>;

    async fn mark_sent(&self, seqs: &[i64], now: DateTime<Utc>) -> anyhow::Result<()>;

    /// Records failed publications (each counts as an attempt) and ends their leases.
    async fn mark_failed(&self, failures: &[Failure]) -> anyhow::Result<()>;

    /// Gives back claimed messages that were not attempted, due again at `due` (not an attempt):
    /// the rest of a run whose earlier message failed, or what a relay could not publish before
    /// its lease ran short.
    async fn release(&self, seqs: &[i64], due: DateTime<Utc>) -> anyhow::Result<()>;

    /// Deletes messages sent before `cutoff`.
    async fn prune(&self, cutoff: DateTime<Utc>) -> anyhow::Result<u64>;

    /// Rows quarantined because they could not be read, oldest first.
    async fn quarantined(&self, max: usize) -> anyhow::Result<Vec<Quarantined>>;

    /// Messages not yet sent (for readiness and tests).
    async fn unsent(&self) -> anyhow::Result<i64>;

    /// Resolves when new messages may be waiting, or after `max_wait` (the polling fallback).
    async fn wait_for_work(&self, max_wait: Duration);

    /// Whether claims from several workers of one relay run in parallel. SQLite has one writer
    /// at a time: extra workers there only queue up for its lock, with the service's writes.
    fn parallel_claims(&self) -> bool {
        true
    }
}

/// At most this many claim rounds per claim.
const MAX_ROUNDS: usize = 64;

/// One claim round over one window.
struct Round {
    claim: Claim,
    /// Window messages moved behind their aggregate's first unsent one.
    deferred: usize,
}

/// Runs claim rounds until one claims something or defers nothing: a round that only
/// deferred moved those messages behind their aggregate's first one, so the next round sees a
/// new window.
async fn in_rounds<F, Fut>(mut round: F) -> anyhow::Result<Claim>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Round>>,
{
    for _ in 0..MAX_ROUNDS {
        let Round {
            mut claim,
            deferred,
        } = round().await?;
        if !claim.messages.is_empty() || deferred == 0 {
            claim.messages.sort_by_key(|p| p.seq);
            return Ok(claim);
        }
    }
    // Every round only deferred: the window was full each time.
    Ok(Claim {
        messages: Vec::new(),
        window_full: true,
    })
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
                envelope: Envelope::from_json(&row.envelope)
                    .map_err(|error| anyhow::anyhow!("unreadable envelope: {error}"))?,
            },
            attempts: row.attempts,
        })
    }
}

/// An outbox row set aside because it could not be read.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Quarantined {
    pub seq: i64,
    pub destination: String,
    pub aggregate: String,
    /// The envelope as stored.
    pub envelope: String,
    /// Why it could not be read.
    pub error: String,
    pub quarantined_at: DateTime<Utc>,
}

/// Splits claimed rows into publishable messages and rows to quarantine (`seq`, error).
fn readable(rows: Vec<Row>) -> (Vec<Pending>, Vec<(i64, String)>) {
    let mut pending = Vec::with_capacity(rows.len());
    let mut poison = Vec::new();
    for row in rows {
        let seq = row.seq;
        match Pending::try_from(row) {
            Ok(message) => pending.push(message),
            Err(error) => poison.push((seq, format!("{error:#}"))),
        }
    }
    (pending, poison)
}

/// Counts and reports quarantined rows (the stores have moved them).
fn report_quarantined(poison: &[(i64, String)]) {
    if poison.is_empty() {
        return;
    }
    metrics::counter!("vitrine_outbox_quarantined_total").increment(poison.len() as u64);
    for (seq, error) in poison {
        tracing::error!(
            seq,
            error,
            "outbox row cannot be read; quarantined (see `vitrine messages quarantine`)"
        );
    }
}
