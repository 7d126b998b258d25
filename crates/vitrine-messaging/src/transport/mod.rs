//! The `Transport` port: topics fanned out to queues, queues consumed with visibility timeouts,
//! redelivery, and dead-letter queues, with SQS semantics. Adapters: [`LocalTransport`] (SQLite,
//! embedded) and SNS+SQS (production). Both pass [`conformance`].

mod local;
mod sqs;

#[cfg(any(test, feature = "testing"))]
pub use sqs::{OwnMoto, TEST_ENDPOINT_VAR as SQS_TEST_ENDPOINT_VAR};

#[cfg(any(test, feature = "testing"))]
pub mod conformance;

use std::time::Duration;

use async_trait::async_trait;

pub use local::LocalTransport;
pub use sqs::SqsTransport;

use crate::envelope::Envelope;

/// A message a queue held that could not be read as a Vitrine CloudEvent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedMessage {
    pub queue: String,
    /// The body as it was stored.
    pub body: String,
    /// Why it could not be read.
    pub error: String,
    pub quarantined_at: chrono::DateTime<chrono::Utc>,
}

/// One queue and the topics (with event-type filters) it subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    pub subscriptions: Vec<Subscription>,
    /// After this many receives without an ack, a message moves to the queue's dead-letter queue.
    pub max_receives: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub topic: String,
    /// Only these CloudEvents types are delivered; empty means all.
    pub event_types: Vec<String>,
}

/// Every topic and queue of a deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    pub topics: Vec<String>,
    pub queues: Vec<QueueSpec>,
}

impl Topology {
    /// The declared topics and those the queues subscribe to, each once, in that order.
    pub fn all_topics(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        let subscribed = self
            .queues
            .iter()
            .flat_map(|q| q.subscriptions.iter().map(|s| &s.topic));
        for topic in self.topics.iter().chain(subscribed) {
            if !all.contains(topic) {
                all.push(topic.clone());
            }
        }
        all
    }
}

/// The name of the dead-letter queue of `queue`.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}-dlq")
}

/// A received message, invisible to other consumers until acked, retried or its visibility
/// timeout ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub envelope: Envelope,
    /// Opaque handle for ack/retry of this receive.
    pub receipt: String,
    /// How many times this message has been received, this time included.
    pub receive_count: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("unknown topic or queue {0}")]
    Unknown(String),
    #[error("transport unavailable: {0}")]
    Unavailable(#[source] anyhow::Error),
}

impl From<sqlx::Error> for TransportError {
    fn from(error: sqlx::Error) -> Self {
        Self::Unavailable(error.into())
    }
}

/// The sending half of a transport: all the outbox relay needs.
#[async_trait]
pub trait Publisher: Send + Sync + std::fmt::Debug {
    /// Publishes an event to every queue subscribed to `topic` whose filter accepts its type.
    async fn publish(&self, topic: &str, envelope: &Envelope) -> Result<(), TransportError>;

    /// Sends a command, request or reply to one queue.
    async fn send(&self, queue: &str, envelope: &Envelope) -> Result<(), TransportError>;

    /// Whether one batch call accepts its envelopes in their order, and an envelope that fails
    /// leaves every later one of the call unaccepted. The relay then sends an aggregate's
    /// consecutive messages in one call instead of one call each, which is what keeps a hot
    /// aggregate (one product reserved hundreds of times a second) from outrunning the relay.
    /// SNS and SQS standard queues keep no order within a call; the default is `false`.
    fn keeps_batch_order(&self) -> bool {
        false
    }

    /// Publishes each envelope as [`Publisher::publish`] would, in as few calls as the transport
    /// allows; one result per envelope, in order. Unless [`Publisher::keeps_batch_order`], order
    /// among the envelopes is not kept, and callers pass at most one message per aggregate. The
    /// default publishes one at a time.
    async fn publish_batch(
        &self,
        topic: &str,
        envelopes: &[&Envelope],
    ) -> Vec<Result<(), TransportError>> {
        let mut results = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            results.push(self.publish(topic, envelope).await);
        }
        results
    }

    /// Sends each envelope as [`Publisher::send`] would, in as few calls as the transport allows;
    /// one result per envelope, in order (the same caveat as [`Publisher::publish_batch`]).
    async fn send_batch(
        &self,
        queue: &str,
        envelopes: &[&Envelope],
    ) -> Vec<Result<(), TransportError>> {
        let mut results = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            results.push(self.send(queue, envelope).await);
        }
        results
    }
}

