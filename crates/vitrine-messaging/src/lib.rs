//! Reliable messaging between Vitrine services: nothing committed is lost, nothing is applied
//! twice.
//!
//! - [`envelope`]: the CloudEvents 1.0 envelope of every message.
//! - [`outbox`]: messages written in the business transaction; [`relay`] publishes them.
//! - [`inbox`]: consumers record handled messages in their effect's transaction.
//! - [`consumer`]: the receive / handle / ack-or-retry loop; poison messages end in a DLQ.
//! - [`transport`]: the port, with an embedded SQLite adapter and SNS+SQS.

pub mod backoff;
pub mod consumer;
pub mod envelope;
pub mod inbox;
pub mod migrations;
pub mod outbox;
pub mod relay;
pub mod request_reply;
pub mod transport;

pub use envelope::Envelope;