impl TransportError {
    /// The same error for each of `count` messages of a call that failed as a whole.
    pub(crate) fn for_each(&self, count: usize) -> Vec<Result<(), TransportError>> {
        (0..count)
            .map(|_| {
                Err(match self {
                    Self::Unknown(name) => Self::Unknown(name.clone()),
                    Self::Unavailable(error) => Self::Unavailable(anyhow::anyhow!("{error:#}")),
                })
            })
            .collect()
    }
}

/// What [`Transport::provision`] created and what it found already in place, each named as
/// `topic <name>`, `queue <name>`, `dead-letter queue <name>` or
/// `subscription <topic> -> <queue>`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Provisioned {
    pub created: Vec<String>,
    pub found: Vec<String>,
}

impl Provisioned {
    pub(crate) fn record(&mut self, created: bool, what: String) {
        if created {
            self.created.push(what);
        } else {
            self.found.push(what);
        }
    }
}

/// How many messages a queue holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueDepth {
    /// Visible, waiting for a consumer.
    pub ready: u64,
    /// Received and not yet acknowledged, or delayed for a retry.
    pub not_visible: u64,
}

#[async_trait]
pub trait Transport: Publisher {
    /// Creates (idempotently) every topic, queue, dead-letter queue and subscription; reports
    /// what it created and what was already there. Queue settings (dead-letter queue, maximum
    /// receives) and subscription filters are brought up to date on existing ones too; on SNS
    /// a filter dropped from the topology stays on an existing subscription until it is
    /// deleted.
    async fn provision(&self, topology: &Topology) -> Result<Provisioned, TransportError>;

    /// How many messages `queue` holds now (approximate on SQS).
    async fn depth(&self, queue: &str) -> Result<QueueDepth, TransportError>;

    /// Receives up to `max` messages, waiting up to `wait` for the first. Each stays invisible
    /// for `visibility`, then is redelivered unless acked.
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, TransportError>;

    /// The message was handled: remove it.
    async fn ack(&self, queue: &str, delivery: &Delivery) -> Result<(), TransportError>;

    /// Handling failed: make the message visible again after `delay`.
    async fn retry_later(
        &self,
        queue: &str,
        delivery: &Delivery,
        delay: Duration,
    ) -> Result<(), TransportError>;

    /// Messages parked in `queue`'s dead-letter queue, oldest first, without consuming them.
    async fn dead_letters(&self, queue: &str, max: usize) -> Result<Vec<Envelope>, TransportError>;

    /// Messages set aside because no consumer could read them, oldest first. The embedded
    /// transport quarantines them when they are received; SQS leaves them to the queue's
    /// redrive policy (the dead-letter queue after its maximum receives), so it has none.
    async fn quarantined(&self, _max: usize) -> Result<Vec<QuarantinedMessage>, TransportError> {
        Ok(Vec::new())
    }

    /// Moves every dead letter of `queue` back to it; returns how many.
    async fn redrive(&self, queue: &str) -> Result<usize, TransportError>;

    /// Creates a queue owned by one process (a reply queue), which lives while its owner keeps
    /// renewing it: it expires `ttl` after creation or the last [`Transport::renew_queue`].
    async fn create_temporary_queue(&self, name: &str, ttl: Duration)
    -> Result<(), TransportError>;

    async fn renew_queue(&self, name: &str, ttl: Duration) -> Result<(), TransportError>;

    /// Deletes a queue and its messages (no-op if absent).
    async fn delete_queue(&self, name: &str) -> Result<(), TransportError>;

    /// Deletes every temporary queue whose owner stopped renewing it (a crashed process);
    /// returns their names. Any process may run this; it is idempotent.
    async fn delete_expired_queues(&self) -> Result<Vec<String>, TransportError>;

    /// Names of the existing queues that start with `prefix`.
    async fn list_queues(&self, prefix: &str) -> Result<Vec<String>, TransportError>;
}
